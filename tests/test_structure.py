"""Molecule construction, xyz parsing, PySCF round trips and the table of bad inputs."""

import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto

import mess
from mess.basis import basis_layout
from mess.structure import BOHR, Molecule

from molecules import OH_RADICAL, WATER


def test_from_xyz_units_and_defaults():
    m = Molecule.from_xyz(WATER)
    assert m.numbers == (8, 1, 1)
    assert m.charge == 0 and m.spin == 0 and m.nelec == (5, 5)
    np.testing.assert_allclose(np.asarray(m.positions)[1], np.array([0.0, 0.7572, -0.4692]) / BOHR)


def test_comment_tokens_and_overrides():
    m = Molecule.from_xyz(OH_RADICAL)
    assert (m.charge, m.spin) == (0, 1)
    m2 = Molecule.from_xyz(OH_RADICAL, charge=-1, spin=0)
    assert (m2.charge, m2.spin, m2.nelectron) == (-1, 0, 10)


def test_lowest_spin_default_for_odd_electrons():
    m = Molecule.from_xyz("2\n\nO 0 0 0\nH 0 0 0.97\n")
    assert m.spin == 1


def test_pyscf_round_trip(tmp_path):
    m = Molecule.from_xyz(WATER)
    mol = m.to_pyscf("6-31g", cart=True)
    assert mol.cart and mol.nao == 13
    np.testing.assert_allclose(mol.atom_coords(), np.asarray(m.positions), atol=1e-12)
    back = Molecule.from_pyscf(mol)
    assert back.numbers == m.numbers
    np.testing.assert_allclose(np.asarray(back.positions), np.asarray(m.positions), atol=1e-12)
    path = tmp_path / "w.xyz"
    path.write_text(m.to_xyz())
    again = Molecule.from_xyz(path)
    np.testing.assert_allclose(np.asarray(again.positions), np.asarray(m.positions), atol=1e-9)


def test_positions_are_traced_leaves():
    import jax

    m = Molecule.from_xyz(WATER)
    leaves = jax.tree_util.tree_leaves(m)
    assert len(leaves) == 1 and leaves[0].shape == (3, 3)


BAD_XYZ = [
    ("2\n\nO 0 0 0\nXx 0 0 1\n", "unknown element symbol 'Xx'"),
    ("2\n\nO 0 0 0\nH 0 0\n", "malformed xyz line 4"),
    ("2\n\nO 0 0 0\nH 0 zero 1\n", "coordinates must be numbers"),
    ("3\n\nO 0 0 0\nH 0 0 1\n", "atom count mismatch: header says 3, found 2"),
    ("two\n\nO 0 0 0\nH 0 0 1\n", "first xyz line must be the atom count"),
    ("2\n\nO 0 0 0\nH 0 nan 1\n", "non-finite coordinate"),
    ("2\n\nO 0 0 0\nH 0 0 inf\n", "non-finite coordinate"),
    ("2\n\nO 0 0 0\nH 0 0 0.05\n", "closer than 0.1 Angstrom"),
    ("2\nspin=0\nO 0 0 0\nH 0 0 0.97\n", "incompatible with spin 0"),
    ("2\ncharge=x\nO 0 0 0\nH 0 0 0.97\n", "charge must be an integer"),
    ("", "empty xyz input"),
    ("0\n\n", "atom count must be positive"),
]


@pytest.mark.parametrize("text,message", BAD_XYZ)
def test_bad_xyz_gives_clear_error(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Molecule.from_xyz(text)


def test_bad_molecule_arguments():
    with pytest.raises(ValueError, match="incompatible with spin 2"):
        Molecule.from_arrays([8, 1], np.zeros((2, 3)) + np.array([[0, 0, 0], [0, 0, 2.0]]), spin=2)
    with pytest.raises(ValueError, match="negative number of electrons"):
        Molecule.from_arrays([1], np.zeros((1, 3)), charge=3)
    with pytest.raises(ValueError, match=r"positions must have shape \(2, 3\)"):
        Molecule.from_arrays([1, 1], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="xyz file not found"):
        Molecule.from_xyz("/nonexistent/file.xyz")


def test_basis_errors():
    m = Molecule.from_xyz(WATER)
    with pytest.raises(ValueError, match="unknown basis set 'no-such-basis'"):
        basis_layout(m.numbers, "no-such-basis")
    u = Molecule.from_xyz("1\n\nI 0 0 0\n")
    with pytest.raises(ValueError, match="basis set '6-31g' lacks element I"):
        basis_layout(u.numbers, "6-31g")


def test_run_errors():
    import jax

    m = Molecule.from_xyz(WATER)
    with pytest.raises(ValueError, match="unknown XC functional"):
        mess.run(m, xc="no-such-functional")
    with pytest.raises(ValueError, match="unknown option"):
        mess.run(m, no_such_option=1)
    with pytest.raises(ValueError, match="grid level"):
        mess.run(m, xc="lda", grid_level=12)
    with pytest.raises(ValueError, match="restricted calculation requested for spin 1"):
        mess.run(Molecule.from_xyz(OH_RADICAL), restricted=True)
