"""The error budget of ``precision="mixed"`` (float32 ERIs) against float64.

For each case (a molecule from ``datasets/xyz``, a basis, a functional, with or
without forces) it runs ``mess.run_batch`` on that molecule once with
``precision="float64"`` and once with ``precision="mixed"`` (converged, conv_tol
1e-10 and conv_tol_grad 1e-7, so that the SCF's own error is far below the one
measured) and records the differences: total energy and HOMO/LUMO energies
(Hartree), dipole (Debye, largest component), forces (Hartree/Bohr, largest
component). Then, at QM1B's setting (b3lyp5/STO-3G, grid 0, 20 fixed cycles), a
batch of ``--qm1b-n`` different 9-heavy-atom molecules from the built-in set in both
precisions: the same differences, and the steady time of the batch in each (the
speed the precision buys, every program compiled).

The table (per case, and the largest error of each kind over all of them) goes to
``benchmarks/results/precision-*.{json,txt}``; ``docs/performance.md`` states the
budget from it.

Usage:
    python benchmarks/precision.py                       # default cases, 2-core CPU: ~20 min
    python benchmarks/precision.py --cases water:6-31g:b3lyp:forces --qm1b-n 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from throughput import molecules, versions, write_report

HERE = Path(__file__).resolve().parent
XYZ = HERE.parent / "datasets" / "xyz"
DEFAULT_CASES = ["water:6-31g:hf:forces", "water:6-31g:b3lyp:forces", "ammonia:6-31g:b3lyp:forces",
                 "h2s:6-31g:b3lyp:forces", "ethanol:6-31g:b3lyp:forces", "water:def2-svp:b3lyp:forces",
                 "ch3cl:6-31g:b3lyp", "glycine:6-31g:b3lyp", "glycine:def2-svp:hf", "benzene:6-31g:b3lyp",
                 "caffeine:6-31g:b3lyp"]
KINDS = ("energy", "homo", "lumo", "dipole", "forces")


def parse_case(case: str) -> tuple[str, str, str, bool]:
    parts = case.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "forces"):
        raise SystemExit(f"bad case {case!r}: use MOLECULE:BASIS:XC or MOLECULE:BASIS:XC:forces")
    if not (XYZ / f"{parts[0]}.xyz").exists():
        raise SystemExit(f"bad case {case!r}: no {parts[0]}.xyz in {XYZ}")
    return parts[0], parts[1], parts[2], len(parts) == 4


def differences(ref, mixed) -> dict:
    """Largest absolute differences of one result pair (Ha, Ha, Ha, Debye, Ha/Bohr)."""
    import numpy as np

    out = {"energy": abs(float(mixed.energy) - float(ref.energy)),
           "homo": abs(float(mixed.homo) - float(ref.homo)), "lumo": abs(float(mixed.lumo) - float(ref.lumo)),
           "dipole": float(np.abs(np.asarray(mixed.dipole) - np.asarray(ref.dipole)).max())}
    if ref.gradient is not None:
        out["forces"] = float(np.abs(np.asarray(mixed.gradient) - np.asarray(ref.gradient)).max())
    return out


def run_case(case: str, engine) -> dict:
    import mess

    name, basis, xc, forces = parse_case(case)
    mol = mess.Molecule.from_xyz((XYZ / f"{name}.xyz").read_text())
    res, secs = {}, {}
    for prec in ("float64", "mixed"):
        t = time.perf_counter()
        res[prec] = mess.run_batch([mol], basis, xc, conv_tol=1e-10, conv_tol_grad=1e-7, gradient=forces,
                                   precision=prec, engine=engine)[0]
        secs[prec] = time.perf_counter() - t
    row = {"case": case, "molecule": name, "basis": basis, "xc": xc, "natom": mol.natom,
           "converged": bool(res["float64"].converged) and bool(res["mixed"].converged),
           "seconds_float64_cold": secs["float64"], "seconds_mixed_cold": secs["mixed"]}
    row.update(differences(res["float64"], res["mixed"]))
    return row


def run_qm1b(n: int, engine) -> dict:
    import mess

    mols = molecules(n, 9)
    kw = dict(basis="sto-3g", xc="b3lyp5", grid_level=0, fixed_cycles=20, engine=engine)
    res, steady = {}, {}
    for prec in ("float64", "mixed"):
        res[prec] = mess.run_batch(mols, precision=prec, **kw)  # compiles
        t = time.perf_counter()
        res[prec] = mess.run_batch(mols, precision=prec, **kw)
        steady[prec] = time.perf_counter() - t
    diffs = [differences(a, b) for a, b in zip(res["float64"], res["mixed"])]
    row = {"case": f"qm1b batch of {n} (b3lyp5/sto-3g grid 0, 20 cycles)", "molecules": n,
           "steady_s_float64": steady["float64"], "steady_s_mixed": steady["mixed"],
           "speedup": steady["float64"] / steady["mixed"]}
    row.update({k: max(d[k] for d in diffs) for k in diffs[0]})
    return row


def table(rows: list[dict], qm1b: dict | None) -> str:
    lines = ["precision='mixed' (float32 ERIs) against float64: largest absolute differences",
             f"{'case':34s} {'E (Ha)':>9s} {'HOMO (Ha)':>9s} {'LUMO (Ha)':>9s} {'dip (D)':>9s} {'F (Ha/B)':>9s}"]

    def fmt(r, k):
        return f"{r[k]:9.1e}" if k in r else f"{'-':>9s}"

    for r in rows + ([qm1b] if qm1b else []):
        lines.append(f"{r['case'][:34]:34s} " + " ".join(fmt(r, k) for k in KINDS))
    every = rows + ([qm1b] if qm1b else [])
    worst = {k: max((r[k] for r in every if k in r), default=float("nan")) for k in KINDS}
    lines.append(f"{'largest':34s} " + " ".join(f"{worst[k]:9.1e}" for k in KINDS))
    if qm1b:
        lines.append(f"QM1B batch steady time: float64 {qm1b['steady_s_float64']:.2f} s, mixed "
                     f"{qm1b['steady_s_mixed']:.2f} s ({qm1b['speedup']:.2f}x)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="MOLECULE:BASIS:XC[:forces]")
    p.add_argument("--qm1b-n", type=int, default=8, help="molecules in the QM1B-setting batch (0: none)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    for c in args.cases:
        parse_case(c)

    import jax

    jax.config.update("jax_enable_x64", True)
    import mess

    engine = mess.Engine()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows, qm1b = [], None

    def save():
        worst = {k: max((r[k] for r in rows + ([qm1b] if qm1b else []) if k in r), default=None) for k in KINDS}
        report = {"benchmark": "precision", "units": {"energy": "Ha", "homo": "Ha", "lumo": "Ha", "dipole": "Debye",
                                                      "forces": "Ha/Bohr"},
                  "versions": versions(), "rows": rows, "qm1b": qm1b, "largest": worst,
                  "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_report(args.out, "precision", report, table(rows, qm1b), stamp)

    for c in args.cases:
        rows.append(run_case(c, engine))
        print(json.dumps(rows[-1]), flush=True)
        save()
    if args.qm1b_n:
        qm1b = run_qm1b(args.qm1b_n, engine)
        print(json.dumps(qm1b), flush=True)
        save()
    print(table(rows, qm1b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
