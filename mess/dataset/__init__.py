"""Molecule sources and conformers for datasets (SMILES -> RDKit conformers -> Molecule)."""

from mess.dataset.conformers import embed
from mess.dataset.sources import builtin_smiles

__all__ = ["builtin_smiles", "embed"]
