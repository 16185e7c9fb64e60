"""Bridges to the libraries our users work in: RDKit (:mod:`mess.interop.rdkit`) and
ASE (:mod:`mess.interop.ase`). Each module imports its library only when used."""
