"""Generalised eigenproblem F C = S C e via canonical orthogonalisation.

The AO basis is orthonormalised with X = U s^-1/2 (Löwdin 1970, "canonical
orthogonalisation"), dropping overlap eigenvalues below a threshold as PySCF's
``check_linear_dependency`` does. To keep shapes static the dropped columns of X
are zero, and the corresponding rows/columns of X^T F X get a large diagonal value so
their (meaningless) eigenvectors sort to the top as empty virtuals.

Not differentiated: the SCF loop is a fixed-point search; derivatives are taken at
the converged point by other means.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

#: Orbital energy (Hartree) given to the removed, linearly dependent directions.
REMOVED_ORBITAL_ENERGY = 1.0e6


def orthogonalizer(
    overlap: Float[Array, "n n"], threshold: float = 1e-6
) -> tuple[Float[Array, "n n"], Bool[Array, " n"]]:
    """Canonical orthogonaliser X (``X^T S X = 1`` on the kept space).

    Args:
        overlap: AO overlap matrix S.
        threshold: overlap eigenvalues ``<= threshold`` are removed (PySCF: 1e-6).

    Returns:
        ``(x, keep)``: x ``[n, n]`` with zero columns for removed directions, and the
        mask of kept columns.
    """
    s_eig, u = jnp.linalg.eigh(overlap)
    keep = s_eig > threshold
    x = jnp.where(keep[None, :], u / jnp.sqrt(jnp.where(keep, s_eig, 1.0))[None, :], 0.0)
    return x, keep


def eig(
    fock: Float[Array, "... n n"], x: Float[Array, "n n"], keep: Bool[Array, " n"]
) -> tuple[Float[Array, "... n"], Float[Array, "... n n"]]:
    """Solve F C = S C e for one or several Fock matrices (leading batch axes).

    Returns orbital energies (Hartree, ascending) and AO coefficients (columns);
    orbitals in removed directions have zero coefficients and energy
    :data:`REMOVED_ORBITAL_ENERGY`.
    """
    f_orth = jnp.swapaxes(x, -1, -2) @ fock @ x
    f_orth = f_orth + jnp.diag(jnp.where(keep, 0.0, REMOVED_ORBITAL_ENERGY))
    f_orth = 0.5 * (f_orth + jnp.swapaxes(f_orth, -1, -2))
    e, c = jnp.linalg.eigh(f_orth)
    return e, x @ c
