"""Test configuration.

* Every test runs in float64 (the package itself never flips this flag).
* The suite is dominated by XLA compilation of many small programs on CPU; the
  backend's LLVM optimisation level 0 roughly halves compile time and changes no
  results (IEEE arithmetic is kept; only code-generation passes are skipped). An
  XLA_FLAGS value set by the caller wins.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
