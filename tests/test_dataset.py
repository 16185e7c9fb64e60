"""The dataset generator: sources, conformers, rows against PySCF, bad input, resume
after kill -9, the QM1B schema, reading back, stats and plot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyscf import dft

from mess.cli import main
from mess.dataset import Settings, batches, conformer_seed, embed_arrays, generate, load_source
from mess.dataset import open as open_dataset
from mess.dataset.sources import BUILTIN, builtin_smiles
from mess.structure import BOHR

SMALL = "# tiny molecules\nsmiles id\nC methane\nO water\nCO methanol\n[NH4+] ammonium\n[CH3] methyl\n"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _rows(out) -> list[dict]:
    return sorted(open_dataset(out).to_table().to_pylist(), key=lambda r: (r["mol_id"], r["conformer_id"]))


def test_source_formats(tmp_path):
    entries = load_source(_write(tmp_path, "a.smi", SMALL + "\n\nCC methane\n"))
    assert [e.mol_id for e in entries] == ["methane", "water", "methanol", "ammonium", "methyl", "methane"]
    assert entries[-1].problem and "duplicate id" in entries[-1].problem
    csv = load_source(_write(tmp_path, "b.csv", "name,smiles\nx,C\ny,O\nz,\n"))
    assert [(e.mol_id, e.smiles) for e in csv] == [("x", "C"), ("y", "O"), ("z", "")]
    bare = load_source(_write(tmp_path, "c.txt", "C\nO\n"))
    assert [e.mol_id for e in bare] == ["line-1", "line-2"]
    assert len(load_source(BUILTIN)) > 400
    small = load_source("nci-1-3")  # the same filter, another heavy-atom range
    assert small and [e.smiles for e in small] == [s for _, s in builtin_smiles(1, 3)]
    for bad, message in (("nci-5-2", "1 <= MIN <= MAX"), ("nci-200-300", "no molecules with 200-300")):
        with pytest.raises(ValueError, match=message):
            load_source(bad)
    with pytest.raises(ValueError, match="no 'smiles' column"):
        load_source(_write(tmp_path, "d.csv", "id,structure\n1,C\n"))
    (tmp_path / "e.smi").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(ValueError, match="binary"):
        load_source(str(tmp_path / "e.smi"))
    with pytest.raises(ValueError, match="not found"):
        load_source(str(tmp_path / "missing.smi"))


def test_rows_equal_pyscf_and_conformers_equal_rdkit(tmp_path):
    """Default mode (b3lyp5/STO-3G, grid 0, converged): energies, HOMO/LUMO and dipoles
    of the stored positions equal PySCF's; the conformers are RDKit's for the seed."""
    src = _write(tmp_path, "m.smi", SMALL)
    out = tmp_path / "ds"
    s = generate(Settings(source=src, conformers=2, shard_size=2), out, progress=False, workers=0)
    assert s.rows == 10 and not s.failures
    rows = _rows(out)
    assert {r["mol_id"] for r in rows} == {"methane", "water", "methanol", "ammonium", "methyl"}
    for r in rows[::3]:
        numbers, positions, charge, spin = embed_arrays(r["smiles"], 2, conformer_seed(43, r["mol_id"]))
        pos = np.asarray(r["positions"]).reshape(-1, 3)  # Angstrom
        np.testing.assert_allclose(pos, positions[r["conformer_id"]] * BOHR, atol=1e-12, rtol=0)
        assert r["atomic_numbers"] == numbers
        from pyscf import gto

        mol = gto.M(atom=[(z, p) for z, p in zip(numbers, pos)], unit="Angstrom", basis="sto-3g", charge=charge,
                    spin=spin, verbose=0)
        mf = (dft.RKS if spin == 0 else dft.UKS)(mol, xc="b3lyp5")
        mf.grids.level, mf.conv_tol = 0, 1e-11
        mf.kernel()
        mo_e = np.asarray(mf.mo_energy).ravel()
        occ = np.asarray(mf.mo_occ).ravel()
        assert abs(r["energy"] - mf.e_tot) < 1e-7
        assert abs(r["homo"] - mo_e[occ > 0].max()) < 1e-6 and abs(r["lumo"] - mo_e[occ == 0].min()) < 1e-6
        assert np.abs(np.asarray(r["dipole"]) - mf.dip_moment(unit="Debye", verbose=0)).max() < 1e-4
        assert r["converged"] and r["energy_std_last5"] is None and r["n_ao"] == mol.nao
    meta = pq.read_schema(next(out.glob("shard-*.parquet"))).metadata
    assert json.loads(meta[b"units"])["energy"] == "Hartree"
    assert json.loads(meta[b"mess.method"])["xc"] == "b3lyp5"
    assert (out / "README.md").read_text().count("rows (conformers): 10") == 1
    batch = next(batches(out, 4, shuffle=True, seed=1))
    assert batch["positions"].shape[0] == 4 and batch["mask"].sum() == (batch["atomic_numbers"] > 0).sum()


BAD = """smiles id
C1CC unparsable
C1#CC1 unembeddable
[Xe] no-basis
[Og] unknown-element
CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC huge
O water
O water
[OH-] hydroxide
"""


def test_bad_lines_become_error_records(tmp_path, capsys):
    """Each kind of bad source line gives its error record, and the rest completes:
    charged molecules and radicals are rows."""
    src = _write(tmp_path, "bad.smi", BAD + "\n")
    out = tmp_path / "ds"
    code = main(["generate", src, "--out", str(out), "--xc", "hf", "--no-progress", "--workers", "0",
                 "--no-cache"])
    assert code == 0
    errors = {e["mol_id"] + ":" + e["stage"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert errors == {"unparsable:smiles", "unembeddable:embed", "no-basis:basis", "unknown-element:molecule",
                      "huge:size", "water:source"}
    assert {r["mol_id"] for r in _rows(out)} == {"water", "hydroxide"}
    assert "failures" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["generate", "--out", "X", "nonexistent.smi"], "source not found"),
    (["generate", "--out", "X", "--conformers", "0"], "--conformers"),
    (["generate", "--out", "X", "--xc", "nosuch"], "functional"),
    (["generate", "--out", "X", "--basis", "nosuch-basis"], "basis"),
    (["generate", "--out", "X", "--limit", "1", "--ray", "--ray-workers", "0"], "--ray-workers must be at least 1"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mess: error:") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, content, message", [
    ("bin.smi", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
    ("nosmiles.csv", b"id,formula\n1,CH4\n", "no 'smiles' column"),
    ("latin1.smi", "C caf\xe9\n".encode("latin-1"), "not UTF-8"),
])
def test_bad_source_files_are_one_line_errors(name, content, message, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    assert main(["generate", str(tmp_path / name), "--out", str(tmp_path / "ds"), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mess: error:") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["generate"], ["generate", "--out"], ["dataset"], ["generate", "--out", "X",
                                                                                  "--conformers", "two"]])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mess: error:") and len(err.splitlines()) == 1


def test_resume_with_changed_settings_is_refused(tmp_path, capsys):
    src = _write(tmp_path, "m.smi", "O water\n")
    out = str(tmp_path / "ds")
    assert main(["generate", src, "--out", out, "--xc", "hf", "--no-progress", "--workers", "0", "--no-cache"]) == 0
    assert main(["generate", src, "--out", out, "--xc", "hf", "--no-progress", "--workers", "0", "--no-cache"]) == 0
    assert "1 already done" in capsys.readouterr().out
    assert main(["generate", src, "--out", out, "--xc", "b3lyp5", "--no-progress", "--no-cache"]) == 2
    assert "setting 'xc' was 'hf', now 'b3lyp5'" in capsys.readouterr().err


def test_qm1b_schema_reads_as_qm1b(tmp_path):
    """QM1B columns and units: z, pos (Bohr), y (gap, eV), std (eV) in fixed mode."""
    src = _write(tmp_path, "m.smi", "O water\nN ammonia\n")
    out = tmp_path / "ds"
    generate(Settings(source=src, schema="qm1b", fixed_cycles=20, same_seed=True), out, progress=False, workers=0)
    t = pq.read_table(next(out.glob("shard-*.parquet")))
    assert t.column_names == ["smile", "atoms", "z", "energy", "homo", "lumo", "N", "std", "y", "pos"]
    row = t.to_pylist()[0]
    numbers, positions, _, _ = embed_arrays(row["smile"], 1, 43)
    assert row["z"] == numbers and row["atoms"] == "OHH"
    np.testing.assert_allclose(np.asarray(row["pos"]).reshape(-1, 3), positions[0], atol=1e-12)  # Bohr
    assert abs(row["y"] - (row["lumo"] - row["homo"])) < 1e-9 and row["std"] < 0.01
    # a QM1B-style loader: reads z, pos (Bohr) and y (eV) of every *.parquet file
    for f in sorted(out.glob("*.parquet")):
        loaded = pq.read_table(f, columns=["z", "pos", "y"]).to_pydict()
        for z, pos, y in zip(loaded["z"], loaded["pos"], loaded["y"]):
            z, pos = np.asarray(z), np.asarray(pos).reshape(-1, 3)
            assert z.shape[0] == pos.shape[0] and 0 < y < 40


def test_stats_and_plot(tmp_path, capsys):
    src = _write(tmp_path, "m.smi", "O water\nC methane\n")
    out = tmp_path / "ds"
    s = generate(Settings(source=src, xc="hf"), out, progress=False, workers=0, validate_fraction=1.0)
    v = s.validation
    assert v["rows"] == 2 and v["energy"] < 1e-8 and v["homo"] < 1e-6 and v["dipole"] < 1e-4
    assert json.loads((out / "manifest.json").read_text())["progress"]["validation"]["rows"] == 2
    assert "Validation against PySCF" in (out / "README.md").read_text()
    assert main(["dataset", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 rows" in text and "energy" in text
    png = tmp_path / "p.png"
    assert main(["dataset", "plot", str(out), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["dataset", "stats", str(tmp_path / "nothing")]) == 2


def test_killed_and_ray_runs_equal_an_uninterrupted_run(tmp_path):
    """A run killed at random moments and resumed ends with exactly the rows (and
    values) of an uninterrupted run, and so does a run on a local Ray with 2 workers
    (the same compilation cache, so the Ray actors do not compile again)."""
    src = _write(tmp_path, "m.smi", "O water\nC methane\nN ammonia\nCO methanol\nF fluoride-h\n")
    env = dict(os.environ, MESS_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "mess.cli", "generate", src, "--xc", "hf", "--shard-size", "1", "--conformers",
           "2", "--no-progress", "--workers", "0"]
    ref = tmp_path / "ref"
    subprocess.run(cmd + ["--out", str(ref)], env=env, check=True, capture_output=True)
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    for _ in range(3):
        p = subprocess.Popen(cmd + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(2.0, 12.0)))
        p.send_signal(signal.SIGKILL)
        p.wait()
    subprocess.run(cmd + ["--out", str(out)], env=env, check=True, capture_output=True)
    on_ray = tmp_path / "ray"
    subprocess.run(cmd + ["--out", str(on_ray), "--ray", "--ray-workers", "2"], env=env, check=True,
                   capture_output=True)
    a = _rows(ref)
    assert len({(r["mol_id"], r["conformer_id"]) for r in a}) == len(a) == 10
    for other in (out, on_ray):
        b = _rows(other)
        assert [(r["mol_id"], r["conformer_id"]) for r in b] == [(r["mol_id"], r["conformer_id"]) for r in a]
        for x, y in zip(a, b):
            assert x == y


@pytest.mark.slow
def test_builtin_set_twenty_molecules_three_conformers(tmp_path):
    """Acceptance: 20 built-in molecules x 3 conformers in the default mode; a sample
    of rows recomputed with PySCF in float64."""
    out = tmp_path / "ds"
    s = generate(Settings(conformers=3, limit=20), out, progress=False, workers=1)
    assert s.rows >= 55
    rows = _rows(out)
    from pyscf import gto

    for r in rows[::7]:
        numbers = r["atomic_numbers"]
        pos = np.asarray(r["positions"]).reshape(-1, 3)
        mol = gto.M(atom=[(z, p) for z, p in zip(numbers, pos)], unit="Angstrom", basis="sto-3g", verbose=0)
        mf = dft.RKS(mol, xc="b3lyp5")
        mf.grids.level, mf.conv_tol = 0, 1e-11
        mf.kernel()
        assert abs(r["energy"] - mf.e_tot) < 1e-7
        occ = mf.mo_occ > 0
        assert abs(r["homo"] - mf.mo_energy[occ].max()) < 1e-6 and abs(r["lumo"] - mf.mo_energy[~occ].min()) < 1e-6
        assert np.abs(np.asarray(r["dipole"]) - mf.dip_moment(unit="Debye", verbose=0)).max() < 1e-4
        numbers2, positions, _, _ = embed_arrays(r["smiles"], 3, conformer_seed(43, r["mol_id"]))
        np.testing.assert_allclose(pos, positions[r["conformer_id"]] * BOHR, atol=1e-12, rtol=0)
