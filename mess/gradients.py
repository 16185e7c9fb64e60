"""Nuclear gradients (forces) of SCF energies without differentiating the SCF loop.

At a converged SCF solution the energy is stationary with respect to orbital
rotations, so the derivative of the converged energy with respect to the nuclear
positions R is the *partial* derivative of the energy functional at fixed orbitals,
provided the orbitals are kept orthonormal in the (geometry-dependent) metric S(R)
(Pulay, Mol. Phys. 17, 197 (1969)). We build that constrained functional explicitly,

    C(R) = C0 L(R)^-T L0^T,   L(R) L(R)^T = C0^T S(R) C0,   L0 L0^T = C0^T S(R0) C0,

(a Cholesky orthonormalisation of the converged orbitals C0 in the metric S(R); it
equals C0 at R0), and let JAX differentiate

    E(R) = E_nuc(R) + tr(h(R) D(R)) + E_2[D(R); R],   D(R) = C(R) n C(R)^T,

through every integral kernel. The derivative of the orthonormalisation produces the
familiar energy-weighted-density ("Pulay force") term -tr(W dS/dR); any
orthonormalisation (Löwdin, Cholesky, ...) gives the same first derivative because the
Lagrangian C^T F C is symmetric at convergence, and Cholesky derivatives stay finite
for degenerate orbitals (symmetric molecules), unlike eigendecomposition-based
square roots. For Kohn-Sham DFT the grid points and Becke weights are functions of
R, so the derivative includes the grid (weight) response (Johnson, Gill & Pople,
J. Chem. Phys. 98, 5612 (1993)), as PySCF's ``grid_response = True``.

Units: positions in Bohr, energies in Hartree, gradients in Hartree/Bohr (forces
are minus the gradient).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.driver import (
    Setup,
    initial_guess,
    integrals,
    make_result,
    make_veff,
    one_electron_parts,
    prepare_from_options,
    require_float64,
    run_scf,
    solve,
)
from mess.config import release_compiled_programs_if_needed
from mess.integrals.pairs import shell_data
from mess.integrals.two_electron import BlockJK, class_blocks
from mess.structure import Molecule

__all__ = ["energy_at_fixed_orbitals", "gradient", "energy_and_gradient", "energy_function"]


# --------------------------------------------------------------------------------------
# The energy functional at fixed (re-orthonormalised) orbitals
# --------------------------------------------------------------------------------------


def _orthonormalised_density(c0: Array, occ: Array, s: Array, s0: Array | None) -> Array:
    """D(R) = C(R) diag(occ) C(R)^T for one spin channel, with the occupied orbitals of
    ``c0`` re-orthonormalised in the metric ``s`` by Cholesky (see module docstring).

    Unoccupied columns (occ == 0, including zero columns of removed linearly dependent
    directions) are decoupled by a mask: the Cholesky factor of a matrix with no
    occupied-virtual coupling has none either, so virtual orbitals never enter."""
    mask = occ > 0
    both = mask[:, None] & mask[None, :]
    eye = jnp.eye(c0.shape[-1], dtype=c0.dtype)

    def factor(metric):
        a = c0.T @ metric @ c0
        a = 0.5 * (a + a.T)
        return jnp.linalg.cholesky(jnp.where(both, a, eye))

    l_r = factor(s)
    # X = L(R)^-T L0^T: solve L(R)^T X = L0^T (upper-triangular solve).
    rhs = eye if s0 is None else jax.lax.stop_gradient(factor(s0)).T
    x = jax.scipy.linalg.solve_triangular(l_r.T, rhs, lower=False)
    c = c0 @ x
    return (c * occ[None, :]) @ c.T


def density_at(mo_coeff: Array, mo_occ: Array, overlap: Array, ref_overlap: Array | None = None) -> Array:
    """Density matrix of the orbitals ``mo_coeff`` re-orthonormalised for ``overlap``.

    Args:
        mo_coeff: converged orbitals ``[n, n]`` (restricted) or ``[2, n, n]``.
        mo_occ: occupations ``[n]`` or ``[2, n]``.
        overlap: AO overlap S(R) at the (displaced) geometry.
        ref_overlap: S(R0) at the geometry of ``mo_coeff`` (optional; makes D(R0)
            reproduce the SCF density exactly even if C0^T S0 C0 deviates from 1 by
            rounding).

    Returns:
        Total density ``[n, n]`` (restricted) or spin densities ``[2, n, n]``.
    """
    if mo_coeff.ndim == 2:
        return _orthonormalised_density(mo_coeff, mo_occ, overlap, ref_overlap)
    return jnp.stack([_orthonormalised_density(mo_coeff[s], mo_occ[s], overlap, ref_overlap)
                      for s in range(mo_coeff.shape[0])])


def _xc_fn(setup: Setup, positions: Array):
    from mess.grid import grid_coords_weights
    from mess.xc import build_xc_fn

    coords, weights = grid_coords_weights(setup.grid_plan, positions)
    return build_xc_fn(setup.functional, setup.basis, positions, coords, weights, setup.restricted)


def total_energy(setup: Setup, positions: Array, dm: Array, ints: dict | None = None) -> Array:
    """Total energy functional E[D; R] (Hartree) of a density matrix at positions R.

    ``E = E_nuc + tr(h D) + 1/2 tr(J D) - hyb/4 tr(K D) (+ E_xc[D])`` for a total
    density ``D`` (restricted), and the Pople-Nesbet form for spin densities
    ``[2, n, n]``. Same value as ``make_veff(setup, ...)(D)[1]`` plus one-electron and
    nuclear terms, but only the energy is built (no potential), so its derivative is
    cheap: the XC term uses the checkpointed block-wise ``XCFunction.energy``."""
    if ints is None:
        ints = integrals(setup, positions)
    f = setup.functional
    dm_tot = dm if dm.ndim == 2 else dm[0] + dm[1]
    e = ints["e_nuc"] + jnp.sum(ints["hcore"] * dm_tot)
    hyb = 1.0 if f.family == "hf" else float(f.hyb)
    j, k = ints["jk"](dm)
    if setup.restricted:
        e = e + 0.5 * jnp.sum(j * dm)
        if hyb != 0:
            e = e - 0.25 * hyb * jnp.sum(k * dm)
    else:
        e = e + 0.5 * jnp.sum((j[0] + j[1]) * dm_tot)
        if hyb != 0:
            e = e - 0.5 * hyb * jnp.sum(k * dm)
    if f.family != "hf":
        e = e + _xc_fn(setup, positions).energy(dm)
    return e


def energy_at_fixed_orbitals(setup: Setup, positions: Float[Array, "natom 3"], mo_coeff: Array,
                             mo_occ: Array, ref_overlap: Array | None = None) -> Float[Array, ""]:
    """Energy functional (Hartree) at orbitals re-orthonormalised for ``positions``.

    ``E(R) = E[D(R); R]`` with ``D(R)`` from :func:`density_at`. At the SCF geometry
    R0 it equals the SCF energy; its gradient at R0 is the analytic nuclear gradient
    (Pulay 1969), including the grid response for DFT (Johnson, Gill & Pople 1993).

    Args:
        setup: from :func:`mess.driver.prepare` (fixes basis, method, ERI plan, grid).
        positions: nuclear positions, Bohr ``[natom, 3]`` (traced).
        mo_coeff, mo_occ: converged orbitals and occupations (constants).
        ref_overlap: overlap at the orbitals' geometry, ``S(R0)`` (recommended).
    """
    ints = integrals(setup, positions)
    dm = density_at(mo_coeff, mo_occ, ints["overlap"], ref_overlap)
    return total_energy(setup, positions, dm, ints)


def _setup_and_scf(molecule: Molecule, basis: str, xc: str, cart: bool, options: dict):
    return run_scf(molecule, basis, xc, cart, options)


def _one_electron_parts(setup: Setup, positions: Array):
    """Overlap, core Hamiltonian (Hartree) and nuclear repulsion (Hartree) at ``positions``."""
    one = one_electron_parts(setup, positions)
    return one["overlap"], one["hcore"], one["e_nuc"]


def _integral_pullbacks(setup: Setup, positions: Array):
    """Integrals at ``positions`` with their pullbacks: one for the one-electron parts,
    one per ERI class (each class's derivative kernels then compile and run one class
    at a time), and one from the shell data (centres) to the positions."""
    one, one_pullback = jax.vjp(lambda p: _one_electron_parts(setup, p), positions)
    data, data_pullback = jax.vjp(lambda p: shell_data(setup.basis, p), positions)
    blocks, class_pullbacks = [], []
    for c in setup.eri_plan.classes:
        block, pullback = jax.vjp(
            lambda d, c=c: class_blocks(setup.basis.cart, d, c.ls, c.ks, c.rows), data)
        blocks.append(block)
        class_pullbacks.append(pullback)
    return one, one_pullback, blocks, class_pullbacks, data_pullback


def _energy_of_parts(setup: Setup, positions, s, h, e_nuc, blocks, mo_coeff, mo_occ, ref_overlap):
    ints = {"overlap": s, "hcore": h, "e_nuc": e_nuc,
            "jk": BlockJK(setup.eri_plan, blocks, with_k=setup.functional.hyb != 0)}
    dm = density_at(mo_coeff, mo_occ, s, ref_overlap)
    return total_energy(setup, positions, dm, ints)


_PARTS_GRAD_CACHE: dict[int, tuple] = {}


def _parts_grad_fn(setup: Setup):
    """Jitted value-and-gradient of the energy w.r.t. the integrals (and, for DFT, the
    positions through the grid and AO values), one compiled program per setup
    structure (the integral kernels themselves are not inlined)."""
    key = id(setup.eri_plan)
    hit = _PARTS_GRAD_CACHE.get(key)
    if hit is not None and hit[0] is setup.eri_plan:
        return hit[1]
    fixed = dataclasses.replace(setup)  # pin the structure; positions enter as arguments

    @jax.jit
    def fn(positions, s, h, e_nuc, blocks, mo_coeff, mo_occ, ref_overlap):
        return jax.value_and_grad(
            lambda *a: _energy_of_parts(fixed, *a, mo_coeff, mo_occ, ref_overlap),
            argnums=(0, 1, 2, 3, 4))(positions, s, h, e_nuc, blocks)

    _PARTS_GRAD_CACHE[key] = (setup.eri_plan, fn)
    return fn


def fixed_orbital_gradient(setup: Setup, positions: Float[Array, "natom 3"], mo_coeff: Array,
                           mo_occ: Array, ref_overlap: Array | None = None):
    """``(E, dE/dR)``: value and gradient (Hartree, Hartree/Bohr) of
    :func:`energy_at_fixed_orbitals`.

    Computed in two stages so that compiled work is reused: the energy's derivative
    with respect to the integrals (S, h, E_nuc, ERI blocks; and the positions through
    the XC grid and AO values) is one jitted program per molecule structure, and it is
    pulled back to the positions through the per-class integral kernels, whose
    derivative kernels compile once per angular-momentum class and serve every molecule.
    """
    if ref_overlap is None:
        ref_overlap = integrals(setup, positions)["overlap"]
    eager = not isinstance(positions, jax.core.Tracer)
    one, one_pullback, blocks, class_pullbacks, data_pullback = _integral_pullbacks(setup, positions)
    e, (g_pos, g_s, g_h, g_enuc, g_blocks) = _parts_grad_fn(setup)(
        positions, *one, blocks, mo_coeff, mo_occ, ref_overlap)
    (g_one,) = one_pullback((g_s, g_h, g_enuc))
    g_data = None
    for pullback, g_block in zip(class_pullbacks, g_blocks):
        (g_class,) = pullback(g_block)
        g_data = g_class if g_data is None else jax.tree_util.tree_map(jnp.add, g_data, g_class)
        if eager:
            # a large basis compiles the derivative kernels of many classes in one
            # gradient; keep this process under the kernel's memory-map limit
            release_compiled_programs_if_needed()
    g_eri = data_pullback(g_data)[0] if g_data is not None else jnp.zeros_like(positions)
    return e, g_pos + g_one + g_eri


def _fixed_orbital_grad(setup, positions, mo_coeff, mo_occ, ref_overlap):
    return fixed_orbital_gradient(setup, positions, mo_coeff, mo_occ, ref_overlap)[1]


def energy_and_gradient(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                        **options):
    """Run the SCF and return ``(result, gradient)``.

    Args: as :func:`mess.run`.

    Returns:
        ``(mess.Result, gradient [natom, 3] in Hartree/Bohr)``. Check
        ``result.converged``: the analytic gradient is only exact at convergence. Its
        error is first order in the residual orbital gradient, whose threshold
        ``conv_tol_grad`` defaults to ``sqrt(conv_tol)``; for gradients accurate to
        1e-7 Ha/Bohr or better set ``conv_tol_grad=1e-7`` (glycine/def2-svp B3LYP with
        ``conv_tol=1e-11`` alone was 4e-7 Ha/Bohr off a finite difference).
    """
    setup, ints, res, positions = _setup_and_scf(molecule, basis, xc, cart, options)
    g = _fixed_orbital_grad(setup, positions, res.mo_coeff, res.mo_occ, ints["overlap"])
    return make_result(setup, ints, res, positions), g


def gradient(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
             **options) -> Float[Array, "natom 3"]:
    """Analytic nuclear gradient dE/dR of the SCF energy, Hartree/Bohr ``[natom, 3]``.

    Runs the SCF (:func:`mess.run`'s arguments and options) and differentiates the
    energy at fixed, re-orthonormalised orbitals (:func:`energy_at_fixed_orbitals`;
    Pulay 1969; grid response for DFT, Johnson, Gill & Pople 1993). Forces are
    ``-gradient``. Raises nothing on SCF non-convergence; use
    :func:`energy_and_gradient` to see the convergence flag.
    """
    return energy_and_gradient(molecule, basis, xc, cart, **options)[1]


# --------------------------------------------------------------------------------------
# Converged energy as a differentiable function of positions
# --------------------------------------------------------------------------------------


def energy_function(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                    **options) -> Callable[[Array], Array]:
    """The converged SCF energy as a JAX function of the nuclear positions.

    Returns ``energy(positions [natom, 3] in Bohr) -> E (Hartree)``, for the atoms,
    charge and spin of ``molecule`` (whose geometry fixes the ERI screening plan).
    The SCF runs in the forward pass (MINAO guess, which is geometry independent);
    the derivative rule (``jax.custom_vjp``) is the fixed-orbital gradient of
    :func:`energy_at_fixed_orbitals`, so no derivative ever passes through the SCF
    iterations.

    Transformations:
        * ``jax.grad`` / ``jax.value_and_grad``: yes (first derivatives only; the
          backward pass is not itself differentiable again - use finite differences of
          gradients for Hessians, see :func:`mess.optimize.frequencies`).
        * ``jax.vmap`` over a batch of conformers ``[batch, natom, 3]``: yes (the SCF
          while-loop runs batched until every conformer has converged), also with grad.
        * ``jax.jit``: yes; the whole SCF (with its Newton fallback) and the integral
          kernels compile into one program per shape, which costs noticeably more
          compile time than the eager call (kernels compiled one by one and cached).

    Non-convergence is not raised (it cannot be inside jit); the returned energy is
    that of the last SCF iterate. Options are those of :func:`mess.run`. Called on
    concrete positions (also under an eager ``jax.grad``) the SCF follows
    :func:`mess.run` (plain iteration, rerun with the Newton fallback only if it did not
    converge); under ``vmap``/``jit`` the ``fallback`` (default ``"newton"``) is
    compiled into the program, because that rerun cannot be decided while tracing.
    """
    require_float64()
    setup, scf_options, rest = prepare_from_options(molecule, basis, xc, cart, options)
    guess = rest.get("init_guess", "minao")
    dm0_fixed = None
    if guess == "minao":
        dm0_fixed = initial_guess(setup, None, "minao")
    natom = molecule.natom
    fallback_given = "fallback" in options

    def _scf(positions):
        ints = integrals(setup, positions)
        veff_fn = make_veff(setup, ints, positions)
        dm0 = dm0_fixed if dm0_fixed is not None else initial_guess(setup, ints, guess)
        # Concrete positions: mess.run's path (plain SCF, Newton rerun only if needed),
        # which shares its compiled program with mess.run. Traced positions (vmap/jit):
        # the convergence-dependent rerun cannot be decided, so compile the fallback in.
        traced = isinstance(positions, jax.core.Tracer)
        res = solve(setup, ints, veff_fn, dm0, scf_options, fallback_given=fallback_given or traced)
        return res, ints["overlap"]

    @jax.custom_vjp
    def energy(positions):
        return _scf(positions)[0].energy

    def fwd(positions):
        res, s0 = _scf(positions)
        return res.energy, (positions, res.mo_coeff, res.mo_occ, s0)

    def bwd(resid, g):
        positions, c0, occ, s0 = resid
        grad = _fixed_orbital_grad(setup, positions, c0, occ, s0)
        return (g * grad,)

    energy.defvjp(fwd, bwd)

    def energy_fn(positions: Float[Array, "natom 3"]) -> Float[Array, ""]:
        positions = jnp.asarray(positions)
        if positions.shape != (natom, 3):
            raise ValueError(f"positions must have shape ({natom}, 3), got {positions.shape}")
        return energy(positions)

    energy_fn.__doc__ = (f"Converged {xc}/{basis} SCF energy (Hartree) of positions [natom={natom}, 3] "
                         "(Bohr); differentiable by a fixed-orbital custom_vjp.")
    return energy_fn
