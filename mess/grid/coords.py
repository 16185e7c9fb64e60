"""Molecular grid coordinates and weights from a plan and nuclear positions (JAX).

``grid_coords_weights(plan, positions)`` is jit-able, vmap-able over a batch of
positions, and differentiable in the positions: points move rigidly with their atoms
and the Becke weights respond to every nucleus (the "grid response").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from mess.errors import InputError
from mess.grid.becke import partition_weights
from mess.grid.plan import GridPlan


def _as_positions(positions: ArrayLike) -> Float[Array, "natom 3"]:
    """Positions as a float JAX array; refuse a silent float64 -> float32 downcast."""
    dtype = getattr(positions, "dtype", None)
    if not jax.config.jax_enable_x64 and dtype != np.float32:
        raise RuntimeError(
            "mess.grid needs float64: call jax.config.update('jax_enable_x64', True) "
            "(or set JAX_ENABLE_X64=1), or pass float32 positions explicitly."
        )
    positions = jnp.asarray(positions)
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        positions = positions.astype(jnp.result_type(float))
    return positions


def grid_coords_weights(
    plan: GridPlan, positions: Float[ArrayLike, "natom 3"]
) -> tuple[Float[Array, "npts 3"], Float[Array, " npts"]]:
    """Grid points and weights of the molecular grid for nuclear ``positions``.

    Args:
        plan: host-side plan from :func:`mess.grid.make_grid_plan`.
        positions: nuclear positions (Bohr), ``[natom, 3]``, in the plan's atom order.

    Returns:
        coords: ``[npts, 3]`` grid points (Bohr), ``offset + R_owner``.
        weights: ``[npts]`` integration weights (Bohr^3), atomic quadrature weights times
            the Becke partition [Becke, JCP 88, 2547 (1988)] with Treutler-Ahlrichs
            atomic-size adjustment [JCP 102, 346 (1995)]; ``sum(weights * f(coords))``
            approximates ``int f(r) d^3r``. Padding points have weight exactly 0.

    The partition costs O(npts * natom^2) and is evaluated in blocks of
    ``plan.block_size`` points under ``jax.checkpoint``, so memory stays
    O(block_size * natom) in the forward pass and per block in the backward pass.
    """
    positions = _as_positions(positions)
    if positions.shape != (plan.natom, 3):
        raise InputError(f"positions must have shape ({plan.natom}, 3), got {positions.shape}")
    dtype = positions.dtype
    owner = jnp.asarray(plan.atom_index)
    offsets = jnp.asarray(plan.offsets, dtype)
    qw = jnp.asarray(plan.quadrature_weights, dtype)
    radii_adjust = jnp.asarray(plan.radii_adjust, dtype)
    atom_mask = jnp.asarray(plan.atom_mask)
    coords = offsets + positions[owner]

    def block(args):
        w, c, o = args
        return partition_weights(w, c, o, positions, radii_adjust, atom_mask)

    npts, size = plan.npts, min(plan.block_size, plan.npts)
    if npts <= size:
        return coords, block((qw, coords, owner))
    nblk = -(-npts // size)
    extra = nblk * size - npts
    # Block padding repeats the first point (weight 0): finite values and gradients.
    w_b = jnp.concatenate([qw, jnp.zeros(extra, dtype)]).reshape(nblk, size)
    c_b = jnp.concatenate([coords, jnp.broadcast_to(coords[:1], (extra, 3))])
    o_b = jnp.concatenate([owner, jnp.broadcast_to(owner[:1], (extra,))])
    weights = jax.lax.map(
        jax.checkpoint(block), (w_b, c_b.reshape(nblk, size, 3), o_b.reshape(nblk, size))
    )
    return coords, weights.reshape(-1)[:npts]
