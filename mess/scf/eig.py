"""Generalised eigenproblem F C = S C e via canonical orthogonalisation.

The AO basis is orthonormalised with X = U s^-1/2 (Löwdin 1970, "canonical
orthogonalisation"), dropping overlap eigenvalues below a threshold as PySCF's
``check_linear_dependency`` does. To keep shapes static the dropped columns of X
are zero, and the corresponding rows/columns of X^T F X get a large diagonal value so
their (meaningless) eigenvectors sort to the top as empty virtuals.

The converged SCF is differentiated at its fixed point (:mod:`mess.implicit`), not
through these steps; the unrolled SCF (:mod:`mess.unrolled`) differentiates through
them, with eigenvector derivatives kept finite at degeneracies (:func:`eigh_safe`).
"""

from __future__ import annotations

import jax
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
    s_eig, u = eigh_safe(overlap)
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
    e, c = eigh_safe(f_orth)
    return e, x @ c


#: Eigenvalues closer than this (Hartree) are treated as one degenerate cluster by
#: :func:`eigvalsh_safe`.
DEGENERACY_TOL = 1e-8


@jax.custom_jvp
def eigvalsh_safe(a: Float[Array, "... n n"]) -> Float[Array, "... n"]:
    """Eigenvalues (ascending) of symmetric matrices, with derivatives that stay finite
    at degeneracies.

    The derivative of a simple eigenvalue is ``v_i^T dA v_i`` (Hellmann-Feynman). For a
    degenerate cluster (eigenvalues within :data:`DEGENERACY_TOL`) the individual
    eigenvalues are not differentiable; each member gets the derivative of the
    cluster's mean, ``tr(V_c^T dA V_c) / m``, which is exact for perturbations that keep
    the degeneracy (e.g. symmetric distortions) and linear, so reverse mode works.
    """
    return jnp.linalg.eigvalsh(a)


@eigvalsh_safe.defjvp
def _eigvalsh_safe_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    w, v = jnp.linalg.eigh(a)
    d = jnp.einsum("...pi,...pq,...qi->...i", v, da, v)
    cluster = (jnp.abs(w[..., :, None] - w[..., None, :]) < DEGENERACY_TOL).astype(w.dtype)
    dw = (cluster @ d[..., None])[..., 0] / jnp.sum(cluster, axis=-1)
    return w, dw


#: Lorentzian broadening (Hartree^2) of the eigenvector derivative in :func:`eigh_safe`.
EIGH_BROADENING = 1e-12


@jax.custom_jvp
def eigh_safe(a: Float[Array, "... n n"]) -> tuple[Float[Array, "... n"], Float[Array, "... n n"]]:
    """``jnp.linalg.eigh`` whose derivative stays finite at degenerate eigenvalues.

    The eigenvector derivative ``dV = V (F o (V^T dA V))`` has
    ``F_ij = 1 / (w_j - w_i)``, infinite for degenerate pairs; here
    ``F_ij = (w_j - w_i) / ((w_j - w_i)^2 + eta)`` with a tiny broadening ``eta``
    (:data:`EIGH_BROADENING`), which equals the exact value to relative ``eta / gap^2``
    (exact for gaps well above 1e-6 Hartree) and vanishes for exactly degenerate pairs, whose mixing is arbitrary (a gauge freedom
    of the eigenvectors that leaves densities and energies unchanged). Eigenvalue
    derivatives are averaged over degenerate clusters as in :func:`eigvalsh_safe`. Used by the
    unrolled SCF (:mod:`mess.unrolled`) so training gradients never become NaN.
    """
    w, v = jnp.linalg.eigh(a)
    return w, v


@eigh_safe.defjvp
def _eigh_safe_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    w, v = jnp.linalg.eigh(a)
    vt = jnp.swapaxes(v, -1, -2)
    da_v = vt @ (0.5 * (da + jnp.swapaxes(da, -1, -2))) @ v
    diff = w[..., None, :] - w[..., :, None]
    f = diff / (diff * diff + EIGH_BROADENING)
    cluster = (jnp.abs(diff) < DEGENERACY_TOL).astype(w.dtype)
    dw = (cluster @ jnp.diagonal(da_v, axis1=-2, axis2=-1)[..., None])[..., 0] / jnp.sum(cluster, axis=-1)
    dv = v @ (f * da_v)
    return (w, v), (dw, dv)


def reorthonormalise(
    c0: Float[Array, "n n"], mask: Bool[Array, " n"], overlap: Float[Array, "n n"],
    ref_overlap: Float[Array, "n n"] | None = None,
) -> Float[Array, "n n"]:
    """Columns ``mask`` of ``c0`` made orthonormal in the metric ``overlap``:
    ``C = C0 L^-T L0^T`` with ``L L^T = C0^T S C0`` (Cholesky) and ``L0`` the same for
    ``ref_overlap`` (the metric ``c0`` is orthonormal in; default: identity). Equal to
    ``c0`` when ``overlap == ref_overlap``; columns outside ``mask`` are unchanged.

    This is how orbitals follow a geometry (or basis) change at fixed occupations: the
    derivative of the energy at these orbitals is the analytic gradient (the Pulay
    term -tr(W dS) comes from differentiating L). Cholesky factors have finite
    derivatives for degenerate orbitals, unlike eigendecomposition-based square roots.
    ``ref_overlap`` enters without derivative."""
    both = mask[:, None] & mask[None, :]
    eye = jnp.eye(c0.shape[-1], dtype=c0.dtype)

    def factor(metric):
        a = c0.T @ metric @ c0
        return jnp.linalg.cholesky(jnp.where(both, 0.5 * (a + a.T), eye))

    rhs = eye if ref_overlap is None else jax.lax.stop_gradient(factor(ref_overlap)).T
    x = jax.scipy.linalg.solve_triangular(factor(overlap).T, rhs, lower=False)
    return c0 @ x
