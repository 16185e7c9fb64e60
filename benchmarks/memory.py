"""Memory of a long process: many different small molecules, one batch after another.

Runs ``--n`` different molecules from RDKit's bundled NCI set (1 to ``--max-heavy``
heavy atoms, C, N, O, F, one conformer each, in the set's order: sizes mixed) through ``mess.run_batch`` in batches of ``--batch``, with
one engine for the whole process (its compiled programs are bounded: least recently
used first out, and fewer when the process nears the kernel's memory-map limit).
After each batch it records the resident memory (``/proc/self/statm``), the number of
memory mappings, and the engine's program count, and writes them to
``benchmarks/results/memory-*.json``; the notes in ``benchmarks/results/README.md``
summarise a run. Memory must level off, not grow with the number of molecules.

Usage:
    python benchmarks/memory.py --n 500 --batch 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maps() -> int:
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--basis", default="sto-3g")
    p.add_argument("--xc", default="hf")
    p.add_argument("--max-heavy", type=int, default=11, help="largest heavy-atom count (the set has 268 "
                   "molecules of 1-8 heavy atoms and about 770 of 1-11)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import mess
    from mess.dataset import builtin_smiles, embed

    smiles = [s for _, s in builtin_smiles(1, args.max_heavy)][:args.n]
    if len(smiles) < args.n:
        raise SystemExit(f"only {len(smiles)} molecules of 1-{args.max_heavy} heavy atoms in the built-in set; "
                         f"lower --n or raise --max-heavy")
    mols = [embed(s, 1)[0] for s in smiles]
    engine = mess.Engine()
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    t0 = time.perf_counter()
    for start in range(0, len(mols), args.batch):
        part = mols[start:start + args.batch]
        mess.run_batch(part, args.basis, args.xc, engine=engine)
        row = {"molecules": start + len(part), "rss_bytes": rss_bytes(), "maps": maps(),
               "programs": len(engine._programs), "built": engine.built, "signatures": len(engine.signatures),
               "elapsed_s": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)
        # rewritten after every batch: a run stopped early keeps what it measured
        path.write_text(json.dumps({"benchmark": "memory", "basis": args.basis, "xc": args.xc,
                                    "batch": args.batch, "max_heavy": args.max_heavy,
                                    "rows": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
