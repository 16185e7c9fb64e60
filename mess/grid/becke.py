"""Becke fuzzy-cell partition of space (JAX, differentiable in the nuclear positions).

A. D. Becke, J. Chem. Phys. 88, 2547 (1988): the molecular integral is split into
atomic pieces with weights ``w_A(r) = P_A(r) / sum_B P_B(r)``, where
``P_A(r) = prod_{B != A} s(nu_AB(r))``,
``mu_AB = (|r - R_A| - |r - R_B|) / |R_A - R_B|``,
``nu_AB = mu_AB + a_AB (1 - mu_AB^2)`` (atomic-size adjustment, Becke's appendix, with
Treutler-Ahlrichs radii: JCP 102, 346 (1995)), and ``s(nu) = (1 - f3(nu)) / 2`` with
``f3`` the three-fold iterated polynomial ``p(x) = (3x - x^3) / 2``.

The elementwise expressions are written in the same floating-point order as PySCF's
``VXCgen_grid`` (libdft), and ``s(nu_BA) = 1 - s(nu_AB)`` holds exactly, so weights
agree with ``pyscf.dft.gen_grid`` to rounding; only the reductions over atoms (the
product over partners and the normalising sum) may associate differently, a few ulp
(max. ~2e-13 absolute on weights up to ~100 Bohr^3 in the tests). All lengths in Bohr.

Derivatives are NaN-free: every square root and reciprocal is guarded so that a
point sitting exactly on a nucleus (zero distance) or two coinciding padding atoms
(zero interatomic distance) yield finite values and zero-contribution gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def safe_norm(d: Float[Array, "... 3"]) -> Float[Array, "..."]:
    """Euclidean norm over the last axis, with gradient 0 (not NaN) at the origin.

    Evaluated as ``sqrt(x*x + y*y + z*z)`` in that order (as PySCF's C code does).
    """
    r2 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]
    positive = r2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)


def inverse_atom_distances(
    positions: Float[Array, "natom 3"], atom_mask: Bool[Array, " natom"]
) -> Float[Array, "natom natom"]:
    """``1 / |R_i - R_j|`` (1/Bohr); 0 on the diagonal and for pairs with a padding atom.

    Two real atoms on top of each other give ``inf``, as in PySCF (``mess.structure``
    refuses such geometries on the host).
    """
    natom = positions.shape[0]
    r = safe_norm(positions[:, None, :] - positions[None, :, :])
    pair = atom_mask[:, None] & atom_mask[None, :] & ~jnp.eye(natom, dtype=bool)
    return jnp.where(pair, 1.0 / jnp.where(pair, r, 1.0), 0.0)


@jax.custom_jvp
def becke_switch(nu: Float[Array, "..."]) -> Float[Array, "..."]:
    """Half of Becke's ``f3``: ``p(p(p(nu))) / 2`` with ``p(x) = (3 - x^2) x / 2``.

    The cell function is ``s = 1/2 - becke_switch(nu)`` (Becke 1988, eqs. 19-21).
    """
    s = (3 - nu * nu) * nu * 0.5
    s = (3 - s * s) * s * 0.5
    return ((3 - s * s) * s * 0.5) * 0.5


@becke_switch.defjvp
def _becke_switch_jvp(primals, tangents):
    (nu,), (dnu,) = primals, tangents
    s1 = (3 - nu * nu) * nu * 0.5
    s2 = (3 - s1 * s1) * s1 * 0.5
    out = ((3 - s2 * s2) * s2 * 0.5) * 0.5
    # d/dx p(x) = 3/2 (1 - x^2), chained three times, times the final 1/2.
    slope = 0.5 * (1.5 * (1 - s2 * s2)) * (1.5 * (1 - s1 * s1)) * (1.5 * (1 - nu * nu))
    return out, slope * dnu


@jax.custom_jvp
def elliptic_coordinates(
    dist: Float[Array, "natom npts"], inv_r: Float[Array, "natom natom"]
) -> Float[Array, "natom natom npts"]:
    """Becke's confocal elliptical coordinate ``mu_AB = (r_A - r_B) / R_AB`` (eq. 11).

    Args:
        dist: point-nucleus distances ``r_A`` (Bohr).
        inv_r: inverse internuclear distances ``1 / R_AB`` (1/Bohr).

    The JVP is written with ``einsum`` so that its transpose (the reverse-mode rule)
    is a set of contractions, which XLA on CPU runs several times faster than the
    generic broadcast-then-reduce rule. Forward and reverse mode both work.
    """
    return (dist[:, None, :] - dist[None, :, :]) * inv_r[:, :, None]


@elliptic_coordinates.defjvp
def _elliptic_jvp(primals, tangents):
    (dist, inv_r), (d_dist, d_inv) = primals, tangents
    eye = jnp.eye(dist.shape[0], dtype=dist.dtype)
    # delta_AC - delta_BC, contracted with the tangent of r_C.
    sel = eye[:, None, :] - eye[None, :, :]  # [A, B, C]
    d_diff = jnp.einsum("abc,cn->abn", sel, d_dist)
    diff = dist[:, None, :] - dist[None, :, :]
    tangent = d_diff * inv_r[:, :, None] + diff * d_inv[:, :, None]
    return diff * inv_r[:, :, None], tangent


@jax.custom_jvp
def product_over_partners(factors: Float[Array, "natom natom npts"]) -> Float[Array, "natom npts"]:
    """``prod_B factors[A, B, :]``, with a cheap derivative rule.

    JVP: ``dP_A = P_A * sum_B dS_AB / S_AB`` over non-zero factors. This is exact when
    every factor that vanishes also has a vanishing derivative, which holds for Becke's
    cell function (``s(nu) = 0`` only at ``nu = 1``, where ``s'(1) = 0``) and for the
    constant factors of padding atoms (``becke_switch``'s own JVP makes the slope
    exactly 0 at ``nu = 1``). It replaces the generic rule of ``jnp.prod``, which
    builds exclusive cumulative products, with one elementwise pass.
    """
    return jnp.prod(factors, axis=1)


@product_over_partners.defjvp
def _product_over_partners_jvp(primals, tangents):
    (factors,), (dfactors,) = primals, tangents
    cell = jnp.prod(factors, axis=1)
    nonzero = factors != 0
    ratio = jnp.where(nonzero, dfactors / jnp.where(nonzero, factors, 1.0), 0.0)
    return cell, cell * jnp.sum(ratio, axis=1)


def becke_cell_functions(
    coords: Float[Array, "npts 3"],
    positions: Float[Array, "natom 3"],
    radii_adjust: Float[Array, "natom natom"],
    atom_mask: Bool[Array, " natom"],
) -> Float[Array, "natom npts"]:
    """Unnormalised Becke cell functions ``P_A(r)`` for every atom A at every point.

    Args:
        coords: grid points (Bohr).
        positions: nuclear positions (Bohr).
        radii_adjust: size-adjustment coefficients ``a_AB`` (antisymmetric).
        atom_mask: ``False`` for padding atoms; they take no part in the partition
            (their ``P`` is 0 and they contribute no factor to other atoms).

    Memory: several ``[natom, natom, npts]`` temporaries; call it on blocks of points
    (``mess.grid.grid_coords_weights`` does).
    """
    natom = positions.shape[0]
    dist = safe_norm(coords[None, :, :] - positions[:, None, :])  # [natom, npts]
    inv_r = inverse_atom_distances(positions, atom_mask)  # [natom, natom]
    pair = atom_mask[:, None] & atom_mask[None, :] & ~jnp.eye(natom, dtype=bool)
    mu = elliptic_coordinates(dist, inv_r)  # [A, B, npts]
    a = radii_adjust[:, :, None]
    nu = mu + a * (1 - mu * mu)
    factor = jnp.where(pair[:, :, None], 0.5 - becke_switch(nu), 1.0)
    cell = product_over_partners(factor)
    return jnp.where(atom_mask[:, None], cell, 0.0)


def partition_weights(
    quadrature_weights: Float[Array, " npts"],
    coords: Float[Array, "npts 3"],
    owner: Int[Array, " npts"],
    positions: Float[Array, "natom 3"],
    radii_adjust: Float[Array, "natom natom"],
    atom_mask: Bool[Array, " natom"],
) -> Float[Array, " npts"]:
    """Molecular grid weights ``w_q * P_owner(r) / sum_B P_B(r)`` (Bohr^3).

    Args:
        quadrature_weights: atomic quadrature weights ``w_q`` (Bohr^3).
        coords: grid points (Bohr).
        owner: index of the atom whose atomic quadrature produced each point.
        positions, radii_adjust, atom_mask: as in :func:`becke_cell_functions`.

    Evaluated as ``(w_q * P_owner) * (1 / sum_B P_B)``, the same floating-point
    expression as ``pyscf.dft.gen_grid.get_partition``.
    """
    cell = becke_cell_functions(coords, positions, radii_adjust, atom_mask)
    total = jnp.sum(cell, axis=0)
    # Select P_owner with a mask (exact: one term, the rest 0); cheaper to
    # differentiate than a gather.
    is_owner = owner[None, :] == jnp.arange(cell.shape[0])[:, None]
    own = jnp.sum(jnp.where(is_owner, cell, 0.0), axis=0)
    return quadrature_weights * own * (1.0 / total)
