"""Commutator DIIS (CDIIS) with fixed-size ring buffers.

Pulay's direct inversion in the iterative subspace (Pulay, Chem. Phys. Lett. 73, 393
(1980); J. Comput. Chem. 3, 556 (1982)) extrapolates the Fock matrix as
``F = sum_i c_i F_i`` with ``sum_i c_i = 1`` minimising ``|sum_i c_i e_i|``, where the
error vector is the commutator ``e = X^T (F D S - S D F) X`` in an orthonormal basis
X. This mirrors PySCF's ``scf.diis.CDIIS`` with ``Corth = X`` (default min_space 1,
no rollback), including its pseudo-inverse of the bordered B matrix (eigenvalues with
``|w| < 1e-14`` dropped), so the iterations follow PySCF's.

The history is a ring buffer of ``space`` slots; unused slots are decoupled from the
linear system by an identity block, so every array has a static shape.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from mess.scf.eig import eigh_safe

#: PySCF's threshold for dropping near-singular directions of the DIIS matrix.
DIIS_EIG_THRESHOLD = 1e-14


class DIISState(eqx.Module):
    """Ring buffer of the last ``space`` Fock matrices and their error vectors.

    Attributes:
        focks: ``[space, *fock_shape]`` stored Fock matrices (Hartree).
        errors: ``[space, m]`` flattened error vectors.
        overlaps: ``[space, space]`` Gram matrix ``<e_i, e_j>`` of the stored errors.
        count: number of filled slots (<= space).
        head: slot that the next push overwrites.
    """

    focks: Float[Array, "space ..."]
    errors: Float[Array, "space m"]
    overlaps: Float[Array, "space space"]
    count: Int[Array, ""]
    head: Int[Array, ""]


def diis_init(space: int, fock_shape: tuple[int, ...], err_size: int, dtype=jnp.float64) -> DIISState:
    """An empty DIIS history."""
    return DIISState(
        focks=jnp.zeros((space, *fock_shape), dtype),
        errors=jnp.zeros((space, err_size), dtype),
        overlaps=jnp.zeros((space, space), dtype),
        count=jnp.zeros((), jnp.int32),
        head=jnp.zeros((), jnp.int32),
    )


def diis_reset(state: DIISState) -> DIISState:
    """Forget the history (the buffers keep their shapes)."""
    return DIISState(state.focks, state.errors, state.overlaps,
                     jnp.zeros_like(state.count), jnp.zeros_like(state.head))


def commutator_error(
    fock: Float[Array, "c n n"], dm: Float[Array, "c n n"], overlap: Float[Array, "n n"],
    x: Float[Array, "n n"],
) -> Float[Array, " m"]:
    """CDIIS error vector ``X^T (F D S - S D F) X`` per channel, flattened and
    concatenated (PySCF ``get_err_vec_orth``; for restricted D is the total density)."""
    sdf = jnp.swapaxes(x, -1, -2) @ overlap @ dm @ fock @ x
    return (jnp.swapaxes(sdf, -1, -2) - sdf).reshape(-1)


def diis_push(state: DIISState, fock: Array, err: Float[Array, " m"]) -> DIISState:
    """Store a Fock matrix and its error vector in the next slot."""
    space = state.focks.shape[0]
    slot = state.head
    count = jnp.minimum(state.count + 1, space)
    errors = state.errors.at[slot].set(err)
    valid = jnp.arange(space) < count
    row = jnp.where(valid, errors @ err, 0.0)
    overlaps = state.overlaps.at[slot, :].set(row).at[:, slot].set(row)
    return DIISState(
        focks=state.focks.at[slot].set(fock),
        errors=errors,
        overlaps=overlaps,
        count=count,
        head=(slot + 1) % space,
    )


def diis_coefficients(state: DIISState) -> Float[Array, " space"]:
    """Extrapolation coefficients (zero on empty slots), summing to one.

    Solves the bordered system ``[[0, 1^T], [1, B]] (lambda, c) = (1, 0)`` with a
    pseudo-inverse as PySCF's ``lib.diis.DIIS.extrapolate``.
    """
    space = state.focks.shape[0]
    valid = jnp.arange(space) < state.count
    pair = valid[:, None] & valid[None, :]
    b = jnp.where(pair, state.overlaps, jnp.eye(space, dtype=state.overlaps.dtype))
    ones = valid.astype(b.dtype)
    h = jnp.zeros((space + 1, space + 1), b.dtype)
    h = h.at[0, 1:].set(ones).at[1:, 0].set(ones).at[1:, 1:].set(b)
    w, v = eigh_safe(h)
    inv_w = jnp.where(jnp.abs(w) > DIIS_EIG_THRESHOLD, 1.0 / jnp.where(w == 0, 1.0, w), 0.0)
    c = v @ (inv_w * v[0, :])  # v diag(1/w) v^T g with g = e_0
    return jnp.where(valid, c[1:], 0.0)


def diis_extrapolate(state: DIISState) -> Array:
    """The DIIS Fock matrix ``sum_i c_i F_i`` (requires at least one stored pair)."""
    c = diis_coefficients(state)
    return jnp.tensordot(c, state.focks, axes=1)


def diis_update(state: DIISState, fock: Array, err: Float[Array, " m"]) -> tuple[DIISState, Array]:
    """Push ``(fock, err)`` and return the new state with the extrapolated Fock matrix."""
    state = diis_push(state, fock, err)
    return state, diis_extrapolate(state)
