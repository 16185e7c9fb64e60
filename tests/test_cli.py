"""The `mess energy` command: JSON output, human summary, one-line errors with exit status 2."""

import json
import subprocess
import sys

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
    assert proc.stderr.strip() == "mess: error: unknown element symbol 'Qq'"
