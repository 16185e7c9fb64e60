"""Molecule sources: SMILES lists.

:func:`builtin_smiles` needs no download: RDKit ships the first 5000 molecules of the
NCI open database (``RDConfig.RDDataDir/NCI/first_5K.smi``); filtered to neutral,
single-fragment molecules of 9-11 heavy atoms from C, N, O and F (QM1B's GDB-11
range) it gives 512 molecules. It is the source named ``nci-9-11`` (:data:`BUILTIN`);
``nci-MIN-MAX`` names the same filter for another heavy-atom range (``nci-1-6``: 76
small molecules).

:func:`read_source` reads a SMILES file (``.smi``, ``.txt``: SMILES in the first
column, an optional id in the second; ``.csv``: a ``smiles`` column, or the first
column, and an optional ``id``/``mol_id``/``name`` column). Blank lines and ``#``
comments are skipped, a header line is recognised; every other line becomes an
:class:`Entry`, valid or not: whether its SMILES parses is decided when its conformers
are made, so a bad line becomes an error record there, never a crash. Duplicate ids
are marked (the first occurrence wins).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re

from mess.errors import InputError

#: Name of the built-in source (RDKit's bundled NCI set, 9-11 heavy atoms, C N O F).
BUILTIN = "nci-9-11"
#: Largest source file read (bytes); a bigger file is almost surely not a SMILES list.
MAX_SOURCE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Entry:
    """One source line: ``mol_id``, ``smiles``, its 1-based ``line`` in the source, and
    ``problem`` (None, or why the entry is rejected before any chemistry, e.g. a
    duplicate id)."""

    mol_id: str
    smiles: str
    line: int
    problem: str | None = None


def source_digest(entries: list[Entry]) -> str:
    """SHA-256 of the entries (ids and SMILES in order): what a resumed run must match."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.mol_id}\t{e.smiles}\n".encode())
    return h.hexdigest()


def load_source(source: str | None = None) -> list[Entry]:
    """The entries of ``source``: a file path, or a built-in set's name ``nci-MIN-MAX``
    (:data:`BUILTIN`, the default; see :func:`builtin_range`). Raises ``ValueError`` with a one-line message for a
    missing, unreadable, binary or malformed file."""
    if source is None:
        source = BUILTIN
    heavy = builtin_range(source)
    if heavy is not None and not os.path.exists(source):
        found = builtin_smiles(*heavy)
        if not found:
            raise InputError(f"the built-in set has no molecules with {heavy[0]}-{heavy[1]} heavy atoms: {source}")
        return [Entry(i, s, k) for k, (i, s) in enumerate(found, start=1)]
    if not os.path.exists(source):
        raise InputError(f"source not found: {source} (a SMILES file, or a built-in set such as {BUILTIN!r})")
    if os.path.isdir(source):
        raise InputError(f"source is a directory, not a SMILES file: {source}")
    size = os.path.getsize(source)
    if size > MAX_SOURCE_BYTES:
        raise InputError(f"source file is {size / 2**30:.1f} GiB, larger than the 1 GiB a SMILES list may be: "
                         f"{source}")
    with open(source, "rb") as f:
        raw = f.read()
    if b"\0" in raw:
        raise InputError(f"source is a binary file, not a SMILES list: {source}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"source is not UTF-8 text: {source}") from None
    if source.lower().endswith(".csv"):
        return _mark_duplicates(_read_csv(text, source))
    return _mark_duplicates(_read_smi(text))


def _looks_like_header(fields: list[str]) -> bool:
    return bool(fields) and fields[0].strip().lower() in ("smiles", "smile", "canonical_smiles", "smi")


def _read_smi(text: str) -> list[Entry]:
    out = []
    first = True
    for k, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if first and _looks_like_header(fields):
            first = False
            continue
        first = False
        mol_id = fields[1] if len(fields) > 1 else f"line-{k}"
        out.append(Entry(mol_id, fields[0], k))
    return out


def _read_csv(text: str, source: str) -> list[Entry]:
    rows = list(csv.reader(io.StringIO(text)))
    rows = [(k, r) for k, r in enumerate(rows, start=1) if r and any(x.strip() for x in r)]
    if not rows:
        return []
    header = [x.strip().lower() for x in rows[0][1]]
    if "smiles" in header or "smile" in header:
        col = header.index("smiles") if "smiles" in header else header.index("smile")
        id_col = next((header.index(n) for n in ("mol_id", "id", "name") if n in header), None)
        body = rows[1:]
    elif any(h in ("id", "mol_id", "name") for h in header):
        raise InputError(f"CSV source has no 'smiles' column (columns: {', '.join(rows[0][1])}): {source}")
    else:  # no header: SMILES first, optional id second
        col, id_col, body = 0, (1 if len(rows[0][1]) > 1 else None), rows
    out = []
    for k, r in body:
        smiles = r[col].strip() if col < len(r) else ""
        if smiles.startswith("#"):
            continue
        mol_id = r[id_col].strip() if id_col is not None and id_col < len(r) and r[id_col].strip() else f"line-{k}"
        out.append(Entry(mol_id, smiles, k))
    return out


def _mark_duplicates(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, int] = {}
    out = []
    for e in entries:
        if e.mol_id in seen:
            e = dataclasses.replace(e, problem=f"duplicate id {e.mol_id!r} (first on line {seen[e.mol_id]})")
        else:
            seen[e.mol_id] = e.line
        out.append(e)
    return out


def _nci_path() -> str:
    from rdkit import RDConfig

    return os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")


def builtin_range(name: str) -> tuple[int, int] | None:
    """``(min, max)`` heavy atoms of a built-in set's name ``nci-MIN-MAX`` (e.g.
    ``nci-9-11``, ``nci-1-6``), or None when ``name`` is not of that form. Raises
    ``InputError`` for a range that is empty or starts below 1."""
    m = re.fullmatch(r"nci-(\d+)-(\d+)", name)
    if m is None:
        return None
    lo, hi = int(m.group(1)), int(m.group(2))
    if not 1 <= lo <= hi:
        raise InputError(f"built-in set {name}: heavy-atom range must be 1 <= MIN <= MAX")
    return lo, hi


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
