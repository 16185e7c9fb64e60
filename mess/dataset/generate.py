"""The dataset generator: SMILES -> RDKit conformers -> batched DFT -> Parquet shards.

:func:`generate` reads a source (:func:`mess.dataset.sources.load_source`), splits its
molecules into shards of ``shard_size`` molecules in source order, and for every shard
that the output directory does not yet hold: embeds the conformers (ETKDGv3, in a
worker process, one shard ahead of the DFT so the SCF never waits for RDKit), runs all
conformers of the shard through :func:`mess.run_batch` (molecules of one padding
bucket share compiled programs), and writes the rows and the error records of the
shard atomically (:class:`mess.dataset.store.Store`). Re-running with the same output
directory resumes; different settings are refused, naming the setting.

A molecule that cannot be used becomes an error record (``mol_id``, ``smiles``,
``stage``, ``message``) with stage ``source`` (duplicate id, empty SMILES), ``smiles``
(unparsable), ``size`` (more heavy atoms than ``max_heavy``), ``embed`` (no conformer),
``molecule`` (an element mess does not know, atoms too close), ``basis`` (an element
the basis lacks) or ``scf`` (the calculation could not be set up): never a crash,
never a silent drop. Unconverged SCFs are rows with ``converged = False``.

QM1B's preset (:data:`QM1B_PRESET`): b3lyp5/STO-3G, grid level 0, 20 fixed cycles,
every molecule embedded with seed 43; its 0.01 eV filter on ``energy_std_last5`` is
left to the reader (the column is stored, no row is dropped).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import time
from pathlib import Path

from mess.dataset.conformers import conformer_seed, embed_arrays
from mess.dataset.sources import BUILTIN, Entry, load_source, source_digest
from mess.dataset.store import Store
from mess.dataset.validate import differences, merge, pick, pyscf_reference
from mess.errors import InputError

QM1B_PRESET = {"basis": "sto-3g", "xc": "b3lyp5", "grid_level": 0, "fixed_cycles": 20, "seed": 43,
               "same_seed": True}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a dataset is (a resumed run must match every field).

    Attributes:
        source: file path or the built-in set's name; ``source_digest`` its content.
        conformers: ETKDG conformers per molecule; ``seed`` the run seed
            (:func:`~mess.dataset.conformers.conformer_seed`; ``same_seed``: every
            molecule embedded with ``seed`` itself, as QM1B did); ``mmff``: MMFF94
            relaxation; ``prune_rms``: RMSD pruning threshold (Angstrom, 0 none).
        basis, xc, grid_level: the method; ``fixed_cycles`` (None: converged mode with
            ``conv_tol`` Hartree on the energy change, ``conv_tol_grad`` Hartree on the
            orbital-gradient norm, and ``max_cycle``); ``forces``: store forces. The
            orbital-gradient threshold is what makes the stored orbital energies
            converged: with PySCF's ``sqrt(conv_tol)`` (3e-5 Ha at 1e-9) a HOMO is
            only within ~1e-5 Ha of the SCF solution, with 1e-6 (the default) within
            ~1e-8, at two or three more cycles.
        schema: ``native`` or ``qm1b`` columns (:mod:`mess.dataset.schema`).
        limit: first ``limit`` source molecules only (None: all); ``shard_size``:
            molecules per shard; ``max_heavy``: size limit (heavy atoms).
        precision: ``"float64"`` or ``"mixed"`` (float32 ERIs; :data:`mess.engine.signature.PRECISIONS`).
        mess_version: recorded, as the precision, so that no dataset mixes numbers of
            different precisions or code versions.
    """

    source: str = BUILTIN
    source_digest: str = ""
    conformers: int = 1
    seed: int = 43
    same_seed: bool = False
    mmff: bool = False
    prune_rms: float = 0.0
    basis: str = "sto-3g"
    xc: str = "b3lyp5"
    grid_level: int = 0
    fixed_cycles: int | None = None
    conv_tol: float = 1e-9
    conv_tol_grad: float = 1e-6
    max_cycle: int = 50
    forces: bool = False
    schema: str = "native"
    limit: int | None = None
    shard_size: int = 32
    max_heavy: int = 40
    precision: str = "float64"
    mess_version: str = ""

    def method(self) -> dict:
        """The method metadata stored in every shard."""
        return {"basis": self.basis, "xc": self.xc, "grid_level": self.grid_level,
                "scf_mode": f"fixed {self.fixed_cycles} cycles" if self.fixed_cycles else
                f"converged (conv_tol {self.conv_tol:g} Ha, conv_tol_grad {self.conv_tol_grad:g} Ha, "
                f"max_cycle {self.max_cycle})",
                "precision": self.precision, "mess_version": self.mess_version}


def check_settings(s: Settings) -> None:
    """Raise ``ValueError`` (one line) for settings that cannot be run."""
    from mess.dataset.schema import SCHEMAS
    from mess.engine.signature import functional_of

    if s.conformers < 1:
        raise InputError(f"--conformers must be at least 1, got {s.conformers}")
    if s.shard_size < 1:
        raise InputError(f"shard size must be at least 1, got {s.shard_size}")
    if s.limit is not None and s.limit < 1:
        raise InputError(f"--limit must be at least 1, got {s.limit}")
    if s.fixed_cycles is not None and s.fixed_cycles < 5:
        raise InputError(f"--fixed-cycles must be at least 5 (the std of the last five energies), got {s.fixed_cycles}")
    if not 0 <= s.grid_level <= 9:
        raise InputError(f"--grid-level must be 0-9, got {s.grid_level}")
    if not s.conv_tol > 0:
        raise InputError(f"--conv-tol must be positive, got {s.conv_tol}")
    if not s.conv_tol_grad > 0:
        raise InputError(f"--conv-tol-grad must be positive, got {s.conv_tol_grad}")
    if s.schema not in SCHEMAS:
        raise InputError(f"unknown schema {s.schema!r} (use one of {', '.join(SCHEMAS)})")
    from mess.engine.signature import PRECISIONS

    if s.precision not in PRECISIONS:
        raise InputError(f"precision must be {' or '.join(map(repr, PRECISIONS))}, got {s.precision!r}")
    if s.prune_rms < 0:
        raise InputError(f"--prune-rms must be >= 0, got {s.prune_rms}")
    functional_of(s.xc)
    from mess.basis.shells import element_shells

    element_shells(s.basis, 1, False)  # raises ValueError naming an unknown basis


# ------------------------------------------------------------------------------- workers


def _embed_shard(entries: list[Entry], s: dict) -> list[dict]:
    """Conformers of one shard's entries (runs in a worker process): per entry either
    ``{"ok": (numbers, positions, charge, spin)}`` or ``{"error": (stage, message)}``."""
    out = []
    for e in entries:
        if e.problem:
            out.append({"error": ("source", e.problem)})
            continue
        if not e.smiles:
            out.append({"error": ("source", "empty SMILES")})
            continue
        try:
            from rdkit import Chem, RDLogger

            RDLogger.DisableLog("rdApp.*")
            mol = Chem.MolFromSmiles(e.smiles)
            if mol is None:
                out.append({"error": ("smiles", f"cannot parse SMILES {e.smiles!r}")})
                continue
            if mol.GetNumHeavyAtoms() > s["max_heavy"]:
                out.append({"error": ("size", f"{mol.GetNumHeavyAtoms()} heavy atoms, more than the limit "
                                              f"{s['max_heavy']}")})
                continue
            seed = conformer_seed(s["seed"], e.mol_id, s["same_seed"])
            out.append({"ok": embed_arrays(e.smiles, s["conformers"], seed, mmff=s["mmff"],
                                           prune_rms=s["prune_rms"])})
        except ValueError as exc:
            out.append({"error": ("embed", str(exc))})
        except Exception as exc:  # noqa: BLE001 - RDKit raises its own kinds; record, never crash
            out.append({"error": ("embed", f"{type(exc).__name__}: {exc}")})
    return out


class _Embedder:
    """Embedding one shard ahead in a worker process (spawned: no fork of a process
    that holds JAX's threads); ``workers=0`` embeds inline."""

    def __init__(self, workers: int):
        self.pool = None
        if workers > 0:
            self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, entries, s):
        if self.pool is None:
            return _Done(_embed_shard(entries, s))
        return self.pool.submit(_embed_shard, entries, s)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


# ------------------------------------------------------------------------------- driver


@dataclasses.dataclass
class Summary:
    """Counts and timings of one run (this invocation; ``resumed_shards`` were done)."""

    out: str
    molecules: int = 0
    rows: int = 0
    converged: int = 0
    failures: dict = dataclasses.field(default_factory=dict)
    shards_total: int = 0
    resumed_shards: int = 0
    seconds: float = 0.0
    dft_seconds: float = 0.0
    compile_seconds: float = 0.0
    validation: dict = dataclasses.field(default_factory=dict)

    def text(self) -> str:
        rate = self.rows / self.dft_seconds if self.dft_seconds else 0.0
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        conv = f"{self.converged / self.rows:.1%}" if self.rows else "-"
        return "\n".join([
            f"mess generate: {self.out}",
            f"  shards      {self.shards_total} ({self.resumed_shards} already done before this run)",
            f"  molecules   {self.molecules} processed in this run, rows {self.rows}, converged {conv}",
            f"  failures    {fails}",
            f"  time        {self.seconds:.1f} s (DFT {self.dft_seconds:.1f} s, of it compiling "
            f"{self.compile_seconds:.1f} s); {rate:.2f} conformers/s in the DFT",
        ] + ([f"  validation  {v['rows']} rows against PySCF: max |dE| {v['energy']:.1e} Ha, |dHOMO| "
              f"{v['homo']:.1e} Ha, |dLUMO| {v['lumo']:.1e} Ha, |d dipole| {v['dipole']:.1e} D"]
             if (v := self.validation) else []))


def generate(settings: Settings, out: str, batch_size: int | None = None, progress: bool = True,
             workers: int = 1, engine=None, entries: list[Entry] | None = None,
             validate_fraction: float = 0.0, ray: bool = False, ray_address: str | None = None,
             ray_workers: int | None = None, ray_gpus_per_worker: float = 0.0) -> Summary:
    """Generate (or resume) the dataset ``settings`` describes into directory ``out``.

    ``workers``: embedding processes (0: embed inline). ``validate_fraction``: recompute
    that fraction of this run's conformers with PySCF (:mod:`mess.dataset.validate`);
    the largest differences go to the summary and the manifest.

    ``ray`` (or a ``ray_address``): run the shards' DFT on Ray actors
    (:mod:`mess.dataset.cluster`): ``ray_workers`` actors (default: one per CPU of the
    cluster, or per GPU with ``ray_gpus_per_worker``), each with its own
    :class:`~mess.Engine`; this process embeds, plans and writes, so only it touches
    ``out``. The padding of every shard is planned here in shard order, so the rows
    equal those of a run without Ray.

    Returns a :class:`Summary`. Raises ``ValueError`` (one line) for a bad source, bad
    settings, or an output directory holding a different dataset."""
    import mess

    if not 0.0 <= validate_fraction <= 1.0:
        raise InputError(f"--validate-fraction must be between 0 and 1, got {validate_fraction}")
    use_ray = bool(ray or ray_address)
    if use_ray:
        from mess.dataset.cluster import check_options

        if engine is not None:
            raise InputError("an engine cannot be shared with Ray workers (each worker owns its own)")
        check_options(ray_workers, ray_gpus_per_worker)
    entries = load_source(settings.source) if entries is None else entries
    if settings.limit is not None:
        entries = entries[:settings.limit]
    settings = dataclasses.replace(settings, source_digest=source_digest(entries), mess_version=mess.__version__)
    check_settings(settings)
    store = Store(out)
    sdict = dataclasses.asdict(settings)
    store.open(sdict, informational=("source",))  # the source is compared by its digest
    validated = store.progress().get("validation") or {}  # earlier runs into this directory
    n = settings.shard_size
    shards = [entries[i:i + n] for i in range(0, len(entries), n)]
    done = store.done()
    todo = [k for k in range(len(shards)) if k not in done]
    summary = Summary(out=str(out), shards_total=len(shards), resumed_shards=len(shards) - len(todo))
    engine = engine or mess.Engine()
    t0 = time.perf_counter()
    bar = _bar(sum(len(shards[k]) for k in todo), progress)
    embedder = _Embedder(workers)
    runner = None
    planned: dict[int, tuple] = {}  # signatures of the shards planned or run in this invocation

    def known(k: int) -> list:
        """Signatures of shards < k in shard order without repeats (the padding history
        a sequential run would have had)."""
        sigs = []
        for j in range(k):
            if j not in planned:  # done before this invocation
                planned[j] = store.used(j) if j in done else ()
            for sig in planned[j]:
                if sig not in sigs:
                    sigs.append(sig)
        return sigs

    def record(k, result):
        nonlocal validated
        table, errors, stats, used = result
        planned[k] = tuple(used)
        store.write_shard(k, table, errors, used)
        if stats["validation"]:
            summary.validation = merge(summary.validation, stats["validation"])
            validated = merge(validated, stats["validation"])
        summary.molecules += len(shards[k])
        summary.rows += stats["rows"]
        summary.converged += stats["converged"]
        summary.dft_seconds += stats["seconds"]
        summary.compile_seconds += stats["compile_seconds"]
        for e in errors:
            summary.failures[e["stage"]] = summary.failures.get(e["stage"], 0) + 1
        store.write_manifest(sdict, {"shards_total": len(shards), "shards_done": len(store.done()),
                                     "validation": validated})
        bar.update(len(shards[k]), summary)

    try:
        if use_ray:
            from mess.dataset.cluster import RayRunner

            runner = RayRunner(address=ray_address, workers=ray_workers, gpus_per_worker=ray_gpus_per_worker)
        pending = {}
        if todo:
            pending[todo[0]] = embedder.submit(shards[todo[0]], sdict)
        for i, k in enumerate(todo):
            if i + 1 < len(todo):
                pending[todo[i + 1]] = embedder.submit(shards[todo[i + 1]], sdict)
            embedded = pending.pop(k).result()
            if runner is None:
                record(k, _run_shard(settings, shards[k], embedded, engine, batch_size, known(k),
                                     validate_fraction, k))
                continue
            prior = known(k)
            planned[k] = shard_signatures(settings, shards[k], embedded, engine, prior)
            while runner.full():
                record(*runner.next_done())
            runner.submit(k, settings, shards[k], embedded, prior, batch_size, validate_fraction)
        while runner is not None and runner.busy():
            record(*runner.next_done())
    finally:
        bar.close()
        embedder.close()
        if runner is not None:
            runner.close()
    summary.seconds = time.perf_counter() - t0
    errors = store.write_errors()
    from mess.dataset.card import write_card

    write_card(store, settings, errors, validated)
    return summary


def _prepare_shard(settings: Settings, entries: list[Entry], embedded: list[dict]):
    """The molecules of one shard prepared for the engine: (error records, jobs,
    prepared), jobs being ``(entry, conformer index, molecule)``. A molecule that cannot
    be prepared becomes an error record."""
    import mess
    from mess.engine.signature import Method, prepare

    method = Method(settings.basis, settings.xc, False, settings.grid_level, precision=settings.precision)
    errors, jobs, prepared = [], [], []
    for e, emb in zip(entries, embedded):
        if "error" in emb:
            stage, msg = emb["error"]
            errors.append(_error(e, stage, msg))
            continue
        numbers, positions, charge, spin = emb["ok"]
        try:
            mols = [mess.Molecule.from_arrays(numbers, p, charge=charge, spin=spin) for p in positions]
        except ValueError as exc:
            errors.append(_error(e, "molecule", str(exc).splitlines()[0] if str(exc) else "invalid molecule"))
            continue
        try:
            preps = [prepare(m, method) for m in mols]
        except ValueError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else "cannot prepare the calculation"
            stage = "size" if msg.startswith("molecule too large") else "basis" if "basis" in msg else "scf"
            errors.append(_error(e, stage, msg))
            continue
        jobs += [(e, c, m) for c, m in enumerate(mols)]
        prepared += preps
    return errors, jobs, prepared


def shard_signatures(settings: Settings, entries: list[Entry], embedded: list[dict], engine, known: list) -> tuple:
    """The signatures shard's molecules are planned into, given the ``known`` ones of
    the earlier shards (what :func:`_run_shard` will use): lets a driver hand out later
    shards before the earlier ones have run, with the same padding as a sequential run."""
    _, _, prepared = _prepare_shard(settings, entries, embedded)
    return engine.plan(prepared, known=known).signatures if prepared else ()


def _run_shard(settings: Settings, entries: list[Entry], embedded: list[dict], engine, batch_size, known: list,
               validate_fraction: float = 0.0, shard: int = 0):
    """DFT of one shard: (pyarrow table, error records, stats, signatures used).

    Molecules are prepared one by one (a molecule that cannot be prepared becomes an
    error record) and planned into buckets reusing ``known``, the signatures of the
    earlier shards of the dataset (not whatever the engine compiled), so the padding,
    and with it every bit of the results, is the same in a resumed run."""
    import pyarrow as pa

    from mess.dataset.schema import arrow_schema, rows
    from mess.engine.engine import split_options
    from mess.timing import CompileClock

    errors, jobs, prepared = _prepare_shard(settings, entries, embedded)
    scf_options, _ = split_options({"conv_tol": settings.conv_tol, "conv_tol_grad": settings.conv_tol_grad,
                                    "max_cycle": settings.max_cycle})
    t = time.perf_counter()
    results, used = [], ()
    with CompileClock() as clock:
        if prepared:
            plan = engine.plan(prepared, known=known)
            used = plan.signatures
            results = engine.run_plan(prepared, plan, scf_options, settings.fixed_cycles, batch_size,
                                      gradient=settings.forces)
    seconds = time.perf_counter() - t
    out_rows = [rows(settings.schema, e.mol_id, e.smiles, c, m, r, settings.forces)
                for (e, c, m), r in zip(jobs, results)]
    schema = arrow_schema(settings.schema, settings.forces, settings.method())
    table = pa.Table.from_pylist(out_rows, schema=schema)
    converged = sum(bool(r.converged) for r in results)
    checked = [differences(results[i], pyscf_reference(jobs[i][2], settings))
               for i in pick(len(jobs), validate_fraction, settings.seed, shard)]
    return table, errors, {"rows": len(out_rows), "converged": converged, "seconds": seconds,
                           "compile_seconds": clock.seconds, "validation": checked}, used


def _error(e: Entry, stage: str, message: str) -> dict:
    return {"mol_id": e.mol_id, "smiles": e.smiles, "line": e.line, "stage": stage, "message": message}


class _bar:
    """tqdm progress over molecules (conformers/s and failures in the postfix)."""

    def __init__(self, total: int, enabled: bool):
        self.t = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.t = tqdm(total=total, unit="mol", desc="mess generate")
        self.start = time.perf_counter()

    def update(self, n: int, summary: Summary):
        if self.t is not None:
            rate = summary.rows / max(time.perf_counter() - self.start, 1e-9)
            self.t.set_postfix({"conf/s": f"{rate:.2f}", "failed": sum(summary.failures.values())})
            self.t.update(n)

    def close(self):
        if self.t is not None:
            self.t.close()


def default_out(settings: Settings) -> Path:
    return Path(f"mess-dataset-{settings.xc}-{settings.basis}")
