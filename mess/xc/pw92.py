"""Perdew-Wang 1992 LDA correlation: libxc ``LDA_C_PW`` (id 12) and the
``LDA_C_PW_MOD`` variant (id 13) with the extra digits of the original PBE
routine, which is the one used inside PBE correlation.

Per particle, in Hartree (PW92 Eqs. 8 and 10):

    G(rs; A, a1, b1..b4, p) = -2A (1 + a1 rs)
        ln(1 + 1 / (2A (b1 rs^(1/2) + b2 rs + b3 rs^(3/2) + b4 rs^(p+1))))

    eps_c(rs, zeta) = eps_0 + zeta^4 f(zeta) (eps_1 - eps_0 + alpha_c / f''(0))
                      - f(zeta) alpha_c / f''(0)

where ``eps_0 = G(rs; paramagnetic)``, ``eps_1 = G(rs; ferromagnetic)``, and
``G(rs; spin stiffness) = -alpha_c`` (hence the signs), ``p = 1``.

References: J. P. Perdew, Y. Wang, Phys. Rev. B 45, 13244 (1992);
libxc ``maple/lda_exc/lda_c_pw.mpl`` and ``src/lda_c_pw.c``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mess.xc.screening import DensityVariables, Points, f_zeta


class PWParams(NamedTuple):
    """Parameters of one PW92 variant; each tuple is (paramagnetic,
    ferromagnetic, spin stiffness)."""

    a: tuple[float, float, float]
    alpha1: tuple[float, float, float]
    beta1: tuple[float, float, float]
    beta2: tuple[float, float, float]
    beta3: tuple[float, float, float]
    beta4: tuple[float, float, float]
    fz20: float  # f''(0)


_ALPHA1 = (0.21370, 0.20548, 0.11125)
_BETA1 = (7.5957, 14.1189, 10.357)
_BETA2 = (3.5876, 6.1977, 3.6231)
_BETA3 = (1.6382, 3.3662, 0.88026)
_BETA4 = (0.49294, 0.62517, 0.49671)

PW = PWParams((0.031091, 0.015545, 0.016887), _ALPHA1, _BETA1, _BETA2, _BETA3, _BETA4, 1.709921)
"""The constants as printed in PW92 (libxc ``LDA_C_PW``)."""

PW_MOD = PWParams(
    (0.0310907, 0.01554535, 0.0168869),
    _ALPHA1,
    _BETA1,
    _BETA2,
    _BETA3,
    _BETA4,
    1.709920934161365617563962776245,
)
"""The constants of the original PBE Fortran routine (libxc ``LDA_C_PW_MOD``)."""


def pw_g(rs: Points, params: PWParams, k: int) -> Points:
    """PW92 Eq. (10), fit ``k`` (0 paramagnetic, 1 ferromagnetic, 2 ``-alpha_c``), Hartree."""
    a = params.a[k]
    sqrt_rs = jnp.sqrt(rs)
    denom = (
        params.beta1[k] * sqrt_rs
        + params.beta2[k] * rs
        + params.beta3[k] * rs**1.5
        + params.beta4[k] * rs**2
    )
    return -2.0 * a * (1.0 + params.alpha1[k] * rs) * jnp.log(1.0 + 1.0 / (2.0 * a * denom))


def pw_eps(v: DensityVariables, params: PWParams) -> Points:
    """PW92 correlation energy per particle (Hartree), Eq. (8). ``[npts]``."""
    g0 = pw_g(v.rs, params, 0)
    if not v.polarized:
        # zeta == 0 exactly: f(0) = 0, so only the paramagnetic fit survives.
        return g0
    z = v.zeta
    fz = f_zeta(v)
    g1 = pw_g(v.rs, params, 1)
    g2 = pw_g(v.rs, params, 2)
    return g0 + z**4 * fz * (g1 - g0 + g2 / params.fz20) - fz * g2 / params.fz20


def eps_pw(v: DensityVariables) -> Points:
    """``LDA_C_PW`` energy per particle (Hartree), ``[npts]``."""
    return pw_eps(v, PW)


def eps_pw_mod(v: DensityVariables) -> Points:
    """``LDA_C_PW_MOD`` energy per particle (Hartree), ``[npts]``."""
    return pw_eps(v, PW_MOD)
