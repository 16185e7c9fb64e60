"""Plots of calculations: the SCF convergence of one or more results (``mess energy
--plot``). Matplotlib with the Agg backend (files only, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scf_convergence(results: Sequence, labels: Sequence[str], path: str) -> None:
    """Write a PNG of ``|E_k - E_final|`` (Hartree) and the orbital-gradient norm
    (Hartree) per SCF cycle, log scale, one line per result."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_e, ax_g) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for res, label in zip(results, labels):
        e = np.asarray(res.energy_history, dtype=np.float64)
        g = np.asarray(res.grad_history, dtype=np.float64)
        keep = np.isfinite(e)
        cycles = np.arange(len(e))[keep]
        de = np.abs(e[keep] - float(res.energy))
        ax_e.semilogy(cycles, np.maximum(de, 1e-16), marker="o", ms=3, label=label)
        has_g = np.isfinite(g)
        ax_g.semilogy(np.arange(len(g))[has_g], np.maximum(g[has_g], 1e-16), marker="o", ms=3, label=label)
    ax_e.set(xlabel="SCF cycle", ylabel="|E - E_final| (Hartree)", title="Energy")
    ax_g.set(xlabel="SCF cycle", ylabel="orbital gradient norm (Hartree)", title="Orbital gradient")
    for ax in (ax_e, ax_g):
        ax.grid(True, which="both", alpha=0.3)
    if len(labels) <= 12:
        ax_e.legend(fontsize="small")
    fig.suptitle(f"SCF convergence: {results[0].method}/{results[0].basis} ({results[0].xc})")
    fig.savefig(path, dpi=120)
    plt.close(fig)
