"""The energy of a predicted density: the differentiable loss of energy-based training.

Kohn-Sham DFT finds the density that minimises ``E[D]``, so a network proposing the
density can be trained by minimising ``E`` itself, with no labels (Mathiasen et al.,
"Reducing the Cost of Quantum Chemical Data By Backpropagating Through Density
Functional Theory", 2024). The network outputs a symmetric AO matrix ``W`` that
corrects the Fock matrix of the MINAO density, ``F0 = F[D_minao]``; orbitals solve
``(F0 + W) C = S C e`` (canonical orthogonalisation, so padding AOs, whose overlap
eigenvalues are zero, drop out), the aufbau occupations give ``D``, ``K`` plain SCF
steps follow (``K = 0`` allowed; the second mixes ``mixing`` of the previous density
in), and the loss is the engine's one energy functional at the final density.

Everything that does not depend on the network (integrals, grid, ``F0``, the
orthogonaliser) is an :class:`EnergyProblem`, computed once per geometry by
:func:`energy_problem`; :func:`predicted_energy` is then cheap and differentiable in
``W``. Orbital derivatives use :func:`mess.scf.eig.eigh_safe`, finite at degenerate
levels. Energies in Hartree; matrices in the engine's AO order of a signature.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from mess.engine.functional import FunctionalVeff, Hamiltonian
from mess.engine.functional import energy as energy_functional
from mess.engine.signature import Signature
from mess.engine.stages import GridData, assemble
from mess.engine.system import Params, System
from mess.scf.eig import eig, orthogonalizer
from mess.scf.occupation import aufbau, channel_occupancy, make_rdm1

#: Overlap eigenvalues at or below this are removed (PySCF's default; padding AOs
#: have overlap eigenvalue 0).
LINDEP_THRESHOLD = 1e-6


class EnergyProblem(eqx.Module):
    """What :func:`predicted_energy` needs for one geometry, computed once.

    Attributes:
        ham: the Hamiltonian (integrals, grid, functional).
        x, keep: canonical orthogonaliser ``[n, n]`` and the kept directions ``[n]``.
        occ: aufbau occupations per spin channel ``[c, n]`` (c = 1 restricted, 2 not).
        dm_guess: MINAO density per channel ``[c, n, n]``.
        fock0: the Fock matrix of the MINAO density per channel ``[c, n, n]``, Hartree.
        dm_step, fock_step: the density of ``fock0`` (one plain SCF step from MINAO)
            and its Fock matrix per channel ``[c, n, n]``: with ``fock0``, the
            direction of the SCF correction (Roothaan 1951), read by the network.
        ao_mask: real (not padding) AOs ``[n]``.
    """

    ham: Hamiltonian
    x: Float[Array, "n n"]
    keep: Bool[Array, " n"]
    occ: Float[Array, "c n"]
    dm_guess: Float[Array, "c n n"]
    fock0: Float[Array, "c n n"]
    dm_step: Float[Array, "c n n"]
    fock_step: Float[Array, "c n n"]
    ao_mask: Bool[Array, " n"]

    @property
    def restricted(self) -> bool:
        return self.ham.restricted


def _user(problem: EnergyProblem, dm_c):
    """Channel form ``[c, n, n]`` to the functional's form (total, or ``[2, n, n]``)."""
    return dm_c[0] if problem.restricted else dm_c


def fock(problem: EnergyProblem, dm_c: Float[Array, "c n n"]) -> Float[Array, "c n n"]:
    """Fock matrices per channel of the density ``dm_c`` (Hartree)."""
    veff = FunctionalVeff(problem.ham)(_user(problem, dm_c))[0]
    v = veff[None] if problem.restricted else veff
    return problem.ham.hcore + v


def energy_problem(sig: Signature, system: System, params: Params, one: dict, blocks: tuple,
                   grid: GridData | None, dm_guess: Array) -> EnergyProblem:
    """The :class:`EnergyProblem` of one system at ``params`` from its integral stages
    (:meth:`mess.Engine.integrals`) and MINAO density (:meth:`mess.Engine.guess`):
    jit- and vmap-able."""
    ham = assemble(sig, system, params, one, blocks, grid)
    x, keep = orthogonalizer(ham.overlap, LINDEP_THRESHOLD)
    n = ham.overlap.shape[-1]
    nocc, occ_value = channel_occupancy(system.nelec, sig.restricted)
    occ = aufbau(n, nocc, occ_value, ham.overlap.dtype)
    dm_c = dm_guess[None] if sig.restricted else dm_guess
    zero = jnp.zeros_like(dm_c)
    problem = EnergyProblem(ham, x, keep, occ, dm_c, zero, zero, zero, jnp.asarray(system.ao_mask))
    problem = eqx.tree_at(lambda p: p.fock0, problem, fock(problem, dm_c))
    dm1 = density_from_fock(problem, problem.fock0)
    return eqx.tree_at(lambda p: (p.dm_step, p.fock_step), problem, (dm1, fock(problem, dm1)))


def density_from_fock(problem: EnergyProblem, f: Float[Array, "c n n"]) -> Float[Array, "c n n"]:
    """Aufbau density per channel of the Fock matrices ``f`` (``F C = S C e``)."""
    _, c = eig(f, problem.x, problem.keep)
    return make_rdm1(c, problem.occ)


def predicted_density(problem: EnergyProblem, w: Float[Array, "n n"], cycles: int = 0,
                      mixing: float = 0.5) -> Float[Array, "c n n"]:
    """The density per channel from the Fock correction ``w`` (Hartree; symmetrised,
    padding rows and columns ignored) after ``cycles`` plain SCF steps, the second of
    which keeps ``mixing`` of the previous density."""
    w = 0.5 * (w + w.T)
    mask = problem.ao_mask[:, None] & problem.ao_mask[None, :]
    w = jnp.where(mask, w, 0.0)
    dm = density_from_fock(problem, problem.fock0 + w[None])
    for k in range(int(cycles)):
        new = density_from_fock(problem, fock(problem, dm))
        dm = (1.0 - mixing) * new + mixing * dm if k == 1 else new
    return dm


def predicted_energy(problem: EnergyProblem, w: Float[Array, "n n"], cycles: int = 0,
                     mixing: float = 0.5) -> Float[Array, ""]:
    """Total energy (Hartree) of :func:`predicted_density`: the energy-based loss."""
    dm = predicted_density(problem, w, cycles, mixing)
    return energy_functional(problem.ham, _user(problem, dm))[0]
