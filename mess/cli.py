"""Command-line interface: ``mess energy [FILE.xyz] [--basis B] [--xc X] ...``.

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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mess", description="Differentiable quantum chemistry in JAX.")
    sub = p.add_subparsers(dest="command", required=True)
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
    return p


def _fail(msg: str) -> int:
    print(f"mess: error: {msg}", file=sys.stderr)
    return 2


def energy_command(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    if not args.no_cache:
        from mess.config import enable_compilation_cache

        try:
            enable_compilation_cache()
        except OSError:
            pass
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "energy":
        return energy_command(args)
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
