"""Command-line interface: ``mess energy [FILE.xyz ...] [--basis B] [--xc X] ...``,
``mess optimize FILE``, ``mess check FILE`` (mess against PySCF),
``mess generate [SOURCE] --out DIR ...`` (a dataset), ``mess train [CONFIG] --out DIR``
(energy-based training) and ``mess dataset stats|plot DIR``.

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


def _version() -> str:
    from mess.version import package_version

    return package_version()


def _example_path() -> str:
    return str(resources.files("mess") / "data" / EXAMPLE)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``mess: error: ...`` on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"mess: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mess", description="Differentiable quantum chemistry in JAX.")
    p.add_argument("--version", action="version", version=f"mess {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    e = sub.add_parser("energy", help="SCF energy and properties of a molecule (Hartree, Debye)")
    e.add_argument("files", nargs="*", metavar="FILE",
                   help="xyz files in Angstrom (several, multi-frame, a directory of .xyz, or - for stdin; "
                        "several molecules run as one batch; default: built-in water example)")
    e.add_argument("--basis", default="sto-3g", help="basis set name known to PySCF (default sto-3g)")
    e.add_argument("--xc", default="hf", help="'hf' or a functional, e.g. b3lyp, pbe, lda,vwn (default hf)")
    e.add_argument("--cart", action="store_true", help="Cartesian instead of spherical d/f functions")
    e.add_argument("--charge", type=int, default=None, help="total charge (default: xyz comment or 0)")
    e.add_argument("--spin", type=int, default=None, help="unpaired electrons 2S (default: xyz comment or lowest)")
    e.add_argument("--grid-level", type=int, default=3, help="DFT grid level 0-9 (default 3, PySCF's)")
    e.add_argument("--conv-tol", type=float, default=1e-9, help="SCF energy convergence, Hartree (default 1e-9)")
    e.add_argument("--max-cycle", type=int, default=50, help="maximum SCF cycles (default 50)")
    e.add_argument("--gradient", action="store_true", help="also compute nuclear gradient dE/dR (Hartree/Bohr)")
    e.add_argument("--density-fit", action="store_true",
                   help="J and K by density fitting (as PySCF's density_fit(); memory N^2 N_aux)")
    e.add_argument("--auxbasis", default=None,
                   help="auxiliary basis for --density-fit (default: PySCF's JK-fitting set for the basis)")
    e.add_argument("--precision", choices=["float64", "mixed"], default="float64",
                   help="float64 throughout (default), or mixed: float32 ERIs (docs: performance, error budget)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    e.add_argument("--plot", default=None, metavar="FILE.png",
                   help="draw the SCF convergence (energy change, orbital gradient per cycle)")
    e.add_argument("--estimate", action="store_true",
                   help="print each molecule's size and memory estimate and stop (nothing is computed)")
    e.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="refuse molecules estimated to need more than this, GiB (default: the machine's memory)")
    e.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    _verbosity(e)

    o = sub.add_parser("optimize", help="geometry optimisation (BFGS on analytic forces); writes xyz files")
    o.add_argument("file", help="xyz file in Angstrom (- for stdin)")
    o.add_argument("--basis", default="sto-3g", help="basis set (default sto-3g)")
    o.add_argument("--xc", default="hf", help="'hf' or a functional (default hf)")
    o.add_argument("--charge", type=int, default=None, help="total charge (default: xyz comment or 0)")
    o.add_argument("--spin", type=int, default=None, help="unpaired electrons 2S (default: xyz comment or lowest)")
    o.add_argument("--grid-level", type=int, default=3, help="DFT grid level 0-9 (default 3)")
    o.add_argument("--conv-tol", type=float, default=1e-10, help="SCF energy convergence, Hartree (default 1e-10)")
    o.add_argument("--max-cycle", type=int, default=50, help="maximum SCF cycles per step (default 50)")
    o.add_argument("--fmax", type=float, default=4.5e-4,
                   help="largest gradient component at convergence, Hartree/Bohr (default 4.5e-4); the RMS "
                   "gradient must be below 2/3 of it (Gaussian's criteria)")
    o.add_argument("--max-steps", type=int, default=100, help="most optimisation steps (default 100)")
    o.add_argument("--out", default=None, help="final geometry, xyz (default: FILE-opt.xyz)")
    o.add_argument("--trajectory", default=None, help="every step, multi-frame xyz (default: FILE-traj.xyz)")
    o.add_argument("--quiet", action="store_true", help="no line per step")
    o.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    _verbosity(o, quiet=False)

    c = sub.add_parser("check", help="run mess and PySCF on one molecule and compare (exit 1 if they disagree)")
    c.add_argument("file", help="xyz file in Angstrom (- for stdin)")
    c.add_argument("--basis", default="sto-3g", help="basis set (default sto-3g)")
    c.add_argument("--xc", default="hf", help="'hf' or a functional (default hf)")
    c.add_argument("--charge", type=int, default=None, help="total charge (default: xyz comment or 0)")
    c.add_argument("--spin", type=int, default=None, help="unpaired electrons 2S (default: xyz comment or lowest)")
    c.add_argument("--grid-level", type=int, default=3, help="DFT grid level 0-9 (default 3)")
    c.add_argument("--conv-tol", type=float, default=1e-10, help="SCF convergence of both, Hartree (default 1e-10)")
    c.add_argument("--no-forces", action="store_true", help="do not compare forces")
    c.add_argument("--pyscf-basis", default=None, help="give PySCF another basis (to see a disagreement)")
    c.add_argument("--pyscf-xc", default=None, help="give PySCF another functional (to see a disagreement)")
    c.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    _verbosity(c)

    g = sub.add_parser("generate", help="dataset: SMILES -> RDKit conformers -> batched DFT -> Parquet shards")
    g.add_argument("source", nargs="?", default=None,
                   help="SMILES file (.smi, .txt, .csv) or a built-in set nci-MIN-MAX (heavy atoms; default: nci-9-11)")
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
    g.add_argument("--conv-tol-grad", type=float, default=None,
                   help="SCF orbital-gradient convergence, Hartree (default 1e-6)")
    g.add_argument("--forces", action="store_true", help="also store forces (Hartree/Bohr)")
    g.add_argument("--mmff", action="store_true", help="relax conformers with MMFF94 before the DFT")
    g.add_argument("--prune-rms", type=float, default=None, help="drop conformers within this RMSD, Angstrom")
    g.add_argument("--schema", choices=["native", "qm1b"], default=None, help="columns (default native)")
    g.add_argument("--precision", choices=["float64", "mixed"], default=None,
                   help="float64 throughout (default), or mixed: float32 ERIs (recorded in the metadata)")
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
    _verbosity(g, quiet=False)

    t = sub.add_parser("train", help="train a network with the DFT energy as the loss (writes OUT/metrics.jsonl, "
                       "checkpoints, learning_curve.png)")
    t.add_argument("config", nargs="?", default=None, help="TOML file of options (see docs/training.md); "
                   "command-line options override it")
    t.add_argument("--preset", choices=["demo"], default=None, help="built-in settings: 'demo' (a tiny model, "
                   "four small molecules, minutes on a CPU)")
    t.add_argument("--task", choices=["energy-loss", "supervised"], default=None, help="default energy-loss")
    t.add_argument("--data", default=None, help="dataset directory (mess generate output) for --task supervised")
    t.add_argument("--out", required=True, help="run directory (metrics, checkpoints, plots)")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides the config)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    _verbosity(t, quiet=False)

    x = sub.add_parser("xyz", help="an xyz file (Angstrom) of one RDKit ETKDGv3 conformer of a SMILES string")
    x.add_argument("smiles", help="SMILES, e.g. CCO (hydrogens are added)")
    x.add_argument("--seed", type=int, default=43, help="embedding seed (default 43)")
    x.add_argument("-o", "--output", default=None, help="file to write (default: standard output)")

    d = sub.add_parser("dataset", help="inspect a generated dataset")
    dsub = d.add_subparsers(dest="action", required=True, metavar="{stats,plot}")
    st = dsub.add_parser("stats", help="counts and column summaries")
    st.add_argument("dir")
    pl = dsub.add_parser("plot", help="histograms of energy per heavy atom, gap, AO count, SCF cycles (PNG)")
    pl.add_argument("dir")
    pl.add_argument("-o", "--output", required=True, help="PNG file to write")
    return p


def _verbosity(parser, quiet: bool = True) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="progress on stderr: sizes, compilation, timings (default when stderr is a terminal)")
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _logging(args) -> None:
    """Progress messages of the ``mess`` logger on stderr: with ``--verbose``, or by
    default when stderr is a terminal (never with ``--quiet``)."""
    import logging

    if getattr(args, "quiet", False):
        return
    if args.verbose or sys.stderr.isatty():
        logger = logging.getLogger("mess")
        if not any(getattr(h, "_mess_cli", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("mess: %(message)s"))
            handler._mess_cli = True
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _fail(msg: str) -> int:
    print(f"mess: error: {msg}", file=sys.stderr)
    return 2


def _inputs(files: list[str]) -> list[tuple[str, str]]:
    """``(label, xyz text)`` per input: ``-`` is stdin, a directory its ``*.xyz``
    files in name order. Raises ``InputError`` naming a missing or unreadable input."""
    from pathlib import Path

    from mess.errors import InputError

    out = []
    for f in files:
        if f == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(f)
        if path.is_dir():
            found = sorted(path.glob("*.xyz"))
            if not found:
                raise InputError(f"no .xyz files in directory {f}")
            out += [(str(q), _read(q)) for q in found]
        elif path.exists():
            out.append((f, _read(path)))
        else:
            raise InputError(f"xyz file not found: {f}")
    return out


def _read(path) -> str:
    from mess.errors import InputError

    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # UTF-8 byte-order mark
    if b"\x00" in data[:4096]:
        raise InputError(f"{path} is a binary or UTF-16 file, not xyz text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in (".pdb", ".sdf", ".mol", ".mol2", ".cif"):
        raise InputError(f"{path}: mess energy reads xyz files (Angstrom), not {suffix[1:].upper()}")
    return text


def _molecules(args):
    """``[(label, Molecule)]`` of the command's inputs (frames of a multi-frame file
    labelled ``file#k``)."""
    import mess

    inputs = _inputs(args.files) if args.files else [(f"<built-in {EXAMPLE}>", open(_example_path()).read())]
    out = []
    for label, text in inputs:
        try:
            frames = mess.Molecule.from_xyz_frames(text, charge=args.charge, spin=args.spin)
        except ValueError as exc:
            raise type(exc)(f"{label}: {exc}") from None
        out += [(label if len(frames) == 1 else f"{label}#{k + 1}", m) for k, m in enumerate(frames)]
    return out


def _check_energy_options(args) -> str | None:
    if not args.conv_tol > 0:
        return f"--conv-tol must be positive, got {args.conv_tol}"
    if args.max_cycle < 1:
        return f"--max-cycle must be at least 1, got {args.max_cycle}"
    if not 0 <= args.grid_level <= 9:
        return f"--grid-level: grid level must be an integer from 0 to 9, got {args.grid_level}"
    plot = getattr(args, "plot", None)
    if plot:
        folder = os.path.dirname(os.path.abspath(plot))
        if not plot.lower().endswith(".png"):
            return f"--plot writes a PNG file: give a name ending in .png, got {plot}"
        if not os.path.isdir(folder):
            return f"--plot: directory {folder} does not exist"
    return None


def energy_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    import mess

    bad = _check_energy_options(args)
    if bad is None and args.max_memory is not None and not args.max_memory > 0:
        bad = f"--max-memory must be a positive number of GiB, got {args.max_memory}"
    if bad is None and args.auxbasis is not None and not args.density_fit:
        bad = "--auxbasis needs --density-fit"
    if bad:
        return _fail(bad)
    _logging(args)
    t0 = time.perf_counter()
    opts = dict(cart=args.cart, grid_level=args.grid_level, conv_tol=args.conv_tol, max_cycle=args.max_cycle)
    if args.precision != "float64":
        opts["precision"] = args.precision
    if args.density_fit:
        opts.update(density_fit=True, auxbasis=args.auxbasis)
    limit = None if args.max_memory is None else int(args.max_memory * 2**30)
    try:
        mols = _molecules(args)
        if args.estimate:
            return _print_estimates(mols, args, limit)
        engine = mess.Engine(memory_limit=limit, store=_program_store(args))
        if len(mols) == 1:
            mol = mols[0][1]
            if args.gradient:
                res, _ = mess.energy_and_gradient(mol, args.basis, args.xc, engine=engine, **opts)
            else:
                res = mess.run(mol, args.basis, args.xc, engine=engine, **opts)
            results = [res]
        else:
            results = mess.run_batch([m for _, m in mols], args.basis, args.xc, gradient=args.gradient,
                                     progress=not args.json and not args.quiet, engine=engine, **opts)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    wall = time.perf_counter() - t0
    if args.plot:
        from mess.plots import scf_convergence

        try:
            scf_convergence(results, [label for label, _ in mols], args.plot)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot write the plot {args.plot}: {str(exc).splitlines()[0]}")
    for (label, mol), res in zip(mols, results):
        if args.json:
            print(json.dumps(_record(label, mol, res, args, wall / len(mols))))
            continue
        if len(mols) > 1:
            print(f"== {label}")
        print(res.summary())
        if res.gradient is not None:
            print("  gradient (Hartree/Bohr):")
            for sym, g in zip(mol.symbols, res.gradient):
                print(f"    {sym:<2s} {g[0]:14.8f} {g[1]:14.8f} {g[2]:14.8f}")
    if not args.json:
        print(f"  wall time: {wall:.2f} s")
    return 0 if all(bool(r.converged) for r in results) else 1


def _print_estimates(mols, args, limit) -> int:
    """``--estimate``: one line per molecule, its sizes and whether it fits."""
    import mess
    from mess.engine.resources import USABLE_FRACTION, gib, machine_memory

    where = "the --max-memory limit"
    if limit is None:
        limit, where = machine_memory()
    for label, mol in mols:
        fit = dict(density_fit=True, auxbasis=args.auxbasis) if args.density_fit else {}
        est = mess.size_estimate(mol, args.basis, args.xc, args.cart, args.grid_level, **fit)
        need = est.device_bytes + est.host_bytes
        verdict = "fits" if need <= USABLE_FRACTION * limit else "too large"
        print(f"{label}: {args.xc}/{args.basis}: {est.describe()}; {verdict} ({where} is {gib(limit)})")
    return 0


def _record(label: str, mol, res, args, wall: float) -> dict:
    """One JSON object per input: :meth:`mess.Result.to_dict` (geometry, charge, spin,
    method, results, units, version) with the file, the SCF settings and the time."""
    out = {"file": label, **res.to_dict()}
    out["settings"] = {"cart": args.cart, "grid_level": args.grid_level, "conv_tol": args.conv_tol,
                       "max_cycle": args.max_cycle}
    out.update(wall_time=wall, wall_time_unit="s")
    return out


def optimize_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    from pathlib import Path

    import mess

    args.cart = False
    bad = _check_energy_options(args)
    if bad is None and not args.fmax > 0:
        bad = f"--fmax must be positive, got {args.fmax}"
    if bad is None and args.max_steps < 1:
        bad = f"--max-steps must be at least 1, got {args.max_steps}"
    if bad:
        return _fail(bad)
    _logging(args)
    stem = "stdin" if args.file == "-" else str(Path(args.file).with_suffix(""))
    out, traj = args.out or f"{stem}-opt.xyz", args.trajectory or f"{stem}-traj.xyz"
    try:
        args.files = [args.file]
        mols = _molecules(args)
        if len(mols) != 1:
            return _fail(f"{args.file} holds {len(mols)} frames; mess optimize takes one molecule")
        mol = mols[0][1]
        final, info = mess.optimize(mol, args.basis, args.xc, gtol=2 / 3 * args.fmax * (3 * mol.natom) ** 0.5,
                                    fmax=args.fmax, max_steps=args.max_steps, verbose=not args.quiet,
                                    grid_level=args.grid_level, conv_tol=args.conv_tol, max_cycle=args.max_cycle)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    frames = [mess.Molecule(mol.numbers, x, mol.charge, mol.spin).to_xyz(
        f"step={k} energy={e:.10f} Hartree charge={mol.charge} spin={mol.spin}")
        for k, (x, e) in enumerate(zip(info["positions"], info["trajectory"]))]
    Path(traj).write_text("".join(frames))
    Path(out).write_text(final.to_xyz(f"energy={info['energy']:.10f} Hartree charge={mol.charge} spin={mol.spin} "
                                      f"{args.xc}/{args.basis}"))
    state = "converged" if info["converged"] else "NOT CONVERGED"
    print(f"{state} in {info['steps']} steps: E = {info['energy']:.10f} Hartree, max |dE/dR| = "
          f"{info['max_grad']:.2e} Hartree/Bohr; wrote {out} and {traj}")
    return 0 if info["converged"] else 1


def check_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    from mess.check import compare

    args.max_cycle = 50
    bad = _check_energy_options(args)
    if bad:
        return _fail(bad)
    _logging(args)
    try:
        args.files = [args.file]
        mols = _molecules(args)
        if len(mols) != 1:
            return _fail(f"{args.file} holds {len(mols)} frames; mess check takes one molecule")
        result = compare(mols[0][1], args.basis, args.xc, args.grid_level, args.conv_tol, not args.no_forces,
                         args.pyscf_basis, args.pyscf_xc)
    except (ValueError, OSError, UnicodeDecodeError, KeyError, RuntimeError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    print(f"{mols[0][0]}: {args.xc}/{args.basis}" + (f", grid level {args.grid_level}" if args.xc != "hf" else ""))
    print(result.table())
    return 0 if result.agree else 1


def _program_store(args):
    """The :class:`~mess.engine.stored.ProgramStore` beside the compilation cache (None
    with ``--no-cache``): a cached run then skips tracing the stage programs too."""
    if args.no_cache:
        return None
    from mess.config import default_cache_dir
    from mess.engine.stored import ProgramStore

    return ProgramStore(default_cache_dir() / "programs")


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
             "conv_tol_grad": args.conv_tol_grad, "schema": args.schema, "limit": args.limit, "shard_size": args.shard_size, "prune_rms": args.prune_rms,
             "precision": args.precision}
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

    if args.verbose:  # not by default: log lines would break the progress bar
        _logging(args)
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


def train_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_cache(args)
    from mess.errors import InputError
    from mess.train import config as cfg

    if args.verbose:
        _logging(args)
    try:
        if args.config and args.preset:
            raise InputError("give a config file or --preset, not both")
        given = {"task": args.task, "data": args.data, "steps": args.steps}
        given = {k: v for k, v in given.items() if v is not None}
        c = cfg.load(args.config, given) if args.config else cfg.preset(args.preset or "demo", given)
        from mess.train.loop import train

        m = train(c, args.out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    except KeyboardInterrupt:
        print(f"mess: interrupted; the run is checkpointed, continue it with: mess train ... --out {args.out} "
              "--resume", file=sys.stderr)
        return 130
    print(summary_text(m, args.out) if c.task == "energy-loss" else supervised_text(m, args.out))
    return 0


def supervised_text(m: dict, out: str) -> str:
    """The closing lines of ``mess train --task supervised``."""
    return "\n".join([f"validation MAE of {m['target']}: {m['val_mae_mha']:.3f} mHa on {m['val_rows']} rows "
                      f"(reference only: {m['val_mae_reference_only_mha']:.3f} mHa), {m['train_rows']} training rows",
                      f"wrote {out}/metrics.jsonl, {out}/scaling.json, {out}/mae_vs_rows.png"])


def summary_text(m: dict, out: str) -> str:
    """The closing lines of ``mess train``: held-out errors against the W = 0 baseline."""
    ratio = m.get("improvement_over_minao")
    lines = [f"held-out geometries: {m['geometries']}",
             f"energy error: model {m['energy_error_mha']:.3f} mHa, W = 0 baseline {m['minao_energy_error_mha']:.3f}"
             f" mHa" + (f" ({ratio:.1f}x closer)" if ratio is not None else "")]
    if m.get("reference_unconverged"):
        lines.append(f"warning: {m['reference_unconverged']} held-out reference SCF(s) did not converge")
    if m.get("scf_iterations_model") is not None:
        lines.append(f"SCF iterations: from the model {m['scf_iterations_model']:.1f}, from MINAO "
                     f"{m['scf_iterations_minao']:.1f} ({m['scf_iterations_saved_percent']:.0f}% saved)")
    lines.append(f"wrote {out}/metrics.jsonl, {out}/evaluation.json, {out}/learning_curve.png")
    return "\n".join(lines)


def xyz_command(args) -> int:
    import mess

    try:
        mol = mess.Molecule.from_smiles(args.smiles, seed=args.seed)
    except ValueError as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid SMILES")
    text = mol.to_xyz(f"{args.smiles} charge={mol.charge} spin={mol.spin} (RDKit ETKDGv3, seed {args.seed})")
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w") as f:
            f.write(text)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ``mess`` command. The ``mess`` logger's level and handlers (which
    ``--verbose`` changes) are restored on return, so calling ``main`` from Python
    leaves the caller's logging as it was."""
    import logging

    logger = logging.getLogger("mess")
    level, handlers = logger.level, list(logger.handlers)
    try:
        return _dispatch(_parser().parse_args(argv))
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def _dispatch(args) -> int:
    if args.command == "energy":
        return energy_command(args)
    if args.command == "check":
        return check_command(args)
    if args.command == "optimize":
        return optimize_command(args)
    if args.command == "generate":
        return generate_command(args)
    if args.command == "dataset":
        return dataset_command(args)
    if args.command == "xyz":
        return xyz_command(args)
    if args.command == "train":
        return train_command(args)
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
