"""RDKit and ASE bridges: charge and spin from RDKit molecules, coordinates equal to
RDKit's; the ASE calculator's energies, forces and dipoles against mess.run and
mess.gradient in ASE's units, no compilation for a second geometry, ASE's BFGS against
mess.optimize, and energy conservation in velocity-Verlet dynamics."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from ase import Atoms, units
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from rdkit import Chem
from rdkit.Chem import AllChem

import mess
from mess.interop.ase import MessCalculator
from mess.properties import AU2DEBYE
from mess.structure import BOHR

TIGHT = dict(conv_tol=1e-11, conv_tol_grad=1e-7)


@pytest.mark.parametrize("smiles, charge, spin", [
    ("CCO", 0, 0), ("[NH4+]", 1, 0), ("CC(=O)[O-]", -1, 0), ("[CH3]", 0, 1), ("C[CH2]", 0, 1), ("[O-][N+](=O)[O-]", -1, 0),
])
def test_rdkit_charge_spin_and_coordinates(smiles, charge, spin):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    assert AllChem.EmbedMolecule(mol, params) == 0
    m = mess.Molecule.from_rdkit(mol)
    assert (m.charge, m.spin) == (charge, spin)
    assert list(m.numbers) == [a.GetAtomicNum() for a in mol.GetAtoms()]
    np.testing.assert_allclose(np.asarray(m.positions) * BOHR, mol.GetConformer().GetPositions(), rtol=0, atol=1e-12)
    s = mess.Molecule.from_smiles(smiles, seed=7)
    assert (s.charge, s.spin) == (charge, spin)
    np.testing.assert_allclose(np.asarray(s.positions), np.asarray(m.positions), rtol=0, atol=1e-12)


def test_rdkit_bad_input():
    with pytest.raises(ValueError, match="no conformer"):
        mess.Molecule.from_rdkit(Chem.AddHs(Chem.MolFromSmiles("CC")))
    mol = Chem.MolFromSmiles("CC")
    AllChem.EmbedMolecule(mol, randomSeed=1)
    with pytest.raises(ValueError, match="implicit hydrogens"):
        mess.Molecule.from_rdkit(mol)
    with pytest.raises(ValueError, match="expected an rdkit"):
        mess.Molecule.from_rdkit("CC")
    with pytest.raises(ValueError, match="cannot parse SMILES"):
        mess.Molecule.from_smiles("C1CC")


def test_ase_atoms_round_trip():
    atoms = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]], info={"multiplicity": 2})
    m = mess.Molecule.from_ase(atoms)
    assert (m.charge, m.spin) == (0, 1)
    back = m.to_ase()
    np.testing.assert_allclose(back.positions, atoms.positions, rtol=0, atol=1e-12)
    assert back.info == {"charge": 0, "spin": 1}
    assert mess.Molecule.from_ase(Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]], info={"charge": -1})).spin == 0
    with pytest.raises(ValueError, match="periodic"):
        mess.Molecule.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=True))
    with pytest.raises(ValueError, match="must be an integer"):
        mess.Molecule.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"charge": 0.5}))


def _water(shift: float = 0.0) -> Atoms:
    return Atoms("OH2", positions=[[0, 0, 0.1173], [0, 0.7572 + shift, -0.4692], [0, -0.7572, -0.4692 + shift]])


@pytest.fixture(scope="module")
def calculator():
    # the default engine: programs shared with mess.optimize and earlier tests
    return MessCalculator(basis="sto-3g", xc="hf", engine=mess.engine.default_engine(), **TIGHT)


def test_ase_calculator_equals_mess_and_reuses_programs(caplog):
    """Energy (eV), forces (eV/Angstrom) and dipole (e Angstrom) equal mess.run and
    mess.gradient converted; a second geometry compiles nothing new. The calculator
    owns its engine, so the signatures other tests compiled cannot decide the bucket
    a geometry lands in."""
    caplog.set_level(logging.INFO, logger="mess")  # the engine's "compiling the SCF" records count too
    calculator = MessCalculator(basis="sto-3g", xc="hf", engine=mess.Engine(), **TIGHT)
    atoms = _water()
    atoms.calc = calculator
    e, f, d = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_dipole_moment()
    res, g = mess.energy_and_gradient(mess.Molecule.from_ase(atoms), "sto-3g", "hf", engine=calculator.engine,
                                      **TIGHT)
    assert abs(e - float(res.energy) * units.Hartree) <= 1e-8 * abs(e)
    np.testing.assert_allclose(f, -np.asarray(g) * units.Hartree / BOHR, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(d, np.asarray(res.dipole) / AU2DEBYE * BOHR, rtol=1e-8, atol=1e-10)
    assert calculator.results["converged"]
    moved = _water(0.02)
    moved.calc = calculator
    caplog.clear()  # only what the second geometry compiles
    with jax.log_compiles(True):
        moved.get_forces()
    compiles = [r for r in caplog.records if "ompiling" in r.getMessage()]
    assert not compiles, [r.getMessage()[:120] for r in compiles[:5]]


def test_ase_bfgs_reaches_mess_optimize_minimum(calculator):
    start = _water(0.05)
    ours, info = mess.optimize(mess.Molecule.from_ase(start), "sto-3g", "hf", gtol=1e-5, fmax=1e-5, etol=1e-10,
                               verbose=False, **TIGHT)
    atoms = start.copy()
    atoms.calc = calculator
    BFGS(atoms, logfile=None).run(fmax=1e-3)
    mine = np.asarray(ours.positions) * BOHR
    dist = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    assert np.abs(dist(atoms.positions) - dist(mine)).max() < 1e-4


def _energy_spread(start: Atoms, calculator, temperature: float, dt_fs: float, steps: int) -> float:
    atoms = start.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(0)
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * temperature)
    atoms.set_momenta(momenta - momenta.mean(axis=0))
    total = []
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs, logfile=None)
    dyn.attach(lambda: total.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()), interval=1)
    dyn.run(steps)
    return max(total) - min(total)


def test_ase_velocity_verlet_conserves_energy(calculator):
    """20 velocity-Verlet steps of 0.5 fs from the minimum (100 K Maxwell-Boltzmann
    momenta) keep the total energy within 1e-4 eV/atom, and halving the step shrinks
    the spread four-fold (Verlet's O(dt^2) error: the forces are the energy's
    gradient)."""
    start = _water()
    start.calc = calculator
    BFGS(start, logfile=None).run(fmax=1e-3)
    start = Atoms(start.get_chemical_symbols(), positions=start.positions)
    spread = _energy_spread(start, calculator, 100.0, 0.5, 20)
    assert spread < 1e-4 * len(start), spread
    half = _energy_spread(start, calculator, 100.0, 0.25, 40)
    assert 3.0 < spread / half < 5.0, (spread, half)


@pytest.mark.parametrize("atoms, charge, spin, xc", [
    (_water(), 0, 0, "b3lyp"), (Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]), 0, 1, "hf"),
])
def test_result_to_pyscf_reproduces_energy_and_mulliken(atoms, charge, spin, xc):
    """PySCF's energy_tot of mess's orbitals equals mess's energy (1e-9 Ha); PySCF's
    Mulliken analysis equals mess's charges."""
    res = mess.run(mess.Molecule.from_ase(atoms, charge, spin), "sto-3g", xc, grid_level=1, conv_tol=1e-11)
    mf = res.to_pyscf()
    assert mf.mo_coeff.shape == res.mo_coeff.shape and mf.converged
    np.testing.assert_allclose(mf.make_rdm1(), res.make_rdm1(), rtol=0, atol=1e-13)
    assert abs(mf.energy_tot() - float(res.energy)) < 1e-9
    _, charges = mf.mulliken_pop(verbose=0)
    np.testing.assert_allclose(charges, res.mulliken, rtol=0, atol=1e-10)
    np.testing.assert_allclose(mf.dip_moment(unit="Debye", verbose=0), res.dipole, rtol=0, atol=1e-8)


def test_bad_input_is_an_input_error():
    """Bad input raises mess.InputError (a ValueError) with a one-line message."""
    for bad in (lambda: mess.Molecule.from_xyz("2\n\nO 0 0 0\n"), lambda: mess.Molecule.from_smiles("C1CC"),
                lambda: mess.Molecule.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"charge": 0.5}))):
        with pytest.raises(mess.InputError) as info:
            bad()
        assert isinstance(info.value, ValueError) and len(str(info.value).splitlines()) == 1


def test_run_given_something_else_names_it_and_the_conversion():
    for x, hint in ((Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), "from_ase"),
                    (Chem.MolFromSmiles("C"), "from_rdkit"), ("water.xyz", "from_xyz"), ([1, 2], "run_batch")):
        with pytest.raises(mess.InputError, match=hint):
            mess.run(x)
    with pytest.raises(mess.InputError, match="molecule 1: expected a mess.Molecule"):
        mess.run_batch([mess.Molecule.from_smiles("O"), "x"])
