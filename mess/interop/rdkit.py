"""RDKit molecules as :class:`mess.Molecule`.

Charge and spin are read from the RDKit molecule (the sum of formal charges; the number
of radical electrons as ``spin = 2S``), never assumed; positions come from one of its
conformers, converted from RDKit's Angstrom to Bohr. :func:`from_smiles` embeds one
ETKDGv3 conformer with the generator's code (:mod:`mess.dataset.conformers`), so a
molecule made here equals the generator's conformer for the same seed.
"""

from __future__ import annotations

import numpy as np

from mess.errors import InputError
from mess.structure import BOHR, Molecule


def charge_and_spin(mol) -> tuple[int, int]:
    """``(charge, spin)`` of an RDKit molecule: total formal charge (e) and number of
    radical electrons (``2S``, PySCF's convention)."""
    from rdkit import Chem

    return int(Chem.GetFormalCharge(mol)), int(sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()))


def conformer_positions(mol, conf_id: int = -1) -> np.ndarray:
    """Positions of conformer ``conf_id`` (-1: the default one) in Bohr, ``[natom, 3]``."""
    if mol.GetNumConformers() == 0:
        raise InputError("the RDKit molecule has no conformer: embed one (AllChem.EmbedMolecule) "
                         "or use Molecule.from_smiles")
    try:
        conf = mol.GetConformer(int(conf_id))
    except ValueError:
        raise InputError(f"the RDKit molecule has no conformer with id {conf_id}") from None
    return np.asarray(conf.GetPositions(), dtype=np.float64) / BOHR


def from_rdkit(mol, conf_id: int = -1) -> Molecule:
    """A :class:`mess.Molecule` of the atoms of ``mol`` (an ``rdkit.Chem.Mol`` with a
    conformer) at conformer ``conf_id``; hydrogens are those present in ``mol`` (add
    them with ``Chem.AddHs(mol, addCoords=True)`` before embedding)."""
    from rdkit import Chem

    if not isinstance(mol, Chem.Mol):
        raise InputError(f"expected an rdkit.Chem.Mol, got {type(mol).__name__}")
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    if any(z == 0 for z in numbers):
        raise InputError("the RDKit molecule has dummy atoms (atomic number 0)")
    implicit = sum(a.GetNumImplicitHs() for a in mol.GetAtoms())
    if implicit:
        raise InputError(f"the RDKit molecule has {implicit} implicit hydrogens without coordinates: "
                         "add them with Chem.AddHs(mol, addCoords=True)")
    charge, spin = charge_and_spin(mol)
    return Molecule.from_arrays(numbers, conformer_positions(mol, conf_id), charge=charge, spin=spin)


def from_smiles(smiles: str, seed: int = 43, mmff: bool = False) -> Molecule:
    """One ETKDGv3 conformer of ``smiles`` with explicit hydrogens (seed ``seed``,
    QM1B's 43 by default; optional MMFF94 relaxation), charge and spin from the
    SMILES. Raises ``ValueError`` for an unparsable SMILES or an embedding failure."""
    from mess.dataset.conformers import embed

    return embed(smiles, 1, seed, mmff=mmff)[0]
