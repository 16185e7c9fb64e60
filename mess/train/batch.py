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

import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.engine.engine import Engine, default_engine, require_float64
from mess.engine.signature import Method, Signature
from mess.engine.system import build, default_params, stack
from mess.errors import InputError
from mess.structure import Molecule, require_molecule
from mess.train.model import AOTokens, ao_tokens, physics_matrices
from mess.train.objective import EnergyProblem, energy_problem, predicted_energy


class TrainingBatch(eqx.Module):
    """Molecules of one signature, stacked on a leading axis ``[b]``.

    Attributes:
        problems: their :class:`~mess.train.objective.EnergyProblem` (batched).
        tokens: their :class:`~mess.train.model.AOTokens` (batched).
        weight: 1 for a molecule, 0 for a padding item ``[b]``.
        index: position of each item in the caller's list (-1 for padding) ``[b]``.
        signature: the bucket's signature (static).
    """

    problems: EnergyProblem
    tokens: AOTokens
    weight: Float[Array, " b"]
    index: np.ndarray = eqx.field(static=True, converter=lambda a: tuple(int(i) for i in a))
    signature: Signature = eqx.field(static=True)


def training_batches(molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "b3lyp",
                     grid_level: int = 3, batch_size: int | None = None, engine: Engine | None = None,
                     restricted: bool | None = None) -> list[TrainingBatch]:
    """The :class:`TrainingBatch` list of ``molecules`` (any sizes, elements, charges;
    every quartet kept, so the problems hold for exactly these geometries), one or
    more per padding bucket, with at most ``batch_size`` molecules each (default: a
    whole bucket)."""
    require_float64()
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
    for bucket in engine.plan(prepared).buckets:
        sig, members = bucket.signature, list(bucket.members)
        size = min(batch_size or len(members), len(members))
        for start in range(0, len(members), size):
            part = members[start:start + size]
            pad = size - len(part)
            items = part + [part[-1]] * pad
            systems = stack([build(prepared[i], sig) for i in items])
            params = default_params(sig, systems)
            one, blocks, grid = engine.integrals(sig, systems, params)
            dm_guess = engine.guess(sig, systems, params, one["overlap"])
            problems = engine.program(("train-problem", sig, size), lambda s=sig: jax.jit(jax.vmap(
                functools.partial(energy_problem, s))))(systems, params, one, blocks, grid, dm_guess)
            tokens = jax.tree.map(lambda *a: jnp.stack(a), *[
                ao_tokens(prepared[i].layout, prepared[i].molecule.numbers, sig.basis) for i in items])
            weight = jnp.asarray([1.0] * len(part) + [0.0] * pad)
            out.append(TrainingBatch(problems, tokens, weight, np.asarray(part + [-1] * pad), sig))
    return out


def item_energies(model, batch: TrainingBatch, cycles: int = 0, mixing: float = 0.5) -> Float[Array, " b"]:
    """Predicted energy of every item of ``batch`` (Hartree; padding items included)."""
    def one(problem, tokens):
        return predicted_energy(problem, model(tokens, physics_matrices(problem)), cycles, mixing)

    return jax.vmap(one)(batch.problems, batch.tokens)


def batch_loss(model, batch: TrainingBatch, cycles: int = 0, mixing: float = 0.5) -> Float[Array, ""]:
    """Sum of the predicted energies of the batch's molecules (Hartree): the
    label-free loss of energy-based training."""
    return jnp.sum(batch.weight * item_energies(model, batch, cycles, mixing))
