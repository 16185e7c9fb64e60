"""Command-line interface: ``mess energy [FILE.xyz] [--basis B] [--xc X] ...``,
``mess generate [SOURCE] --out DIR ...`` (a dataset) and ``mess dataset stats|plot DIR``.

Errors in the input (file, basis, functional, charge/spin) are reported as one line
on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources

EXAMPLE = "water.xyz"


def _example_path() -> str:
    return str(resources.files("mess") / "data" / EXAMPLE)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``mess: error: ...`` on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"mess: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mess", description="Differentiable quantum chemistry in JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    e = sub.add_parser("energy", help="SCF energy and properties of a molecule (Hartree, Debye)")
    e.add_argument("file", nargs="?", help="xyz file in Angstrom (default: built-in water example)")
    e.add_argument("--basis", default="sto-3g", help="basis set name known to PySCF (default sto-3g)")
    e.add_argument("--xc", default="hf", help="'hf' or a functional, e.g. b3lyp, pbe, lda,vwn (default hf)")
    e.add_argument("--cart", action="store_true", help="Cartesian instead of spherical d/f functions")
    e.add_argument("--charge", type=int, default=None, help="total charge (default: xyz comment or 0)")
    e.add_argument("--spin", type=int, default=None, help="unpaired electrons 2S (default: xyz comment or lowest)")
    e.add_argument("--grid-level", type=int, default=3, help="DFT grid level 0-9 (default 3, PySCF's)")
    e.add_argument("--conv-tol", type=float, default=1e-9, help="SCF energy convergence, Hartree (default 1e-9)")
    e.add_argument("--max-cycle", type=int, default=50, help="maximum SCF cycles (default 50)")
    e.add_argument("--gradient", action="store_true", help="also compute nuclear gradient dE/dR (Hartree/Bohr)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    e.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")

    g = sub.add_parser("generate", help="dataset: SMILES -> RDKit conformers -> batched DFT -> Parquet shards")
    g.add_argument("source", nargs="?", default=None,
                   help="SMILES file (.smi, .txt, .csv) or the built-in set's name (default: nci-9-11)")
    g.add_argument("--out", required=True, help="output directory (re-running with it resumes)")
    g.add_argument("--preset", choices=["qm1b"], help="QM1B's settings: b3lyp5/STO-3G, grid 0, 20 fixed cycles, "
                   "seed 43 for every molecule")
    g.add_argument("--conformers", type=int, default=None, help="ETKDGv3 conformers per molecule (default 1)")
    g.add_argument("--seed", type=int, default=None, help="run seed (default 43)")
    g.add_argument("--basis", default=None, help="basis set (default sto-3g)")
    g.add_argument("--xc", default=None, help="'hf' or a functional (default b3lyp5)")
    g.add_argument("--grid-level", type=int, default=None, help="DFT grid level 0-9 (default 0, QM1B's)")
    g.add_argument("--fixed-cycles", type=int, default=None, help="run exactly K SCF cycles (default: converge)")
    g.add_argument("--conv-tol", type=float, default=None, help="SCF convergence, Hartree (default 1e-9)")
    g.add_argument("--forces", action="store_true", help="also store forces (Hartree/Bohr)")
    g.add_argument("--mmff", action="store_true", help="relax conformers with MMFF94 before the DFT")
    g.add_argument("--prune-rms", type=float, default=None, help="drop conformers within this RMSD, Angstrom")
    g.add_argument("--schema", choices=["native", "qm1b"], default=None, help="columns (default native)")
    g.add_argument("--limit", type=int, default=None, help="first M source molecules only")
    g.add_argument("--batch-size", type=int, default=None, help="conformers per batch (default: fits memory)")
    g.add_argument("--shard-size", type=int, default=None, help="molecules per shard (default 32)")
    g.add_argument("--validate-fraction", type=float, default=0.0,
                   help="recompute this fraction of conformers with PySCF and report the differences")
    g.add_argument("--workers", type=int, default=1, help="embedding worker processes (0: inline; default 1)")
    g.add_argument("--ray", action="store_true", help="run the DFT of the shards on Ray actors (a local Ray "
                   "unless --ray-address is given); needs pip install 'mess[ray]'")
    g.add_argument("--ray-address", default=None, help="address of a running Ray cluster (implies --ray)")
    g.add_argument("--ray-workers", type=int, default=None,
                   help="Ray actors, each with its own engine (default: one per CPU, or per GPU)")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")

    d = sub.add_parser("dataset", help="inspect a generated dataset")
    dsub = d.add_subparsers(dest="action", required=True, metavar="{stats,plot}")
    st = dsub.add_parser("stats", help="counts and column summaries")
    st.add_argument("dir")
    pl = dsub.add_parser("plot", help="histograms of energy per heavy atom, gap, AO count, SCF cycles (PNG)")
    pl.add_argument("dir")
    pl.add_argument("-o", "--output", required=True, help="PNG file to write")
    return p


def _fail(msg: str) -> int:
    print(f"mess: error: {msg}", file=sys.stderr)
    return 2


def energy_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    import numpy as np

    import mess

    path = args.file or _example_path()
    if args.file and not os.path.exists(args.file):
        return _fail(f"xyz file not found: {args.file}")
    t0 = time.perf_counter()
    try:
        mol = mess.Molecule.from_xyz(path if args.file else open(path).read(), charge=args.charge, spin=args.spin)
        res = mess.run(mol, basis=args.basis, xc=args.xc, cart=args.cart, grid_level=args.grid_level,
                       conv_tol=args.conv_tol, max_cycle=args.max_cycle)
        grad = None
        if args.gradient:
            grad = mess.gradient(mol, basis=args.basis, xc=args.xc, cart=args.cart, grid_level=args.grid_level,
                                 conv_tol=args.conv_tol, max_cycle=args.max_cycle)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    wall = time.perf_counter() - t0
    if args.json:
        out = {
            "file": args.file or f"<built-in {EXAMPLE}>",
            "method": res.method,
            "basis": args.basis,
            "xc": args.xc,
            "energy": float(res.energy),
            "energy_unit": "Hartree",
            "converged": bool(res.converged),
            "iterations": int(res.iterations),
            "homo": float(res.homo),
            "lumo": float(res.lumo),
            "orbital_energy_unit": "Hartree",
            "dipole": [float(x) for x in np.asarray(res.dipole)],
            "dipole_unit": "Debye",
            "mulliken": [float(x) for x in np.asarray(res.mulliken)],
            "components": {k: float(v) for k, v in res.components.items()},
            "nao": res.nao,
            "ngrid": res.ngrid,
            "wall_time": wall,
            "wall_time_unit": "s",
        }
        if grad is not None:
            out["gradient"] = np.asarray(grad).tolist()
            out["gradient_unit"] = "Hartree/Bohr"
        print(json.dumps(out))
    else:
        print(res.summary())
        if grad is not None:
            print("  gradient (Hartree/Bohr):")
            for sym, g in zip(mol.symbols, np.asarray(grad)):
                print(f"    {sym:<2s} {g[0]:14.8f} {g[1]:14.8f} {g[2]:14.8f}")
        print(f"  wall time: {wall:.2f} s")
    return 0 if bool(res.converged) else 1


def _enable_cache(args) -> None:
    if not args.no_cache:
        from mess.config import enable_compilation_cache

        try:
            enable_compilation_cache()
        except OSError:
            pass


def generate_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    from mess.dataset import QM1B_PRESET, Settings, generate

    base = dict(QM1B_PRESET) if args.preset == "qm1b" else {}
    given = {"conformers": args.conformers, "seed": args.seed, "basis": args.basis, "xc": args.xc,
             "grid_level": args.grid_level, "fixed_cycles": args.fixed_cycles, "conv_tol": args.conv_tol,
             "schema": args.schema, "limit": args.limit, "shard_size": args.shard_size, "prune_rms": args.prune_rms}
    base.update({k: v for k, v in given.items() if v is not None})
    if args.forces:
        base["forces"] = True
    if args.mmff:
        base["mmff"] = True
    if args.batch_size is not None and args.batch_size < 1:
        return _fail(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        return _fail(f"--workers must be >= 0, got {args.workers}")
    from mess.dataset.sources import BUILTIN

    settings = Settings(source=args.source or BUILTIN, **base)
    try:
        summary = generate(settings, args.out, batch_size=args.batch_size, progress=not args.no_progress,
                           workers=args.workers, validate_fraction=args.validate_fraction, ray=args.ray,
                           ray_address=args.ray_address, ray_workers=args.ray_workers,
                           ray_gpus_per_worker=args.ray_gpus_per_worker)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    except RuntimeError as exc:  # a failed Ray worker: the finished shards are kept
        print(f"mess: error: {exc}; completed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mess: interrupted; completed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    print(summary.text())
    return 0


def dataset_command(args) -> int:
    from mess.dataset.plots import plot, stats_text

    try:
        if args.action == "stats":
            print(stats_text(args.dir))
        else:
            plot(args.dir, args.output)
            print(f"wrote {args.output}")
    except (ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "energy":
        return energy_command(args)
    if args.command == "generate":
        return generate_command(args)
    if args.command == "dataset":
        return dataset_command(args)
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
