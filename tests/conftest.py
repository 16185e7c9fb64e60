"""Test configuration.

* Every test runs in float64 (the package itself never flips this flag).
* The default suite is dominated by XLA compilation of many small programs on CPU;
  the backend's LLVM optimisation level 0 roughly halves compile time and changes
  no results (IEEE arithmetic is kept; only code-generation passes are skipped).
  The slow cross-checks (``-m slow``) are dominated by running large integral
  kernels instead, which level 0 makes several times slower, so a run that selects
  them keeps XLA's default optimisation. An XLA_FLAGS value set by the caller wins.
* Compiled programs are owned by mess's engines (bounded, least recently used
  first out), so a long test process keeps a bounded number of them.
"""

import os

import jax

jax.config.update("jax_enable_x64", True)


import pytest  # noqa: E402


def _selects_slow(markexpr: str) -> bool:
    """Whether a ``-m`` expression selects the slow tests (``slow``, ``slow or ...``)."""
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return any(w == "slow" and (i == 0 or words[i - 1] != "not") for i, w in enumerate(words))


def pytest_configure(config):
    # XLA reads XLA_FLAGS when its backend starts, at the first computation, which is
    # after this hook: nothing at import time touches a device.
    if "XLA_FLAGS" not in os.environ and not _selects_slow(config.getoption("markexpr") or ""):
        os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"


def pytest_make_parametrize_id(config, val, argname):
    """Name an xyz-text parameter by its comment line (``water``), not its full text."""
    if isinstance(val, str) and "\n" in val:
        lines = val.splitlines()
        return lines[1].strip().replace(" ", "_") if len(lines) > 1 and lines[1].strip() else None
    return None
