"""An unlimited, reproducible stream of training geometries, prepared ahead of use.

Round ``r`` of the stream is ``conformers_per_round`` fresh RDKit ETKDGv3 conformers
of every training molecule (seed derived from the run seed, the round and the
SMILES), each atom displaced by Gaussian noise of ``jitter`` Bohr, planned into the
engine's padding buckets and turned into :class:`~mess.train.TrainingBatch` es
(integrals, grid, MINAO density, all once per geometry). Everything about round
``r`` (geometries, batches, their order) is a function of the config and ``r`` only,
so a resumed run sees exactly the data of an uninterrupted one. Held-out conformers
use seeds no round uses.

:class:`Prefetcher` prepares the next round in a background thread while the current
one trains, so the host-side preparation overlaps with the optimiser steps.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

import numpy as np

from mess.dataset.conformers import conformer_seed, embed
from mess.errors import InputError
from mess.structure import Molecule
from mess.train.batch import HostBatch, TrainingBatch, device_batch, host_batches, training_batches


def _rng(seed: int, *words) -> np.random.Generator:
    return np.random.default_rng(conformer_seed(seed, ":".join(str(w) for w in words)))


def conformers(smiles: str, n: int, seed: int, tag: str, jitter: float) -> list[Molecule]:
    """``n`` ETKDGv3 conformers of ``smiles`` for the stream position ``tag`` (positions
    in Bohr, each atom displaced by N(0, ``jitter``²) per coordinate)."""
    try:
        mols = embed(smiles, n, seed=conformer_seed(seed, f"{tag}:{smiles}"))
    except ValueError as e:
        raise InputError(f"molecule {smiles!r}: {e}") from None
    rng = _rng(seed, "jitter", tag, smiles)
    out = []
    for m in mols:
        pos = np.asarray(m.positions, float)
        pos = pos + rng.normal(0.0, jitter, pos.shape) if jitter > 0 else pos
        out.append(Molecule.from_arrays(m.numbers, pos, charge=m.charge, spin=m.spin))
    return out


def round_molecules(config, r: int) -> list[Molecule]:
    """The geometries of round ``r`` (every training molecule's conformers, in the
    round's shuffled order)."""
    mols = [m for s in config.smiles
            for m in conformers(s, config.conformers_per_round, config.seed, f"round{r}", config.jitter)]
    order = _rng(config.seed, "order", r).permutation(len(mols))
    return [mols[i] for i in order]


def held_out_molecules(config) -> tuple[list[Molecule], list[str]]:
    """Evaluation geometries: ``eval_conformers`` unseen conformers of each training and
    held-out molecule, with their SMILES."""
    mols, names = [], []
    for s in (*config.smiles, *config.held_out_smiles):
        got = conformers(s, config.eval_conformers, config.seed, "held-out", config.jitter)
        mols += got
        names += [s] * len(got)
    return mols, names


def make_batches(config, molecules: Sequence[Molecule], engine, known) -> list[TrainingBatch]:
    """:func:`~mess.train.training_batches` with the run's method, planned against the
    run's ``known`` signatures (so the padding does not depend on what else the engine
    ran)."""
    return training_batches(molecules, config.basis, config.xc, config.grid_level, config.batch_size,
                            engine, known=known)


class Prefetcher:
    """Rounds of the stream, each prepared while the previous one trains. ``get(r)``
    returns round ``r``'s batches and starts round ``r + 1``.

    The background thread does the host work only (RDKit conformers, planning,
    padding: NumPy and RDKit); the device work (integrals, grid, guess) is dispatched
    from the calling thread, since concurrent JAX execution from two threads can
    stall the CPU runtime."""

    def __init__(self, config, engine, known: list):
        self.config, self.engine, self.known = config, engine, known
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mess-train-data")
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._known_at: dict[int, list] = {}

    def known_at(self, r: int) -> list:
        """The known signatures as they were when round ``r`` was planned (what a
        resumed run must start round ``r`` from to plan it identically)."""
        return list(self._known_at.get(r, self.known))

    def _prepare(self, r: int) -> list[HostBatch]:
        c = self.config
        self._known_at[r] = list(self.known)
        hosts = host_batches(round_molecules(c, r), c.basis, c.xc, c.grid_level, c.batch_size, self.engine,
                             known=self.known)
        for h in hosts:
            if h.signature not in self.known:
                self.known.append(h.signature)
        return hosts

    def get(self, r: int) -> list[TrainingBatch]:
        fut = self._pending.pop(r, None)
        hosts = fut.result() if fut is not None else self._prepare(r)
        if r + 1 not in self._pending:
            self._pending[r + 1] = self._pool.submit(self._prepare, r + 1)
        return [device_batch(h, self.engine) for h in hosts]

    def close(self) -> None:
        for f in self._pending.values():
            f.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
