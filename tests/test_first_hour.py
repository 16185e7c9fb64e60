"""What a new user meets first: size estimates that refuse what will not fit, readable
results, progress output, input checks on positions, charges and atomic numbers, and
``mess xyz`` to make an input file from SMILES."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mess
from mess.cli import main
from mess.engine.resources import count_quartets, machine_memory
from mess.engine.signature import Method, prepare
from mess.integrals.two_electron import pair_list, pair_pieces, schwarz_bounds

from molecules import WATER


def alkane_xyz(ncarbon: int) -> str:
    """A zig-zag CnH(2n+2) chain (Angstrom), ``3 n + 2`` atoms."""
    symbols, pos = [], []
    for i in range(ncarbon):
        x, y = 1.26 * i, 0.0 if i % 2 == 0 else 0.89
        up = -0.63 if i % 2 == 0 else 0.63
        symbols += ["C", "H", "H"]
        pos += [(x, y, 0.0), (x, y + up, 0.89), (x, y + up, -0.89)]
    symbols += ["H", "H"]
    pos += [(-1.0, -0.3, 0.0), (1.26 * (ncarbon - 1) + 1.0, (0.89 if (ncarbon - 1) % 2 else 0.0) + 0.3, 0.0)]
    lines = [f"{s} {x:.4f} {y:.4f} {z:.4f}" for s, (x, y, z) in zip(symbols, pos)]
    return f"{len(symbols)}\n\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("smiles,basis,threshold,pieced", [("CCO", "6-31g*", 1e-14, True), ("CCO", "sto-3g", 0.0, False),
                                                            ("CO", "6-31g", 0.0, True),
                                                            ("c1ccccc1", "6-31g", 1e-10, True)])
def test_quartet_count_equals_the_listed_quartets(smiles, basis, threshold, pieced):
    """The estimate counts exactly the quartets the planner then lists, contraction
    pieces included."""
    mol = mess.Molecule.from_smiles(smiles)
    p = prepare(mol, Method(basis, "hf", schwarz_threshold=threshold))
    assert p.population.pieced == pieced
    bounds = schwarz_bounds(p.layout, mol.numbers, np.asarray(mol.positions)) if threshold > 0 else None
    pairs = pair_list(p.layout)
    nq, nvals, _ = count_quartets(pairs, bounds, threshold, False, pair_pieces(p.layout, pairs) if pieced else None)
    assert nq == p.population.nquartets == p.size.quartets
    sizes = {0: 1, 1: 3, 2: 5}
    assert nvals == sum(len(v[0]) * np.prod([sizes[l] for l in ls]) for ls, v in p.population.classes.items())


def test_500_atoms_are_refused_with_the_estimate(tmp_path, capsys):
    big = tmp_path / "c166.xyz"
    big.write_text(alkane_xyz(166))
    assert main(["energy", str(big), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mess: error: molecule too large for this machine: 500 atoms, 1164 AOs (sto-3g)")
    assert "GiB" in err and err.count("\n") == 1
    with pytest.raises(mess.InputError, match="too large"):
        mess.run(mess.Molecule.from_xyz(big.read_text()))


def test_150_atoms_get_an_estimate_and_a_limit(tmp_path, capsys):
    path = tmp_path / "c50.xyz"
    path.write_text(alkane_xyz(50))
    assert main(["energy", str(path), "--estimate", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "152 atoms, 352 AOs" in out and "ERI quartets" in out and ("fits" in out or "too large" in out)
    est = mess.size_estimate(mess.Molecule.from_xyz(path.read_text()))
    assert est.nao == 352 and est.quartets > 1e6 and est.device_bytes > 0 and est.host_bytes > 0
    assert main(["energy", str(path), "--max-memory", "1", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "too large" in err and "memory limit is 1.0 GiB" in err and err.count("\n") == 1
    assert main(["energy", str(path), "--max-memory", "-3"]) == 2
    assert "--max-memory must be a positive" in capsys.readouterr().err
    bytes_, where = machine_memory()
    assert bytes_ > 0 and where


def test_result_repr_dict_and_json():
    r = mess.run(mess.Molecule.from_xyz(WATER))
    text = repr(r)
    assert text.startswith("Result(RHF/sto-3g hf: energy=-74.96") and "Ha" in text and "nao=7" in text
    d = json.loads(r.to_json())
    assert d == json.loads(json.dumps(r.to_dict()))
    assert d["energy"] == float(r.energy) and d["energy_unit"] == "Hartree" and d["dipole_unit"] == "Debye"
    assert d["symbols"] == ["O", "H", "H"] and d["positions_unit"] == "Angstrom" and d["mess_version"]
    np.testing.assert_allclose(np.asarray(d["positions"]) / mess.BOHR, np.asarray(r.molecule.positions), atol=1e-12)


def test_progress_output_names_compilation(capsys):
    # an SCF setting no other test uses, so this process has not compiled it yet
    opts = ["--no-cache", "--basis", "6-31g", "--conv-tol", "3.3e-8"]
    assert main(["energy", "--verbose"] + opts) == 0
    err = capsys.readouterr().err
    assert "mess: compiling the SCF for R hf/6-31g" in err and "compiled" in err
    assert main(["energy", "--quiet"] + opts) == 0
    assert capsys.readouterr().err == ""


def test_atomic_numbers_fractional_charge_and_bad_positions():
    mol = mess.Molecule.from_xyz("3\n\n8 0 0 0\n1 0 0.76 0.59\n1 0 -0.76 0.59\n")
    assert mol.symbols == ["O", "H", "H"]
    with pytest.raises(mess.InputError, match="unknown atomic number 200"):
        mess.Molecule.from_xyz("1\n\n200 0 0 0\n")
    for charge in (0.5, "1", True):
        with pytest.raises(mess.InputError, match="charge must be an integer"):
            mess.Molecule.from_arrays(mol.numbers, mol.positions, charge=charge)
    assert mess.Molecule.from_arrays(mol.numbers, mol.positions, charge=2.0, spin=0).charge == 2
    f = mess.energy_function(mol)
    nan = jnp.asarray(mol.positions).at[0, 0].set(jnp.nan)
    same = jnp.asarray(mol.positions).at[1].set(mol.positions[0])
    with pytest.raises(mess.InputError, match="non-finite"):
        f(nan)
    with pytest.raises(mess.InputError, match="atoms 1 and 2 are 0 Angstrom apart"):
        f(same)
    g = jax.jit(f)
    for bad, message in ((nan, "non-finite"), (same, "closer than 0.1 Angstrom")):
        with pytest.raises(Exception, match=message):
            g(bad)


def test_xyz_from_smiles(tmp_path, capsys):
    out = tmp_path / "ethanol.xyz"
    assert main(["xyz", "CCO", "-o", str(out)]) == 0
    mol = mess.Molecule.from_xyz(out.read_text())
    assert mol.symbols.count("C") == 2 and mol.natom == 9 and mol.charge == 0
    assert main(["xyz", "[NH4+]"]) == 0
    text = capsys.readouterr().out
    assert mess.Molecule.from_xyz(text).charge == 1
    assert main(["xyz", "C1CC"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mess: error: ") and err.count("\n") == 1
