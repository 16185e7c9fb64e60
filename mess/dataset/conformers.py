"""Conformers from SMILES with RDKit's ETKDG (version 3), as :class:`mess.Molecule`.

ETKDG: Riniker & Landrum, J. Chem. Inf. Model. 55, 2562 (2015); version 3 with
macrocycle and small-ring torsion preferences: Wang, Witek, Landrum & Riniker,
J. Chem. Inf. Model. 60, 2044 (2020). Hydrogens are explicit; charge and spin come
from the SMILES (formal charges, radical electrons), not assumed. Optional MMFF94
relaxation (Halgren, J. Comput. Chem. 17, 490 (1996)) and RMS pruning of
near-duplicate conformers. Positions are converted from RDKit's Angstrom to Bohr.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mess.errors import InputError
from mess.interop.rdkit import charge_and_spin, conformer_positions
from mess.structure import Molecule


def conformer_seed(seed: int, mol_id: str, same_seed: bool = False) -> int:
    """The ETKDG seed of one molecule: ``seed`` itself when ``same_seed`` (QM1B embedded
    every molecule with seed 43), else a 31-bit integer derived from ``seed`` and the
    molecule's id (SHA-256), so each molecule's conformers are reproducible on their
    own, whatever else is in the run."""
    if same_seed:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}:{mol_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def embed(smiles: str, n_conformers: int = 1, seed: int = 43, max_attempts: int = 3, mmff: bool = False,
          prune_rms: float = 0.0) -> list[Molecule]:
    """:func:`embed_arrays` as :class:`mess.Molecule` objects (positions in Bohr)."""
    numbers, positions, charge, spin = embed_arrays(smiles, n_conformers, seed, max_attempts, mmff, prune_rms)
    return [Molecule.from_arrays(numbers, pos, charge=charge, spin=spin) for pos in positions]


def embed_arrays(smiles: str, n_conformers: int = 1, seed: int = 43, max_attempts: int = 3, mmff: bool = False,
                 prune_rms: float = 0.0) -> tuple[list[int], list[np.ndarray], int, int]:
    """Up to ``n_conformers`` ETKDGv3 conformers of ``smiles`` (QM1B's seed 43 by
    default; no force-field relaxation unless ``mmff``; ``prune_rms`` > 0 drops
    conformers within that heavy-atom RMSD, Angstrom, of an earlier one). Retries with
    random starting coordinates when embedding fails. Raises ``ValueError`` for an
    unparsable SMILES or a molecule that cannot be embedded. Returns ``(atomic numbers, [positions
    [natom, 3] in Bohr per conformer], charge, spin)`` (NumPy only, so worker processes
    need not import JAX)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise InputError(f"cannot parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    charge, spin = charge_and_spin(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if prune_rms > 0:
        params.pruneRmsThresh = float(prune_rms)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(n_conformers), params=params))
    attempt = 0
    while not ids and attempt < max_attempts:
        params.useRandomCoords = True
        params.randomSeed = int(seed) + 1 + attempt
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(n_conformers), params=params))
        attempt += 1
    if not ids:
        raise InputError(f"RDKit could not embed {smiles!r}")
    if mmff:
        if not AllChem.MMFFHasAllMoleculeParams(mol):
            raise InputError(f"MMFF94 has no parameters for {smiles!r}")
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    positions = [conformer_positions(mol, cid) for cid in ids]
    return numbers, positions, int(charge), int(spin)
