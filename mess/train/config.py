"""Settings of a training run (``mess train CONFIG``): one frozen record, read from TOML.

Every option, its default and its unit is a field of :class:`TrainConfig`; a TOML
file sets any of them at the top level (unknown keys are refused, so a typo is an
error rather than a silently ignored setting). ``--preset demo`` is
:func:`preset` ``("demo")``: a tiny model on conformers of four small molecules that
trains on a 2-core CPU in a few minutes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mess.errors import InputError

TASKS = ("energy-loss", "supervised")
MODELS = ("tiny", "small")


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        task: ``"energy-loss"`` (the DFT energy of the predicted density is the loss;
            no labels) or ``"supervised"`` (regression on a generated dataset).
        smiles: training molecules (SMILES; charge and spin from the SMILES).
        held_out_smiles: molecules used only for evaluation (besides held-out
            conformers of ``smiles``).
        basis, xc, grid_level: the DFT method (PySCF names; grid level 0-9).
        conformers_per_round: conformers of every molecule made per round of the
            stream (RDKit ETKDGv3, a fresh seed per round, so the stream never repeats).
        steps_per_round: optimiser steps taken on one round's geometries (cycling
            through its batches) while the next round is prepared.
        jitter: standard deviation of a Gaussian displacement of every atom, Bohr.
        eval_conformers: held-out conformers per molecule (seeds no round uses).
        seed: seed of the conformers, the jitter, the model initialisation and the
            data order.
        model: network size (``"tiny"`` or ``"small"``, :class:`~mess.train.AOTransformer`).
        cycles: plain SCF steps after the predicted density (K; 0 allowed).
        mixing: density mixing of the second step (fraction of the old density kept).
        steps: optimiser steps of the run.
        batch_size: molecules per step (one padding bucket per step).
        learning_rate: peak AdamW learning rate (after warm-up).
        warmup_steps: linear warm-up from 0; cosine decay to ``final_lr_fraction`` of
            the peak by the last step.
        final_lr_fraction: final learning rate over the peak.
        weight_decay: AdamW weight decay.
        clip_norm: global gradient-norm clipping.
        eval_every: steps between evaluations (and at the last step).
        checkpoint_every: steps between checkpoints (and at the last step).
        conv_tol: convergence threshold (Hartree) of the reference and guess-test SCF.
        data: directory of a ``mess generate`` dataset (supervised task).
        target: column the supervised model predicts (``energy`` or ``gap``).
        validation_fraction: rows of the dataset held out for validation (supervised).
        scaling_fractions: nested fractions of the training rows the supervised
            baseline is trained on, one model each, for the MAE-against-rows plot.
    """

    task: str = "energy-loss"
    smiles: tuple[str, ...] = ("O", "C", "N", "CO")
    held_out_smiles: tuple[str, ...] = ()
    basis: str = "sto-3g"
    xc: str = "b3lyp"
    grid_level: int = 0
    conformers_per_round: int = 4
    steps_per_round: int = 10
    jitter: float = 0.05
    eval_conformers: int = 2
    seed: int = 0
    model: str = "tiny"
    cycles: int = 0
    mixing: float = 0.5
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 5e-3
    warmup_steps: int = 20
    final_lr_fraction: float = 0.02
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    eval_every: int = 150
    checkpoint_every: int = 150
    conv_tol: float = 1e-9
    data: str | None = None
    target: str = "energy"
    validation_fraction: float = 0.2
    scaling_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def digest(self) -> str:
        """SHA-256 of the settings that fix the run's numbers (``steps``, evaluation and
        checkpoint intervals excluded, so a run can be extended)."""
        d = self.to_dict()
        for k in ("steps", "eval_every", "checkpoint_every"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _positive(name: str, value, kind=int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise InputError(f"{name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")


def check(c: TrainConfig) -> None:
    """Refuse a config that cannot run, naming the option (:class:`~mess.errors.InputError`)."""
    if c.task not in TASKS:
        raise InputError(f"unknown task {c.task!r} (choose from {', '.join(TASKS)})")
    if c.model not in MODELS:
        raise InputError(f"unknown model {c.model!r} (choose from {', '.join(MODELS)})")
    if c.task == "energy-loss" and not c.smiles:
        raise InputError("smiles: the energy-loss task needs at least one molecule")
    for s in (*c.smiles, *c.held_out_smiles):
        if not isinstance(s, str) or not s.strip():
            raise InputError(f"smiles: {s!r} is not a SMILES string")
    for name in ("conformers_per_round", "steps_per_round", "eval_conformers", "steps", "batch_size", "eval_every",
                 "checkpoint_every"):
        _positive(name, getattr(c, name))
    for name in ("learning_rate", "clip_norm", "conv_tol"):
        _positive(name, getattr(c, name), (int, float))
    for name in ("grid_level", "cycles", "warmup_steps", "seed"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"{name} must be a non-negative integer, got {v!r}")
    if not 0 <= c.grid_level <= 9:
        raise InputError(f"grid_level must be 0-9, got {c.grid_level}")
    for name in ("jitter", "weight_decay"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise InputError(f"{name} must be a non-negative number, got {v!r}")
    if not 0 <= c.mixing < 1:
        raise InputError(f"mixing must be in [0, 1), got {c.mixing!r}")
    if not 0 <= c.final_lr_fraction <= 1:
        raise InputError(f"final_lr_fraction must be in [0, 1], got {c.final_lr_fraction!r}")
    if c.task == "supervised" and not c.data:
        raise InputError("the supervised task needs a dataset: --data DIR (a mess generate output)")
    if not 0 < c.validation_fraction < 1:
        raise InputError(f"validation_fraction must be in (0, 1), got {c.validation_fraction!r}")
    if not c.scaling_fractions or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1
                                      for f in c.scaling_fractions):
        raise InputError(f"scaling_fractions must be numbers in (0, 1], got {c.scaling_fractions!r}")
    if c.target not in ("energy", "gap"):
        raise InputError(f"target must be 'energy' or 'gap', got {c.target!r}")


PRESETS = {
    # Four small molecules at B3LYP/STO-3G, grid level 0, K = 0 (the defaults), trained
    # twice as long and scored on 16 held-out geometries: about six minutes on a 2-core CPU.
    "demo": {"steps": 1200, "eval_conformers": 4},
}


def preset(name: str, overrides: dict | None = None) -> TrainConfig:
    """The named preset (``"demo"``), with ``overrides`` replacing its values."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return from_mapping({**PRESETS[name], **(overrides or {})}, where=f"preset {name}")


def from_mapping(values: dict, where: str = "config") -> TrainConfig:
    """The defaults with the options in ``values`` replaced (checked once, together)."""
    names = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(names)})")
    clean = {}
    for k, v in values.items():
        if k in ("smiles", "held_out_smiles", "scaling_fractions"):
            if isinstance(v, str) or not isinstance(v, (list, tuple)):
                raise InputError(f"{where}: {k} must be a list")
            v = tuple(v)
        clean[k] = v
    return TrainConfig(**clean)


def read_toml(path) -> dict:
    """The options of a TOML file (top-level keys), unchecked."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no config file {path}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None


def load(path, overrides: dict | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML file (top-level keys are the options), with
    ``overrides`` (e.g. command-line options) replacing the file's values."""
    return from_mapping({**read_toml(path), **(overrides or {})}, where=str(path))


def to_toml(c: TrainConfig) -> str:
    """The config as TOML, every option written (read back by :func:`load`)."""
    lines = []
    for k, v in c.to_dict().items():
        if v is None:
            continue
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


__all__ = ["MODELS", "PRESETS", "TASKS", "TrainConfig", "check", "from_mapping", "load", "preset", "read_toml",
           "to_toml"]
