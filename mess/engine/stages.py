"""The engine's stages: pure functions of one system (no batch axis).

Each stage is a JAX function of a :class:`~mess.engine.system.System` (structure and
tables), its :class:`~mess.engine.system.Params` (continuous inputs) and earlier
stages' outputs, with every shape fixed by the static
:class:`~mess.engine.signature.Signature`. The :class:`~mess.engine.Engine` compiles
``jax.vmap`` of each stage once per signature and batch size; :func:`hamiltonian` runs
them all inline, for use under a caller's own ``jit``/``grad``/``vmap``.

Stages: :func:`one_electron_part` (overlap, core Hamiltonian, dipole integrals,
nuclear repulsion), :func:`eri_part` (the ERI blocks of one quartet class) or, with
density fitting, :func:`df_part` (the fitted three-centre factor; both listed by
:func:`two_electron_parts`),
:func:`grid_part` (grid weights and AO values), :func:`guess_part` (the MINAO density),
:func:`assemble` (the :class:`~mess.engine.functional.Hamiltonian`), and the SCF
phases :func:`scf_start`, :func:`scf_fallback`, :func:`scf_fixed` with
:func:`properties`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.basis.ao_values import ao_value_blocks, default_ao_block_size
from mess.basis.shells import shell_data
from mess.engine.functional import FunctionalVeff, Hamiltonian, dense_eri
from mess.engine.guess import minao_density
from mess.engine.signature import Signature
from mess.engine.system import Params, System, with_params
from mess.grid import grid_coords_weights
from mess.integrals.one_electron import nuclear_repulsion, one_electron
from mess.integrals.three_center import cholesky_cderi, three_center, two_center
from mess.integrals.two_electron import class_blocks, class_blocks_batch
from mess.properties import dipole_moment, mulliken_charges
from mess.scf.kernel import (SCFState, diis_phase, fallback_phase, finalize, fixed_cycles, initial_state, stability_phase,
                             make_problem)
from mess.scf.options import SCFOptions
from mess.scf.result import SCFResult
from mess.xc.numint import DEFAULT_BLOCK, XCFunction, ao_deriv

#: AO values of one molecule's grid are precomputed when they fit in this many bytes;
#: otherwise they are recomputed block by block in every SCF cycle.
AO_MEMORY = 2 << 30


class GridData(eqx.Module):
    """Grid quadrature of one geometry: weights, and AO values (precomputed, in the
    XC sweep's blocks: ``ao`` [nblk, nd, B, nao] with ``weights`` padded to nblk * B
    by zeros) or the points (AO values recomputed per block)."""

    weights: Float[Array, " npts"]
    ao: Array | None
    coords: Array | None


def xc_block_size(sig: Signature) -> int:
    """Points per block of the XC sweep over precomputed AO values (the AO values are
    evaluated in the same blocks)."""
    return max(1, min(sig.npts, DEFAULT_BLOCK, default_ao_block_size(sig.basis)))


def single(sig: Signature) -> bool:
    """Whether the four-centre ERI blocks are evaluated and stored in float32
    (``precision="mixed"``)."""
    return sig.method.precision == "mixed"


def precomputed_ao(sig: Signature) -> bool:
    """Whether AO values are precomputed for ``sig`` (they fit in :data:`AO_MEMORY`)."""
    nd = 1 + 3 * ao_deriv(sig.method.functional)
    return nd * sig.npts * sig.nao * 8 <= AO_MEMORY


def one_electron_part(sig: Signature, system: System, params: Params) -> dict[str, Array]:
    """``overlap``, ``hcore`` (kinetic + nuclear attraction + field potential, Hartree),
    ``dipole`` (AO dipole integrals, Bohr) and ``e_nuc`` (nuclear repulsion plus the
    nuclei's field energy, Hartree)."""
    pos = params.positions
    one = one_electron(sig.basis, with_params(system, params), pos, system.charges)
    hcore = one["kinetic"] + one["nuclear"] + jnp.einsum("x,xij->ij", params.field, one["dipole"])
    e_nuc = nuclear_repulsion(pos, system.charges) - params.field @ (system.charges @ pos)
    return {"overlap": one["overlap"], "hcore": hcore, "dipole": one["dipole"], "e_nuc": e_nuc}


def eri_part(sig: Signature, index: int, system: System, params: Params, chunk: int | None = None) -> Array:
    """ERI blocks of quartet class ``index`` of ``sig`` (Hartree; float32 under
    ``precision="mixed"``, :func:`single`)."""
    data = shell_data(sig.basis, with_params(system, params), params.positions)
    return class_blocks(sig.classes[index], sig.basis, data, system.quartets[index], chunk, single(sig))


def eri_part_batch(sig: Signature, index: int, systems: System, params: Params) -> Array:
    """:func:`eri_part` of a batch of systems (every leaf with a leading batch axis),
    evaluated as one list of the batch's quartets
    (:func:`~mess.integrals.two_electron.class_blocks_batch`): [batch, nq, ...]."""
    data = jax.vmap(lambda s, p: shell_data(sig.basis, with_params(s, p), p.positions))(systems, params)
    return class_blocks_batch(sig.classes[index], sig.basis, data, systems.quartets[index], single=single(sig))


def df_part(sig: Signature, system: System, params: Params) -> Float[Array, "naux nao nao"]:
    """The density-fitting factor B = L^-1 (P|ij) (Hartree^1/2; V = L L^T the Coulomb
    metric) with the auxiliary functions on the atoms at ``params.positions``."""
    data = shell_data(sig.basis, with_params(system, params), params.positions)
    aux = shell_data(sig.aux, system.aux_shells, params.positions)
    return cholesky_cderi(three_center(sig.basis, data, sig.aux, aux), two_center(sig.aux, aux))


def two_electron_parts(sig: Signature) -> list[tuple[tuple, object]]:
    """The stages whose outputs hold the two-electron integrals, as ``(key, stage)``
    with ``stage(system, params)``: one :func:`eri_part` per quartet class, or the one
    :func:`df_part`."""
    if sig.density_fit:
        return [(("df",), functools.partial(df_part, sig))]
    return [(("eri", i), functools.partial(eri_part, sig, i)) for i in range(len(sig.classes))]


def two_electron_batch_parts(sig: Signature) -> list[tuple[tuple, object]]:
    """:func:`two_electron_parts` as functions of a batch ``(systems, params)`` (leading
    batch axis): the ERI classes through :func:`eri_part_batch`, density fitting
    through ``jax.vmap``."""
    if sig.density_fit:
        return [(("df",), jax.vmap(functools.partial(df_part, sig)))]
    return [(("eri", i), functools.partial(eri_part_batch, sig, i)) for i in range(len(sig.classes))]


def compile_bound(sig: Signature, key: tuple, batch: int) -> bool:
    """Whether the two-electron stage ``key`` (from :func:`two_electron_batch_parts`)
    for ``batch`` molecules compiles for far longer than it runs: an ERI class of
    little work (:meth:`~mess.integrals.two_electron.QuartetClass.light`; it runs the
    array kernel)."""
    return key[0] == "eri" and sig.classes[key[1]].light(batch)


def grid_part(sig: Signature, system: System, params: Params) -> GridData:
    """Grid weights (Bohr^3, the grid moving with the atoms) and AO values."""
    coords, weights = grid_coords_weights(system.grid, params.positions)
    if not precomputed_ao(sig):
        return GridData(weights, None, coords)
    b = xc_block_size(sig)
    ao = ao_value_blocks(sig.basis, with_params(system, params), params.positions, coords,
                         ao_deriv(sig.method.functional), b)
    return GridData(jnp.pad(weights, (0, ao.shape[0] * b - sig.npts)), ao, None)


def guess_part(sig: Signature, system: System, params: Params, overlap: Array) -> Array:
    """The MINAO initial density at this geometry (total, or ``[2, n, n]``)."""
    return minao_density(sig.basis, with_params(system, params), sig.guess, system.guess_shells,
                         system.guess_occupation, overlap, system.ao_mask, system.ao_atom, params.positions,
                         sig.restricted, system.break_spin)


def xc_function(sig: Signature, system: System, params: Params, grid: GridData) -> XCFunction | None:
    """The XC quadrature with the functional's weights from ``params`` (None for HF)."""
    f = sig.method.functional
    if f.family == "hf":
        return None
    f = eqx.tree_at(lambda x: x.weights, f, params.xc_weights, is_leaf=lambda x: x is None)
    if grid.ao is not None:
        return XCFunction(f, sig.restricted, xc_block_size(sig), grid.weights, ao_blocks=grid.ao)
    return XCFunction(f, sig.restricted, max(1, min(sig.npts, default_ao_block_size(sig.basis))), grid.weights,
                      shape=sig.basis, groups=with_params(system, params), positions=params.positions,
                      coords=grid.coords)


def assemble(sig: Signature, system: System, params: Params, one: dict, blocks: tuple, grid: GridData | None
             ) -> Hamiltonian:
    """The :class:`~mess.engine.functional.Hamiltonian` from the stages' outputs."""
    xc = None if grid is None else xc_function(sig, system, params, grid)
    eri = dense_eri(sig, system.quartets, tuple(blocks)) if sig.dense_jk else tuple(blocks)  # DF: (B,)
    return Hamiltonian(one["overlap"], one["hcore"], one["dipole"], one["e_nuc"], eri, system.quartets,
                       xc, params.hyb, sig)


def hamiltonian(sig: Signature, system: System, params: Params) -> Hamiltonian:
    """All integral stages inline: the Hamiltonian at ``params`` (differentiable)."""
    one = one_electron_part(sig, system, params)
    blocks = tuple(stage(system, params) for _, stage in two_electron_parts(sig))
    grid = grid_part(sig, system, params) if sig.method.dft else None
    return assemble(sig, system, params, one, blocks, grid)


def problem(ham: Hamiltonian, system: System, options: SCFOptions):
    """The SCF kernel's problem for one system (electron counts traced)."""
    return make_problem(ham.overlap, ham.hcore, ham.e_nuc, system.nelec, FunctionalVeff(ham),
                        restricted=ham.restricted, options=options)


def properties(ham: Hamiltonian, system: System, params: Params, res: SCFResult) -> dict[str, Array]:
    """``dipole`` (Debye, about the origin, field-free definition) and ``mulliken``
    charges (e) of a result."""
    dm = res.density_total
    return {"dipole": dipole_moment(dm, ham.dipole, system.charges, params.positions),
            "mulliken": mulliken_charges(dm, ham.overlap, system.ao_atom, system.charges)}


def scf_start(sig: Signature, options: SCFOptions, system: System, params: Params, one, blocks, grid, dm0
              ) -> tuple[SCFResult, dict, SCFState]:
    """Initial state and the plain iteration; the finalised result, its properties and
    the state (for :func:`scf_fallback`)."""
    ham = assemble(sig, system, params, one, blocks, grid)
    p = problem(ham, system, options)
    state = diis_phase(p, initial_state(p, dm0))
    res = finalize(p, state)
    return res, properties(ham, system, params, res), state


def scf_fallback(sig: Signature, options: SCFOptions, system: System, params: Params, one, blocks, grid,
                 state: SCFState) -> tuple[SCFResult, dict]:
    """The fallback phase from a state the plain iteration left unconverged (and, for
    open-shell items, the stability phase after it: see :func:`checks_stability`)."""
    ham = assemble(sig, system, params, one, blocks, grid)
    p = problem(ham, system, options)
    state = fallback_phase(p, state)
    if checks_stability(sig, options):
        state = stability_phase(p, state, open_shell(system))
    res = finalize(p, state)
    return res, properties(ham, system, params, res)


def checks_stability(sig: Signature, options: SCFOptions) -> bool:
    """Whether converged solutions of this signature get the internal stability
    check (unrestricted signatures with ``options.stability``)."""
    return (not sig.restricted) and options.stability


def open_shell(system: System) -> Array:
    """``n_alpha != n_beta`` (traced): the items whose stability is checked."""
    return system.nelec[0] != system.nelec[1]


def scf_stability(sig: Signature, options: SCFOptions, system: System, params: Params, one, blocks, grid,
                  state: SCFState) -> tuple[SCFResult, dict]:
    """The stability phase from a state the plain iteration converged: the same
    state when it is a minimum, a lower converged one when it was a saddle point."""
    ham = assemble(sig, system, params, one, blocks, grid)
    p = problem(ham, system, options)
    res = finalize(p, stability_phase(p, state, open_shell(system)))
    return res, properties(ham, system, params, res)


def scf_fixed(sig: Signature, options: SCFOptions, cycles: int, system: System, params: Params, one, blocks,
              grid, dm0) -> tuple[SCFResult, dict, Array]:
    """Exactly ``cycles`` plain cycles (QM1B's mode): the last iterate, its properties
    and the standard deviation (Hartree, population) of the last five energies."""
    ham = assemble(sig, system, params, one, blocks, grid)
    p = problem(ham, system, options)
    state = fixed_cycles(p, initial_state(p, dm0), cycles)
    res = finalize(p, state)
    last = jax.lax.dynamic_slice_in_dim(state.history, cycles - 4, 5) if cycles >= 4 else state.history[:cycles + 1]
    return res, properties(ham, system, params, res), jnp.std(last)
