"""The supervised baseline: a SchNet-type invariant network trained on a dataset
written by ``mess generate`` (the generate-then-train loop of PySCF_IPU / QM1B).

Model (:class:`SchNet`; Schütt et al., "SchNet - a deep learning architecture for
molecules and materials", J. Chem. Phys. 148, 241722 (2018)): atoms embedded by
element, ``interactions`` continuous-filter convolutions whose filters are an MLP of
Gaussian radial features of the interatomic distances (Bohr) times a cosine cutoff,
and an atom-wise MLP whose outputs are summed over the atoms. Distances only, so the
prediction is invariant under rotations, translations and permutations of atoms.

Target: ``energy`` (Hartree) with per-element reference energies subtracted (a least
squares fit of the training energies to element counts, so the network learns the
part that depends on the geometry and bonding), or ``gap`` (Hartree, no reference),
standardised by the training set's standard deviation. Rows are split into training
and validation once, by the seed; the validation MAE (target units; mHa) is the
metric. :func:`train_supervised` trains on nested subsets of the training rows
(``scaling_fractions``; random rows, by the seed, led by one row per element:
:func:`nested_order`) and plots the validation MAE against the number of training
rows: the QM1B scaling curve in miniature.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from mess.dataset.reader import batches as dataset_batches
from mess.dataset.store import atomic_write
from mess.errors import InputError

MHA = 1000.0
NUM_ELEMENTS = 87


def cosine_cutoff(d: Float[Array, "..."], cutoff: float) -> Float[Array, "..."]:
    """``0.5 (cos(pi d / r_c) + 1)`` inside the cutoff ``r_c`` (Bohr), 0 outside (Behler 2011)."""
    return jnp.where(d < cutoff, 0.5 * (jnp.cos(jnp.pi * d / cutoff) + 1.0), 0.0)


class _Interaction(eqx.Module):
    filter1: eqx.nn.Linear
    filter2: eqx.nn.Linear
    in2f: eqx.nn.Linear
    f2out: eqx.nn.Linear
    dense: eqx.nn.Linear

    def __init__(self, width: int, rbf: int, key: PRNGKeyArray):
        k = jax.random.split(key, 5)
        self.filter1 = eqx.nn.Linear(rbf, width, key=k[0])
        self.filter2 = eqx.nn.Linear(width, width, key=k[1])
        self.in2f = eqx.nn.Linear(width, width, use_bias=False, key=k[2])
        self.f2out = eqx.nn.Linear(width, width, key=k[3])
        self.dense = eqx.nn.Linear(width, width, key=k[4])

    def __call__(self, h, features, envelope):
        w = jax.vmap(jax.vmap(lambda f: self.filter2(jax.nn.softplus(self.filter1(f)))))(features)
        w = w * envelope[..., None]                                   # [a, a, width]
        x = jax.vmap(self.in2f)(h)
        conv = jnp.einsum("ijf,jf->if", w, x)
        return h + jax.vmap(lambda v: self.dense(jax.nn.softplus(self.f2out(v))))(conv)


class SchNet(eqx.Module):
    """Atomic numbers and positions (Bohr) to one number per molecule (see the module
    docstring). ``width`` features, ``interactions`` blocks, ``rbf`` Gaussians on
    [0, ``cutoff``] Bohr."""

    embedding: eqx.nn.Embedding
    interactions: tuple[_Interaction, ...]
    out1: eqx.nn.Linear
    out2: eqx.nn.Linear
    centres: Float[Array, " r"]
    gamma: float = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)

    def __init__(self, width: int = 32, interactions: int = 3, rbf: int = 32, cutoff: float = 10.0, *,
                 key: PRNGKeyArray):
        k = jax.random.split(key, interactions + 3)
        self.embedding = eqx.nn.Embedding(NUM_ELEMENTS, width, key=k[0])
        self.interactions = tuple(_Interaction(width, rbf, k[3 + i]) for i in range(interactions))
        self.out1 = eqx.nn.Linear(width, width // 2, key=k[1])
        self.out2 = eqx.nn.Linear(width // 2, 1, key=k[2])
        self.centres = jnp.linspace(0.0, cutoff, rbf)
        self.gamma = 0.5 / float(cutoff / (rbf - 1)) ** 2
        self.cutoff = float(cutoff)

    def __call__(self, z: Int[Array, " a"], r: Float[Array, "a 3"], mask: Bool[Array, " a"]) -> Float[Array, ""]:
        diff = r[:, None, :] - r[None, :, :]
        pair = mask[:, None] & mask[None, :] & ~jnp.eye(z.shape[0], dtype=bool)
        d = jnp.sqrt(jnp.sum(diff * diff, -1) + jnp.where(pair, 0.0, 1.0))  # no sqrt(0) on the diagonal
        features = jnp.exp(-self.gamma * (d[..., None] - self.centres) ** 2)
        envelope = jnp.where(pair, cosine_cutoff(d, self.cutoff), 0.0)
        h = jax.vmap(self.embedding)(z)
        for block in self.interactions:
            h = block(h, features, envelope)
        atom = jax.vmap(lambda v: self.out2(jax.nn.softplus(self.out1(v)))[0])(h)
        return jnp.sum(jnp.where(mask, atom, 0.0))


def load_rows(path, target: str) -> dict:
    """Every row of a generated dataset as padded arrays (positions in Bohr) with the
    target column (native schema: Hartree)."""
    (rows,) = list(dataset_batches(path, batch_size=10**9, targets=(target,)))
    return rows


def reference_energies(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-element energies ``e[Z]`` minimising ``sum (y - counts @ e)^2`` over the rows
    (least squares; elements absent from the rows get 0), Hartree."""
    counts = np.stack([np.bincount(row[row > 0], minlength=NUM_ELEMENTS) for row in z]).astype(float)
    present = counts.sum(0) > 0
    e = np.zeros(NUM_ELEMENTS)
    e[present] = np.linalg.lstsq(counts[:, present], y, rcond=None)[0]
    return e


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices (validation: ``fraction`` of the rows, at least one)."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(fraction * n)))
    if n - k < 1:
        raise InputError(f"the dataset has {n} rows; training needs at least 2 (one to validate)")
    return np.sort(order[k:]), np.sort(order[:k])


def nested_order(z: np.ndarray, tr: np.ndarray, seed: int) -> np.ndarray:
    """The training rows ``tr`` in the order the nested subsets take them: a seeded
    random order, except that it starts with one row per element of the training rows
    (the first row of that order holding an element no earlier row holds), so every
    subset large enough to hold them has a reference energy for every element."""
    order = np.random.default_rng([seed, 1]).permutation(tr)
    covered = {0}
    first = []
    for i in order:
        new = set(np.unique(z[i]).tolist()) - covered
        if new:
            first.append(i)
            covered |= new
    rest = order[~np.isin(order, first)]
    return np.concatenate([np.asarray(first, dtype=order.dtype), rest])


def _unseen_elements(z: np.ndarray, tr: np.ndarray, va: np.ndarray) -> int:
    """Validation rows holding an element that no training row holds."""
    seen = np.zeros(NUM_ELEMENTS, bool)
    seen[np.unique(z[tr])] = True
    seen[0] = True  # padding
    return int(np.sum(~np.all(seen[z[va]], axis=1)))


def _baseline(z, ref):
    return np.sum(np.where(z > 0, ref[z], 0.0), axis=1)


def train_supervised(c, out, progress: bool = True, resume: bool = False) -> dict:
    """Train :class:`SchNet` on the dataset ``c.data`` (see the module docstring) into
    ``out``: ``metrics.jsonl`` (step, loss, ``val_mae_mha``, training rows), a
    ``scaling.json`` and ``mae_vs_rows.png`` over ``c.scaling_fractions``, and each
    subset's model in ``checkpoints/``. ``scaling.json`` is rewritten after every
    subset; with ``resume`` the subsets already finished are kept and the others
    trained again from the start. Returns the metrics of the full-size run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from mess.train.config import load, to_toml

    done_file = out / "scaling.json"
    done: list[dict] = []
    if done_file.exists():
        if not resume:
            raise InputError(f"{out} already holds a run (scaling.json); pass --resume to continue it, or choose "
                             "another --out")
        if (out / "config.toml").exists() and load(out / "config.toml").digest() != c.digest():
            raise InputError(f"{out} holds a run with different settings; resume it with the same config or "
                             "choose another --out")
        done = json.loads(done_file.read_text())
    rows = load_rows(c.data, c.target)
    atomic_write(out / "config.toml", to_toml(c).encode())
    z, r, mask, y = rows["atomic_numbers"], rows["positions"], rows["mask"], rows[c.target]
    keep = np.isfinite(y)
    if not keep.any():
        raise InputError(f"{c.data}: no finite {c.target!r} values")
    z, r, mask, y = z[keep], r[keep], mask[keep], y[keep]
    tr, va = split(len(y), c.validation_fraction, c.seed)
    finished = {d["train_rows"]: d for d in done}
    metrics = out / "metrics.jsonl"
    kept = [ln for ln in (metrics.read_text().splitlines() if metrics.exists() else [])
            if json.loads(ln)["train_rows"] in finished]
    atomic_write(metrics, "".join(ln + "\n" for ln in kept).encode())
    results = []
    with open(metrics, "a") as mfile:
        ranked = nested_order(z, tr, c.seed)
        for frac in sorted(set(c.scaling_fractions)):
            sub = np.sort(ranked[:max(1, int(round(frac * len(tr))))])
            results.append(finished.get(len(sub)) or _fit(c, z, r, mask, y, sub, va, mfile, progress, out))
            atomic_write(done_file, json.dumps(results, indent=1).encode())
    mae_vs_rows(results, out / "mae_vs_rows.png", c.target)
    return results[-1]


def _fit(c, z, r, mask, y, tr, va, mfile, progress, out) -> dict:
    ref = reference_energies(z[tr], y[tr]) if c.target == "energy" else np.zeros(NUM_ELEMENTS)
    resid = y - _baseline(z, ref)
    scale = float(np.std(resid[tr])) or 1.0
    shift = float(np.mean(resid[tr]))
    model = SchNet(key=jax.random.PRNGKey(c.seed))
    from mess.train.loop import optimizer

    opt = optimizer(c)
    state = opt.init(eqx.filter(model, eqx.is_array))
    zj, rj, mj = jnp.asarray(z), jnp.asarray(r), jnp.asarray(mask)
    tj = jnp.asarray((resid - shift) / scale)

    def predict(model, idx):
        return jax.vmap(model)(zj[idx], rj[idx], mj[idx])

    @eqx.filter_jit
    def step(model, state, idx):
        def loss(m):
            return jnp.mean((predict(m, idx) - tj[idx]) ** 2)

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, value

    predict_jit = eqx.filter_jit(predict)

    def val_mae(model) -> float:
        p = np.asarray(predict_jit(model, jnp.asarray(va))) * scale + shift
        return MHA * float(np.mean(np.abs(p - resid[va])))

    unseen = _unseen_elements(z, tr, va)
    if unseen:
        import warnings

        warnings.warn(f"{unseen} of {len(va)} validation rows hold elements absent from the {len(tr)} training rows "
                      "(their reference energy is 0); their errors dominate the MAE", stacklevel=2)
    bsz = min(c.batch_size, len(tr))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=c.steps, unit="step", desc=f"supervised {len(tr)} rows", dynamic_ncols=True)
    t0 = time.perf_counter()
    row = None
    for s in range(c.steps):
        epoch, k = divmod(s * bsz, len(tr))
        order = np.random.default_rng([c.seed, epoch]).permutation(tr)
        idx = np.take(order, np.arange(k, k + bsz), mode="wrap")
        model, state, loss = step(model, state, jnp.asarray(idx))
        if bar is not None:
            bar.set_postfix(loss=f"{float(loss):.4f}")
            bar.update(1)
        if (s + 1) % c.eval_every == 0 or s + 1 == c.steps:
            row = {"step": s + 1, "loss": float(loss), "train_rows": int(len(tr)), "val_rows": int(len(va)),
                   "target": c.target, "val_mae_mha": val_mae(model),
                   "val_mae_reference_only_mha": MHA * float(np.mean(np.abs(resid[va] - shift))),
                   "val_rows_unseen_elements": unseen,
                   "elapsed_s": round(time.perf_counter() - t0, 3)}
            mfile.write(json.dumps(row) + "\n")
            mfile.flush()
    if bar is not None:
        bar.close()
    d = out / "checkpoints"
    d.mkdir(exist_ok=True)
    eqx.tree_serialise_leaves(d / f"schnet-{len(tr)}-rows.eqx", model)
    return row


def mae_vs_rows(results: list[dict], path, target: str) -> None:
    """Validation MAE (mHa) against training rows, log-log."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    n = [r["train_rows"] for r in results]
    ax.loglog(n, [r["val_mae_mha"] for r in results], marker="o", label="SchNet")
    ax.loglog(n, [r["val_mae_reference_only_mha"] for r in results], ls="--",
              label="reference energies only" if target == "energy" else "mean only")
    ax.set(xlabel="training rows", ylabel=f"validation MAE of {target} (mHa)", title="Supervised baseline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    plt.close(fig)
