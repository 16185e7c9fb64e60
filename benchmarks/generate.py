"""The dataset generator's rate against run_batch and a PySCF loop (QM1B's setting).

In one process: the first ``--n`` molecules of the built-in set (9-11 heavy atoms),
``--conformers`` each, with ``--preset qm1b``'s settings (b3lyp5/STO-3G, grid 0, 20
fixed cycles, seed 43):

1. ``mess.run_batch`` on the embedded conformers twice with one engine (the first pass
   compiles; the second is the run_batch rate);
2. ``mess.dataset.generate`` over the same molecules with the same engine, in shards
   of ``--shard-size`` molecules (so that embedding overlaps the DFT), into a temporary
   directory twice: the first pass compiles the shards' own buckets, the second is the
   generator's rate (embedding in a worker process, DFT, Parquet writing), which should
   be within 10% of run_batch's;
3. PySCF ``dft.RKS`` one conformer after another on ``--pyscf-n`` of them.

Reports conformers/s of each, the generator/run_batch ratio, the compile time (JAX
events), and where the generator's time goes, as text and JSON in
``benchmarks/results``.

Usage:
    python benchmarks/generate.py --n 8 --conformers 2 --pyscf-n 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8, help="molecules (default 8)")
    p.add_argument("--conformers", type=int, default=2, help="conformers per molecule (default 2)")
    p.add_argument("--pyscf-n", type=int, default=4, help="conformers PySCF computes (default 4)")
    p.add_argument("--shard-size", type=int, default=None, help="molecules per shard (default n/4)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import mess
    from mess.dataset import QM1B_PRESET, Settings, conformer_seed, embed, generate, load_source
    from mess.timing import CompileClock
    from throughput import pyscf_energy, versions

    entries = load_source()[:args.n]
    preset = dict(QM1B_PRESET)
    t = time.perf_counter()
    mols = [m for e in entries for m in embed(e.smiles, args.conformers,
                                               conformer_seed(preset["seed"], e.mol_id, True))]
    t_embed = time.perf_counter() - t
    kw = dict(basis="sto-3g", xc="b3lyp5", grid_level=0, fixed_cycles=20)
    engine = mess.Engine()
    with CompileClock() as clock:
        t = time.perf_counter()
        mess.run_batch(mols, engine=engine, **kw)
        t_cold = time.perf_counter() - t
    t = time.perf_counter()
    mess.run_batch(mols, engine=engine, **kw)
    t_batch = time.perf_counter() - t
    shard = args.shard_size or max(1, args.n // 4)
    settings = Settings(source="nci-9-11", conformers=args.conformers, limit=args.n, shard_size=shard, **preset)
    with tempfile.TemporaryDirectory() as tmp:
        with CompileClock() as first_clock:
            t = time.perf_counter()
            generate(settings, Path(tmp) / "first", progress=False, workers=1, engine=engine, entries=entries)
            t_first = time.perf_counter() - t
        with CompileClock() as gen_clock:
            t = time.perf_counter()
            summary = generate(settings, Path(tmp) / "ds", progress=False, workers=1, engine=engine,
                               entries=entries)
            t_gen = time.perf_counter() - t
    times = [pyscf_energy(m, 20)[1] for m in mols[:args.pyscf_n]]
    row = {"molecules": args.n, "conformers": len(mols), "rows": summary.rows, "embed_s": t_embed,
           "run_batch_cold_s": t_cold, "compile_s": clock.seconds, "run_batch_s": t_batch,
           "run_batch_per_s": len(mols) / t_batch, "generate_s": t_gen, "generate_dft_s": summary.dft_seconds,
           "generate_compile_s": gen_clock.seconds, "shard_size": shard, "generate_first_s": t_first,
           "generate_first_compile_s": first_clock.seconds, "generate_per_s": summary.rows / t_gen,
           "generate_over_run_batch": (summary.rows / t_gen) / (len(mols) / t_batch),
           "pyscf_per_s": len(times) / sum(times)}
    report = {"benchmark": "generate", "setting": "qm1b preset", "versions": versions(), "row": row,
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    text = "\n".join([
        f"mess generate --preset qm1b: {args.n} molecules x {args.conformers} conformers; "
        f"{report['versions']['device']}, {report['versions']['cpus']} CPUs",
        f"  run_batch  {row['run_batch_per_s']:.3f} conformers/s (compiled; first pass {t_cold:.1f} s, "
        f"{clock.seconds:.1f} s compiling)",
        f"  generate   {row['generate_per_s']:.3f} conformers/s ({row['generate_over_run_batch']:.2f} x run_batch; "
        f"DFT {summary.dft_seconds:.1f} of {t_gen:.1f} s, compiling {gen_clock.seconds:.1f} s; shards of "
        f"{shard} molecules; first pass {t_first:.1f} s, {first_clock.seconds:.1f} s compiling)",
        f"  embedding  {t_embed:.1f} s for {len(mols)} conformers (in the generator: a worker process)",
        f"  PySCF      {row['pyscf_per_s']:.3f} conformers/s (20 cycles, {len(times)} conformers)"])
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"generate-{'gpu' if jax.devices()[0].platform == 'gpu' else 'cpu'}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
