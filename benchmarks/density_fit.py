"""Density fitting: mess against PySCF's ``density_fit()``, side by side, in one process.

For each case (molecule from SMILES, one ETKDGv3 conformer with seed 43; basis;
functional; auxiliary basis, default PySCF's JK-fitting set) it runs

* PySCF: ``RHF``/``RKS(...).density_fit(auxbasis=...)``, conv_tol 1e-10;
* mess, cold: ``mess.run(..., density_fit=True)`` in a fresh engine (host
  preparation, compilation, the run);
* mess, warm: the same call again (every program compiled);

and reports the energy difference (Hartree), both times, the ratio, the sizes (AOs,
auxiliary functions) and the process's peak resident memory after each case, with
versions, as a table and as JSON in ``benchmarks/results``. The default list holds a
drug-like molecule beyond 300 AOs (propranolol, 40 atoms, def2-SVP: 371 AOs, 1809
auxiliary functions), where the stored four-centre blocks need about 15 GiB.

Usage:
    python benchmarks/density_fit.py                        # water and propranolol, HF
    python benchmarks/density_fit.py --cases water:def2-svp:b3lyp
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from throughput import versions, write_report

HERE = Path(__file__).resolve().parent
SMILES = {"water": "O", "uracil": "O=C1C=CNC(=O)N1", "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
          "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12"}
DEFAULT_CASES = ["water:def2-svp:hf", "propranolol:def2-svp:hf"]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def pyscf_df(mol, xc: str, aux: str) -> tuple[float, float, int]:
    from pyscf import dft, scf

    t0 = time.perf_counter()
    mf = scf.RHF(mol) if xc == "hf" else dft.RKS(mol, xc=xc)
    if xc != "hf":
        mf.grids.level = 3
        mf.small_rho_cutoff = 0
    mf = mf.density_fit(auxbasis=aux)
    mf.conv_tol = 1e-10
    mf.verbose = 0
    e = mf.kernel()
    return float(e), time.perf_counter() - t0, int(mf.with_df.auxmol.nao_nr())


def run_case(case: str) -> dict:
    import mess
    from mess.dataset import embed
    from mess.engine.signature import default_auxbasis

    name, basis, xc = case.split(":")
    m = embed(SMILES[name], 1, seed=43)[0]
    aux = default_auxbasis(basis)
    e_ref, t_ref, naux = pyscf_df(m.to_pyscf(basis), xc, aux)
    engine = mess.Engine()
    opts = dict(density_fit=True, auxbasis=aux, conv_tol=1e-10, engine=engine)
    t0 = time.perf_counter()
    cold = mess.run(m, basis, xc, **opts)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = mess.run(m, basis, xc, **opts)
    t_warm = time.perf_counter() - t0
    return {"case": case, "atoms": m.natom, "nao": int(cold.nao), "naux": naux, "auxbasis": aux,
            "energy_pyscf": e_ref, "energy_mess": float(warm.energy), "diff": float(warm.energy) - e_ref,
            "converged": bool(warm.converged) and bool(cold.converged), "pyscf_s": t_ref, "mess_cold_s": t_cold,
            "mess_warm_s": t_warm, "warm_ratio": t_warm / t_ref, "peak_rss_gib": peak_rss_gib()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="NAME:BASIS:XC, NAME from " + ", ".join(SMILES))
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    for case in args.cases:
        parts = case.split(":")
        if len(parts) != 3 or parts[0] not in SMILES:
            print(f"error: case {case!r} is not NAME:BASIS:XC with NAME one of {', '.join(SMILES)}", file=sys.stderr)
            return 2

    import jax

    jax.config.update("jax_enable_x64", True)
    rows = []
    header = f"{'case':28s} {'atoms':>5s} {'AOs':>5s} {'aux':>5s} {'E diff (Ha)':>12s} " \
             f"{'PySCF s':>8s} {'cold s':>8s} {'warm s':>8s} {'warm/PySCF':>10s} {'peak GiB':>8s}"
    lines = [header]
    print(header, flush=True)
    for case in args.cases:
        r = run_case(case)
        rows.append(r)
        line = (f"{r['case']:28s} {r['atoms']:5d} {r['nao']:5d} {r['naux']:5d} {r['diff']:12.2e} "
                f"{r['pyscf_s']:8.1f} {r['mess_cold_s']:8.1f} {r['mess_warm_s']:8.1f} {r['warm_ratio']:10.2f} "
                f"{r['peak_rss_gib']:8.1f}")
        lines.append(line)
        print(line, flush=True)
    path = write_report(args.out, "density-fit", {"benchmark": "density_fit", "versions": versions(), "rows": rows},
                        "\n".join(lines + ["", json.dumps(versions())]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
