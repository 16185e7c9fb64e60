"""Test configuration.

* Every test runs in float64 (the package itself never flips this flag).
* The suite is dominated by XLA compilation of many small programs on CPU; the
  backend's LLVM optimisation level 0 roughly halves compile time and changes no
  results (IEEE arithmetic is kept; only code-generation passes are skipped). An
  XLA_FLAGS value set by the caller wins.
* XLA's CPU backend maps memory regions for every compiled program; after each
  test the compiled programs are dropped if the process nears the kernel's limit
  on memory mappings (``mess.config.release_compiled_programs_if_needed``), which
  otherwise crashes long test processes inside the compiler.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _bounded_memory_maps():
    yield
    from mess.config import release_compiled_programs_if_needed

    release_compiled_programs_if_needed()


def pytest_make_parametrize_id(config, val, argname):
    """Name an xyz-text parameter by its comment line (``water``), not its full text."""
    if isinstance(val, str) and "\n" in val:
        lines = val.splitlines()
        return lines[1].strip().replace(" ", "_") if len(lines) > 1 and lines[1].strip() else None
    return None
