"""Nuclear gradients (forces) of SCF energies without differentiating the SCF loop.

At a converged SCF solution the energy is stationary with respect to orbital
rotations, so the derivative of the converged energy with respect to the nuclear
positions R is the *partial* derivative of the energy functional at fixed orbitals,
provided the orbitals are kept orthonormal in the (geometry-dependent) metric S(R)
(Pulay, Mol. Phys. 17, 197 (1969)). The engine builds that constrained functional
explicitly (:func:`mess.engine.fixed_orbital_energy`: the converged orbitals
re-orthonormalised by Cholesky in S(R), :func:`mess.scf.eig.reorthonormalise`) and lets
JAX differentiate the one energy functional through every integral kernel. The
derivative of the orthonormalisation produces the energy-weighted-density ("Pulay
force") term -tr(W dS/dR). For Kohn-Sham DFT the grid points and Becke weights are
functions of R, so the derivative includes the grid (weight) response (Johnson, Gill &
Pople, J. Chem. Phys. 98, 5612 (1993)), as PySCF's ``grid_response = True``.

The engine stages the derivative: one program takes the energy's derivative with
respect to the integrals (and the positions through the grid), and it is pulled back
through each integral stage's own program (one-electron part, each ERI class, the
grid), so no program holds the derivative kernels of every class at once.

Units: positions in Bohr, energies in Hartree, gradients in Hartree/Bohr (forces
are minus the gradient).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.engine.calculation import Calculation, inline_scf
from mess.engine.engine import Result, default_engine, fixed_orbital_energy, require_float64, split_options
from mess.engine.signature import method_from_options, signature_for
from mess.engine.stages import grid_part, one_electron_part, two_electron_parts
from mess.engine.system import build, default_params, stack
from mess.errors import InputError
from mess.structure import Molecule, checked_positions

__all__ = ["batch_energy_function", "energy_and_gradient", "energy_function", "gradient"]


def energy_and_gradient(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                        **options) -> tuple[Result, Float[Array, "natom 3"]]:
    """Run the SCF and return ``(result, gradient)``.

    Args: as :func:`mess.run` (``engine=`` included).

    Returns:
        ``(mess.Result, gradient [natom, 3] in Hartree/Bohr)``; the gradient is also
        ``result.gradient``. Check ``result.converged``: the analytic gradient is only
        exact at convergence. Its error is first order in the residual orbital gradient,
        whose threshold ``conv_tol_grad`` defaults to ``sqrt(conv_tol)``; for gradients
        accurate to 1e-7 Ha/Bohr or better set ``conv_tol_grad=1e-7`` (glycine/def2-svp
        B3LYP with ``conv_tol=1e-11`` alone was 4e-7 Ha/Bohr off a finite difference).
    """
    engine = options.pop("engine", None)
    res, _ = Calculation(molecule, basis, xc, cart, options, engine).solve(gradient=True)
    return res, res.gradient


def gradient(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
             **options) -> Float[Array, "natom 3"]:
    """Analytic nuclear gradient dE/dR of the SCF energy, Hartree/Bohr ``[natom, 3]``.

    Runs the SCF (:func:`mess.run`'s arguments and options) and differentiates the
    energy at fixed, re-orthonormalised orbitals (Pulay 1969; grid response for DFT,
    Johnson, Gill & Pople 1993). Forces are ``-gradient``. Raises nothing on SCF
    non-convergence; use :func:`energy_and_gradient` to see the convergence flag.
    """
    return energy_and_gradient(molecule, basis, xc, cart, **options)[1]


def inline_gradient(sig, system, params, mo_coeff, mo_occ, ref_overlap):
    """dE/dR of the fixed-orbital energy of one system with every stage inline."""

    def e(prm):
        one = one_electron_part(sig, system, prm)
        blocks = tuple(stage(system, prm) for _, stage in two_electron_parts(sig))
        grid = grid_part(sig, system, prm) if sig.method.dft else None
        return fixed_orbital_energy(sig, system, prm, one, blocks, grid, mo_coeff, mo_occ, ref_overlap)

    return jax.grad(e)(params).positions


def energy_function(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                    **options) -> Callable[[Array], Array]:
    """The converged SCF energy as a JAX function of the nuclear positions.

    Returns ``energy(positions [natom, 3] in Bohr) -> E (Hartree)``, for the atoms,
    charge and spin of ``molecule``. Every call starts from the MINAO guess of its own
    geometry. No ERI quartet is screened unless ``schwarz_threshold`` is given, so the
    quartet list is valid for every geometry the function sees. The derivative rule
    (``jax.custom_vjp``) is the fixed-orbital gradient, so no derivative ever passes
    through the SCF iterations.

    Transformations:
        * ``jax.grad`` / ``jax.value_and_grad``: yes (first derivatives only; the
          backward pass is not itself differentiable again - use finite differences of
          gradients for Hessians, see :func:`mess.optimize.frequencies`).
        * ``jax.vmap`` over a batch of conformers ``[batch, natom, 3]``: yes (the SCF
          while-loop runs batched until every conformer has converged; the fallback
          phase runs only while some conformer has not), also with grad.
        * ``jax.jit``: yes; the whole SCF and the integral kernels compile into one
          program per shape.

    Non-convergence is not raised (it cannot be inside jit); the returned energy is
    that of the last SCF iterate. Options are those of :func:`mess.run`. For batches
    of *different* molecules use :func:`batch_energy_function`.
    """
    engine = options.pop("engine", None)
    calc = Calculation(molecule, basis, xc, cart, options, engine, any_geometry=True)
    p0 = calc.params0()
    natom = molecule.natom

    def params_at(positions):
        import equinox as eqx

        return calc.params(eqx.tree_at(lambda p: p.positions, p0, positions))

    def scf(positions):
        """(energy, residuals): inline under a trace, else through the engine's
        compiled programs (whose integrals the backward pass reuses)."""
        prm = params_at(positions)
        if isinstance(positions, jax.core.Tracer):
            res, overlap = calc.scf(prm)
            return res.energy, (positions, res.mo_coeff, res.mo_occ, overlap)
        _, raw = calc.solve(params=prm)
        res = raw["res"]
        return jnp.asarray(res.energy[0]), (positions, jnp.asarray(res.mo_coeff), jnp.asarray(res.mo_occ),
                                            raw["ints"], raw["params"])

    @jax.custom_vjp
    def energy(positions):
        return scf(positions)[0]

    def fwd(positions):
        return scf(positions)

    def bwd(resid, g):
        if len(resid) == 4:  # traced forward pass
            positions, c0, occ, s0 = resid
            grad = calc.program("gradient", inline_gradient)(calc.system, params_at(positions), c0, occ, s0)
        else:
            _, c0, occ, ints, prm = resid
            batch = jax.tree.map(lambda x: jnp.asarray(x)[None], calc.system)
            grad = jnp.asarray(calc.engine.gradient(calc.signature, batch, prm, ints, c0, occ)[0])
        return (g * grad[:natom],)

    energy.defvjp(fwd, bwd)

    def energy_fn(positions: Float[Array, "natom 3"]) -> Float[Array, ""]:
        positions = jnp.asarray(positions)
        if positions.shape != (natom, 3):
            raise InputError(f"positions must have shape ({natom}, 3), got {positions.shape}")
        return energy(checked_positions(positions))

    energy_fn.__doc__ = (f"Converged {xc}/{basis} SCF energy (Hartree) of positions [natom={natom}, 3] "
                         "(Bohr); differentiable by a fixed-orbital custom_vjp.")
    return energy_fn


def batch_energy_function(molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                          **options) -> Callable[[Sequence[Array]], Array]:
    """The converged SCF energies of a batch of *different* molecules as one JAX
    function of their positions.

    Returns ``energies(positions) -> [nmol]`` (Hartree), where ``positions`` is a
    sequence of arrays ``[natom_i, 3]`` (Bohr), one per molecule, in input order
    (the atoms, charges and spins are those of ``molecules``). The molecules share one
    signature (padded with inert ghost atoms, shells and quartets), so the whole batch
    runs through one set of compiled programs, and
    ``jax.grad(lambda ps: energies(ps).sum())(ps)`` gives every molecule's gradient
    dE_i/dR_i (Hartree/Bohr; forces are minus it) in one batched backward pass.

    As :func:`energy_function`: every call starts each molecule from the MINAO guess
    of its own geometry, no ERI quartet is screened unless ``schwarz_threshold`` is
    given, and the derivative rule (``jax.custom_vjp``) is the fixed-orbital gradient
    (no derivative passes through the SCF iterations). Eagerly the forward pass runs
    the engine's batched programs (the fallback phase only for unconverged items) and
    the backward pass reuses its integrals; under ``jax.jit`` the batched SCF is traced
    inline (``vmap``: its loops run until every item has converged).

    Closed- and open-shell molecules may be mixed: then every molecule is treated
    unrestricted (the closed-shell ones as ``mess.run(m, restricted=False)``), unless
    ``restricted`` says otherwise. Options are those of :func:`mess.run`
    (``engine=`` included).
    """
    require_float64()
    molecules = list(molecules)
    if not molecules:
        raise InputError("batch_energy_function needs at least one molecule")
    engine = options.pop("engine", None) or default_engine()
    scf_options, rest = split_options(options)
    if rest.get("init_guess", "minao") != "minao":
        raise InputError(f"unknown initial guess {rest['init_guess']!r} (the engine uses 'minao')")
    method = method_from_options(basis, xc, cart, rest.get("grid_level", 3), rest, 0.0)
    restricted = rest.get("restricted")
    if restricted is None and len({m.spin == 0 for m in molecules if isinstance(m, Molecule)}) > 1:
        restricted = False
    prepared = engine.prepare(molecules, method, restricted)
    sig = signature_for(prepared)
    systems = stack([build(p, sig) for p in prepared])
    natoms = [m.natom for m in molecules]
    p0 = default_params(sig, systems)

    def params_at(padded):
        return eqx.tree_at(lambda p: p.positions, p0, padded)

    traced_scf = engine.program(("batch-scf", sig, scf_options), lambda: jax.jit(jax.vmap(
        functools.partial(inline_scf, sig, scf_options, True))))
    traced_grad = engine.program(("batch-gradient", sig), lambda: jax.jit(jax.vmap(
        functools.partial(inline_gradient, sig))))

    def scf(padded):
        prm = params_at(padded)
        if isinstance(padded, jax.core.Tracer):
            res, overlap = traced_scf(systems, prm)
            return res.energy, (padded, res.mo_coeff, res.mo_occ, overlap)
        res, _, _, ints, prm = engine.solve(sig, systems, scf_options, params=prm)
        return jnp.asarray(res.energy), (padded, jnp.asarray(res.mo_coeff), jnp.asarray(res.mo_occ), ints, prm)

    @jax.custom_vjp
    def energies_padded(padded):
        return scf(padded)[0]

    def bwd(resid, g):
        if len(resid) == 4:  # traced forward pass
            padded, c0, occ, s0 = resid
            grad = traced_grad(systems, params_at(padded), c0, occ, s0)
        else:
            _, c0, occ, ints, prm = resid
            grad = jnp.asarray(engine.gradient(sig, systems, prm, ints, c0, occ))
        return (g[:, None, None] * grad,)

    energies_padded.defvjp(scf, bwd)

    def energies(positions: Sequence[Float[Array, "natom 3"]]) -> Float[Array, " nmol"]:
        if len(positions) != len(natoms):
            raise InputError(f"expected positions for {len(natoms)} molecules, got {len(positions)}")
        rows = []
        for i, (pos, n) in enumerate(zip(positions, natoms)):
            pos = jnp.asarray(pos)
            if pos.shape != (n, 3):
                raise InputError(f"positions of molecule {i} must have shape ({n}, 3), got {pos.shape}")
            pos = checked_positions(pos, f"positions of molecule {i}")
            rows.append(jnp.concatenate([pos, jnp.zeros((sig.natom - n, 3), pos.dtype)]))
        return energies_padded(jnp.stack(rows))

    energies.signature = sig
    energies.__doc__ = (f"Converged {xc}/{basis} SCF energies (Hartree) [{len(natoms)}] of a sequence of positions "
                        "[natom_i, 3] (Bohr); differentiable by a fixed-orbital custom_vjp.")
    return energies
