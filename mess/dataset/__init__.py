"""Datasets: molecule sources, RDKit conformers, the generator and its Parquet shards.

``mess.dataset.generate`` (the CLI's ``mess generate``) turns SMILES into conformers
into batched DFT rows; ``open`` and ``batches`` read a dataset back.
"""

from mess.dataset.conformers import conformer_seed, embed, embed_arrays
from mess.dataset.generate import QM1B_PRESET, Settings, Summary, generate
from mess.dataset.reader import batches, open
from mess.dataset.sources import BUILTIN, Entry, builtin_smiles, load_source

__all__ = ["BUILTIN", "Entry", "QM1B_PRESET", "Settings", "Summary", "batches", "builtin_smiles",
           "conformer_seed", "embed", "embed_arrays", "generate", "load_source", "open"]
