"""The supervised baseline's learning curve: validation MAE against training rows.

The QM1B scaling curve in miniature, made end to end with mess alone:

1. ``mess.dataset.generate`` writes a dataset (default: the built-in small molecules
   ``nci-1-6``, 76 neutral C/N/O/F molecules of 1-6 heavy atoms, ``--conformers``
   ETKDGv3 conformers each, b3lyp5/STO-3G at grid level 0, converged SCF; the QM1B
   setting) into ``--data`` (re-running resumes it);
2. ``mess.train.supervised.train_supervised`` trains one SchNet per nested fraction
   of the training rows, the same number of steps each, and scores it on the same
   held-out rows (``validation_fraction`` of the rows, chosen by the seed; conformers
   of a molecule can fall on both sides, so this measures how well the model
   interpolates between geometries and molecules it has seen).

Writes ``supervised-scaling-<time>.{json,txt,png}`` to ``--out``: per subset the
training rows, the validation MAE of the energy with the per-element reference
energies subtracted (mHa), the MAE of the reference energies alone, and the seconds
it took; plus the dataset's generation time and the versions.

Usage:
    python benchmarks/supervised_scaling.py                      # about 26 min for the dataset and 15 min of training on 2 cores
    python benchmarks/supervised_scaling.py --conformers 4 --steps 300   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="nci-1-6", help="molecules: a SMILES file or nci-MIN-MAX (default nci-1-6)")
    p.add_argument("--conformers", type=int, default=30, help="conformers per molecule (default 30)")
    p.add_argument("--xc", default="b3lyp5", help="functional or 'hf' (default b3lyp5)")
    p.add_argument("--data", default="scaling-data", help="dataset directory (default ./scaling-data; resumed)")
    p.add_argument("--run", default="scaling-run", help="training output directory (default ./scaling-run)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps per subset (default 2000)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per step (default 32)")
    p.add_argument("--fractions", type=float, nargs="+", default=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0],
                   help="nested fractions of the training rows (default 1/32 ... 1)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON/text/PNG results")
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from mess.dataset import Settings, generate
    from mess.train.config import from_mapping
    from mess.train.supervised import train_supervised
    from throughput import versions

    t = time.perf_counter()
    summary = generate(Settings(source=args.source, conformers=args.conformers, xc=args.xc), args.data,
                       progress=True)
    t_generate = time.perf_counter() - t
    c = from_mapping({"task": "supervised", "data": args.data, "steps": args.steps, "batch_size": args.batch_size,
                      "eval_every": max(1, args.steps // 10), "checkpoint_every": args.steps,
                      "scaling_fractions": sorted(set(args.fractions))})
    run = Path(args.run)
    if run.exists():
        shutil.rmtree(run)  # the training is cheap next to the dataset; always from the start
    t = time.perf_counter()
    train_supervised(c, run, progress=True)
    t_train = time.perf_counter() - t
    results = json.loads((run / "scaling.json").read_text())
    report = {"benchmark": "supervised-scaling", "source": args.source, "conformers": args.conformers,
              "method": f"{args.xc}/sto-3g grid 0", "dataset": str(args.data), "generate_s": t_generate,
              "generate_summary": {k: v for k, v in vars(summary).items() if isinstance(v, (int, float, str))},
              "train_s": t_train, "config": c.to_dict(), "rows": results, "versions": versions(),
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    lines = [f"supervised baseline (SchNet) on {args.source} x {args.conformers} conformers, {args.xc}/STO-3G grid 0; "
             f"{args.steps} steps of {args.batch_size} rows per subset",
             f"{'train rows':>10s} {'val rows':>8s} {'MAE mHa':>9s} {'ref-only mHa':>12s} {'seconds':>8s} "
             f"{'unseen-element val rows':>23s}"]
    for r in results:
        lines.append(f"{r['train_rows']:10d} {r['val_rows']:8d} {r['val_mae_mha']:9.2f} "
                     f"{r['val_mae_reference_only_mha']:12.2f} {r['elapsed_s']:8.1f} "
                     f"{r.get('val_rows_unseen_elements', 0):23d}")
    lines.append(f"dataset: {t_generate:.0f} s (resumed runs count only the new part); training {t_train:.0f} s")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"supervised-scaling-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    stem.with_suffix(".txt").write_text(text + "\n")
    shutil.copyfile(run / "mae_vs_rows.png", stem.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
