"""Second-order (trust-region Newton) orbital optimisation, the SCF fallback.

The energy is minimised over orbital rotations ``C -> C U(kappa)`` where ``kappa``
holds the virtual-occupied rotation angles of each spin channel and ``U`` is the
Cayley transform of the antisymmetric ``K = kappa - kappa^T``,
``U = (1 - K/2)^-1 (1 + K/2)``: exactly orthogonal and equal to ``exp(K)`` through
second order, so the gradient and Hessian at ``kappa = 0`` are the exact orbital
gradient and Hessian. Both come from JAX autodiff of the energy functional (the
veff function must be differentiable); the Hessian is only used through
Hessian-vector products.

Each step solves the trust-region subproblem with Steihaug-Toint truncated
conjugate gradients (Steihaug, SIAM J. Numer. Anal. 20, 626 (1983)), preconditioned
by the orbital-energy gaps (a diagonal approximation of the Hessian, as in
Bacskay, Chem. Phys. 61, 385 (1981)), and accepts it when the actual energy change
agrees with the quadratic model (Nocedal & Wright, Numerical Optimization, ch. 4).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

#: Smallest orbital-energy gap used in the preconditioner, Hartree.
MIN_GAP = 0.1


def rotation_mask(mo_occ: Float[Array, "c n"], n_kept: Array) -> Bool[Array, "c n n"]:
    """Non-redundant rotations: virtual rows (of the linearly independent space)
    times occupied columns."""
    occ = mo_occ > 0
    real = jnp.arange(mo_occ.shape[-1]) < n_kept
    return ((~occ) & real)[..., :, None] & occ[..., None, :]


def rotate(mo_coeff: Float[Array, "c n n"], kappa: Float[Array, "c n n"]) -> Float[Array, "c n n"]:
    """``C U`` with ``U`` the Cayley transform of ``K = kappa - kappa^T``."""
    k = kappa - jnp.swapaxes(kappa, -1, -2)
    eye = jnp.eye(k.shape[-1], dtype=k.dtype)
    u = jnp.linalg.solve(eye - 0.5 * k, eye + 0.5 * k)
    return mo_coeff @ u


def steihaug_cg(
    hvp: Callable[[Array], Array], g: Array, radius: Array, max_iter: int, rtol: Array
) -> tuple[Array, Array]:
    """Approximate minimiser ``s`` of the model ``m(s) = g.s + s.H s / 2`` subject to
    ``|s| <= radius`` (Steihaug-Toint truncated CG; stops at negative curvature or the
    boundary). Returns ``(s, m(s))``; ``H s`` is carried along the iterations, so the
    model value costs no further Hessian-vector product."""

    def to_boundary(z, d):
        # tau >= 0 with |z + tau d| = radius
        a = jnp.vdot(d, d)
        b = 2 * jnp.vdot(z, d)
        c = jnp.vdot(z, z) - radius**2
        a = jnp.where(a > 0, a, 1.0)
        return (-b + jnp.sqrt(jnp.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)

    def body(_, carry):
        z, hz, r, d, done = carry
        hd = hvp(d)
        dhd = jnp.vdot(d, hd)
        rr = jnp.vdot(r, r)
        alpha = rr / jnp.where(dhd > 0, dhd, 1.0)
        z_next = z + alpha * d
        outside = (dhd <= 0) | (jnp.linalg.norm(z_next) >= radius)
        tau = to_boundary(z, d)
        r_next = r + alpha * hd
        small = jnp.linalg.norm(r_next) < rtol
        beta = jnp.vdot(r_next, r_next) / jnp.where(rr > 0, rr, 1.0)
        d_next = -r_next + beta * d
        z_new = jnp.where(outside, z + tau * d, z_next)
        hz_new = hz + jnp.where(outside, tau, alpha) * hd
        stop = outside | small
        keep = lambda old, new: jnp.where(done, old, new)
        return (keep(z, z_new), keep(hz, hz_new), keep(r, r_next), keep(d, d_next), done | stop)

    z0 = jnp.zeros_like(g)
    done0 = jnp.linalg.norm(g) == 0
    z, hz, *_ = jax.lax.fori_loop(0, max_iter, body, (z0, z0, g, -g, done0))
    return z, jnp.vdot(g, z) + 0.5 * jnp.vdot(z, hz)


def scaled_derivatives(
    energy_fn: Callable[[Array], Array],
    mo_coeff: Float[Array, "c n n"],
    mask: Bool[Array, "c n n"],
    orbital_energies: Float[Array, "c n"],
) -> tuple[Float[Array, "c n n"], Float[Array, "c n n"], Callable[[Array], Array]]:
    """The orbital gradient and Hessian of the energy at ``mo_coeff``, in rotation
    coordinates ``y = kappa / scale`` preconditioned by the orbital-energy gaps
    (``scale = 1/sqrt(max(eps_a - eps_i, MIN_GAP))`` on the non-redundant rotations, 0
    elsewhere), so that the Hessian is close to the identity.

    Returns:
        ``(scale, g, hvp)``: the scale ``[c, n, n]``, the gradient ``dE/dy`` at
        ``y = 0`` (Hartree) and ``v -> H v`` (exact Hessian-vector products by
        forward-over-reverse autodiff).
    """
    gap = orbital_energies[..., :, None] - orbital_energies[..., None, :]
    scale = jnp.where(mask, 1.0 / jnp.sqrt(jnp.maximum(gap, MIN_GAP)), 0.0)

    def e_scaled(y):
        return energy_fn(rotate(mo_coeff, y * scale))

    zero = jnp.zeros_like(mo_coeff)
    grad_fn = jax.grad(e_scaled)

    def hvp(v):
        return jax.jvp(grad_fn, (zero,), (v,))[1]

    return scale, grad_fn(zero), hvp


def lowest_curvature(
    hvp: Callable[[Array], Array], start: Array, krylov: int
) -> tuple[Float[Array, ""], Array]:
    """The lowest eigenvalue and its unit eigenvector of the symmetric operator
    ``hvp`` (approximately: the lowest Ritz pair of a ``krylov``-dimensional Lanczos
    space started from ``start``, fully re-orthogonalised).

    The Ritz value is never below the true lowest eigenvalue (Cauchy interlacing), so
    a negative value proves a direction of negative curvature. A Krylov space that is
    exhausted early (fewer rotations than ``krylov``) continues with zero vectors,
    whose zero Ritz values cannot pass for negative curvature.

    Reference: Lanczos, J. Res. Natl. Bur. Stand. 45, 255 (1950); Parlett, The
    Symmetric Eigenvalue Problem (SIAM, 1998), ch. 13.
    """
    dtype = start.dtype
    tiny = jnp.sqrt(jnp.finfo(dtype).eps)
    v0 = start / jnp.maximum(jnp.linalg.norm(start), jnp.finfo(dtype).tiny)
    basis = jnp.zeros((krylov,) + start.shape, dtype)

    def body(j, carry):
        basis, alpha, beta, v, v_prev, b_prev = carry
        w = hvp(v)
        a = jnp.vdot(v, w)
        w = w - a * v - b_prev * v_prev
        basis = basis.at[j].set(v)
        w = w - jnp.tensordot(jnp.tensordot(basis, w, axes=w.ndim), basis, axes=1)
        b = jnp.linalg.norm(w)
        live = b > tiny * jnp.maximum(jnp.abs(a), 1.0)
        v_next = jnp.where(live, w / jnp.where(live, b, 1.0), 0.0)
        return basis, alpha.at[j].set(a), beta.at[j].set(jnp.where(live, b, 0.0)), v_next, v, b

    zeros = jnp.zeros((krylov,), dtype)
    basis, alpha, beta, *_ = jax.lax.fori_loop(
        0, krylov, body, (basis, zeros, zeros, v0, jnp.zeros_like(v0), jnp.zeros((), dtype)))
    off = beta[:-1]
    tri = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    theta, s = jnp.linalg.eigh(tri)
    vec = jnp.tensordot(s[:, 0], basis, axes=1)
    return theta[0], vec / jnp.maximum(jnp.linalg.norm(vec), jnp.finfo(dtype).tiny)


def newton_step(
    energy_fn: Callable[[Array], Array],
    mo_coeff: Float[Array, "c n n"],
    mask: Bool[Array, "c n n"],
    orbital_energies: Float[Array, "c n"],
    radius: Array,
    max_iter: int,
) -> tuple[Float[Array, "c n n"], Array, Array]:
    """One trust-region Newton step.

    Args:
        energy_fn: total energy as a function of the orbital coefficients ``[c, n, n]``.
        mo_coeff: current orbitals (columns), occupied ones flagged in ``mask``.
        mask: non-redundant rotations (see :func:`rotation_mask`).
        orbital_energies: diagonal of ``C^T F C``, for the preconditioner.
        radius: trust radius in the preconditioned norm.
        max_iter: conjugate-gradient iterations (Hessian-vector products).

    Returns:
        ``(new_mo_coeff, predicted_change, step_norm)``: the rotated orbitals, the
        energy change predicted by the quadratic model (Hartree), and the step length
        in the preconditioned norm.
    """
    scale, g, hvp = scaled_derivatives(energy_fn, mo_coeff, mask, orbital_energies)
    gnorm = jnp.linalg.norm(g)
    rtol = gnorm * jnp.minimum(0.5, jnp.sqrt(gnorm))
    y, predicted = steihaug_cg(hvp, g, radius, max_iter, rtol)
    return rotate(mo_coeff, y * scale), predicted, jnp.linalg.norm(y)
