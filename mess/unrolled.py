"""An SCF with a fixed number of cycles, differentiable end to end.

Where :mod:`mess.implicit` differentiates the converged solution, this module runs a
fixed number of Roothaan-Hall (Pople-Nesbet for spin densities) cycles with CDIIS
as a ``lax.scan`` and lets JAX differentiate through every step: the outputs are
explicit functions of the inputs, at any number of cycles, converged or not. This is
what training loops use (a network predicting an initial density, or parameters, is
trained through a truncated SCF), and what gives exact derivatives of a *truncated*
calculation. Eigenvector derivatives use :func:`mess.scf.eig.eigh_safe`, so
degenerate orbitals give finite gradients.

The cost of reverse mode grows with the number of cycles (every cycle's
intermediates are kept); with enough cycles the energy equals the converged SCF
energy and its gradient approaches the analytic one.

References: Roothaan, Rev. Mod. Phys. 23, 69 (1951); Pulay, J. Comput. Chem. 3, 556
(1982) (CDIIS).
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.engine.calculation import Calculation, SCFParams
from mess.engine.functional import FunctionalVeff
from mess.engine.stages import guess_part, hamiltonian
from mess.engine.functional import energy as energy_functional
from mess.errors import InputError
from mess.properties import AU2DEBYE, dipole_au
from mess.scf.diis import commutator_error, diis_init, diis_update
from mess.scf.eig import eig, orthogonalizer
from mess.scf.kernel import frontier_energies, orbital_gradient_norm
from mess.scf.occupation import aufbau, channel_occupancy, make_rdm1
from mess.structure import Molecule

__all__ = ["UnrolledState", "unrolled_scf_function"]


class UnrolledState(eqx.Module):
    """Outputs after a fixed number of SCF cycles (all differentiable).

    Attributes:
        energy: energy functional at the final density, Hartree.
        mo_energy: orbital energies of the last diagonalisation, Hartree.
        homo, lumo: frontier orbital energies, Hartree.
        density: final density (total ``[n, n]`` or spin ``[2, n, n]``).
        dipole: dipole of the final density, Debye ``[3]``.
        grad_norm: orbital-gradient norm at the final density (0 at convergence).
        energy_history: energy after each cycle ``[cycles]``, Hartree.
    """

    energy: Float[Array, ""]
    mo_energy: Array
    homo: Float[Array, ""]
    lumo: Float[Array, ""]
    density: Array
    dipole: Float[Array, "3"]
    grad_norm: Float[Array, ""]
    energy_history: Float[Array, " cycles"]


def unrolled_scf_function(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False, *,
                          cycles: int = 30, diis: bool = True, damping: float = 0.0,
                          **options) -> tuple[SCFParams, Callable[..., UnrolledState]]:
    """A fixed-cycle SCF, differentiable through every cycle.

    Args:
        molecule, basis, xc, cart: as :func:`mess.run`.
        cycles: number of Fock builds and diagonalisations (static).
        diis: CDIIS extrapolation (space ``diis_space``, default 8) from the first
            cycle; otherwise plain iterations with ``damping``.
        damping: fraction of the previous Fock matrix mixed in (without DIIS).
        **options: ``grid_level``, ``restricted``, ``schwarz_threshold``,
            ``diis_space``, ``lindep_threshold`` (others of :func:`mess.run` that
            concern convergence tests are ignored: the cycle count is fixed).

    Returns:
        ``(params0, fn)`` with :class:`mess.parametric.SCFParams` of the molecule and
        ``fn(params, dm0=None) -> UnrolledState``; ``dm0`` (optional, differentiable,
        PySCF's AO order) is the starting density (default: the MINAO guess at
        ``params``' geometry).
    """
    if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 1:
        raise InputError(f"cycles must be a positive integer, got {cycles!r}")
    if not isinstance(diis, bool):
        raise InputError(f"diis must be True or False, got {diis!r}")
    if not 0.0 <= float(damping) < 1.0:
        raise InputError(f"damping must lie in [0, 1), got {damping!r}")
    engine = options.pop("engine", None)
    calc = Calculation(molecule, basis, xc, cart, options, engine, any_geometry=True)
    core = calc.program("unrolled", _unrolled, calc.scf_options, int(cycles), diis, float(damping))

    def fn(params: SCFParams, dm0: Array | None = None) -> UnrolledState:
        d0 = None if dm0 is None else calc.from_pyscf(jnp.asarray(dm0))
        st = core(calc.system, calc.params(params), d0)
        return eqx.tree_at(lambda t: (t.mo_energy, t.density), st,
                           (st.mo_energy[..., :calc.nao], calc.to_pyscf(st.density)))

    return calc.params0(), fn


def _unrolled(sig, options, cycles: int, diis: bool, damping: float, system, prm, dm0=None) -> UnrolledState:
    """The fixed-cycle SCF of one system (engine AO order; compiled once per signature)."""
    restricted = sig.restricted
    ham = hamiltonian(sig, system, prm)
    veff = FunctionalVeff(ham)
    s, h = ham.overlap, ham.hcore
    n = s.shape[-1]
    x, keep = orthogonalizer(s, options.lindep_threshold)
    nocc, occ_value = channel_occupancy(system.nelec, restricted)
    occ = aufbau(n, nocc, occ_value, s.dtype)

    def user(a):
        return a[0] if restricted else a

    def chan(a):
        return a[None] if restricted else a

    def fock_of(dm_c):
        return h + chan(veff(user(dm_c))[0])

    dm = guess_part(sig, system, prm, s) if dm0 is None else dm0
    dm_c = chan(dm) if (restricted or jnp.ndim(dm) == 3) else jnp.stack([0.5 * dm, 0.5 * dm])
    nchan = len(nocc)
    state0 = (dm_c, fock_of(dm_c), diis_init(options.diis_space, (nchan, n, n), nchan * n * n, s.dtype))

    def cycle(carry, _):
        dm_c, fock_prev, dstate = carry
        fock = fock_of(dm_c)
        if diis:
            dstate, fock_use = diis_update(dstate, fock, commutator_error(fock, dm_c, s, x))
        else:
            fock_use = (1.0 - damping) * fock + damping * fock_prev
        mo_e, mo_c = eig(fock_use, x, keep)
        new = make_rdm1(mo_c, occ)
        e = energy_functional(ham, user(new))[0]
        return (new, fock_use, dstate), (e, mo_e, mo_c)

    (dm_c, _, _), (history, mo_es, mo_cs) = jax.lax.scan(cycle, state0, None, length=cycles)
    mo_e = mo_es[-1]
    fock = fock_of(dm_c)
    gnorm = orbital_gradient_norm(mo_cs[-1], occ, fock, restricted)
    homo, lumo = frontier_energies(mo_e, occ, jnp.sum(keep))
    dm = user(dm_c)
    mu = dipole_au(dm if restricted else dm[0] + dm[1], ham.dipole, system.charges, prm.positions)
    return UnrolledState(energy=history[-1], mo_energy=user(mo_e), homo=homo, lumo=lumo, density=dm,
                         dipole=mu * AU2DEBYE, grad_norm=gnorm, energy_history=history)
