"""Density variables and libxc-style screening of tiny densities.

Every component in :mod:`mess.xc` is written, like libxc's Maple sources, as an
energy per particle ``eps(rs, zeta, xt, xs_a, xs_b)`` (Hartree) of

* ``rs``   Wigner-Seitz radius, ``(3 / (4 pi n))^(1/3)`` (Bohr), ``n = n_a + n_b``;
* ``zeta`` spin polarisation ``(n_a - n_b) / n`` (dimensionless);
* ``xt``   total reduced gradient ``|grad n| / n^(4/3)`` (we carry ``xt^2``);
* ``xs_s`` spin reduced gradients ``|grad n_s| / n_s^(4/3)`` (we carry ``xs_s^2``).

This module turns the raw inputs (densities in Bohr^-3, ``sigma`` contractions
``grad n_s . grad n_t`` in Bohr^-8) into those variables exactly the way libxc 7
does it in ``work_lda_inc.c`` / ``work_gga_inc.c`` and ``functionals.c``:

1. A point whose total density is below the functional's ``dens_threshold``
   contributes nothing (energy and all derivatives are exactly zero).
2. Otherwise each spin density is floored at ``dens_threshold``, each
   ``sigma_ss`` at ``sigma_threshold^2`` with ``sigma_threshold =
   dens_threshold^(4/3)``, and ``sigma_ab`` is clipped to
   ``[-(s_aa + s_bb)/2, +(s_aa + s_bb)/2]``.
3. libxc reports derivatives with respect to the *clamped* variables, so the
   clamps here are straight-through: the value is clamped, the derivative is
   passed unchanged (a ``custom_jvp`` clip). PySCF multiplies libxc's energy
   per particle by the *unclamped* density; :func:`energy_density` does the
   same in value while keeping libxc's ``vrho`` as the derivative.
4. ``zeta_threshold = DBL_EPSILON``: powers ``(1 +- zeta)^n`` are frozen at
   ``zeta_threshold^n`` when ``1 +- zeta <= zeta_threshold``
   (``opz_pow_n``), and exchange-like terms use ``z_thr(zeta)``.
5. Spin channels of exchange are dropped where their (clamped) density is at
   most ``dens_threshold`` (``screen_dens``).

The per-component ``dens_threshold`` values are libxc 7.0's defaults (1e-15
for LDA_X, VWN, PW, B88, PBE exchange; 1e-14 for LYP; 1e-12 for PBE
correlation); :mod:`mess.xc.registry` holds them and the tests probe both sides
of each. Near full polarisation the rounding of ``1 - zeta`` decides branches
and dominates some derivatives, so the operation order of libxc's generated C
code is reproduced where it matters (see :class:`DensityVariables`).

Masked points are replaced by a harmless density *before* any arithmetic (the
"double where" trick), so neither values nor gradients are ever NaN, including
at exactly zero density (padded grid points).

Reference: S. Lehtola, C. Steigemann, M. J. T. Oliveira, M. A. L. Marques,
SoftwareX 7, 1 (2018) (libxc); ``maple/util.mpl`` for the helper functions.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

DBL_EPSILON: float = 2.220446049250313e-16
"""libxc's default ``zeta_threshold`` (C ``DBL_EPSILON``)."""

RS_FACTOR: float = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
"""``rs = RS_FACTOR / n^(1/3)`` (3D)."""

X_FACTOR_C: float = 3.0 / 8.0 * (3.0 / math.pi) ** (1.0 / 3.0) * 4.0 ** (2.0 / 3.0)
"""Slater exchange prefactor of libxc (``X_FACTOR_C`` in ``util.mpl``)."""

X2S: float = 1.0 / (2.0 * (6.0 * math.pi**2) ** (1.0 / 3.0))
"""Conversion from the spin reduced gradient ``xs`` to the PBE ``s``."""

Points = Float[Array, " npts"]


def sigma_floor(dens_threshold: float) -> float:
    """libxc's floor on ``sigma_ss``: ``(dens_threshold^(4/3))^2`` (Bohr^-8)."""
    return (dens_threshold ** (4.0 / 3.0)) ** 2


@jax.custom_jvp
def _clip_pass_through(x: Points, lo: Points, hi: Points) -> Points:
    return jnp.clip(x, lo, hi)


@_clip_pass_through.defjvp
def _clip_pass_through_jvp(primals, tangents):
    x, lo, hi = primals
    return jnp.clip(x, lo, hi), tangents[0]


def straight_through_clip(x: Points, lo=None, hi=None) -> Points:
    """Clip ``x`` to ``[lo, hi]`` in value, with derivative 1 (w.r.t. ``x``) everywhere.

    This reproduces libxc, which clamps its inputs and then reports the
    derivatives of the functional at the clamped point. ``lo``/``hi`` are
    treated as constants (no gradient flows through them).
    """
    lo = -jnp.inf if lo is None else lo
    hi = jnp.inf if hi is None else hi
    x = jnp.asarray(x)
    lo = jnp.broadcast_to(jnp.asarray(lo, dtype=x.dtype), x.shape)
    hi = jnp.broadcast_to(jnp.asarray(hi, dtype=x.dtype), x.shape)
    return _clip_pass_through(x, lo, hi)


class DensityVariables(eqx.Module):
    """The libxc variables of one batch of grid points, after screening.

    All arrays have shape ``[npts]``. ``rho``, ``rho_a``, ``rho_b`` are the
    (clamped) total and spin densities in Bohr^-3 and ``rho_raw`` the
    unclamped total (libxc's energy per particle multiplies it in PySCF);
    ``rs`` in Bohr; ``zeta``, ``opz = 1 + zeta``, ``omz = 1 - zeta``,
    ``xt2``, ``xs2_a``, ``xs2_b`` dimensionless (``xt2 = xt^2`` etc.).
    ``opz_s = 2 rho_a / rho`` and ``omz_s = 2 rho_b / rho`` are the same
    ``1 +- zeta`` formed from the spin densities: libxc's Maple code simplifies
    the spin-scaled exchange (``lda_x_spin``) to this form, while correlation
    kernels form ``1 +- zeta`` from ``zeta``; near full polarisation the two
    round differently and decide the ``zeta_threshold`` branches differently.
    ``polarized`` is False for the spin-restricted path, where ``zeta`` is
    identically zero (as in libxc's unpolarised kernels).
    """

    rho: Points
    rho_raw: Points
    rho_a: Points
    rho_b: Points
    rs: Points
    zeta: Points
    opz: Points
    omz: Points
    opz_s: Points
    omz_s: Points
    xt2: Points
    xs2_a: Points
    xs2_b: Points
    dens_threshold: float = eqx.field(static=True)
    zeta_threshold: float = eqx.field(static=True)
    polarized: bool = eqx.field(static=True)


def _rs(rho: Points) -> Points:
    """Wigner-Seitz radius ``rs = (3 / (4 pi rho))^(1/3)`` in Bohr."""
    return RS_FACTOR / jnp.cbrt(rho)


def restricted_variables(
    rho: Points, sigma: Points | None, dens_threshold: float
) -> tuple[Bool[Array, " npts"], DensityVariables]:
    """Screen spin-restricted inputs like libxc's unpolarised driver.

    Args:
        rho: total density ``[npts]`` (Bohr^-3).
        sigma: ``|grad rho|^2`` ``[npts]`` (Bohr^-8), or None for LDA.
        dens_threshold: the component's libxc ``dens_threshold``.

    Returns:
        ``(mask, variables)`` where ``mask`` marks points that contribute.
    """
    rho = jnp.asarray(rho)
    sigma = jnp.zeros_like(rho) if sigma is None else jnp.asarray(sigma)
    mask = rho >= dens_threshold
    rho = jnp.where(mask, rho, 1.0)
    sigma = jnp.where(mask, sigma, 0.0)
    rho = straight_through_clip(rho, lo=dens_threshold)
    sigma = straight_through_clip(sigma, lo=sigma_floor(dens_threshold))
    xt2 = sigma / rho ** (8.0 / 3.0)
    xs2 = 2.0 ** (2.0 / 3.0) * xt2  # n_s = n/2, sigma_ss = sigma/4
    ones = jnp.ones_like(rho)
    v = DensityVariables(
        rho=rho,
        rho_raw=rho,
        rho_a=rho / 2.0,
        rho_b=rho / 2.0,
        rs=_rs(rho),
        zeta=jnp.zeros_like(rho),
        opz=ones,
        omz=ones,
        opz_s=ones,
        omz_s=ones,
        xt2=xt2,
        xs2_a=xs2,
        xs2_b=xs2,
        dens_threshold=dens_threshold,
        zeta_threshold=DBL_EPSILON,
        polarized=False,
    )
    return mask, v


def polarized_variables(
    rho_a: Points,
    rho_b: Points,
    sigma_aa: Points | None,
    sigma_ab: Points | None,
    sigma_bb: Points | None,
    dens_threshold: float,
) -> tuple[Bool[Array, " npts"], DensityVariables]:
    """Screen spin-polarised inputs like libxc's polarised driver.

    Args:
        rho_a, rho_b: spin densities ``[npts]`` (Bohr^-3).
        sigma_aa, sigma_ab, sigma_bb: ``grad rho_s . grad rho_t`` ``[npts]``
            (Bohr^-8), or None for LDA.
        dens_threshold: the component's libxc ``dens_threshold``.

    Returns:
        ``(mask, variables)`` where ``mask`` marks points that contribute.
    """
    rho_a = jnp.asarray(rho_a)
    rho_b = jnp.asarray(rho_b)
    zeros = jnp.zeros_like(rho_a)
    sigma_aa = zeros if sigma_aa is None else jnp.asarray(sigma_aa)
    sigma_ab = zeros if sigma_ab is None else jnp.asarray(sigma_ab)
    sigma_bb = zeros if sigma_bb is None else jnp.asarray(sigma_bb)

    mask = rho_a + rho_b >= dens_threshold
    rho_a = jnp.where(mask, rho_a, 1.0)
    rho_b = jnp.where(mask, rho_b, 1.0)
    sigma_aa = jnp.where(mask, sigma_aa, 0.0)
    sigma_ab = jnp.where(mask, sigma_ab, 0.0)
    sigma_bb = jnp.where(mask, sigma_bb, 0.0)

    floor = sigma_floor(dens_threshold)
    rho_raw = rho_a + rho_b
    rho_a = straight_through_clip(rho_a, lo=dens_threshold)
    rho_b = straight_through_clip(rho_b, lo=dens_threshold)
    sigma_aa = straight_through_clip(sigma_aa, lo=floor)
    sigma_bb = straight_through_clip(sigma_bb, lo=floor)
    s_ave = 0.5 * (sigma_aa + sigma_bb)
    sigma_ab = straight_through_clip(sigma_ab, lo=-s_ave, hi=s_ave)

    rho = rho_a + rho_b
    # Same operation order as libxc's generated code (zeta = (a - b) * (1/n),
    # then 1 +- zeta): near full polarisation 1 - zeta carries rounding error
    # that libxc's outputs inherit, so we reproduce it rather than fix it.
    zeta = (rho_a - rho_b) * (1.0 / rho)
    v = DensityVariables(
        rho=rho,
        rho_raw=rho_raw,
        rho_a=rho_a,
        rho_b=rho_b,
        rs=_rs(rho),
        zeta=zeta,
        opz=1.0 + zeta,
        omz=1.0 - zeta,
        opz_s=2.0 * (rho_a * (1.0 / rho)),
        omz_s=2.0 * (rho_b * (1.0 / rho)),
        xt2=(sigma_aa + 2.0 * sigma_ab + sigma_bb) / rho ** (8.0 / 3.0),
        xs2_a=sigma_aa / rho_a ** (8.0 / 3.0),
        xs2_b=sigma_bb / rho_b ** (8.0 / 3.0),
        dens_threshold=dens_threshold,
        zeta_threshold=DBL_EPSILON,
        polarized=True,
    )
    return mask, v


# ---------------------------------------------------------------------------
# Spin-scaling helpers (libxc maple/util.mpl), all elementwise on [npts].
# ---------------------------------------------------------------------------


def opz_pow_n(opz: Points, n: float, zeta_threshold: float) -> Points:
    """``(1 + zeta)^n`` given ``opz = 1 + zeta``; frozen at ``zeta_threshold^n``
    when ``opz <= zeta_threshold`` (libxc ``opz_pow_n``).

    Pass ``omz`` for ``(1 - zeta)^n``. Double-``where`` keeps the derivative
    of the unused branch finite.
    """
    small = opz <= zeta_threshold
    safe = jnp.where(small, 1.0, opz)
    return jnp.where(small, zeta_threshold**n, safe**n)


def z_thr(
    opz: Points,
    omz: Points,
    zeta_threshold: float,
    opz_test: Points | None = None,
    omz_test: Points | None = None,
) -> tuple[Points, Points]:
    """libxc ``z_thr``: ``(1 + zeta, 1 - zeta)`` with ``zeta`` pulled back into
    ``[zeta_threshold - 1, 1 - zeta_threshold]``; swap the arguments for ``-zeta``.

    ``opz_test``/``omz_test`` (default: ``opz``/``omz``) are the values the
    branch conditions are evaluated on (libxc evaluates them in the
    spin-density form, the branch values in the ``zeta`` form).
    """
    lo = (opz if opz_test is None else opz_test) <= zeta_threshold
    hi = (omz if omz_test is None else omz_test) <= zeta_threshold
    new_opz = jnp.where(lo, zeta_threshold, jnp.where(hi, 2.0 - zeta_threshold, opz))
    new_omz = jnp.where(lo, 2.0 - zeta_threshold, jnp.where(hi, zeta_threshold, omz))
    return new_opz, new_omz


def f_zeta(v: DensityVariables) -> Points:
    """Spin-interpolation ``f(zeta) = ((1+z)^(4/3) + (1-z)^(4/3) - 2) / (2^(4/3) - 2)``.

    Perdew & Wang, Phys. Rev. B 45, 13244 (1992), Eq. (9) (originally von Barth
    & Hedin 1972).
    """
    zt = v.zeta_threshold
    return (opz_pow_n(v.opz, 4.0 / 3.0, zt) + opz_pow_n(v.omz, 4.0 / 3.0, zt) - 2.0) / (
        2.0 ** (4.0 / 3.0) - 2.0
    )


def mphi(v: DensityVariables) -> Points:
    """PBE spin-scaling ``phi(zeta) = ((1+z)^(2/3) + (1-z)^(2/3)) / 2``.

    Wang & Perdew, Phys. Rev. B 43, 8911 (1991); PBE 1996 Eq. (4).
    """
    zt = v.zeta_threshold
    return 0.5 * (opz_pow_n(v.opz, 2.0 / 3.0, zt) + opz_pow_n(v.omz, 2.0 / 3.0, zt))


def screen_spin(v: DensityVariables, spin: int) -> Bool[Array, " npts"]:
    """libxc ``screen_dens``: True where the (clamped) spin density is at most ``dens_threshold``."""
    return (v.rho_a if spin == 0 else v.rho_b) <= v.dens_threshold


def energy_density(v: DensityVariables, eps: Points) -> Points:
    """``rho_raw * eps`` in value, ``d(rho * eps)`` in derivative (Hartree/Bohr^3).

    PySCF multiplies libxc's per-particle energy (evaluated at the clamped
    densities) by the unclamped density, while libxc's ``vrho`` is the
    derivative of ``rho * eps`` at the clamped point; the two differ only where
    a spin density was floored.
    """
    return v.rho * eps + jax.lax.stop_gradient((v.rho_raw - v.rho) * eps)
