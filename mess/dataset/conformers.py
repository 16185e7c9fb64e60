"""Conformers from SMILES with RDKit's ETKDG (version 3), as :class:`mess.Molecule`.

ETKDG: Riniker & Landrum, J. Chem. Inf. Model. 55, 2562 (2015); version 3 with
macrocycle and small-ring torsion preferences: Wang, Witek, Landrum & Riniker,
J. Chem. Inf. Model. 60, 2044 (2020). Hydrogens are explicit; charge and spin come
from the SMILES (formal charges, radical electrons), not assumed. Positions are
converted from RDKit's Angstrom to Bohr.
"""

from __future__ import annotations

import numpy as np

from mess.structure import BOHR, Molecule


def embed(smiles: str, n_conformers: int = 1, seed: int = 43, max_attempts: int = 3) -> list[Molecule]:
    """Up to ``n_conformers`` ETKDGv3 conformers of ``smiles`` (QM1B's seed 43 by
    default; no force-field relaxation). Retries with random starting coordinates
    when embedding fails. Raises ``ValueError`` for an unparsable SMILES or a
    molecule that cannot be embedded."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"cannot parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    charge = Chem.GetFormalCharge(mol)
    spin = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(n_conformers), params=params))
    attempt = 0
    while not ids and attempt < max_attempts:
        params.useRandomCoords = True
        params.randomSeed = int(seed) + 1 + attempt
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(n_conformers), params=params))
        attempt += 1
    if not ids:
        raise ValueError(f"RDKit could not embed {smiles!r}")
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    out = []
    for cid in ids:
        pos = np.asarray(mol.GetConformer(cid).GetPositions(), dtype=np.float64) / BOHR
        out.append(Molecule.from_arrays(numbers, pos, charge=charge, spin=spin))
    return out
