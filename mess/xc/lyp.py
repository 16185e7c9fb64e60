"""Lee-Yang-Parr correlation, libxc ``GGA_C_LYP`` (id 131), in the
density-and-gradient form of Miehlich, Savin, Stoll & Preuss (their Eq. 2),
as written in libxc's variables. Per particle, in Hartree:

    eps_c = a [ t1 + omega(r) (t2 + t3 + t4 + t5 + t6) ],   r = n^(-1/3) = rs / RS_FACTOR,
    omega(r) = b exp(-c r) / (1 + d r),   delta(r) = (c + d / (1 + d r)) r,
    t1 = -(1 - z^2) / (1 + d r)
    t2 = -xt^2 ((1 - z^2)(47 - 7 delta) / 72 - 2/3)
    t3 = -(C_F / 2) (1 - z^2) ((1+z)^(8/3) + (1-z)^(8/3))
    t4 = 2^(-8/3)/4 (1 - z^2)(5/2 - delta/18) (xs_a^2 (1+z)^(8/3) + xs_b^2 (1-z)^(8/3))
    t5 = 2^(-8/3)/72 (1 - z^2)(delta - 11) (xs_a^2 (1+z)^(11/3) + xs_b^2 (1-z)^(11/3))
    t6 = -2^(-8/3) [ 2/3 (xs_a^2 (1+z)^(8/3) + xs_b^2 (1-z)^(8/3))
                     - (1+z)^2 xs_b^2 (1-z)^(8/3) / 4 - (1-z)^2 xs_a^2 (1+z)^(8/3) / 4 ]

with C_F = (3/10)(3 pi^2)^(2/3), a = 0.04918, b = 0.132, c = 0.2533, d = 0.349.

References: C. Lee, W. Yang, R. G. Parr, Phys. Rev. B 37, 785 (1988);
B. Miehlich, A. Savin, H. Stoll, H. Preuss, Chem. Phys. Lett. 157, 200 (1989);
libxc ``maple/gga_exc/gga_c_lyp.mpl``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from mess.xc.screening import RS_FACTOR, DensityVariables, Points, opz_pow_n

LYP_A: float = 0.04918
LYP_B: float = 0.132
LYP_C: float = 0.2533
LYP_D: float = 0.349
LYP_CF: float = 3.0 / 10.0 * (3.0 * math.pi**2) ** (2.0 / 3.0)

_AUX6 = 1.0 / 2.0 ** (8.0 / 3.0)
_AUX4 = _AUX6 / 4.0
_AUX5 = _AUX4 / (9.0 * 2.0)


def eps_lyp(v: DensityVariables) -> Points:
    """LYP correlation energy per particle (Hartree), ``[npts]``."""
    zt = v.zeta_threshold
    r = v.rs / RS_FACTOR
    omega = LYP_B * jnp.exp(-LYP_C * r) / (1.0 + LYP_D * r)
    delta = (LYP_C + LYP_D / (1.0 + LYP_D * r)) * r
    omz2 = v.opz * v.omz  # 1 - zeta^2

    p83 = opz_pow_n(v.opz, 8.0 / 3.0, zt)
    m83 = opz_pow_n(v.omz, 8.0 / 3.0, zt)
    p113 = opz_pow_n(v.opz, 11.0 / 3.0, zt)
    m113 = opz_pow_n(v.omz, 11.0 / 3.0, zt)
    p2 = opz_pow_n(v.opz, 2.0, zt)
    m2 = opz_pow_n(v.omz, 2.0, zt)
    xa2, xb2 = v.xs2_a, v.xs2_b

    t1 = -omz2 / (1.0 + LYP_D * r)
    t2 = -v.xt2 * (omz2 * (47.0 - 7.0 * delta) / (4.0 * 18.0) - 2.0 / 3.0)
    t3 = -LYP_CF / 2.0 * omz2 * (p83 + m83)
    t4 = _AUX4 * omz2 * (5.0 / 2.0 - delta / 18.0) * (xa2 * p83 + xb2 * m83)
    t5 = _AUX5 * omz2 * (delta - 11.0) * (xa2 * p113 + xb2 * m113)
    t6 = -_AUX6 * (
        2.0 / 3.0 * (xa2 * p83 + xb2 * m83) - p2 * xb2 * m83 / 4.0 - m2 * xa2 * p83 / 4.0
    )
    return LYP_A * (t1 + omega * (t2 + t3 + t4 + t5 + t6))
