"""Perdew-Burke-Ernzerhof exchange (libxc ``GGA_X_PBE``, id 101) and
correlation (libxc ``GGA_C_PBE``, id 130).

Exchange (PBE Eq. 14): spin-scaled Slater exchange times

    F_x(s) = 1 + kappa - kappa / (1 + mu s^2 / kappa),   s = X2S * xs,
    kappa = 0.804, mu = beta pi^2 / 3 = 0.2195149727645171.

Correlation (PBE Eqs. 3, 7, 8), per particle in Hartree:

    eps_c = eps_c^PW92(rs, zeta) + H(rs, zeta, t)
    H = gamma phi^3 ln(1 + (beta/gamma) t^2 (1 + A t^2) / (1 + A t^2 + A^2 t^4))
    A = (beta/gamma) / (exp(-eps_c^PW92 / (gamma phi^3)) - 1)
    t = |grad n| / (2 phi k_s n) = xt / (4 2^(1/3) phi sqrt(rs))

with beta = 0.06672455060314922, gamma = (1 - ln 2) / pi^2, phi = phi(zeta)
and eps_c^PW92 the ``PW_MOD`` variant (the constants of the PBE routine).

References: J. P. Perdew, K. Burke, M. Ernzerhof, Phys. Rev. Lett. 77, 3865
(1996); 78, 1396(E) (1997); J. P. Perdew, Y. Wang, Phys. Rev. B 45, 13244
(1992); libxc ``maple/gga_exc/gga_x_pbe.mpl``, ``gga_c_pbe.mpl``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from mess.xc.pw92 import PW_MOD, pw_eps
from mess.xc.screening import X2S, DensityVariables, Points, mphi
from mess.xc.slater import gga_exchange

PBE_KAPPA: float = 0.8040
PBE_MU: float = 0.2195149727645171
PBE_BETA: float = 0.06672455060314922
PBE_GAMMA: float = (1.0 - math.log(2.0)) / math.pi**2


def pbe_x_enhancement(xs2: Points) -> Points:
    """PBE exchange enhancement ``F_x`` of ``xs^2`` (dimensionless), ``[npts]``."""
    s2 = X2S**2 * xs2
    return 1.0 + PBE_KAPPA * (1.0 - PBE_KAPPA / (PBE_KAPPA + PBE_MU * s2))


def eps_pbe_x(v: DensityVariables) -> Points:
    """PBE exchange energy per particle (Hartree), ``[npts]``."""
    return gga_exchange(v, pbe_x_enhancement)


def pbe_h(ec_lda: Points, phi: Points, t2: Points) -> Points:
    """PBE gradient correction ``H`` (Hartree) from ``eps_c^LDA``, ``phi`` and ``t^2`` (PBE Eqs. 7-8)."""
    phi3 = phi**3
    a = PBE_BETA / (PBE_GAMMA * (jnp.exp(-ec_lda / (PBE_GAMMA * phi3)) - 1.0))
    f1 = t2 + a * t2 * t2
    f2 = PBE_BETA * f1 / (PBE_GAMMA * (1.0 + a * f1))
    return PBE_GAMMA * phi3 * jnp.log(1.0 + f2)


def eps_pbe_c(v: DensityVariables) -> Points:
    """PBE correlation energy per particle (Hartree), ``[npts]``."""
    ec = pw_eps(v, PW_MOD)
    phi = mphi(v)
    t2 = v.xt2 / (16.0 * 2.0 ** (2.0 / 3.0) * phi**2 * v.rs)
    return ec + pbe_h(ec, phi, t2)
