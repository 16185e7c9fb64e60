"""Conformers per second at QM1B's setting: mess.run_batch against a PySCF loop.

QM1B (NeurIPS 2023): B3LYP with VWN5 (``b3lyp5``), STO-3G, PySCF grid level 0, 20
fixed DIIS cycles, molecules of 9-11 heavy atoms (C, N, O, F + H). This script takes
different molecules of 9 heavy atoms from RDKit's bundled NCI set (one ETKDGv3
conformer each, seed 43) and, in one process on one machine:

* mess, cold: ``mess.run_batch`` on a first set of molecules (host preparation, bucket
  planning, compilation of every program, and the run);
* mess, warm: ``mess.run_batch`` on a second set of *other* molecules, which reuse the
  compiled buckets where they fit; the seconds JAX spends tracing and compiling are
  measured in each pass from its monitoring events and reported apart;
* mess, steady: the second set once more, every program compiled (the rate of a long
  dataset run);
* PySCF: ``dft.RKS`` one conformer after another on (a subset of) the second set, with
  the same settings (fixed mode: 20 cycles, no early stop; converged mode: PySCF's
  defaults);

for both modes (``fixed``: 20 cycles; ``converged``: conv_tol 1e-9). It reports
conformers/s, the ratio mess/PySCF, the energy agreement on the shared conformers, the
number of buckets and compiled programs, peak memory, and versions, as a table and as
JSON in ``benchmarks/results``. On a GPU, ``--batch-sizes`` sweeps the batch size.

Usage:
    python benchmarks/throughput.py                          # 2-core CPU defaults
    python benchmarks/throughput.py --n 256 --batch-sizes 32 64 128 256 --pyscf-n 16   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def versions() -> dict:
    import jax
    import jaxlib
    import numpy
    import pyscf

    import mess

    dev = jax.devices()[0]
    found = {"mess": mess.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
             "pyscf": pyscf.__version__, "pyscf_threads": pyscf.lib.num_threads(), "numpy": numpy.__version__, "python": platform.python_version(),
             "machine": platform.machine(), "cpus": os.cpu_count(), "device": f"{dev.platform}:{dev.device_kind}"}
    if dev.platform == "gpu":
        found.update(nvidia_versions())
    return found


def nvidia_versions() -> dict:
    """The NVIDIA driver and the CUDA version it supports, read from ``nvidia-smi``
    (empty where it is missing)."""
    import re
    import subprocess

    try:
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    driver = re.search(r"Driver Version:\s*([\d.]+)", head)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", head)
    return {"nvidia_driver": driver and driver.group(1), "cuda_driver_api": cuda and cuda.group(1)}


def write_report(out: str | Path, prefix: str, report: dict, text: str, stamp: str | None = None) -> Path:
    """Write ``report`` as ``OUT/PREFIX-STAMP.json`` and ``text`` beside it as ``.txt``
    (``STAMP`` default: now, as YYYYmmdd-HHMMSS; pass one to rewrite the same files);
    returns the JSON path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{prefix}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    stem.with_suffix(".txt").write_text(text + "\n")
    return stem.with_suffix(".json")


def molecules(n: int, heavy: int, offset: int = 0):
    from mess.dataset import builtin_smiles, embed

    smiles = [s for _, s in builtin_smiles(heavy, heavy)]
    if offset + n > len(smiles):
        raise SystemExit(f"only {len(smiles)} molecules with {heavy} heavy atoms in the built-in set")
    return [embed(s, 1, seed=43)[0] for s in smiles[offset:offset + n]]


def pyscf_energy(m, fixed_cycles: int | None) -> tuple[float, float, bool, int]:
    from pyscf import dft

    mol = m.to_pyscf("sto-3g")
    mf = dft.RKS(mol, xc="b3lyp5")
    mf.grids.level = 0
    mf.verbose = 0
    if fixed_cycles is not None:
        mf.max_cycle = fixed_cycles
        mf.conv_tol = 0.0  # never stop early: exactly fixed_cycles cycles
        mf.conv_check = False
    t = time.perf_counter()
    e = mf.kernel()
    return float(e), time.perf_counter() - t, bool(mf.converged), int(getattr(mf, "cycles", -1))


def run_mode(mode: str, cold, warm, pyscf_mols, batch_size, engine_factory, precision: str = "float64") -> dict:
    import mess
    from mess.timing import CompileClock

    fixed = 20 if mode == "fixed" else None
    engine = engine_factory()
    kw = dict(basis="sto-3g", xc="b3lyp5", grid_level=0, fixed_cycles=fixed, batch_size=batch_size, engine=engine,
              precision=precision)
    with CompileClock() as clock:
        t = time.perf_counter()
        mess.run_batch(cold, **kw)
        t_cold = time.perf_counter() - t
    compile_cold = clock.seconds
    built_cold = engine.built
    with CompileClock() as clock:
        t = time.perf_counter()
        res = mess.run_batch(warm, **kw)
        t_warm = time.perf_counter() - t
    compile_warm = clock.seconds
    # steady state: the same molecules once more, every program compiled
    t = time.perf_counter()
    mess.run_batch(warm, **kw)
    t_steady = time.perf_counter() - t
    rate = len(warm) / t_warm
    out = {"mode": mode, "precision": precision, "batch_size": batch_size, "cold_molecules": len(cold), "cold_s": t_cold,
           "warm_molecules": len(warm), "warm_s": t_warm, "mess_per_s": rate,
           "mess_per_s_excluding_compile": len(warm) / max(t_warm - compile_warm, 1e-9),
           "steady_s": t_steady, "mess_per_s_steady": len(warm) / t_steady,
           "compile_s": compile_cold, "compile_s_warm_pass": compile_warm, "buckets": len(engine.signatures),
           "programs_compiled": engine.built, "programs_compiled_in_warm_pass": engine.built - built_cold,
           "mess_converged": sum(bool(r.converged) for r in res),
           "iterations_mean": float(sum(int(r.iterations) for r in res) / len(res))}
    if pyscf_mols:
        times, diffs, conv, cycles = [], [], 0, []  # PySCF on the warm set's first conformers
        for m, r in zip(pyscf_mols, res):
            e, dt, ok, nc = pyscf_energy(m, fixed)
            times.append(dt)
            cycles.append(nc)
            diffs.append(abs(e - float(r.energy)))
            conv += ok
        out.update({"pyscf_molecules": len(times), "pyscf_s": sum(times), "pyscf_per_s": len(times) / sum(times),
                    "ratio": (len(warm) / t_steady) / (len(times) / sum(times)),
                    "ratio_warm": rate / (len(times) / sum(times)), "max_abs_energy_diff": max(diffs),
                    "pyscf_converged": conv, "pyscf_cycles_mean": sum(cycles) / len(cycles)})
    if fixed is not None:
        stds = [float(r.energy_std_last5) for r in res]
        out["std_last5_max"] = max(stds)
        out["std_below_0.01eV"] = sum(s < 0.01 / 27.211386245988 for s in stds)
    return out



def report_of(args, rows: list[dict]) -> dict:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"benchmark": "throughput", "setting": "b3lyp5/sto-3g grid 0", "heavy_atoms": args.heavy,
            "versions": versions(), "peak_rss_bytes": peak, "rows": rows,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def table(args, rows: list[dict]) -> str:
    v = versions()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines = [f"throughput at QM1B's setting (b3lyp5/STO-3G, grid 0), {args.heavy} heavy atoms; "
             f"{v['device']}, {v['cpus']} CPUs",
             f"{'mode':10s} {'prec':7s} {'batch':>5s} {'steady/s':>8s} {'warm/s':>7s} {'PySCF/s':>8s} {'ratio':>6s} "
             f"{'compile s':>9s} {'+warm':>6s} {'buckets':>7s} {'cycles':>6s} {'PySCF cyc':>9s} {'|dE| max':>9s}"]
    for r in rows:
        ratio = r["mess_per_s_steady"] / r["pyscf_per_s"] if "pyscf_per_s" in r else float("nan")
        lines.append(f"{r['mode']:10s} {r.get('precision', 'float64'):7s} {str(r['batch_size'] or 'auto'):>5s} {r['mess_per_s_steady']:8.2f} "
                     f"{r['mess_per_s']:7.2f} {r.get('pyscf_per_s', float('nan')):8.2f} {ratio:6.2f} "
                     f"{r['compile_s']:9.1f} {r['compile_s_warm_pass']:6.1f} {r['buckets']:7d} "
                     f"{r['iterations_mean']:6.1f} {r.get('pyscf_cycles_mean', float('nan')):9.1f} "
                     f"{r.get('max_abs_energy_diff', float('nan')):9.1e}")
    lines.append("steady/s: conformers/s with every program compiled; warm/s: other molecules' first pass, "
                 "compiling included (compile s: cold pass; +warm: compiling in the warm pass); "
                 "ratio: steady mess / PySCF")
    lines.append(f"peak memory {peak / 2**30:.2f} GiB (host)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="molecules per set (cold set and warm set each)")
    p.add_argument("--heavy", type=int, default=9, help="heavy atoms per molecule (default 9)")
    p.add_argument("--pyscf-n", type=int, default=6, help="conformers PySCF computes (from the warm set)")
    p.add_argument("--modes", nargs="+", default=["fixed", "converged"], choices=["fixed", "converged"])
    p.add_argument("--precisions", nargs="+", default=["float64"], choices=["float64", "mixed"],
                   help="engine precisions (default float64; mixed: float32 ERIs)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[None], help="batch sizes (default: automatic)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON/text results")
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import mess

    cold = molecules(args.n, args.heavy)
    warm = molecules(args.n, args.heavy, offset=args.n)
    pyscf_mols = warm[:args.pyscf_n]
    kind = "gpu" if jax.devices()[0].platform == "gpu" else "cpu"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for mode in args.modes:
        for b in args.batch_sizes:
            for prec in args.precisions:
                rows.append(run_mode(mode, cold, warm, pyscf_mols, b, mess.Engine, prec))
                print(json.dumps(rows[-1]), flush=True)
                # rewritten after every row: an interrupted sweep keeps what it measured
                write_report(args.out, f"throughput-{kind}", report_of(args, rows), table(args, rows), stamp)
    print(table(args, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
