"""The learning curve of a training run (``OUT/learning_curve.png``), from the files
the run writes (``loss.csv``, ``metrics.jsonl``). Matplotlib, Agg backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_metrics(out) -> list[dict]:
    """The evaluation rows of a run directory, in step order."""
    p = Path(out) / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def read_loss(out) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(step, loss, below_minao)`` of every optimiser step: the mean predicted energy
    per molecule of the step's batch (Hartree) and how far it lies below the batch's
    ``W = 0`` energy (mHa)."""
    p = Path(out) / "loss.csv"
    if not p.exists():
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    rows = [line.split(",") for line in p.read_text().splitlines()[1:] if line.strip()]
    return (np.asarray([int(r[0]) for r in rows]), np.asarray([float(r[1]) for r in rows]),
            np.asarray([float(r[2]) for r in rows]))


def learning_curve(out, path=None) -> Path:
    """Write the learning curve of run ``out``: per step, how far the training loss lies
    below the W = 0 energy of the same batch (mHa; the energy the network has learned
    to remove), and at every evaluation the held-out energy error of the model and of
    the W = 0 (MINAO + K steps) baseline (mHa, log scale)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    path = Path(path) if path else out / "learning_curve.png"
    steps, _, below = read_loss(out)
    rows = read_metrics(out)
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    if len(steps):
        ax_l.plot(steps, below, lw=1)
    ax_l.set(xlabel="step", ylabel="E(W = 0) - loss (mHa per molecule)", title="Training: energy below W = 0")
    if rows:
        s = [r["step"] for r in rows]
        ax_e.semilogy(s, [max(r["energy_error_mha"], 1e-6) for r in rows], marker="o", label="model")
        ax_e.semilogy(s, [max(r["minao_energy_error_mha"], 1e-6) for r in rows], ls="--",
                      label="W = 0 (MINAO + same SCF steps)")
        ax_e.legend(fontsize="small")
    ax_e.set(xlabel="step", ylabel="|E_pred - E_SCF| (mHa), held-out mean", title="Held-out energy error")
    for ax in (ax_l, ax_e):
        ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
