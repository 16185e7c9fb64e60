"""Vosko-Wilk-Nusair correlation: VWN5 (libxc ``LDA_C_VWN``, id 7) and
VWN-RPA (libxc ``LDA_C_VWN_RPA``, id 8, a.k.a. "VWN3"/"VWN1RPA" in some codes).

Both interpolate Ceperley-Alder (VWN5) or RPA (VWN-RPA) correlation energies of
the homogeneous electron gas with the Pade form (VWN Eq. 4.4), per particle in
Hartree, with ``x = sqrt(rs)``:

    G(rs; A, b, c, x0) = A [ ln(x^2/X(x)) + (2b/Q) atan(Q/(2x + b))
        - b x0/X(x0) ( ln((x - x0)^2/X(x)) + 2(b + 2 x0)/Q atan(Q/(2x + b)) ) ]

    X(x) = x^2 + b x + c,   Q = sqrt(4c - b^2).

VWN5 (VWN Eq. 3.2 with the spin stiffness alpha_c):

    eps_c = G_P + G_alpha f(zeta) (1 - zeta^4) / f''(0) + (G_F - G_P) f(zeta) zeta^4

VWN-RPA (the RPA parametrisation, simple f(zeta) interpolation, as in libxc):

    eps_c = G_P^RPA (1 - f(zeta)) + G_F^RPA f(zeta)

The A constants are the paper's divided by two (Rydberg -> Hartree); the
spin-stiffness A is -1/(6 pi^2). ``f''(0) = 4 / (9 (2^(1/3) - 1))``.

References: S. H. Vosko, L. Wilk, M. Nusair, Can. J. Phys. 58, 1200 (1980);
libxc ``maple/vwn.mpl``, ``lda_c_vwn.mpl``, ``lda_c_vwn_rpa.mpl``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from mess.xc.screening import DensityVariables, Points, f_zeta

# (A, b, c, x0) for paramagnetic, ferromagnetic and spin-stiffness fits.
VWN5_PARAMAGNETIC = (0.0310907, 3.72744, 12.9352, -0.10498)
VWN5_FERROMAGNETIC = (0.01554535, 7.06042, 18.0578, -0.32500)
VWN5_STIFFNESS = (-1.0 / (6.0 * math.pi**2), 1.13107, 13.0045, -0.0047584)
RPA_PARAMAGNETIC = (0.0310907, 13.0720, 42.7198, -0.409286)
RPA_FERROMAGNETIC = (0.01554535, 20.1231, 101.578, -0.743294)

FPP: float = 4.0 / (9.0 * (2.0 ** (1.0 / 3.0) - 1.0))
"""``f''(0)`` of the spin interpolation function."""


def vwn_pade(rs: Points, params: tuple[float, float, float, float]) -> Points:
    """The VWN Pade interpolation ``G(rs; A, b, c, x0)`` (Hartree), VWN Eq. (4.4)."""
    a, b, c, x0 = params
    q = math.sqrt(4.0 * c - b * b)
    f1 = 2.0 * b / q
    f2 = b * x0 / (x0 * x0 + b * x0 + c)
    f3 = 2.0 * (2.0 * x0 + b) / q
    sqrt_rs = jnp.sqrt(rs)
    fx = rs + b * sqrt_rs + c
    return a * (
        jnp.log(rs / fx)
        + (f1 - f2 * f3) * jnp.arctan(q / (2.0 * sqrt_rs + b))
        - f2 * jnp.log((sqrt_rs - x0) ** 2 / fx)
    )


def eps_vwn5(v: DensityVariables) -> Points:
    """VWN5 correlation energy per particle (Hartree), ``[npts]``."""
    z = v.zeta
    fz = f_zeta(v)
    para = vwn_pade(v.rs, VWN5_PARAMAGNETIC)
    if not v.polarized:
        return para  # zeta == 0 exactly: f(0) = 0
    ferro = vwn_pade(v.rs, VWN5_FERROMAGNETIC)
    z4 = z**4
    return (
        para
        + vwn_pade(v.rs, VWN5_STIFFNESS) * fz * (1.0 - z4) / FPP
        + (ferro - para) * fz * z4
    )


def eps_vwn_rpa(v: DensityVariables) -> Points:
    """VWN-RPA correlation energy per particle (Hartree), ``[npts]``."""
    fz = f_zeta(v)
    para = vwn_pade(v.rs, RPA_PARAMAGNETIC)
    ferro = vwn_pade(v.rs, RPA_FERROMAGNETIC)
    return para * (1.0 - fz) + ferro * fz
