"""Test configuration: every test runs in float64 (the package itself never flips this flag)."""

import jax

jax.config.update("jax_enable_x64", True)
