"""Batches of different molecules for training: one :class:`TrainingBatch` per
padding bucket of the engine, holding what the loss needs and nothing that depends
on the network.

The molecules are planned into the engine's buckets (:meth:`mess.Engine.plan`), each
bucket's systems are padded to its signature, and their
:class:`~mess.train.objective.EnergyProblem` (integrals, grid, MINAO density and Fock
matrix, orthogonaliser) is computed once, by a program compiled once per signature
and batch size. :func:`batch_loss` is the sum of the molecules' predicted energies
(Hartree); padding items (a bucket's last batch is filled up by repeating a
molecule) carry weight 0.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.engine.engine import Engine, default_engine, require_float64
from mess.engine.signature import Method, Signature
from mess.engine.system import System, build, default_params, stack
from mess.errors import InputError
from mess.structure import Molecule, require_molecule
from mess.train.model import AOTokens, ao_tokens, physics_matrices
from mess.train.objective import EnergyProblem, energy_problem, predicted_energy


class TrainingBatch(eqx.Module):
    """Molecules of one signature, stacked on a leading axis ``[b]``.

    Attributes:
        problems: their :class:`~mess.train.objective.EnergyProblem` (batched).
        tokens: their :class:`~mess.train.model.AOTokens` (batched).
        systems: their padded :class:`~mess.engine.system.System` (batched; for
            evaluation SCF runs).
        weight: 1 for a molecule, 0 for a padding item ``[b]``.
        index: position of each item in the caller's list (-1 for padding) ``[b]``
            (data, not static: batches of one signature share the compiled step).
        signature: the bucket's signature (static).
    """

    problems: EnergyProblem
    tokens: AOTokens
    systems: System
    weight: Float[Array, " b"]
    index: np.ndarray = eqx.field(converter=lambda a: np.asarray(a, np.int64))
    signature: Signature = eqx.field(static=True)


@dataclasses.dataclass(frozen=True)
class HostBatch:
    """The host-side (NumPy) part of a :class:`TrainingBatch`: padded systems and AO
    tokens, built without touching the device (safe in a background thread)."""

    signature: Signature
    systems: System
    tokens: AOTokens
    weight: np.ndarray
    index: np.ndarray


def host_batches(molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "b3lyp", grid_level: int = 3,
                 batch_size: int | None = None, engine: Engine | None = None, restricted: bool | None = None,
                 known: Sequence[Signature] | None = None) -> list[HostBatch]:
    """Plan ``molecules`` into padding buckets and pad them (host only; see
    :func:`training_batches`)."""
    molecules = list(molecules)
    if not molecules:
        raise InputError("training needs at least one molecule")
    for i, m in enumerate(molecules):
        require_molecule(m, f"molecule {i}: ")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    engine = engine or default_engine()
    method = Method(basis, xc, False, grid_level, 0.0)
    prepared = engine.prepare(molecules, method, restricted)
    out = []
    for bucket in engine.plan(prepared, known=known).buckets:
        sig, members = bucket.signature, list(bucket.members)
        size = min(batch_size or len(members), len(members))
        for start in range(0, len(members), size):
            part = members[start:start + size]
            pad = size - len(part)
            items = part + [part[-1]] * pad
            systems = stack([build(prepared[i], sig) for i in items])
            tokens = jax.tree.map(lambda *a: np.stack(a), *[
                ao_tokens(prepared[i].layout, prepared[i].molecule.numbers, sig.basis) for i in items])
            weight = np.asarray([1.0] * len(part) + [0.0] * pad)
            out.append(HostBatch(sig, systems, tokens, weight, np.asarray(part + [-1] * pad)))
    return out


def device_batch(host: HostBatch, engine: Engine | None = None) -> TrainingBatch:
    """The :class:`TrainingBatch` of ``host``: integrals, grid, MINAO density and
    :class:`~mess.train.objective.EnergyProblem` of every item, by programs compiled
    once per signature and batch size."""
    require_float64()
    engine = engine or default_engine()
    sig, size = host.signature, int(host.weight.shape[0])
    systems = jax.tree.map(jnp.asarray, host.systems)
    params = default_params(sig, systems)
    one, blocks, grid = engine.integrals(sig, systems, params)
    dm_guess = engine.guess(sig, systems, params, one["overlap"])
    problems = engine.program(("train-problem", sig, size), lambda s=sig: jax.jit(jax.vmap(
        functools.partial(energy_problem, s))))(systems, params, one, blocks, grid, dm_guess)
    tokens = jax.tree.map(jnp.asarray, host.tokens)
    return TrainingBatch(problems, tokens, systems, jnp.asarray(host.weight), host.index, sig)


def training_batches(molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "b3lyp",
                     grid_level: int = 3, batch_size: int | None = None, engine: Engine | None = None,
                     restricted: bool | None = None, known: Sequence[Signature] | None = None
                     ) -> list[TrainingBatch]:
    """The :class:`TrainingBatch` list of ``molecules`` (any sizes, elements, charges;
    every quartet kept, so the problems hold for exactly these geometries), one or
    more per padding bucket, with at most ``batch_size`` molecules each (default: a
    whole bucket). ``known``: signatures to reuse where they fit (default: those the
    engine has compiled; see :meth:`mess.Engine.plan`)."""
    require_float64()
    engine = engine or default_engine()
    return [device_batch(h, engine) for h in host_batches(molecules, basis, xc, grid_level, batch_size, engine,
                                                          restricted, known)]


def item_energies(model, batch: TrainingBatch, cycles: int = 0, mixing: float = 0.5) -> Float[Array, " b"]:
    """Predicted energy of every item of ``batch`` (Hartree; padding items included)."""
    def one(problem, tokens):
        return predicted_energy(problem, model(tokens, physics_matrices(problem)), cycles, mixing)

    return jax.vmap(one)(batch.problems, batch.tokens)


def baseline_energies(batch: TrainingBatch, cycles: int = 0, mixing: float = 0.5) -> Float[Array, " b"]:
    """Energy of every item at ``W = 0`` (the MINAO density followed by the same
    ``cycles`` steps; Hartree): what a model is measured against."""
    def one(problem):
        return predicted_energy(problem, jnp.zeros_like(problem.x), cycles, mixing)

    return jax.vmap(one)(batch.problems)


def batch_loss(model, batch: TrainingBatch, cycles: int = 0, mixing: float = 0.5) -> Float[Array, ""]:
    """Sum of the predicted energies of the batch's molecules (Hartree): the
    label-free loss of energy-based training."""
    return jnp.sum(batch.weight * item_energies(model, batch, cycles, mixing))
