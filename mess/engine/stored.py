"""Serialised stage programs on disk, so a new process skips tracing and lowering.

JAX's persistent compilation cache keys a program by its lowered module: every new
process still traces each stage in Python and lowers it to StableHLO before it can
look the compiled program up. For a cached ``mess energy`` run that is most of the
wait (ethanol B3LYP/def2-SVP on 2 CPU cores: about 11 of 17.9 s). A
:class:`ProgramStore` keeps each stage program as a serialised ``jax.export.Exported``
module instead; a later process deserialises it and calls it, which neither traces nor
lowers mess's code (the XLA compilation behind it still comes from the persistent
cache when that is on).

A stored program is keyed by the engine's program key (stage, signature, options,
batch size), the structure, shapes and dtypes of its arguments, the JAX and jaxlib
versions, the backend, and a hash of mess's own source files, so an edited or
upgraded mess never runs a program traced from other code. Files are written under a
temporary name and renamed when complete; an unreadable file is replaced. Stored
programs compute values only: differentiate through :func:`mess.run` and friends with
an engine that has no store.

The store is an object the caller owns (``mess.Engine(store=ProgramStore(path))``);
the command line uses one under its compilation cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import threading
from pathlib import Path

import jax
import numpy as np

log = logging.getLogger(__name__)


def source_hash() -> str:
    """SHA-256 of every Python file of the installed mess package (paths and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class ProgramStore:
    """A directory of serialised stage programs (see the module docstring).

    Attributes:
        path: the directory (created on first write).
        hits, writes, failures: programs loaded, stored, and not storable (those run
            as ordinary ``jax.jit`` programs).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.hits = self.writes = self.failures = 0
        self._source: str | None = None
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        """Add one to the counter ``what`` (``hits``, ``writes`` or ``failures``);
        programs may be prepared on several threads."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def wrap(self, key, make, compiler_options: dict | None = None):
        """A callable that runs the program ``make()`` would build for ``key``,
        loading it from or saving it to this store; a stored module is compiled with
        ``compiler_options`` (those ``make`` uses)."""
        return StoredProgram(self, key, make, compiler_options)

    def file_for(self, key, treedef, leaves) -> Path | None:
        """The file of ``key`` called on arguments ``leaves`` of structure ``treedef``;
        None when the key's text form is abbreviated (large arrays print with "...")
        or names object addresses, so it could not tell two programs apart."""
        import jaxlib

        spec = tuple((tuple(np.shape(x)), str(jax.numpy.result_type(x))) for x in leaves)
        if self._source is None:
            self._source = source_hash()
        text = repr((key, str(treedef), spec, jax.__version__, jaxlib.__version__, jax.default_backend(),
                     self._source))
        if "..." in text or " at 0x" in text:
            return None
        return self.path / f"{hashlib.sha256(text.encode()).hexdigest()[:40]}.jaxexport"

    def load(self, path: Path, compiler_options: dict | None = None):
        """``(callable on flat leaves, output treedef)`` from ``path`` (compiled with
        ``compiler_options``), or None when the file is missing or unreadable."""
        try:
            blob, skeleton = pickle.loads(path.read_bytes())
            exported = jax.export.deserialize(bytearray(blob))
        except FileNotFoundError:
            return None
        except Exception as exc:  # a truncated or foreign file: traced again and replaced
            log.warning("ignoring unreadable stored program %s (%s)", path.name, exc)
            return None
        self.count("hits")
        return jax.jit(exported.call, compiler_options=compiler_options), jax.tree.structure(skeleton)

    def save(self, path: Path, exported, skeleton) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps((exported.serialize(), skeleton))
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".jaxexport")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.count("writes")


class StoredProgram:
    """One engine program behind a :class:`ProgramStore`: per argument structure, the
    stored module if there is one, else the program exported now (traced once), saved,
    and run from the exported module."""

    def __init__(self, store: ProgramStore, key, make, compiler_options: dict | None = None):
        self.store, self.key, self.make = store, key, make
        self.compiler_options = compiler_options
        self._plain = None
        self._loaded: dict = {}

    def __call__(self, *args):
        leaves, treedef = jax.tree.flatten(args)
        path = self.store.file_for(self.key, treedef, leaves)
        if path is None:  # a key without a faithful text form: never stored
            if self._plain is None:
                self._plain = self.make()
            return self._plain(*args)
        entry = self._entry(path, leaves, treedef)
        if entry == "plain":
            return self._plain(*args)
        call, out_tree = entry
        return jax.tree.unflatten(out_tree, call(*leaves))

    def prepare(self, *args) -> None:
        """Load (or trace and store) and compile the program for ``args`` now, so that
        the call itself only runs it. Safe to call from several threads for different
        programs: the engine prepares a stage's programs side by side, which overlaps
        reading compiled programs from JAX's cache (measured on 2 CPU cores, the 23
        ERI-class programs of ethanol/def2-SVP: 2.5-2.7 s one after another, 1.5-1.6 s
        on two threads; compiling them from scratch, 41.5 s against 36.9 s)."""
        leaves, treedef = jax.tree.flatten(args)
        path = self.store.file_for(self.key, treedef, leaves)
        if path is None:
            return
        entry = self._entry(path, leaves, treedef)
        if entry != "plain" and not isinstance(entry[0], jax.stages.Compiled):
            self._loaded[path] = (entry[0].lower(*leaves).compile(), entry[1])

    def _entry(self, path: Path, leaves, treedef):
        entry = self._loaded.get(path)
        if entry is None:
            entry = self.store.load(path, self.compiler_options) or self._export(path, leaves, treedef)
            self._loaded[path] = entry
        return entry

    def _export(self, path: Path, leaves, treedef):
        if self._plain is None:
            self._plain = self.make()
        found = {}

        def flat(*xs):
            out, found["tree"] = jax.tree.flatten(self._plain(*jax.tree.unflatten(treedef, xs)))
            return out

        try:
            shapes = [jax.ShapeDtypeStruct(np.shape(x), jax.numpy.result_type(x)) for x in leaves]
            exported = jax.export.export(jax.jit(flat))(*shapes)
        except Exception as exc:  # not exportable: an ordinary program
            self.store.count("failures")
            log.debug("program %s not exportable (%s: %s)", self.key[0], type(exc).__name__, exc)
            return "plain"
        try:
            self.store.save(path, exported, jax.tree.unflatten(found["tree"], [0] * found["tree"].num_leaves))
        except Exception as exc:  # e.g. an output type that does not pickle: run it, keep nothing
            self.store.count("failures")
            log.debug("program %s not stored (%s: %s)", self.key[0], type(exc).__name__, exc)
        return jax.jit(exported.call, compiler_options=self.compiler_options), found["tree"]
