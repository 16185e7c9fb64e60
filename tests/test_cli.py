"""The `mess energy` command: JSON output, human summary, one-line errors with exit status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mess.cli import main

from molecules import WATER


def test_energy_json_on_builtin_example(capsys):
    assert main(["energy", "--json", "--no-cache"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("energy", "converged", "iterations", "homo", "lumo", "dipole", "mulliken", "nao", "wall_time"):
        assert key in out
    assert out["converged"] and out["nao"] == 7 and out["energy_unit"] == "Hartree"
    assert -75.0 < out["energy"] < -74.9


def test_energy_summary_from_file(tmp_path, capsys):
    path = tmp_path / "water.xyz"
    path.write_text(WATER)
    assert main(["energy", str(path), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "RHF/sto-3g" in out and "dipole (Debye)" in out


BAD = [
    (["energy", "/no/such/file.xyz"], "xyz file not found"),
    (["energy", "--basis", "no-such-basis"], "unknown basis set"),
    (["energy", "--xc", "no-such-xc"], "unknown XC functional"),
    (["energy", "--spin", "1"], "incompatible with spin 1"),
    (["energy", "--charge", "11"], "negative number of electrons"),
    (["energy", "--xc", "b3lyp", "--grid-level", "11"], "grid level must be an integer from 0 to 9"),
    (["energy", "--conv-tol", "-1"], "--conv-tol must be positive"),
    (["energy", "--conv-tol", "0"], "--conv-tol must be positive"),
    (["energy", "--max-cycle", "0"], "--max-cycle must be at least 1"),
    (["energy", "--plot", "conv.pdf"], "--plot writes a PNG"),
    (["energy", "--plot", "/no/such/dir/conv.png"], "does not exist"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_error(argv, message, capsys):
    assert main(argv + ["--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mess: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_xyz_file_via_subprocess(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("2\n\nO 0 0 0\nQq 0 0 1\n")
    proc = subprocess.run([sys.executable, "-m", "mess.cli", "energy", str(path), "--no-cache"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"mess: error: {path}: unknown element symbol 'Qq'"


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    cases = {"bin.xyz": (b"\x89PNG\r\n\x1a\n\x00\x00", "binary or UTF-16"),
             "u16.xyz": (WATER.encode("utf-16"), "binary or UTF-16"),
             "latin.xyz": ("1\ncaf\xe9\nO 0 0 0\n".encode("latin-1"), "not UTF-8"),
             "m.pdb": (b"ATOM      1  O   HOH A   1       0.000   0.000   0.000\n", "not PDB"),
             "two.xyz": ((WATER + "3\n\nO 0 0 0\n").encode(), "frame 2: header says 3 atoms, found 1"),
             "empty": (None, "no .xyz files in directory")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        assert main(["energy", str(path), "--no-cache"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("mess: error: ") and message in err and err.count("\n") == 1, (name, err)


def test_verbose_leaves_the_callers_logging_as_it_was(tmp_path, capsys):
    """``--verbose`` sets the ``mess`` logger to INFO with a stderr handler for the
    command only; ``main`` called from Python restores both."""
    import logging

    logger = logging.getLogger("mess")
    before = (logger.level, list(logger.handlers))
    assert main(["energy", str(tmp_path / "missing.xyz"), "--verbose", "--no-cache"]) == 2
    assert "missing.xyz" in capsys.readouterr().err
    assert (logger.level, list(logger.handlers)) == before


def test_energy_batch_of_files_frames_directory_and_stdin(tmp_path, capsys, monkeypatch):
    """Several inputs (a two-frame file, a directory, stdin) run as one batch, one JSON
    line each with geometry, settings and units, energies equal to single runs; a
    UTF-8 byte-order mark is accepted."""
    import mess

    stretched = WATER.replace("0.7572", "0.7800")
    (tmp_path / "frames.xyz").write_text(WATER + stretched)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "w.xyz").write_bytes(b"\xef\xbb\xbf" + WATER.encode())
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(stretched))
    assert main(["energy", str(tmp_path / "frames.xyz"), str(tmp_path / "dir"), "-", "--json", "--no-cache"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in lines] == [f"{tmp_path / 'frames.xyz'}#1", f"{tmp_path / 'frames.xyz'}#2",
                                          str(tmp_path / "dir" / "w.xyz"), "<stdin>"]
    single = {t: float(mess.run(mess.Molecule.from_xyz(t)).energy) for t in (WATER, stretched)}
    for r, text in zip(lines, (WATER, stretched, WATER, stretched)):
        assert abs(r["energy"] - single[text]) < 1e-10
        assert r["positions_unit"] == "Angstrom" and r["settings"]["conv_tol"] == 1e-9
        assert r["charge"] == 0 and r["mess_version"] and abs(r["gap"] - (r["lumo"] - r["homo"])) < 1e-15


def test_fractional_charge_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["energy", "--charge", "0.5"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "invalid int value: '0.5'" in err and err.count("\n") == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("mess ")


def test_check_agrees_on_closed_open_and_charged_and_reports_a_mismatch(tmp_path, capsys):
    from molecules import HYDROXIDE, OH_RADICAL

    for name, text, extra in (("water", WATER, ["--no-forces"]), ("oh", OH_RADICAL, ["--no-forces"]),
                              ("hydroxide", HYDROXIDE, ["--no-forces", "--xc", "pbe", "--grid-level", "1"])):
        path = tmp_path / f"{name}.xyz"
        path.write_text(text)
        assert main(["check", str(path), "--no-cache"] + extra) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert "energy (Ha)" in out and "mess and PySCF agree" in out and "DIFFERS" not in out
    assert main(["check", str(tmp_path / "water.xyz"), "--no-forces", "--pyscf-basis", "6-31g", "--no-cache"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "DISAGREE" in out
    assert main(["check", str(tmp_path / "nothing.xyz")]) == 2


def test_optimize_writes_final_geometry_and_trajectory(tmp_path, capsys):
    import mess

    path = tmp_path / "w.xyz"
    path.write_text(WATER.replace("0.7572", "0.8200"))
    assert main(["optimize", str(path), "--quiet", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("converged in") and "w-opt.xyz" in out
    final = mess.Molecule.from_xyz(str(tmp_path / "w-opt.xyz"))
    frames = mess.Molecule.from_xyz_frames(str(tmp_path / "w-traj.xyz"))
    assert len(frames) >= 2
    np.testing.assert_allclose(np.asarray(frames[-1].positions), np.asarray(final.positions), atol=1e-9)
    _, g = mess.energy_and_gradient(final, conv_tol=1e-10)
    assert np.abs(np.asarray(g)).max() < 4.5e-4
    for argv, message in ((["--fmax", "0"], "--fmax must be positive"), (["--max-steps", "0"], "--max-steps"),
                          (["--conv-tol", "-1"], "--conv-tol must be positive")):
        assert main(["optimize", str(path), "--no-cache"] + argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("mess: error: ") and message in err and err.count("\n") == 1
    two = tmp_path / "two.xyz"
    two.write_text(WATER + WATER)
    assert main(["optimize", str(two), "--no-cache"]) == 2
    assert "2 frames" in capsys.readouterr().err


def test_energy_plot_draws_scf_convergence(tmp_path, capsys):
    png = tmp_path / "conv.png"
    assert main(["energy", "--plot", str(png), "--no-cache"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    import mess

    res = mess.run(mess.Molecule.from_xyz(WATER))
    finite = np.isfinite(res.energy_history)
    assert np.isnan(res.grad_history[0])
    np.testing.assert_array_equal(np.isfinite(res.grad_history)[1:], finite[1:])
    g = res.grad_history[1:][finite[1:]]
    assert len(g) >= 3 and g[-1] < 1e-4 < g[0]


@pytest.mark.slow
def test_check_compares_forces(tmp_path, capsys):
    path = tmp_path / "water.xyz"
    path.write_text(WATER)
    assert main(["check", str(path), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "max force difference" in out and "mess and PySCF agree" in out
