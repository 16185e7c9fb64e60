"""The training loop of energy-based training: optax, checkpoints, metrics, plots.

:func:`train` runs a :class:`~mess.train.config.TrainConfig` into a directory::

    OUT/config.toml           every option of the run
    OUT/loss.csv              per step: loss (mean predicted energy per molecule, Ha), how far it is
                              below the W = 0 energy of the same batch (mHa), learning rate, seconds
    OUT/metrics.jsonl         one JSON object per evaluation, step 0 (before training) first
    OUT/evaluation.json       the last evaluation, with a per-molecule table
    OUT/learning_curve.png    loss and held-out energy error against step
    OUT/checkpoints/          step-NNNNNN.eqx (model and optimiser state) + .json (step, data position)

The optimiser is AdamW (Loshchilov & Hutter, ICLR 2019) after global-norm gradient
clipping, with a linear warm-up and a cosine decay of the learning rate (optax). The
data order is a function of the step (see :mod:`mess.train.stream`), so a run that
stops (crash, Ctrl-C, ``--steps`` reached) and is started again with ``resume``
continues from its last checkpoint with the same step count, optimiser state and
data; on Ctrl-C a checkpoint of the current step is written first. Rows of
``loss.csv`` and ``metrics.jsonl`` beyond the checkpoint are dropped on resume and
computed again, so nothing is duplicated.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mess.dataset.store import atomic_write
from mess.engine.engine import Engine, require_float64
from mess.errors import InputError
from mess.train import config as cfg
from mess.train.batch import TrainingBatch, baseline_energies, batch_loss
from mess.train.evaluate import Evaluator
from mess.train.model import AOTransformer
from mess.train.plots import learning_curve, read_loss, read_metrics
from mess.train.stream import Prefetcher, _rng, held_out_molecules, make_batches

log = logging.getLogger("mess")

KEEP_CHECKPOINTS = 2


def schedule(c: cfg.TrainConfig) -> optax.Schedule:
    """Linear warm-up from 0 to ``learning_rate`` over ``warmup_steps``, then cosine
    decay to ``final_lr_fraction`` of it at ``steps`` (Loshchilov & Hutter, ICLR 2017)."""
    return optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, max(c.warmup_steps, 1),
                                              max(c.steps, c.warmup_steps + 1), c.learning_rate * c.final_lr_fraction)


def optimizer(c: cfg.TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with :func:`schedule`."""
    return optax.chain(optax.clip_by_global_norm(c.clip_norm), optax.adamw(schedule(c), weight_decay=c.weight_decay))


def learning_rate(c: cfg.TrainConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based)."""
    return float(schedule(c)(step))


def new_model(c: cfg.TrainConfig) -> AOTransformer:
    key = jax.random.PRNGKey(c.seed)
    return AOTransformer.tiny(key) if c.model == "tiny" else AOTransformer.small(key)


def shard(batch: TrainingBatch) -> TrainingBatch:
    """``batch`` split over the local devices along its batch axis when there are
    several and the batch size divides evenly (data parallelism through JAX sharding;
    the model is replicated and XLA inserts the gradient reduction)."""
    devices = jax.devices()
    b = batch.weight.shape[0]
    if len(devices) < 2 or b % len(devices):
        return batch
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    return jax.tree.map(lambda a: jax.device_put(a, spec) if isinstance(a, jax.Array) and a.ndim else a, batch)


class Trainer:
    """Model, optimiser state and compiled step of one run (the compiled programs
    live as long as the trainer)."""

    def __init__(self, c: cfg.TrainConfig):
        self.config = c
        self.model = new_model(c)
        self.opt = optimizer(c)
        self.opt_state = self.opt.init(eqx.filter(self.model, eqx.is_array))

        def step(model, opt_state, batch):
            loss, grads = eqx.filter_value_and_grad(batch_loss)(model, batch, c.cycles, c.mixing)
            updates, opt_state = self.opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), opt_state, loss / jnp.sum(batch.weight)

        self._step = eqx.filter_jit(step)
        self._baseline = eqx.filter_jit(lambda batch: jnp.sum(batch.weight * baseline_energies(batch, c.cycles,
                                                                                             c.mixing))
                                        / jnp.sum(batch.weight))

    def baseline(self, batch: TrainingBatch) -> float:
        """Mean energy per molecule of ``batch`` at ``W = 0`` (MINAO + the same K steps), Hartree."""
        return float(self._baseline(batch))

    def step(self, batch: TrainingBatch) -> float:
        self.model, self.opt_state, loss = self._step(self.model, self.opt_state, shard(batch))
        return float(loss)

    def save(self, path: Path, meta: dict) -> None:
        """Model and optimiser state to ``path`` (.eqx) and ``meta`` beside it (.json),
        each written to a temporary name and renamed when complete."""
        tmp = path.with_suffix(".eqx.tmp")
        eqx.tree_serialise_leaves(tmp, (self.model, self.opt_state))
        os.replace(tmp, path)
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())

    def load(self, path: Path) -> None:
        self.model, self.opt_state = eqx.tree_deserialise_leaves(path, (self.model, self.opt_state))


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run directory, oldest first."""
    d = out / "checkpoints"
    return sorted(p for p in d.glob("step-*.eqx") if p.with_suffix(".json").exists()) if d.is_dir() else []


def _truncate(path: Path, step: int, csv: bool) -> None:
    """Drop the rows of ``path`` written after ``step`` (they are computed again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = []
    for i, line in enumerate(lines):
        if csv and i == 0:
            keep.append(line)
            continue
        s = int(line.split(",")[0]) if csv else json.loads(line)["step"]
        if s <= step:
            keep.append(line)
    atomic_write(path, ("\n".join(keep) + "\n").encode() if keep else b"")


def batch_for_step(c: cfg.TrainConfig, batches: list, step: int, r: int):
    """The batch of ``step`` among round ``r``'s ``batches``: passes over the round in
    an order shuffled per pass (a function of the seed, round and pass only)."""
    p = step - r * c.steps_per_round
    n = len(batches)
    order = _rng(c.seed, "pass", r, p // n).permutation(n)
    return batches[order[p % n]]


def train(c: cfg.TrainConfig, out, resume: bool = False, progress: bool = True, engine: Engine | None = None,
          on_step=None) -> dict:
    """Run (or, with ``resume``, continue) the training run ``c`` in ``out``. Returns the
    last evaluation's metrics. ``on_step(step, loss)`` is called after every step. The
    supervised task runs :func:`mess.train.supervised.train_supervised`."""
    require_float64()
    if c.task == "supervised":
        from mess.train.supervised import train_supervised

        return train_supervised(c, out, progress, resume)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found = checkpoints(out)
    saved_cfg = out / "config.toml"
    if found and not resume:
        raise InputError(f"{out} already holds a run (checkpoint {found[-1].stem}); pass --resume to continue "
                         "it, or choose another --out")
    if resume and saved_cfg.exists():
        old = cfg.load(saved_cfg)
        if old.digest() != c.digest():
            diff = [k for k, v in old.to_dict().items() if c.to_dict()[k] != v
                    and k not in ("steps", "eval_every", "checkpoint_every")]
            raise InputError(f"{out} holds a run with different settings ({', '.join(diff)}); resume it with "
                             "the same config or choose another --out")
    atomic_write(saved_cfg, cfg.to_toml(c).encode())
    engine = engine or Engine()
    trainer = Trainer(c)
    start, known = 0, []
    if resume and found:
        meta = json.loads(found[-1].with_suffix(".json").read_text())
        trainer.load(found[-1])
        start = int(meta["step"])
        known = pickle.loads(bytes.fromhex(meta["known_signatures"]))
        _truncate(out / "loss.csv", start, csv=True)
        _truncate(out / "metrics.jsonl", start, csv=False)
        log.info("resuming %s at step %d", out, start)
    if start >= c.steps:
        log.info("%s: already at step %d of %d", out, start, c.steps)
    held, names = held_out_molecules(c)
    eval_batches = make_batches(c, held, engine, known=())
    if not known:
        known = list(dict.fromkeys(b.signature for b in eval_batches))
    evaluator = Evaluator(eval_batches, names, engine, c.cycles, c.mixing, c.conv_tol)
    stream = Prefetcher(c, engine, known)
    loss_csv = out / "loss.csv"
    if not loss_csv.exists() or not loss_csv.read_text().strip():
        atomic_write(loss_csv, b"step,loss_hartree_per_molecule,below_minao_mha,learning_rate,seconds\n")
    metrics = None
    bar = _bar(c.steps, start, progress)
    t0 = time.perf_counter()
    step = start
    try:
        with open(loss_csv, "a") as losses, open(out / "metrics.jsonl", "a") as mfile:
            done = {r["step"] for r in read_metrics(out)}
            if start and (start % c.eval_every == 0 or start == c.steps) and start not in done:
                # interrupted during the evaluation that follows this checkpoint
                last = float(read_loss(out)[1][-1]) if len(read_loss(out)[1]) else None
                metrics = _evaluate(evaluator, trainer, start, last, 0.0, out, mfile)
            if start == 0:
                metrics = _evaluate(evaluator, trainer, 0, None, 0.0, out, mfile)
            round_at = start // c.steps_per_round
            batches = stream.get(round_at) if start < c.steps else []
            base = {}
            while step < c.steps:
                r = step // c.steps_per_round
                if r != round_at:
                    round_at, batches, base = r, stream.get(r), {}
                batch = batch_for_step(c, batches, step, r)
                if id(batch) not in base:
                    base[id(batch)] = trainer.baseline(batch)
                loss = trainer.step(batch)
                step += 1
                below = 1000.0 * (base[id(batch)] - loss)
                losses.write(f"{step},{loss:.12f},{below:.6f},{learning_rate(c, step - 1):.6e},"
                             f"{time.perf_counter() - t0:.3f}\n")
                losses.flush()
                bar.update(loss)
                if on_step is not None:
                    on_step(step, loss)
                if step % c.checkpoint_every == 0 or step == c.steps:
                    _checkpoint(trainer, out, step, stream.known_at(round_at))
                if step % c.eval_every == 0 or step == c.steps:
                    metrics = _evaluate(evaluator, trainer, step, loss, time.perf_counter() - t0, out, mfile)
    except KeyboardInterrupt:
        if step > start:
            _checkpoint(trainer, out, step, stream.known_at(step // c.steps_per_round if step < c.steps
                                                                else round_at))
        raise
    finally:
        bar.close()
        stream.close()
    if metrics is None:
        metrics = evaluator(trainer.model)
    return metrics


def _checkpoint(trainer: Trainer, out: Path, step: int, known: list) -> None:
    d = out / "checkpoints"
    d.mkdir(exist_ok=True)
    trainer.save(d / f"step-{step:06d}.eqx", {"step": step, "digest": trainer.config.digest(),
                                               "known_signatures": pickle.dumps(known).hex()})
    for old in checkpoints(out)[:-KEEP_CHECKPOINTS]:
        old.with_suffix(".json").unlink(missing_ok=True)
        old.unlink(missing_ok=True)


def _evaluate(evaluator: Evaluator, trainer: Trainer, step: int, loss: float | None, elapsed: float, out: Path,
              mfile) -> dict:
    m = evaluator(trainer.model)
    row = {"step": step, "loss": loss, **{k: v for k, v in m.items() if k != "per_molecule"},
           "elapsed_s": round(elapsed, 3)}
    mfile.write(json.dumps(row) + "\n")
    mfile.flush()
    atomic_write(out / "evaluation.json", json.dumps({"step": step, **m}, indent=1).encode())
    learning_curve(out)
    return row


class _bar:
    """tqdm bar with the loss in the postfix (steps/s is tqdm's rate)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, unit="step", desc="train", dynamic_ncols=True)

    def update(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.6f} Ha")
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
