"""Slater (Dirac) exchange, libxc ``LDA_X`` (id 1).

Energy per particle of the homogeneous electron gas, spin-resolved:

    eps_x(rs, zeta) = sum_{s=+-1} -X_FACTOR_C * 2^(-4/3) * (1 + s zeta)^(4/3) * RS_FACTOR / rs

with ``X_FACTOR_C = 3/8 (3/pi)^(1/3) 4^(2/3)``, i.e. for an unpolarised gas
``eps_x = -(3/4) (3/pi)^(1/3) n^(1/3)`` Hartree. Each spin channel is dropped
where its density is below ``dens_threshold`` (libxc ``screen_dens``).

References: P. A. M. Dirac, Math. Proc. Cambridge Philos. Soc. 26, 376 (1930);
J. C. Slater, Phys. Rev. 81, 385 (1951); libxc ``maple/lda_exc/lda_x.mpl``.
"""

from __future__ import annotations

import jax.numpy as jnp

from mess.xc.screening import (
    RS_FACTOR,
    X_FACTOR_C,
    DensityVariables,
    Points,
    opz_pow_n,
    screen_spin,
    z_thr,
)


def lda_x_spin(rs: Points, opz: Points, zeta_threshold: float) -> Points:
    """Exchange energy per particle (Hartree) carried by one spin channel.

    ``-X_FACTOR_C (1 + zeta)^(4/3) 2^(-4/3) RS_FACTOR / rs`` with
    ``opz = 1 + zeta`` (pass ``1 - zeta`` for the spin-down channel).
    ``rs`` in Bohr, ``[npts]``.
    """
    return (
        -X_FACTOR_C
        * opz_pow_n(opz, 4.0 / 3.0, zeta_threshold)
        * 2.0 ** (-4.0 / 3.0)
        * (RS_FACTOR / rs)
    )


def eps_lda_x(v: DensityVariables) -> Points:
    """Slater exchange energy per particle (Hartree), ``[npts]``."""
    zt = v.zeta_threshold
    up = jnp.where(screen_spin(v, 0), 0.0, lda_x_spin(v.rs, v.opz_s, zt))
    down = jnp.where(screen_spin(v, 1), 0.0, lda_x_spin(v.rs, v.omz_s, zt))
    return up + down


def gga_exchange(v: DensityVariables, enhancement) -> Points:
    """Spin-scaled GGA exchange energy per particle (Hartree), ``[npts]``.

    ``sum_s lda_x_spin(rs, z_thr(+-zeta)) * F(xs_s^2)`` with each channel
    screened like libxc's ``gga_exchange`` (``maple/util.mpl``); ``enhancement``
    maps ``xs^2`` (dimensionless) to the enhancement factor ``F``.
    """
    zt = v.zeta_threshold
    opz, omz = z_thr(v.opz, v.omz, zt, v.opz_s, v.omz_s)
    up = lda_x_spin(v.rs, opz, zt) * enhancement(v.xs2_a)
    down = lda_x_spin(v.rs, omz, zt) * enhancement(v.xs2_b)
    return jnp.where(screen_spin(v, 0), 0.0, up) + jnp.where(screen_spin(v, 1), 0.0, down)
