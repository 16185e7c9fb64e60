"""ASE (https://wiki.fysik.dtu.dk/ase): ``Atoms`` <-> :class:`mess.Molecule` and
:class:`MessCalculator`, an ASE calculator for energies, forces and dipoles.

Units: ASE speaks eV, Angstrom and e·Angstrom; mess Hartree and Bohr inside. Positions
are converted with mess's Bohr (:data:`mess.structure.BOHR`, the one ``from_xyz``
uses), so the forces are exactly minus the derivative of the returned energy with
respect to the Angstrom positions (what energy-conserving dynamics needs): energy
``E_Ha * Hartree``, forces ``-dE/dR_Bohr * Hartree / BOHR`` (eV/Angstrom), dipole
``mu_au * BOHR`` (e·Angstrom), with ASE's ``ase.units.Hartree`` in eV.

Charge and spin: the constructor's ``charge``/``spin`` if given, else
``atoms.info["charge"]`` (e) and ``atoms.info["spin"]`` (unpaired electrons ``2S``, as
in PySCF) or ``atoms.info["multiplicity"]`` (``2S + 1``), else neutral and the lowest
spin.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.units import Hartree

from mess.errors import InputError
from mess.structure import BOHR, Molecule


def _info_charge_spin(atoms, charge: int | None, spin: int | None) -> tuple[int, int | None]:
    info = getattr(atoms, "info", {}) or {}
    if charge is None:
        c = info.get("charge", 0)
        if float(c) != int(c):
            raise InputError(f"atoms.info['charge'] must be an integer, got {c}")
        charge = int(c)
    if spin is None:
        if "spin" in info:
            spin = int(info["spin"])
        elif "multiplicity" in info:
            spin = int(info["multiplicity"]) - 1
    return charge, spin


def from_ase(atoms, charge: int | None = None, spin: int | None = None) -> Molecule:
    """A :class:`mess.Molecule` of an ``ase.Atoms`` (positions in Angstrom there, Bohr
    here); charge and spin as the module docstring says. Periodic cells are refused."""
    if not isinstance(atoms, Atoms):
        raise InputError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if any(atoms.pbc):
        raise InputError("periodic ase.Atoms are not supported (mess computes molecules): set atoms.pbc = False")
    charge, spin = _info_charge_spin(atoms, charge, spin)
    return Molecule.from_arrays(atoms.numbers.tolist(), np.asarray(atoms.positions, dtype=np.float64) / BOHR,
                                charge=charge, spin=spin)


def to_ase(molecule: Molecule):
    """An ``ase.Atoms`` of ``molecule`` (Angstrom), with ``info["charge"]`` and
    ``info["spin"]``."""
    atoms = Atoms(numbers=list(molecule.numbers), positions=np.asarray(molecule.positions) * BOHR)
    atoms.info.update(charge=molecule.charge, spin=molecule.spin)
    return atoms


class MessCalculator(Calculator):
    """ASE calculator running mess: ``energy`` (eV), ``forces`` (eV/Angstrom),
    ``dipole`` (e·Angstrom).

    Args:
        basis, xc, cart: as :func:`mess.run`.
        charge, spin: override the ``Atoms`` object's (see the module docstring).
        engine: the :class:`mess.Engine` whose compiled programs the calculator uses
            (default: a new one owned by the calculator, so a trajectory compiles once
            and the programs go when the calculator goes).
        **options: :func:`mess.run`'s options (``grid_level``, ``conv_tol``,
            ``conv_tol_grad``, ...).

    ``results["converged"]`` and ``results["iterations"]`` report the last SCF; an
    unconverged SCF raises ``ase.calculators.calculator.CalculationFailed``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "dipole"]
    default_parameters: dict = {}

    def __init__(self, basis: str = "sto-3g", xc: str = "hf", cart: bool = False, charge: int | None = None,
                 spin: int | None = None, engine=None, **options):
        import mess

        super().__init__()
        self.basis, self.xc, self.cart = basis, xc, cart
        self.charge, self.spin = charge, spin
        self.engine = engine if engine is not None else mess.Engine()
        self.options = options

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        import mess
        from mess.properties import AU2DEBYE

        super().calculate(atoms, properties, system_changes if system_changes is not None else all_changes)
        mol = from_ase(self.atoms, self.charge, self.spin)
        if "forces" in properties:
            res, grad = mess.energy_and_gradient(mol, self.basis, self.xc, self.cart, engine=self.engine,
                                                 **self.options)
        else:
            res, grad = mess.run(mol, self.basis, self.xc, self.cart, engine=self.engine, **self.options), None
        if not bool(res.converged):
            raise CalculationFailed(f"mess: SCF not converged in {int(res.iterations)} cycles")
        energy = float(res.energy) * Hartree
        self.results = {"energy": energy, "free_energy": energy,
                        "dipole": np.asarray(res.dipole, dtype=np.float64) / AU2DEBYE * BOHR,
                        "converged": True, "iterations": int(res.iterations)}
        if grad is not None:
            self.results["forces"] = -np.asarray(grad, dtype=np.float64) * Hartree / BOHR
