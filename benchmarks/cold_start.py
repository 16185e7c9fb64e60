"""Cold start: how long a new user waits for the first answer, mess's CLI against the
equivalent PySCF script, each in a fresh process, in the same run.

Cases (the cold-start items of the performance issue):

* ``water``: ``mess energy`` (the built-in water example, HF/STO-3G) against a PySCF
  script that reads the same xyz file and runs ``scf.RHF``;
* ``ethanol-def2svp``: ``mess energy ethanol.xyz --basis def2-svp --xc b3lyp`` against
  ``dft.RKS(xc="b3lyp")`` on the same file (grid level 3 and conv_tol 1e-9 in both).

For each case, wall-clock seconds of whole processes (interpreter start, imports,
compilation, the calculation, printing):

* mess with an empty compilation cache (a fresh ``MESS_CACHE_DIR``);
* mess again ``--repeats`` times with that cache now warm (the best is reported);
* PySCF ``--repeats`` times (the best is reported);
* ``python -c "import jax, mess"`` alone, the floor that imports set.

Energies of both codes are read from their output and compared. Results go to
``benchmarks/results/cold-<device>-<stamp>.{json,txt}`` with versions.

Usage:
    python benchmarks/cold_start.py                     # both cases, 2 repeats
    python benchmarks/cold_start.py --cases water --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

PYSCF_SCRIPT = """
import sys
from pyscf import dft, gto, scf
mol = gto.M(atom=sys.argv[1], basis=sys.argv[2], unit="Angstrom", verbose=0)
xc = sys.argv[3]
mf = scf.RHF(mol) if xc == "hf" else dft.RKS(mol, xc=xc)
mf.conv_tol = 1e-9
print(repr(float(mf.kernel())))
"""


def _cases(workdir: Path) -> dict:
    """``{name: (mess CLI arguments, xyz path, basis, xc)}``."""
    import molecules as M

    from mess.cli import _example_path

    ethanol = workdir / "ethanol.xyz"
    ethanol.write_text(M.ETHANOL)
    return {"water": ([], Path(_example_path()), "sto-3g", "hf"),
            "ethanol-def2svp": ([str(ethanol), "--basis", "def2-svp", "--xc", "b3lyp"], ethanol, "def2-svp", "b3lyp")}


def _mess_command() -> list[str]:
    exe = Path(sys.executable).parent / "mess"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mess")
    if found is None:
        raise SystemExit("the mess command is not installed in this environment (pip install -e .)")
    return [found]


def _timed(cmd: list[str], env: dict) -> tuple[float, str]:
    """Wall seconds of one process and its standard output; a failure stops the run
    with the process's own message."""
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall, done.stdout


def versions() -> dict:
    import jax
    import jaxlib
    import pyscf

    import mess

    dev = jax.devices()[0]
    return {"mess": mess.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "pyscf": pyscf.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "device": f"{dev.platform}:{dev.device_kind}"}


def bench_case(name, args, xyz, basis, xc, repeats, workdir: Path) -> dict:
    cache = workdir / f"cache-{name}"
    env = dict(os.environ, MESS_CACHE_DIR=str(cache))
    mess = _mess_command() + ["energy", *args, "--json"]
    empty, out = _timed(mess, env)
    energy = json.loads(out)["energy"]
    warm = min(_timed(mess, env)[0] for _ in range(repeats))
    pyscf_runs = [_timed([sys.executable, "-c", PYSCF_SCRIPT, str(xyz), basis, xc], env) for _ in range(repeats)]
    pyscf_s = min(t for t, _ in pyscf_runs)
    e_ref = float(pyscf_runs[0][1].strip().splitlines()[-1])
    return {"case": name, "basis": basis, "xc": xc, "mess_empty_cache_s": empty, "mess_warm_cache_s": warm,
            "pyscf_s": pyscf_s, "empty_over_pyscf": empty / pyscf_s, "warm_over_pyscf": warm / pyscf_s,
            "energy_Ha": energy, "energy_diff_Ha": energy - e_ref,
            "cache_MiB": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20}


def import_floor(repeats: int) -> float:
    return min(_timed([sys.executable, "-c", "import jax, mess"], dict(os.environ))[0] for _ in range(repeats))


def table(rows: list[dict], floor: float, info: dict) -> str:
    lines = [f"cold start, fresh processes; {info['device']}, {info['cpus']} CPUs; mess {info['mess']}, "
             f"jax {info['jax']}, PySCF {info['pyscf']}",
             f"{'case':16} {'empty cache':>11} {'warm cache':>10} {'PySCF':>7} {'empty/PySCF':>11} "
             f"{'warm/PySCF':>10} {'dE (Ha)':>9}"]
    for r in rows:
        lines.append(f"{r['case']:16} {r['mess_empty_cache_s']:10.1f}s {r['mess_warm_cache_s']:9.1f}s "
                     f"{r['pyscf_s']:6.1f}s {r['empty_over_pyscf']:11.2f} {r['warm_over_pyscf']:10.2f} "
                     f"{r['energy_diff_Ha']:9.1e}")
    lines.append(f"import jax, mess alone: {floor:.2f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["water", "ethanol-def2svp"], choices=["water", "ethanol-def2svp"])
    p.add_argument("--repeats", type=int, default=2, help="warm-cache and PySCF runs per case (best reported)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON/text results")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    info = versions()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mess-cold-") as tmp:
        cases = _cases(Path(tmp))
        for name in args.cases:
            rows.append(bench_case(name, *cases[name], args.repeats, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    floor = import_floor(args.repeats)
    text = table(rows, floor, info)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = out / f"cold-{info['device'].split(':')[0]}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps({"versions": info, "import_s": floor, "rows": rows}, indent=1))
    base.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {base}.json and .txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
