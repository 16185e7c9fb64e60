"""Summaries of a dataset directory: ``mess dataset stats`` (text) and
``mess dataset plot`` (histograms, matplotlib)."""

from __future__ import annotations

import numpy as np


def _columns(path) -> dict:
    from mess.dataset.reader import open as open_dataset

    t = open_dataset(path).to_table()
    qm1b = "z" in t.column_names
    z = t.column("z" if qm1b else "atomic_numbers").to_pylist()
    heavy = np.asarray([sum(1 for a in zz if a > 1) for zz in z])
    out = {"qm1b": qm1b, "rows": t.num_rows, "heavy": heavy, "names": t.column_names}
    if qm1b:
        out.update(energy=t.column("energy").to_numpy(), gap=t.column("y").to_numpy(),
                   n_ao=t.column("N").to_numpy(), unit="eV")
    else:
        out.update(energy=t.column("energy").to_numpy(), gap=t.column("gap").to_numpy(),
                   n_ao=t.column("n_ao").to_numpy(), iterations=t.column("iterations").to_numpy(),
                   converged=np.asarray(t.column("converged").to_pylist(), bool), unit="Hartree",
                   mol_id=t.column("mol_id").to_pylist())
    return out


def stats_text(path) -> str:
    """Counts and column summaries (min / mean / max) of a dataset."""
    c = _columns(path)
    lines = [f"dataset {path}: {c['rows']} rows ({'QM1B' if c['qm1b'] else 'native'} schema)"]
    if not c["qm1b"]:
        lines.append(f"  molecules {len(set(c['mol_id']))}, converged {int(c['converged'].sum())} "
                     f"({c['converged'].mean():.1%})")
    for name, unit in (("energy", c["unit"]), ("gap", c["unit"]), ("n_ao", ""), ("iterations", ""),
                       ("heavy", "")):
        v = c.get(name)
        if v is None or not len(v):
            continue
        v = np.asarray(v, dtype=float)
        lines.append(f"  {name:<11s} min {v.min():14.6f}  mean {v.mean():14.6f}  max {v.max():14.6f} {unit}")
    return "\n".join(lines)


def plot(path, out: str) -> None:
    """Histograms of energy per heavy atom, HOMO-LUMO gap, AO count and SCF cycles,
    written as a PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = _columns(path)
    unit = c["unit"]
    panels = [("energy per heavy atom", c["energy"] / np.maximum(c["heavy"], 1), f"{unit} / heavy atom"),
              ("HOMO-LUMO gap", c["gap"], unit), ("atomic orbitals", c["n_ao"], "count")]
    if "iterations" in c:
        panels.append(("SCF cycles", c["iterations"], "cycles"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), constrained_layout=True)
    for ax, (title, values, xlabel) in zip(np.atleast_1d(axes), panels):
        ax.hist(np.asarray(values, float), bins=min(40, max(5, int(np.sqrt(len(values))) + 1)), color="#3a6ea5")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("conformers")
    fig.suptitle(f"{path}: {c['rows']} conformers")
    fig.savefig(out, dpi=120)
    plt.close(fig)
