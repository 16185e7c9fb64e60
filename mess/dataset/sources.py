"""Molecule sources: SMILES lists.

:func:`builtin_smiles` needs no download: RDKit ships the first 5000 molecules of the
NCI open database (``RDConfig.RDDataDir/NCI/first_5K.smi``); filtered to neutral,
single-fragment molecules of 9-11 heavy atoms from C, N, O and F (QM1B's GDB-11
range) it gives 512 molecules.
"""

from __future__ import annotations

import os


def _nci_path() -> str:
    from rdkit import RDConfig

    return os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")


def builtin_smiles(min_heavy: int = 9, max_heavy: int = 11, elements: str | tuple = ("C", "N", "O", "F"),
                   max_h: int | None = None) -> list[tuple[str, str]]:
    """``(id, smiles)`` of RDKit's bundled NCI molecules that are neutral, single
    fragments, without radicals, with ``min_heavy``..``max_heavy`` heavy atoms, only
    ``elements`` besides hydrogen, and at most ``max_h`` hydrogens (None: any).
    Ids are ``nci-<line number>``."""
    from rdkit import Chem, RDLogger

    if isinstance(elements, str):
        elements = tuple(e.strip() for e in elements.split(",") if e.strip()) if "," in elements else (elements,)
    allowed = set(elements)
    out = []
    RDLogger.DisableLog("rdApp.*")
    try:
        with open(_nci_path()) as f:
            for k, line in enumerate(f, start=1):
                parts = line.split()
                if not parts:
                    continue
                mol = Chem.MolFromSmiles(parts[0])
                if mol is None or len(Chem.GetMolFrags(mol)) != 1:
                    continue
                atoms = list(mol.GetAtoms())
                if any(a.GetSymbol() not in allowed for a in atoms):
                    continue
                if any(a.GetFormalCharge() or a.GetNumRadicalElectrons() for a in atoms):
                    continue
                if not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
                    continue
                if max_h is not None and sum(a.GetTotalNumHs() for a in atoms) > max_h:
                    continue
                out.append((f"nci-{k}", parts[0]))
    finally:
        RDLogger.EnableLog("rdApp.*")
    return out
