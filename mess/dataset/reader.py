"""Reading a generated dataset back: a pyarrow dataset, or padded NumPy batches.

:func:`open` returns a :class:`pyarrow.dataset.Dataset` over the complete shards of a
directory written by :func:`mess.dataset.generate` (either schema). :func:`batches`
yields padded dicts ready for a JAX training step:

* ``atomic_numbers`` ``[B, A]`` int32 (0 on padding), ``positions`` ``[B, A, 3]``
  float64 in **Bohr**, ``mask`` ``[B, A]`` bool, and the targets (default ``energy``
  and ``gap``, float64, in the dataset's units: Hartree for the native schema, eV for
  QM1B's). ``A`` is the largest atom count of the batch unless ``max_atoms`` is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mess.errors import InputError
from mess.structure import BOHR


def shard_files(path) -> list[str]:
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"not a dataset directory: {path}")
    files = sorted(str(p) for p in root.glob("shard-*.parquet"))
    if not files:
        raise InputError(f"no shards in {path}")
    return files


def open(path):  # noqa: A001 - mirrors pyarrow.dataset.dataset
    """A pyarrow dataset over the shards of ``path``."""
    import pyarrow.dataset as ds

    return ds.dataset(shard_files(path), format="parquet")


def batches(path, batch_size: int, shuffle: bool = False, seed: int = 0, targets: tuple[str, ...] | None = None,
            max_atoms: int | None = None, drop_last: bool = False):
    """Padded NumPy batches of ``batch_size`` conformers (see the module docstring)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    table = open(path).to_table()
    qm1b = "z" in table.column_names
    zcol, pcol = ("z", "pos") if qm1b else ("atomic_numbers", "positions")
    if targets is None:
        targets = ("energy", "y") if qm1b else ("energy", "gap")
    missing = [t for t in targets if t not in table.column_names]
    if missing:
        raise InputError(f"dataset has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    zs = table.column(zcol).to_pylist()
    pos = table.column(pcol).to_pylist()
    scale = 1.0 if qm1b else 1.0 / BOHR  # QM1B stores Bohr, the native schema Angstrom
    ys = {t: np.asarray(table.column(t).to_numpy(zero_copy_only=False), dtype=np.float64) for t in targets}
    order = np.arange(len(zs))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(zs))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        natom = max(len(zs[i]) for i in idx)
        a = natom if max_atoms is None else max_atoms
        if natom > a:
            raise InputError(f"a conformer has {natom} atoms, more than max_atoms={a}")
        z = np.zeros((len(idx), a), np.int32)
        r = np.zeros((len(idx), a, 3))
        for b, i in enumerate(idx):
            n = len(zs[i])
            z[b, :n] = zs[i]
            r[b, :n] = np.asarray(pos[i], dtype=np.float64).reshape(n, 3) * scale
        out = {"atomic_numbers": z, "positions": r, "mask": z > 0}
        out.update({t: v[idx] for t, v in ys.items()})
        yield out
