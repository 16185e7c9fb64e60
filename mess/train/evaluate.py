"""How good a trained model's densities are, on held-out geometries.

The reference of every held-out geometry is the engine's converged SCF from the
MINAO guess (energy, HOMO, LUMO, density, iterations), computed once. A model is
scored by the energy of its predicted density (after the run's ``K`` SCF steps)
against the SCF energy, its frontier orbital energies (eigenvalues of the Fock matrix
of the predicted density), the density error, and the SCF iterations the engine needs
when started from the predicted density instead of MINAO (plus the ``K`` steps that
made it, which cost one Fock build each, as an SCF iteration does). The baseline is ``W = 0``:
the MINAO guess followed by the same ``K`` steps, so that the comparison measures what
the network learned. Energies in Hartree (errors reported in mHa); densities in
electrons per AO pair.
"""

from __future__ import annotations

import dataclasses
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mess.scf.eig import eig
from mess.scf.options import SCFOptions
from mess.train.batch import TrainingBatch
from mess.train.model import physics_matrices
from mess.train.objective import EnergyProblem, _user, fock, predicted_density
from mess.engine.functional import energy as energy_functional

MHA = 1000.0
log = logging.getLogger("mess")


def frontier(mo_energy: np.ndarray, mo_occ: np.ndarray) -> tuple[float, float]:
    """HOMO and LUMO energies (Hartree) over all spin channels; padding and removed
    orbitals (occupation 0, energy above every real level) never count as HOMO."""
    e, occ = np.atleast_2d(mo_energy), np.atleast_2d(mo_occ)
    return float(np.max(np.where(occ > 0, e, -np.inf))), float(np.min(np.where(occ > 0, np.inf, e)))


def prediction(problem: EnergyProblem, w, cycles: int, mixing: float):
    """Energy (Hartree), total density ``[n, n]`` and orbital energies ``[c, n]`` of the
    Fock matrix of the density predicted from ``w``."""
    dm = predicted_density(problem, w, cycles, mixing)
    e = energy_functional(problem.ham, _user(problem, dm))[0]
    mo_e, _ = eig(fock(problem, dm), problem.x, problem.keep)
    return e, dm, mo_e


@dataclasses.dataclass
class Reference:
    """Converged SCF of the held-out geometries (host arrays, one entry per batch)."""

    energy: list[np.ndarray]
    homo: list[np.ndarray]
    lumo: list[np.ndarray]
    density: list[np.ndarray]
    iterations: list[np.ndarray]
    converged: list[np.ndarray]


class Evaluator:
    """Scores models on held-out :class:`~mess.train.TrainingBatch` es.

    Owns its compiled programs (one per batch signature and size), so they live as
    long as the evaluator.
    """

    def __init__(self, batches: list[TrainingBatch], names: list[str], engine, cycles: int, mixing: float,
                 conv_tol: float = 1e-9):
        self.batches, self.names, self.engine = batches, names, engine
        self.cycles, self.mixing = int(cycles), float(mixing)
        self.options = SCFOptions(conv_tol=conv_tol)
        self._predict = eqx.filter_jit(self._predict_batch)
        self.reference = self._reference()
        zero = [self._baseline(b) for b in batches]
        self.baseline_energy = [np.asarray(z[0]) for z in zero]
        self.baseline_density = [np.asarray(z[1]) for z in zero]

    def _real(self, b: TrainingBatch) -> np.ndarray:
        return np.asarray(b.weight) > 0

    def _predict_batch(self, model, batch: TrainingBatch):
        def one(problem, tokens):
            w = model(tokens, physics_matrices(problem)) if model is not None else jnp.zeros_like(problem.x)
            return prediction(problem, w, self.cycles, self.mixing)

        return jax.vmap(one)(batch.problems, batch.tokens)

    def _baseline(self, b: TrainingBatch):
        e, dm, _ = self._predict(None, b)
        return e, dm

    def _solve(self, b: TrainingBatch, dm0=None):
        res = self.engine.solve(b.signature, b.systems, self.options, n_real=int(self._real(b).sum()), dm0=dm0)[0]
        return res

    def _reference(self) -> Reference:
        ref = Reference([], [], [], [], [], [])
        for b in self.batches:
            res = self._solve(b)
            fr = np.asarray([frontier(e, o) for e, o in zip(np.asarray(res.mo_energy), np.asarray(res.mo_occ))])
            dm = np.asarray(res.density)
            ref.energy.append(np.asarray(res.energy))
            ref.homo.append(fr[:, 0])
            ref.lumo.append(fr[:, 1])
            ref.density.append(dm if b.signature.restricted else dm.sum(axis=1))
            ref.iterations.append(np.asarray(res.iterations))
            ref.converged.append(np.asarray(res.converged))
            bad = int(np.sum(~np.asarray(res.converged)[self._real(b)]))
            if bad:
                log.warning("%d held-out reference SCF(s) did not converge; their errors are not meaningful "
                            "(metrics field reference_unconverged)", bad)
        return ref

    def __call__(self, model, guess_test: bool = True) -> dict:
        """Metrics of ``model`` (see the module docstring); ``guess_test`` also runs the
        SCF from the predicted densities (the iterations-saved figures)."""
        rows = []
        for k, b in enumerate(self.batches):
            e, dm_c, mo_e = (np.asarray(a) for a in self._predict(model, b))
            occ = np.asarray(b.problems.occ)
            real = self._real(b)
            dm_total = dm_c.sum(axis=1)
            iters = None
            if guess_test:
                dm0 = jnp.asarray(dm_c[:, 0] if b.signature.restricted else dm_c)
                res = self._solve(b, dm0)
                iters = np.asarray(res.iterations)
                conv = np.asarray(res.converged)
            ref = self.reference
            for i in np.nonzero(real)[0]:
                homo, lumo = frontier(mo_e[i], occ[i])
                j = int(b.index[i])
                rows.append({
                    "smiles": self.names[j],
                    "energy_error_mha": MHA * abs(e[i] - ref.energy[k][i]),
                    "minao_energy_error_mha": MHA * abs(self.baseline_energy[k][i] - ref.energy[k][i]),
                    "homo_error_mha": MHA * abs(homo - ref.homo[k][i]),
                    "lumo_error_mha": MHA * abs(lumo - ref.lumo[k][i]),
                    "density_error": float(np.linalg.norm(dm_total[i] - ref.density[k][i])),
                    "minao_density_error": float(np.linalg.norm(self.baseline_density[k][i].sum(axis=0)
                                                                - ref.density[k][i])),
                    "scf_iterations_minao": int(ref.iterations[k][i]),
                    "scf_iterations_model": None if iters is None else int(iters[i]) + self.cycles,
                    "converged_model_guess": None if iters is None else bool(conv[i]),
                    "reference_converged": bool(ref.converged[k][i]),
                })
        return summarise(rows)


def _mean(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(vals)) if vals else None


def summarise(rows: list[dict]) -> dict:
    """Means over the held-out geometries, and per molecule (``per_molecule``)."""
    keys = ["energy_error_mha", "minao_energy_error_mha", "homo_error_mha", "lumo_error_mha", "density_error",
            "minao_density_error", "scf_iterations_model", "scf_iterations_minao"]
    out = {k: _mean(rows, k) for k in keys}
    out["energy_error_max_mha"] = float(max(r["energy_error_mha"] for r in rows))
    out["improvement_over_minao"] = (out["minao_energy_error_mha"] / out["energy_error_mha"]
                                     if out["energy_error_mha"] else None)
    if out["scf_iterations_model"] is not None:
        out["scf_iterations_saved_percent"] = 100.0 * (1 - out["scf_iterations_model"] / out["scf_iterations_minao"])
    per = {}
    for name in dict.fromkeys(r["smiles"] for r in rows):
        sel = [r for r in rows if r["smiles"] == name]
        per[name] = {k: _mean(sel, k) for k in ("energy_error_mha", "minao_energy_error_mha",
                                                 "scf_iterations_model", "scf_iterations_minao")}
        per[name]["geometries"] = len(sel)
    out["per_molecule"] = per
    out["geometries"] = len(rows)
    # an unconverged reference makes every error of that geometry meaningless: counted, not hidden
    out["reference_unconverged"] = sum(not r["reference_converged"] for r in rows)
    out["model_guess_unconverged"] = sum(r["converged_model_guess"] is False for r in rows)
    return out

