"""Derivatives of converged SCF results by implicit differentiation.

The converged orbitals are a fixed point, not an explicit function of the inputs, and
differentiating the SCF iterations would be expensive and fragile. Instead the
solution is parametrised around the converged orbitals ``C0`` by occupied-virtual
rotations ``kappa``:

    C(kappa; p) = O(p) U(kappa),   U = Cayley(kappa - kappa^T),

where ``O(p) = C0 L(p)^-T L0^T`` re-orthonormalises ``C0`` in the overlap metric
``S(p)`` (Cholesky, ``L L^T = C0^T S(p) C0``, equal to ``C0`` at the converged point)
and ``kappa`` holds only the non-redundant virtual-occupied rotations. The SCF
solution is the root ``kappa*(p)`` of the orbital gradient
``g(kappa; p) = dE[D(kappa; p); p]/dkappa`` (Brillouin condition), with ``kappa* = 0``
at the point where the SCF was solved. By the implicit function theorem

    dkappa*/dp = -H^-1 dg/dp,   H = dg/dkappa  (the orbital Hessian),

a custom JVP applies in forward mode and JAX transposes for reverse mode; the linear
systems are solved by preconditioned conjugate gradients with Hessian-vector
products from automatic differentiation (coupled-perturbed SCF without hand-written
response kernels: Pople, Krishnan, Schlegel & Binkley, Int. J. Quantum Chem. Symp.
13, 225 (1979)). Only occupied-virtual rotations enter, so (near-)degenerate
orbitals within the occupied or within the virtual space cause no division by small
energy differences; the equations are singular only where the SCF solution itself
is (a vanishing orbital-Hessian eigenvalue).

Orbital energies are the eigenvalues of the occupied-occupied and virtual-virtual
blocks of ``C^T F C``; their derivatives use :func:`mess.scf.eig.eigvalsh_safe`, which
averages the derivative over a degenerate cluster (the derivative of the cluster's
mean, the symmetric choice) instead of producing NaN.

Units: Bohr, Hartree, field in atomic units; dipoles in Debye unless named ``_au``.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.engine.calculation import Calculation, SCFParams
from mess.engine.functional import energy as energy_functional
from mess.engine.stages import hamiltonian
from mess.engine.system import Params
from mess.properties import AU2DEBYE, dipole_au
from mess.scf.eig import eigvalsh_safe, reorthonormalise
from mess.scf.newton import rotate, rotation_mask
from mess.structure import Molecule

__all__ = ["SCFState", "scf_function", "polarizability"]


class SCFState(eqx.Module):
    """Converged SCF quantities as differentiable functions of :class:`SCFParams`.

    Attributes:
        energy: total energy, Hartree.
        mo_energy: orbital energies, Hartree ``[n]`` (restricted) or ``[2, n]``,
            ascending within the occupied and within the virtual orbitals.
        homo, lumo, gap: frontier orbital energies and ``lumo - homo``, Hartree.
        density: density matrix ``[n, n]`` (total) or ``[2, n, n]`` (spin).
        dipole: dipole moment in Debye ``[3]`` (origin 0, field-free definition).
        dipole_au: the same in atomic units (e Bohr).
        converged: whether the underlying SCF converged.
    """

    energy: Float[Array, ""]
    mo_energy: Array
    homo: Float[Array, ""]
    lumo: Float[Array, ""]
    gap: Float[Array, ""]
    density: Array
    dipole: Float[Array, "3"]
    dipole_au: Float[Array, "3"]
    converged: Array


def _cg(matvec: Callable, b: Array, precond: Array, tol: float, maxiter: int) -> Array:
    """Preconditioned conjugate gradients (Hestenes & Stiefel 1952) for the symmetric
    positive definite orbital Hessian; ``precond`` is the inverse diagonal. Stops at
    ``|r| <= tol |b|`` or after ``maxiter`` iterations. A plain loop (not
    ``jax.scipy.sparse.linalg.cg``, whose linear-solve primitive cannot be nested
    inside another tangent solve)."""
    bnorm = jnp.sqrt(jnp.vdot(b, b))
    z0 = precond * b

    def cond(carry):
        k, _, r, _, _ = carry
        return (k < maxiter) & (jnp.sqrt(jnp.vdot(r, r)) > tol * bnorm)

    def body(carry):
        k, x, r, d, rz = carry
        ad = matvec(d)
        alpha = rz / jnp.vdot(d, ad)
        x = x + alpha * d
        r = r - alpha * ad
        z = precond * r
        rz_new = jnp.vdot(r, z)
        return k + 1, x, r, z + (rz_new / rz) * d, rz_new

    init = (jnp.zeros((), jnp.int32), jnp.zeros_like(b), b, z0, jnp.vdot(b, z0))
    _, x, *_ = jax.lax.while_loop(cond, body, init)
    return x


def scf_function(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                 *, response_tol: float = 1e-10, response_maxiter: int = 200,
                 **options) -> tuple[SCFParams, Callable[[SCFParams], SCFState]]:
    """The converged SCF as a differentiable function of all continuous inputs.

    Args:
        molecule, basis, xc, cart, **options: as :func:`mess.run` (use a tight
            ``conv_tol``, e.g. 1e-11, for accurate derivatives: their error is first
            order in the residual orbital gradient).
        response_tol: relative residual of the conjugate-gradient solves of the
            response (coupled-perturbed) equations.
        response_maxiter: maximum conjugate-gradient iterations per solve.

    Returns:
        ``(params0, solve)``: the inputs of ``molecule`` as :class:`SCFParams`
        (positions in Bohr, zero field, basis exponents/coefficients, functional
        weights, exact-exchange fraction) and ``solve(params) -> SCFState``, which runs
        the SCF at ``params`` and whose outputs have implicit derivatives: use
        ``jax.grad``, ``jax.jacfwd``/``jacrev`` on any output with respect to any leaf
        of the parameters, e.g. ``jax.grad(lambda p: solve(p).homo)(params0).positions``.
        Derivatives are taken for every leaf that carries a tangent; to pay only for
        the ones needed, close over the others (``eqx.tree_at`` a single leaf, as
        below): derivatives with respect to basis exponents cost the most.

    Example:
        >>> params, solve = mess.scf_function(mol, "6-31g", "b3lyp", conv_tol=1e-11)
        >>> dmu_dF = jax.jacfwd(lambda f: solve(eqx.tree_at(lambda p: p.field, params, f)).dipole_au)(params.field)

    The SCF itself runs without derivatives (as :func:`mess.run`, MINAO guess); under
    ``jax.jit``/``vmap`` or when differentiating, its Newton fallback is compiled in.
    """
    engine = options.pop("engine", None)
    calc = Calculation(molecule, basis, xc, cart, options, engine, any_geometry=True)

    def run_scf(params: SCFParams):
        prm = calc.params(params)
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(params))
        if traced:
            res, _ = calc.scf(prm)
            return res.mo_coeff, res.mo_occ, res.mo_energy, res.converged
        _, raw = calc.solve(params=prm)
        res = raw["res"]
        return (jnp.asarray(res.mo_coeff[0]), jnp.asarray(res.mo_occ[0]), jnp.asarray(res.mo_energy[0]),
                jnp.asarray(res.converged[0]))

    outputs = calc.program("implicit", _fixed_point_outputs, float(response_tol), int(response_maxiter))

    def state(params: SCFParams) -> SCFState:
        c0, occ, eps0, converged = jax.lax.stop_gradient(run_scf(jax.lax.stop_gradient(params)))
        st = outputs(calc.system, calc.params(params), c0, occ, eps0, converged)
        mo_energy = st.mo_energy[..., :calc.nao]
        return eqx.tree_at(lambda t: (t.mo_energy, t.density), st, (mo_energy, calc.to_pyscf(st.density)))

    return calc.params0(), state


class _Reference(eqx.Module):
    """The SCF solution the rotations are measured from (constants; channel layout)."""

    c0: Float[Array, "c n n"]
    occ: Float[Array, "c n"]
    kept: Array
    s0: Float[Array, "n n"]
    mask: Array
    precond: Float[Array, "c n n"]


def _orbitals(ref: _Reference, kappa: Array, overlap: Array) -> Array:
    """``C(kappa; p) = O(p) U(kappa)`` (module docstring)."""
    c = jax.vmap(lambda c0: reorthonormalise(c0, ref.kept, overlap, ref.s0))(ref.c0)
    return rotate(c, jnp.where(ref.mask, kappa, 0.0))


def _density(c: Array, occ: Array, restricted: bool) -> Array:
    dm = jnp.einsum("cpi,ci,cqi->cpq", c, occ, c)
    return dm[0] if restricted else dm


def _brillouin(sig, system, ref: _Reference, kappa: Array, p: Params, ham=None) -> Array:
    """Orbital gradient ``dE/dkappa`` on the non-redundant rotations (identity on the
    others, so that the Jacobian is non-singular). ``ham`` (the Hamiltonian at ``p``)
    may be given when only ``kappa`` varies."""
    if ham is None:
        ham = hamiltonian(sig, system, p)

    def energy(k):
        return energy_functional(ham, _density(_orbitals(ref, k, ham.overlap), ref.occ, sig.restricted))[0]

    return jnp.where(ref.mask, jax.grad(energy)(kappa), kappa)


def _make_root(sig, response_tol: float, response_maxiter: int):
    """``kappa*(p, ref, system)``: zero at the solved point; its derivative is
    ``-H^-1 dg/dp`` (implicit function theorem), a custom JVP that JAX also transposes
    for reverse mode (the tangent solve is a symmetric ``custom_linear_solve``). The
    system is an argument (not closed over), so the rule holds no traced constants."""

    @jax.custom_jvp
    def root(p: Params, ref: _Reference, system) -> Array:
        return jnp.zeros_like(ref.c0)

    @root.defjvp
    def root_jvp(primals, tangents):
        (p, ref, system), (dp, _, _) = primals, tangents
        zero = jnp.zeros_like(ref.c0)
        _, rhs = jax.jvp(lambda q: _brillouin(sig, system, ref, zero, q), (p,), (dp,))

        ham = hamiltonian(sig, system, p)  # once: the Hessian products only vary kappa

        def hessian(v):
            return jax.jvp(lambda k: _brillouin(sig, system, ref, k, p, ham), (zero,), (v,))[1]

        dk = jax.lax.custom_linear_solve(
            hessian, -rhs, solve=lambda mv, b: _cg(mv, b, ref.precond, response_tol, response_maxiter),
            symmetric=True)
        return zero, dk

    return root


def _fixed_point_outputs(sig, response_tol: float, response_maxiter: int, system, prm: Params, c0: Array,
                         occ: Array, eps0: Array, converged: Array) -> SCFState:
    """Outputs at the SCF solution ``(c0, occ)`` of engine parameters ``prm`` with
    implicit derivatives (engine AO order; compiled once per signature)."""
    restricted = sig.restricted
    if restricted:
        c0, occ, eps0 = c0[None], occ[None], eps0[None]
    kept = jnp.any(c0[0] != 0, axis=0)
    s0 = jax.lax.stop_gradient(hamiltonian(sig, system, prm).overlap)
    mask = rotation_mask(occ, jnp.sum(kept))
    gap0 = eps0[..., :, None] - eps0[..., None, :]
    precond = jnp.where(mask, 1.0 / (4.0 * jnp.maximum(gap0, 1e-2)), 1.0)
    ref = _Reference(c0, occ, kept, s0, mask, precond)

    kappa = _make_root(sig, response_tol, response_maxiter)(prm, ref, system)
    ham = hamiltonian(sig, system, prm)
    c = _orbitals(ref, kappa, ham.overlap)
    dm = _density(c, occ, restricted)
    e = energy_functional(ham, dm)[0]
    fock = jax.grad(lambda d: energy_functional(ham, d)[0])(dm)
    fock = fock[None] if restricted else fock
    f_mo = jnp.swapaxes(c, -1, -2) @ fock @ c
    is_occ = occ > 0
    same = (is_occ[..., :, None] == is_occ[..., None, :]) & kept[None, :, None] & kept[None, None, :]
    removed = jnp.diag(jnp.where(kept, 0.0, 1e6))
    mo_energy = eigvalsh_safe(jnp.where(same, f_mo, 0.0) + removed)
    # eigenvalues ascend and all occupied ones lie below the virtual ones at an
    # aufbau solution, so the first nocc per channel are the occupied energies
    nocc = jnp.sum(is_occ, axis=-1)
    idx = jnp.arange(mo_energy.shape[-1])
    homo = jnp.max(jnp.where(idx[None] < nocc[:, None], mo_energy, -jnp.inf))
    lumo = jnp.min(jnp.where((idx[None] >= nocc[:, None]) & (idx[None] < jnp.sum(kept)), mo_energy, jnp.inf))
    dm_tot = dm if restricted else dm[0] + dm[1]
    mu = dipole_au(dm_tot, ham.dipole, system.charges, prm.positions)
    return SCFState(energy=e, mo_energy=mo_energy[0] if restricted else mo_energy, homo=homo, lumo=lumo,
                    gap=lumo - homo, density=dm, dipole=mu * AU2DEBYE, dipole_au=mu, converged=converged)


def polarizability(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                   **options) -> Float[Array, "3 3"]:
    """Static dipole polarizability ``alpha_ij = dmu_i/dF_j = -d2E/dF_i dF_j`` in
    atomic units (e^2 Bohr^2 / Hartree), at zero field, by implicit differentiation of
    the SCF dipole (analytic coupled-perturbed response; options as
    :func:`scf_function`)."""
    params, solve = scf_function(molecule, basis, xc, cart, **options)

    def mu(field):
        return solve(eqx.tree_at(lambda p: p.field, params, field)).dipole_au

    return jax.jacfwd(mu)(params.field)
