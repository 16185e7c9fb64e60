"""Electron repulsion integrals: mess's JAX kernels against libcint, side by side.

For each case (molecule from ``datasets/xyz``, basis) in one process:

* libcint: ``mol.intor('int2e', aosym='s8')``, the 8-fold unique tensor (best of
  two calls);
* mess, cold: the jitted ERI blocks of every quartet class (compilation + run), for
  the molecule's own signature (no bucket padding), Schwarz threshold 1e-14;
* mess, warm: the same program again (best of two calls);
* a check: Coulomb and exchange matrices from mess's blocks against PySCF's
  ``scf.hf.get_jk`` for a random symmetric density (max abs difference, Hartree).

It reports the times (seconds), the warm ratio mess / libcint, the quartets kept and
the primitive quartets evaluated (padding included) and, with ``--classes N``, the N
slowest quartet classes. Rows go to ``benchmarks/results/eri-*.{json,txt}`` with the
versions.

Usage:
    python benchmarks/eri.py                                   # the three default cases
    python benchmarks/eri.py --cases ethanol:6-31g --classes 10
    python benchmarks/eri.py --split-work 0      # every primitive-count sub-class compiled apart
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from throughput import versions, write_report

HERE = Path(__file__).resolve().parent
XYZ = HERE.parent / "datasets" / "xyz"
DEFAULT_CASES = ["ethanol:6-31g", "uracil:def2-svp", "aspirin:def2-svp"]


def _best(f, n=2):
    best = None
    for _ in range(n):
        t0 = time.perf_counter()
        out = f()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return out, best


def run_case(case: str, nclasses: int, split_work: float | None = None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from pyscf import scf

    from mess.basis.shells import shell_data
    from mess.engine import Method, build, prepare, signature_for
    from mess.integrals.two_electron import class_blocks, eri_blocks, get_jk
    from mess.structure import Molecule

    name, basis = case.split(":")
    molecule = Molecule.from_xyz(XYZ / f"{name}.xyz")
    mol = molecule.to_pyscf(basis)
    _, t_cint = _best(lambda: mol.intor("int2e", aosym="s8"))

    prepared = prepare(molecule, Method(basis, "hf", False))
    sig = signature_for([prepared], rounding=False, split_work=split_work)
    system = build(prepared, sig)
    shape, classes = sig.basis, sig.classes
    groups = jax.tree.map(jnp.asarray, system.shells)
    quartets = jax.tree.map(jnp.asarray, system.quartets)
    positions = jnp.asarray(system.positions)
    blocks_fn = jax.jit(lambda x: eri_blocks(shape, classes, groups, x, quartets))
    t0 = time.perf_counter()
    blocks = jax.block_until_ready(blocks_fn(positions))
    t_cold = time.perf_counter() - t0
    blocks, t_warm = _best(lambda: jax.block_until_ready(blocks_fn(positions)))

    rng = np.random.default_rng(7)
    dm = rng.normal(size=(mol.nao, mol.nao))
    dm = dm + dm.T
    ix = prepared.layout.engine_index(shape)
    dm_engine = jnp.zeros((shape.nao, shape.nao)).at[ix[:, None], ix[None, :]].set(dm)
    j, k = jax.jit(lambda b, d: get_jk(shape, classes, quartets, b, d))(blocks, dm_engine)
    j_ref, k_ref = scf.hf.get_jk(mol, dm)
    jk_error = max(float(np.abs(np.asarray(j)[np.ix_(ix, ix)] - j_ref).max()),
                   float(np.abs(np.asarray(k)[np.ix_(ix, ix)] - k_ref).max()))
    del blocks

    slowest = []
    if nclasses:
        data = jax.jit(lambda x: shell_data(shape, groups, x))(positions)
        for cls, q in zip(classes, quartets):
            f = jax.jit(lambda d, c=cls, q=q: class_blocks(c, shape, d, q))
            jax.block_until_ready(f(data))
            _, dt = _best(lambda: jax.block_until_ready(f(data)), 1)
            slowest.append({"ls": cls.ls, "ks": cls.ks, "nq": cls.nq, "s": dt, "us_per_quartet": 1e6 * dt / cls.nq})
        slowest = sorted(slowest, key=lambda r: -r["s"])[:nclasses]
    return {"case": case, "nao": int(mol.nao), "quartets": int(prepared.population.nquartets),
            "primitive_quartets": int(sum(c.nq * int(np.prod(c.ks)) for c in classes)), "classes": len(classes),
            "split_work": split_work,
            "libcint_s8_s": t_cint, "mess_cold_s": t_cold, "mess_warm_s": t_warm, "warm_ratio": t_warm / t_cint,
            "jk_max_error": jk_error, "slowest_classes": slowest}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="MOLECULE:BASIS, MOLECULE a file in datasets/xyz")
    p.add_argument("--classes", type=int, default=0, help="also time the N slowest quartet classes one by one")
    p.add_argument("--split-work", type=float, default=None,
                   help="work a primitive-count sub-class must save to be compiled apart (default: the engine's, "
                        "tuned for one call per compilation; 0: every sub-class apart, as for programs that run "
                        "many times)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    if args.split_work is not None and args.split_work < 0:
        print("error: --split-work must be >= 0", file=sys.stderr)
        return 2
    for case in args.cases:
        parts = case.split(":")
        if len(parts) != 2 or not (XYZ / f"{parts[0]}.xyz").is_file():
            print(f"error: case {case!r} is not MOLECULE:BASIS with MOLECULE a file in {XYZ}", file=sys.stderr)
            return 2

    import jax

    jax.config.update("jax_enable_x64", True)
    header = (f"split_work {'default' if args.split_work is None else args.split_work}\n"
              f"{'case':20s} {'AOs':>5s} {'quartets':>10s} {'prim. quartets':>14s} {'libcint s':>9s} "
              f"{'cold s':>7s} {'warm s':>7s} {'warm/libcint':>12s} {'J/K error':>9s}")
    lines, rows = [header], []
    print(header, flush=True)
    for case in args.cases:
        r = run_case(case, args.classes, args.split_work)
        rows.append(r)
        line = (f"{r['case']:20s} {r['nao']:5d} {r['quartets']:10d} {r['primitive_quartets']:14d} "
                f"{r['libcint_s8_s']:9.3f} {r['mess_cold_s']:7.1f} {r['mess_warm_s']:7.3f} {r['warm_ratio']:12.2f} "
                f"{r['jk_max_error']:9.1e}")
        lines.append(line)
        print(line, flush=True)
        for c in r["slowest_classes"]:
            sub = f"    {str(c['ls']):14s} K={str(c['ks']):14s} nq={c['nq']:8d} {c['s']:7.3f} s {c['us_per_quartet']:7.2f} us/quartet"
            lines.append(sub)
            print(sub, flush=True)
    info = versions()
    path = write_report(args.out, "eri", {"benchmark": "eri", "versions": info, "rows": rows},
                        "\n".join(lines + ["", json.dumps(info)]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
