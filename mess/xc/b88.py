"""Becke 1988 exchange, libxc ``GGA_X_B88`` (id 106).

Spin-scaled Slater exchange times the enhancement factor (Becke 1988 Eq. 8
rewritten in libxc's variables, ``x = xs = |grad n_s| / n_s^(4/3)``):

    F(x) = 1 + (beta / X_FACTOR_C) x^2 / (1 + gamma beta x asinh(x)),
    beta = 0.0042 Hartree, gamma = 6.

References: A. D. Becke, Phys. Rev. A 38, 3098 (1988);
libxc ``maple/gga_exc/gga_x_b88.mpl``.
"""

from __future__ import annotations

import jax.numpy as jnp

from mess.xc.screening import X_FACTOR_C, DensityVariables, Points
from mess.xc.slater import gga_exchange

B88_BETA: float = 0.0042
B88_GAMMA: float = 6.0


def b88_enhancement(xs2: Points) -> Points:
    """B88 enhancement factor ``F(x)`` of ``x^2`` (dimensionless), ``[npts]``.

    ``xs2`` is strictly positive after screening, so ``sqrt`` is differentiable.
    """
    x = jnp.sqrt(xs2)
    return 1.0 + B88_BETA / X_FACTOR_C * xs2 / (1.0 + B88_GAMMA * B88_BETA * x * jnp.arcsinh(x))


def eps_b88(v: DensityVariables) -> Points:
    """B88 exchange energy per particle (Hartree), ``[npts]``."""
    return gga_exchange(v, b88_enhancement)
