"""Time mess side by side with PySCF on the same machine.

For each (molecule, basis, method):
  * mess cold: first ``mess.run`` in this process (host setup + compilation + SCF);
  * mess warm: ``mess.run`` on a slightly displaced geometry of the same molecule
    (compiled programs reused);
  * PySCF: ``scf.RHF``/``dft.RKS`` kernel with the same settings (default grid level 3);
  * optionally the nuclear gradient (``--gradient``), mess vs PySCF analytic gradient.

Reports a table and JSON (seconds; ratios mess/PySCF, < 1 means mess is faster), and
the energy difference to PySCF (Hartree) as a sanity check.

Usage:
    python benchmarks/run.py                       # default set
    python benchmarks/run.py --quick               # water and benzene only
    python benchmarks/run.py --molecules water uracil --basis 6-31g def2-svp --xc b3lyp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _molecules():
    import molecules as M

    return {"water": M.WATER, "benzene": M.BENZENE, "uracil": M.URACIL, "aspirin": M.ASPIRIN,
            "caffeine": M.CAFFEINE, "ethanol": M.ETHANOL, "glycine": M.GLYCINE}


def _pyscf_time(mol, xc, gradient):
    from pyscf import dft, scf

    if xc == "hf":
        mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if mol.spin == 0 else dft.UKS(mol)
        mf.xc = xc
        mf.grids.level = 3
    mf.verbose = 0
    t = time.perf_counter()
    mf.kernel()
    t_energy = time.perf_counter() - t
    t_grad = None
    if gradient:
        t = time.perf_counter()
        g = mf.nuc_grad_method()
        if xc != "hf":
            g.grid_response = True
        g.verbose = 0
        g.kernel()
        t_grad = time.perf_counter() - t
    return mf.e_tot, t_energy, t_grad


def bench_one(name, xyz, basis, xc, gradient):
    import jax.numpy as jnp
    import numpy as np

    import mess

    mol = mess.Molecule.from_xyz(xyz)
    t = time.perf_counter()
    r = mess.run(mol, basis=basis, xc=xc)
    e = float(r.energy)
    cold = time.perf_counter() - t
    displaced = mess.Molecule(mol.numbers, mol.positions + 1e-3 * jnp.asarray(
        np.random.default_rng(0).normal(size=mol.positions.shape)), mol.charge, mol.spin)
    t = time.perf_counter()
    float(mess.run(displaced, basis=basis, xc=xc).energy)
    warm = time.perf_counter() - t
    grad_time = None
    if gradient and hasattr(mess, "gradient"):
        mess.gradient(mol, basis=basis, xc=xc)  # compile
        t = time.perf_counter()
        np.asarray(mess.gradient(displaced, basis=basis, xc=xc))
        grad_time = time.perf_counter() - t
    e_ref, t_ref, t_ref_grad = _pyscf_time(mol.to_pyscf(basis), xc, gradient)
    row = {"molecule": name, "basis": basis, "xc": xc, "nao": r.nao, "ngrid": r.ngrid,
           "iterations": int(r.iterations), "converged": bool(r.converged),
           "mess_cold_s": cold, "mess_warm_s": warm, "pyscf_s": t_ref,
           "ratio_cold": cold / t_ref, "ratio_warm": warm / t_ref, "energy_diff_Ha": e - e_ref}
    if grad_time is not None:
        # a force evaluation is SCF + gradient in both codes (warm for mess)
        row.update({"mess_force_warm_s": grad_time, "pyscf_force_s": t_ref + t_ref_grad,
                    "mess_force_over_energy": grad_time / warm,
                    "pyscf_force_over_energy": (t_ref + t_ref_grad) / t_ref})
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecules", nargs="+", default=["water", "benzene", "uracil", "aspirin"])
    p.add_argument("--basis", nargs="+", default=["sto-3g", "6-31g", "def2-svp"])
    p.add_argument("--xc", nargs="+", default=["hf", "b3lyp"])
    p.add_argument("--quick", action="store_true", help="water and benzene, sto-3g and 6-31g")
    p.add_argument("--gradient", action="store_true", help="also time nuclear gradients")
    p.add_argument("--cache", action="store_true", help="use the persistent compilation cache")
    p.add_argument("--out", default=str(HERE / "results"), help="output folder")
    args = p.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.cache:
        from mess.config import enable_compilation_cache

        enable_compilation_cache()
    if args.quick:
        args.molecules, args.basis = ["water", "benzene"], ["sto-3g", "6-31g"]
    mols = _molecules()
    rows = []
    header = (f"{'molecule':<9} {'basis':<9} {'xc':<6} {'nao':>4} {'cold s':>8} {'warm s':>8} "
              f"{'pyscf s':>8} {'cold/py':>8} {'warm/py':>8} {'dE Ha':>9}"
              + (f" {'force/E':>8} {'py f/E':>8}" if args.gradient else ""))
    print(header, flush=True)
    for name in args.molecules:
        for basis in args.basis:
            for xc in args.xc:
                try:
                    row = bench_one(name, mols[name], basis, xc, args.gradient)
                except Exception as exc:  # keep going; record the failure
                    row = {"molecule": name, "basis": basis, "xc": xc, "error": str(exc).splitlines()[0]}
                    print(f"{name:<9} {basis:<9} {xc:<6} failed: {row['error']}", flush=True)
                    rows.append(row)
                    continue
                rows.append(row)
                print(f"{name:<9} {basis:<9} {xc:<6} {row['nao']:>4} {row['mess_cold_s']:>8.2f} "
                      f"{row['mess_warm_s']:>8.2f} {row['pyscf_s']:>8.2f} {row['ratio_cold']:>8.2f} "
                      f"{row['ratio_warm']:>8.2f} {row['energy_diff_Ha']:>9.1e}"
                      + (f" {row['mess_force_over_energy']:>8.2f} {row['pyscf_force_over_energy']:>8.2f}"
                         if "mess_force_over_energy" in row else ""), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"bench-{jax.default_backend()}-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path.name}")


if __name__ == "__main__":
    main()
