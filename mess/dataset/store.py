"""A dataset directory: Parquet shards, their error records, and a manifest.

Layout of ``OUT``::

    manifest.json              settings (what a resume must match) and progress
    shard-00000.parquet        rows of source molecules [0, S), S = shard size
    shard-00000.errors.jsonl   error records of those molecules (may be empty)
    shard-00000.plan.pkl       the signatures (padding buckets) the shard used
    errors.jsonl               all error records (rebuilt at the end of a run)
    README.md                  dataset card (rebuilt at the end of a run)

Nothing is lost and nothing is duplicated whatever moment a run is killed: a shard is
written to a temporary name and renamed when complete (the rename is atomic), the
errors file before the Parquet file, so a shard counts as done exactly when its
Parquet file exists; a resumed run recomputes every other shard from scratch and
deletes stray temporary files. The manifest is rewritten the same way.

Each shard's signatures are kept so that a resumed run plans the remaining shards
exactly as an uninterrupted run would (the signatures of all earlier shards are
reused where they fit), which makes the padding, and every bit of every number,
independent of where a run was interrupted.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from mess.errors import InputError

MANIFEST = "manifest.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    """The shards and manifest of one output directory (see the module docstring)."""

    def __init__(self, out: str | os.PathLike):
        self.root = Path(out)

    def shard_path(self, k: int) -> Path:
        return self.root / f"shard-{k:05d}.parquet"

    def errors_path(self, k: int) -> Path:
        return self.root / f"shard-{k:05d}.errors.jsonl"

    def open(self, settings: dict, informational: tuple[str, ...] = ()) -> bool:
        """Create the directory or check it belongs to ``settings``; returns True when
        resuming. Raises ``ValueError`` naming the first differing setting (keys in
        ``informational`` are recorded but not compared)."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"output path exists and is not a directory: {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        for stray in self.root.glob("*.tmp"):
            stray.unlink()
        path = self.root / MANIFEST
        if path.exists():
            try:
                old = json.loads(path.read_text())["settings"]
            except (ValueError, KeyError, OSError):
                raise InputError(f"{path} is not a mess dataset manifest; use a new --out") from None
            for key in sorted((set(old) | set(settings)) - set(informational)):
                if old.get(key) != settings.get(key):
                    raise InputError(f"cannot resume {self.root}: setting {key!r} was {old.get(key)!r}, now "
                                     f"{settings.get(key)!r} (use the original settings or a new --out)")
            return True
        if any(self.root.glob("shard-*.parquet")):
            raise InputError(f"{self.root} holds shards but no manifest; use a new --out")
        self.write_manifest(settings, {})
        return False

    def write_manifest(self, settings: dict, progress: dict) -> None:
        atomic_write(self.root / MANIFEST, json.dumps({"settings": settings, "progress": progress},
                                                      indent=1).encode())

    def progress(self) -> dict:
        """The manifest's progress record (empty if none)."""
        try:
            return json.loads((self.root / MANIFEST).read_text()).get("progress", {})
        except (OSError, ValueError):
            return {}

    def done(self) -> set[int]:
        """Indices of the complete shards."""
        out = set()
        for p in self.root.glob("shard-*.parquet"):
            try:
                out.add(int(p.name[6:11]))
            except ValueError:
                continue
        return out

    def plan_path(self, k: int) -> Path:
        return self.root / f"shard-{k:05d}.plan.pkl"

    def used(self, k: int) -> tuple:
        """The signatures shard ``k`` was planned into, from its plan file (written
        before the shard's Parquet file; empty if there is none)."""
        p = self.plan_path(k)
        if not p.exists():
            return ()
        return tuple(pickle.loads(p.read_bytes()))

    def write_shard(self, k: int, table, errors: list[dict], signatures=()) -> None:
        """Write shard ``k`` (a pyarrow table), its error records and the signatures it
        used, atomically (the Parquet file last)."""
        import pyarrow.parquet as pq

        atomic_write(self.errors_path(k), "".join(json.dumps(e) + "\n" for e in errors).encode())
        atomic_write(self.plan_path(k), pickle.dumps(tuple(signatures)))
        tmp = self.shard_path(k).with_name(self.shard_path(k).name + ".tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.shard_path(k))

    def shards(self) -> list[Path]:
        return sorted(self.root.glob("shard-*.parquet"))

    def errors(self) -> list[dict]:
        """Error records of the complete shards, in shard order."""
        out = []
        for k in sorted(self.done()):
            p = self.errors_path(k)
            if p.exists():
                out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        return out

    def write_errors(self) -> list[dict]:
        errs = self.errors()
        atomic_write(self.root / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errs).encode())
        return errs
