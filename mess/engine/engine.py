"""The batched engine: compiled programs per signature, and ``run_batch``.

An :class:`Engine` owns its compiled programs: one ``jax.jit(jax.vmap(stage))`` per
stage, signature and batch size, in a bounded least-recently-used table. Dropping the
engine (or :meth:`Engine.clear`) frees them; nothing else in mess holds compiled
programs, and no mess call clears JAX's caches. :func:`default_engine` is the engine
that :func:`mess.run` and :func:`mess.run_batch` use when none is given.

``run_batch`` (:meth:`Engine.run_batch`):

1. host: validate and prepare every molecule (basis and MINAO layouts, quartets
   screened at its own geometry, grid size);
2. host: plan buckets (:mod:`mess.engine.planner`), reusing signatures this engine has
   compiled when a molecule fits them;
3. per bucket, per batch of at most ``batch_size`` molecules (the last one filled up by
   repeating a molecule, so every batch of a bucket has the same shape): integrals
   (one program for the one-electron part, one per ERI class, one for the grid), the
   MINAO guess of each geometry, and the plain SCF iteration for the whole batch; only
   the items that did not converge run the fallback phase, gathered into a smaller
   batch;
4. host: one :class:`Result` per molecule in input order, in PySCF's AO order and
   without padding.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mess.engine import stages
from mess.engine.functional import energy as energy_functional
from mess.engine.planner import COMPILE_WORK, Plan, batch_size_for, plan_buckets
from mess.engine.resources import machine_memory
from mess.engine.signature import Method, Prepared, Signature, method_from_options, prepare
from mess.engine.system import Params, build, default_params, stack, take
from mess.errors import InputError
from mess.scf.eig import reorthonormalise
from mess.scf.occupation import make_rdm1
from mess.scf.options import SCFOptions
from mess.structure import Molecule, require_molecule
from mess.version import package_version

#: Fraction of the kernel's memory-map limit above which an engine drops its least
#: recently used programs (down to half of it).
MAP_FRACTION = 0.5
#: Programs an engine keeps however high the memory-map count is.
MIN_PROGRAMS = 8

#: Threads that load and compile a stage's stored programs side by side
#: (:meth:`Engine._prepare`): at most the machine's cores, at most 4.
PREPARE_THREADS = max(1, min(4, os.cpu_count() or 1))

#: XLA options for the programs that compile for far longer than they run (the
#: one-electron integrals, the MINAO guess, ERI classes on the array kernel), on the
#: CPU: XLA's elemental emitters instead of its MLIR fusion emitters. Measured on 2 CPU
#: cores, each program alone: ethanol/def2-SVP one-electron integrals 7.7 s -> 4.1 s
#: of compilation (15 -> 11 ms warm), MINAO guess 2.9 -> 2.1 s (12 ms either way), the
#: six water/STO-3G ERI classes on the array kernel 4.5 -> 2.9 s. The grid stage, the
#: pair matrices and the SCF keep XLA's defaults: with these options they ran up to
#: 1.7x longer (grid 264 -> 439 ms, pair matrices 182 -> 278 ms).
QUICK_COMPILE_CPU = (("xla_cpu_use_fusion_emitters", False),)


#: Estimated work (:meth:`Signature.cost`, floating-point operations, times the batch
#: size) below which the SCF programs also compile with :data:`QUICK_COMPILE_CPU`:
#: about 10 ms of running. Above it they keep XLA's defaults (ethanol/def2-SVP B3LYP,
#: 1.3e11: ten cycles 1.86 s with the defaults, 1.98 s with the option).
QUICK_SCF_WORK = 1e8


def _light_scf(sig: Signature, batch: int) -> bool:
    return sig.cost() * batch < QUICK_SCF_WORK


def quick_compile_options() -> dict | None:
    """:data:`QUICK_COMPILE_CPU` as ``jax.jit``'s ``compiler_options`` when the default
    backend is the CPU, else None (XLA's defaults)."""
    return dict(QUICK_COMPILE_CPU) if jax.default_backend() == "cpu" else None


def map_pressure() -> float:
    """This process's memory mappings as a fraction of the kernel's limit
    (``/proc/self/maps`` over ``vm.max_map_count``; 0 where unknown)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            count = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return count / limit if limit > 0 else 0.0


#: Progress messages (compilation, sizes, timings) go to the ``mess`` logger at INFO:
#: ``logging.basicConfig(level=logging.INFO)`` shows them; the CLI's ``--verbose`` does.
log = logging.getLogger("mess")

#: SCF option names accepted by run / run_batch (fields of SCFOptions).
SCF_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(SCFOptions))


class Result(eqx.Module):
    """Outcome for one molecule. Energies in Hartree, dipole in Debye, charges in e;
    arrays are host (numpy) arrays in PySCF's AO order.

    Attributes:
        energy: total energy.
        converged, iterations: SCF convergence flag and cycle count (fallback cycles
            included).
        mo_energy: orbital energies ``[nao]`` (restricted) or ``[2, nao]``.
        mo_coeff, mo_occ, density: orbitals (columns), occupations, density matrix.
        homo, lumo: frontier orbital energies (over both spins when unrestricted).
        dipole: dipole moment ``[3]`` in Debye (nuclear + electronic, origin 0).
        mulliken: Mulliken atomic charges ``[natom]``.
        components: ``e_nuc``, ``e_one``, ``coulomb``, ``exchange`` (and ``xc`` for DFT).
        energy_history: total energy of the initial density and after each cycle
            (nan-padded), Hartree; grad_history: the orbital-gradient norm after
            each cycle (nan for the initial density and padding), Hartree.
        energy_std_last5: with ``fixed_cycles``: standard deviation (population) of the
            last five energies, Hartree; else None.
        gradient: ``[natom, 3]`` dE/dR in Hartree/Bohr when requested, else None.
        nao: number of atomic orbitals; ngrid: number of grid points (0 for HF).
        method: e.g. ``"RHF"``, ``"UKS"``; basis, xc: as requested.
        molecule: the molecule computed (positions in Bohr); cart, grid_level: the
            rest of the method (for :meth:`to_pyscf`).
        auxbasis: the auxiliary basis when J and K came from density fitting, else
            None.
    """

    energy: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    mo_energy: np.ndarray
    mo_coeff: np.ndarray
    mo_occ: np.ndarray
    density: np.ndarray
    homo: np.ndarray
    lumo: np.ndarray
    dipole: np.ndarray
    mulliken: np.ndarray
    components: dict
    energy_history: np.ndarray
    grad_history: np.ndarray
    energy_std_last5: np.ndarray | None
    gradient: np.ndarray | None
    nao: int = eqx.field(static=True)
    ngrid: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    basis: str = eqx.field(static=True)
    xc: str = eqx.field(static=True)
    molecule: Molecule | None = None
    cart: bool = eqx.field(static=True, default=False)
    grid_level: int = eqx.field(static=True, default=3)
    auxbasis: str | None = eqx.field(static=True, default=None)

    @property
    def density_total(self) -> np.ndarray:
        return self.density if self.density.ndim == 2 else self.density[0] + self.density[1]

    @property
    def gap(self) -> np.ndarray:
        """HOMO-LUMO gap, Hartree."""
        return self.lumo - self.homo

    def make_rdm1(self) -> np.ndarray:
        """The density matrix in PySCF's layout and AO order: ``[nao, nao]`` (total)
        for restricted, ``[2, nao, nao]`` (alpha, beta) for unrestricted results."""
        return np.asarray(self.density)

    def to_pyscf(self):
        """A PySCF mean-field object (``RHF``/``UHF``/``RKS``/``UKS``, same basis,
        functional and grid level, ``small_rho_cutoff = 0`` as mess's grids) carrying
        this result's ``mo_coeff``, ``mo_energy``, ``mo_occ``, ``e_tot`` and
        ``converged`` (density-fitted with the same auxiliary basis when this result
        is), so PySCF's analysis (``mulliken_pop``, ``dip_moment``,
        ``energy_tot``, post-HF methods) starts from mess's answer without an SCF."""
        from pyscf import dft, scf

        if self.molecule is None:
            raise InputError("this result does not carry its molecule")
        mol = self.molecule.to_pyscf(self.basis, self.cart)
        restricted = self.method.startswith("R")
        if self.method.endswith("HF"):
            mf = scf.RHF(mol) if restricted else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if restricted else dft.UKS(mol)
            mf.xc = self.xc
            mf.grids.level = self.grid_level
            mf.small_rho_cutoff = 0
        if self.auxbasis is not None:
            mf = mf.density_fit(auxbasis=self.auxbasis)
        mf.mo_coeff = np.asarray(self.mo_coeff)
        mf.mo_energy = np.asarray(self.mo_energy)
        mf.mo_occ = np.asarray(self.mo_occ)
        mf.e_tot = float(self.energy)
        mf.converged = bool(self.converged)
        return mf

    def __repr__(self) -> str:
        conv = "converged" if bool(self.converged) else "NOT converged"
        return (f"Result({self.method}/{self.basis} {self.xc}: energy={float(self.energy):.10f} Ha, {conv} in "
                f"{int(self.iterations)} cycles, homo={float(self.homo):.6f} Ha, lumo={float(self.lumo):.6f} Ha, "
                f"|dipole|={float(np.linalg.norm(self.dipole)):.4f} D, nao={self.nao})")

    def to_dict(self) -> dict:
        """The result as JSON-ready Python numbers and lists, each quantity with its
        unit (``*_unit`` keys): method, geometry (Angstrom), energy and components,
        frontier orbitals, dipole, Mulliken charges, convergence, gradient when
        computed, and the mess version. Orbitals and density are left out (see
        :meth:`make_rdm1`, ``mo_coeff``)."""
        from mess.structure import BOHR

        out: dict = {"mess_version": package_version(), "method": self.method, "basis": self.basis, "xc": self.xc,
                     "cart": self.cart}
        if self.auxbasis is not None:
            out.update(density_fit=True, auxbasis=self.auxbasis)
        if self.xc != "hf":
            out["grid_level"] = self.grid_level
        if self.molecule is not None:
            out.update(symbols=list(self.molecule.symbols),
                       positions=(np.asarray(self.molecule.positions) * BOHR).tolist(), positions_unit="Angstrom",
                       charge=int(self.molecule.charge), spin=int(self.molecule.spin))
        out.update(energy=float(self.energy), energy_unit="Hartree", converged=bool(self.converged),
                   iterations=int(self.iterations), homo=float(self.homo), lumo=float(self.lumo),
                   gap=float(self.gap), orbital_energy_unit="Hartree",
                   dipole=[float(x) for x in np.asarray(self.dipole)], dipole_unit="Debye",
                   mulliken=[float(x) for x in np.asarray(self.mulliken)], mulliken_unit="e",
                   components={k: float(v) for k, v in self.components.items()}, components_unit="Hartree",
                   nao=int(self.nao), ngrid=int(self.ngrid))
        if self.energy_std_last5 is not None:
            out.update(energy_std_last5=float(self.energy_std_last5), energy_std_last5_unit="Hartree")
        if self.gradient is not None:
            out.update(gradient=np.asarray(self.gradient).tolist(), gradient_unit="Hartree/Bohr")
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        import json

        return json.dumps(self.to_dict())

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        conv = "converged" if bool(self.converged) else "NOT CONVERGED"
        lines = [
            f"{self.method}/{self.basis} ({self.xc}): E = {float(self.energy):.10f} Ha "
            f"({conv} in {int(self.iterations)} cycles)",
            f"  nao = {self.nao}" + (f", grid points = {self.ngrid}" if self.ngrid else "")
            + (f", density fitting with {self.auxbasis}" if self.auxbasis else ""),
            "  components (Ha): " + ", ".join(f"{k} = {float(v):.8f}" for k, v in self.components.items()),
            f"  HOMO = {float(self.homo):.6f} Ha, LUMO = {float(self.lumo):.6f} Ha",
            "  dipole (Debye): [" + ", ".join(f"{float(x):.4f}" for x in self.dipole) + "]"
            + f"  |mu| = {float(np.linalg.norm(self.dipole)):.4f}",
            "  Mulliken charges: [" + ", ".join(f"{float(x):.4f}" for x in self.mulliken) + "]",
        ]
        if self.energy_std_last5 is not None:
            lines.append(f"  std of the last 5 energies: {float(self.energy_std_last5):.3e} Ha")
        return "\n".join(lines)


def split_options(options: dict) -> tuple[SCFOptions, dict]:
    """User options -> (SCFOptions, the rest); unknown names raise ``ValueError``."""
    scf_kw = {k: v for k, v in options.items() if k in SCF_OPTION_NAMES}
    rest = {k: v for k, v in options.items() if k not in SCF_OPTION_NAMES}
    known = {"init_guess", "schwarz_threshold", "restricted", "grid_level", "jk", "density_fit", "auxbasis",
             "precision"}
    unknown = set(rest) - known
    if unknown:
        raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return SCFOptions(**scf_kw), rest


def require_float64() -> None:
    """Raise a clear error unless JAX's float64 mode is on."""
    if not jax.config.read("jax_enable_x64"):
        raise InputError(
            "mess needs float64: enable it with jax.config.update('jax_enable_x64', True) "
            "or the environment variable JAX_ENABLE_X64=1")


def available_memory() -> int:
    """Bytes of memory a batch may use: a quarter of :func:`~mess.engine.resources.machine_memory`
    (the accelerator's memory limit, or the host's available memory)."""
    return machine_memory()[0] // 4


def _reference_overlap_orbitals(mo_coeff, mo_occ, restricted):
    c = mo_coeff[None] if restricted else mo_coeff
    occ = mo_occ[None] if restricted else mo_occ
    return c, occ


def fixed_orbital_energy(sig: Signature, system, params: Params, one, blocks, grid, mo_coeff, mo_occ, ref_overlap):
    """The energy functional at the orbitals ``mo_coeff`` re-orthonormalised for the
    overlap at ``params`` (equal to the SCF energy where the orbitals were solved; its
    gradient there is the analytic gradient, Pulay 1969, with the grid response for DFT,
    Johnson, Gill & Pople 1993)."""
    ham = stages.assemble(sig, system, params, one, blocks, grid)
    c, occ = _reference_overlap_orbitals(mo_coeff, mo_occ, sig.restricted)
    c = jax.vmap(lambda ci, oi: reorthonormalise(ci, oi > 0, ham.overlap, ref_overlap))(c, occ)
    dm = make_rdm1(c, occ)
    return energy_functional(ham, dm[0] if sig.restricted else dm)[0]


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


class Engine:
    """Compiled programs per signature, and the batched calculations on them.

    Args:
        max_programs: most compiled programs kept (least recently used dropped first).
        memory: bytes a batch may use (default :func:`available_memory`, read at the
            engine's first run and kept).
        max_buckets: most new signatures a planned call creates per method and kind.
        memory_limit: bytes one molecule may need before it is refused with an
            :class:`~mess.errors.InputError` naming its size (default: the machine's
            memory, :func:`~mess.engine.resources.machine_memory`).
        store: a :class:`~mess.engine.stored.ProgramStore` that keeps the programs
            serialised on disk, so that a later process skips tracing them (values
            only: do not differentiate through an engine with a store). Default None.
    """

    def __init__(self, max_programs: int = 256, memory: int | None = None, max_buckets: int = 4,
                 memory_limit: int | None = None, store=None):
        if max_programs < 1:
            raise InputError(f"max_programs must be >= 1, got {max_programs}")
        self.max_programs = int(max_programs)
        self.memory = memory
        self.max_buckets = int(max_buckets)
        if memory_limit is not None and not memory_limit > 0:
            raise InputError(f"memory_limit must be a positive number of bytes, got {memory_limit!r}")
        self.memory_limit = memory_limit
        self.store = store
        self._programs: collections.OrderedDict = collections.OrderedDict()
        self._signatures: collections.OrderedDict = collections.OrderedDict()
        self._batch_sizes: dict[Signature, set[int]] = {}
        self._last_use: dict = {}   # program key -> the call (generation) that last used it
        self._generation = 0        # counts solve and gradient calls
        self.built = 0

    # ------------------------------------------------------------------ programs

    def clear(self) -> None:
        """Drop every compiled program and known signature of this engine."""
        self._programs.clear()
        self._signatures.clear()
        self._batch_sizes.clear()
        self._last_use.clear()

    def batch_size(self, sig: Signature, n: int, memory: int) -> int:
        """Batch size for ``n`` molecules of ``sig``. The batch size is a shape (a new
        one compiles every program of the signature again), so a size already compiled
        for ``sig`` is reused unless the padding items it adds (a partial last batch)
        cost more work than compiling the size that fits best: the largest power of two
        in memory (:func:`~mess.engine.planner.batch_size_for`), at most ``n`` rounded
        up to a power of two."""
        def waste(b):
            return (-(-n // b) * b - n) * sig.cost()

        fresh = min(batch_size_for(sig, n, memory), _next_pow2(n))
        cap = batch_size_for(sig, 1 << 30, memory)
        compiled = [b for b in self._batch_sizes.get(sig, ()) if b <= cap]
        if compiled:
            best = min(compiled, key=lambda b: (waste(b), -b))
            if best == fresh or waste(best) <= waste(fresh) + COMPILE_WORK:
                return best
        self._batch_sizes.setdefault(sig, set()).add(fresh)
        return fresh

    @property
    def signatures(self) -> tuple[Signature, ...]:
        """Signatures this engine has compiled programs for (most recent last)."""
        return tuple(self._signatures)

    def program(self, key, make: Callable[[], Callable], compiler_options: dict | None = None) -> Callable:
        """The program for ``key``, built by ``make()`` on first use and compiled with
        ``compiler_options`` (XLA's defaults when None; a stored program likewise).

        The table is bounded: at most ``max_programs`` programs, and fewer when the
        process nears the kernel's limit on memory mappings (XLA's CPU backend maps
        some hundred regions per compiled program; past ``vm.max_map_count`` the next
        compilation crashes). Either way the least recently used of *this engine's*
        programs are dropped; nothing else is touched. Under map pressure the programs
        of the current and the previous ``solve``/``gradient`` call are kept (the
        working set: dropping them would compile them again on every call while other
        owners' mappings keep the pressure up), as are the ``MIN_PROGRAMS`` most recent."""
        fn = self._programs.get(key)
        if fn is None:
            self._evict(reserve=1)
            if self.store is not None:
                fn = self.store.wrap(key, make, compiler_options)
            elif compiler_options:
                fn = jax.jit(make(), compiler_options=compiler_options)  # options only at the top level
            else:
                fn = make()
            self._programs[key] = fn
            self.built += 1
        else:
            self._programs.move_to_end(key)
        self._last_use[key] = self._generation
        return fn

    def _drop(self, key) -> None:
        self._programs.pop(key)
        self._last_use.pop(key, None)

    def _evict(self, reserve: int = 0) -> None:
        while len(self._programs) + reserve > self.max_programs:
            self._drop(next(iter(self._programs)))
        if len(self._programs) > MIN_PROGRAMS and map_pressure() > MAP_FRACTION:
            import gc

            while map_pressure() > 0.5 * MAP_FRACTION:
                spare = len(self._programs) - MIN_PROGRAMS
                old = [k for k in self._programs if self._last_use.get(k, -1) < self._generation - 1][:spare]
                if not old:
                    break
                for k in old[:max(1, len(self._programs) // 4)]:
                    self._drop(k)
                gc.collect()

    def _vmapped(self, key, fn, in_axes=0, quick: bool = False):
        """``jax.jit(jax.vmap(fn))`` for ``key``; ``quick``: compiled with
        :func:`quick_compile_options` (a program that compiles longer than it runs)."""
        opts = quick_compile_options() if quick else None
        return self.program(key, lambda: jax.jit(jax.vmap(fn, in_axes=in_axes)), opts)

    def _remember(self, sig: Signature) -> None:
        self._signatures[sig] = None
        self._signatures.move_to_end(sig)
        while len(self._signatures) > self.max_programs:
            self._signatures.popitem(last=False)

    # ------------------------------------------------------------------ stages (batched)

    def integrals(self, sig: Signature, systems, params: Params):
        """Batched integral stages: (one-electron dict, ERI blocks per class, grid data)."""
        b = params.positions.shape[0]
        one = self._vmapped(("one", sig, b), functools.partial(stages.one_electron_part, sig), quick=True)
        eris = []
        for key, fn in stages.two_electron_batch_parts(sig):
            opts = quick_compile_options() if stages.compile_bound(sig, key, b) else None
            eris.append(self.program(key + (sig, b), lambda fn=fn: jax.jit(fn), opts))
        grid = None
        if sig.method.dft:
            grid = self._vmapped(("grid", sig, b), functools.partial(stages.grid_part, sig))
        self._prepare([one, *eris] + ([grid] if grid is not None else []), (systems, params))
        blocks = tuple(fn(systems, params) for fn in eris)
        return one(systems, params), blocks, None if grid is None else grid(systems, params)

    def _prepare(self, programs: Sequence[Callable], args: tuple) -> None:
        """Load and compile the stored ``programs`` (all called with ``args``) side by
        side on a few threads, before they run (:meth:`StoredProgram.prepare
        <mess.engine.stored.StoredProgram.prepare>`). Without a store, or for programs
        already prepared, nothing happens; a program that fails here is left to its
        call, which reports the error."""
        from mess.engine.stored import StoredProgram

        todo = [p for p in programs if isinstance(p, StoredProgram)]
        if len(todo) < 2:
            return

        def prepare(p):
            try:
                p.prepare(*args)
            except Exception as exc:  # the call itself raises it again, with its context
                log.debug("preparing %s failed (%s: %s)", p.key[0], type(exc).__name__, exc)

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(todo), PREPARE_THREADS)) as pool:
            list(pool.map(prepare, todo))

    def guess(self, sig: Signature, systems, params: Params, overlap):
        b = params.positions.shape[0]
        return self._vmapped(("guess", sig, b), functools.partial(stages.guess_part, sig), quick=True)(
            systems, params, overlap)

    def solve(self, sig: Signature, systems, options: SCFOptions, fixed_cycles: int | None = None,
              params: Params | None = None, n_real: int | None = None, dm0=None):
        """SCF of a batch of systems of signature ``sig`` (from the MINAO guess of each
        geometry, or from ``dm0``). Returns host pytrees ``(SCFResult, properties,
        std_last5 or None, integrals, params)``; the integrals stay on the device
        (for gradients)."""
        self._remember(sig)
        self._generation += 1
        params = default_params(sig, systems) if params is None else params
        b = params.positions.shape[0]
        n_real = b if n_real is None else n_real
        key = ("fixed", sig, dataclasses.replace(options, max_cycle=int(fixed_cycles), fallback=None), b) \
            if fixed_cycles is not None else ("scf", sig, options, b)
        with self._stage("SCF", sig, b, key):
            return self._solve(sig, systems, options, fixed_cycles, params, b, n_real, dm0)

    def _solve(self, sig, systems, options, fixed_cycles, params, b, n_real, dm0):
        one, blocks, grid = self.integrals(sig, systems, params)
        if dm0 is None:
            dm0 = self.guess(sig, systems, params, one["overlap"])
        if fixed_cycles is not None:
            opts = dataclasses.replace(options, max_cycle=int(fixed_cycles), fallback=None)
            fn = functools.partial(stages.scf_fixed, sig, opts, int(fixed_cycles))
            res, props, std = self._vmapped(("fixed", sig, opts, b), fn, quick=_light_scf(sig, b))(
                systems, params, one, blocks, grid, dm0)
            return jax.device_get(res), jax.device_get(props), np.asarray(std), (one, blocks, grid), params
        fn = functools.partial(stages.scf_start, sig, options)
        res, props, state = self._vmapped(("scf", sig, options, b), fn, quick=_light_scf(sig, b))(
            systems, params, one, blocks, grid, dm0)
        res, props = jax.device_get(res), jax.device_get(props)
        converged = np.asarray(res.converged)[:n_real]
        bad = np.nonzero(~converged)[0]
        if options.fallback and bad.size:
            res, props = self._rerun(("fallback", sig, options), stages.scf_fallback, bad, b, res, props,
                                     (systems, params, one, blocks, grid, state))
        if stages.checks_stability(sig, options):
            nelec = np.asarray(systems.nelec)[:n_real]
            check = np.nonzero(converged & (nelec[:, 0] != nelec[:, 1]))[0]
            if check.size:
                res, props = self._rerun(("stability", sig, options), stages.scf_stability, check, b, res, props,
                                         (systems, params, one, blocks, grid, state))
        return res, props, None, (one, blocks, grid), params

    def _rerun(self, key, stage, items, b, res, props, inputs):
        """``stage`` on the batch items ``items`` only (padded to a power of two, at most
        ``b``, so that few programs serve every count), merged into ``(res, props)``."""
        m = min(_next_pow2(items.size), b)
        idx = np.concatenate([items, np.full(m - items.size, items[-1])])
        sub = [take(x, idx) for x in inputs]
        res2, props2 = jax.device_get(self._vmapped(key + (m,), functools.partial(stage, *key[1:]),
                                                    quick=_light_scf(key[1], m))(*sub))
        k = items.size

        def put(a, a2):
            a = np.array(a)
            a[items] = np.asarray(a2)[:k]
            return a

        return jax.tree.map(put, res, res2), jax.tree.map(put, props, props2)

    def gradient(self, sig: Signature, systems, params: Params, ints, mo_coeff, mo_occ) -> np.ndarray:
        """Analytic nuclear gradients dE/dR (Hartree/Bohr) of a batch at its SCF
        solutions (fixed-orbital energy differentiated through every stage)."""
        b = params.positions.shape[0]
        self._generation += 1
        with self._stage("gradient", sig, b, ("dE", sig, b)):
            return self._gradient(sig, systems, params, ints, mo_coeff, mo_occ, b)

    def _gradient(self, sig, systems, params, ints, mo_coeff, mo_occ, b):
        one, blocks, grid = ints
        ref = one["overlap"]

        def parts_grad(system, prm, o, bl, g, c, occ, s0):
            return jax.grad(lambda *a: fixed_orbital_energy(sig, system, *a, c, occ, s0),
                            argnums=(0, 1, 2, 3))(prm, o, bl, g)

        g_prm, g_one, g_blocks, g_grid = self._vmapped(("dE", sig, b), parts_grad)(
            systems, params, one, blocks, grid, jnp.asarray(mo_coeff), jnp.asarray(mo_occ), ref)
        total = g_prm.positions

        def pullback(stage):
            def fn(system, prm, ct):
                return jax.vjp(lambda q: stage(system, q), prm)[1](ct)[0].positions
            return fn

        total = total + self._vmapped(("one-vjp", sig, b), pullback(functools.partial(
            stages.one_electron_part, sig)), quick=True)(systems, params, g_one)
        for i, (key, stage) in enumerate(stages.two_electron_batch_parts(sig)):
            # the batched stage is differentiated as a whole (its items are independent)
            opts = quick_compile_options() if stages.compile_bound(sig, key, b) else None
            total = total + self.program(key + ("vjp", sig, b), lambda stage=stage: jax.jit(pullback(stage)), opts)(
                systems, params, g_blocks[i])
        if grid is not None:
            total = total + self._vmapped(("grid-vjp", sig, b), pullback(functools.partial(
                stages.grid_part, sig)))(systems, params, g_grid)
        return np.asarray(total)

    @contextlib.contextmanager
    def _stage(self, what: str, sig: Signature, b: int, key):
        """Log a stage that has to compile (first use of ``key``): what, for which
        signature, and how long compiling and running took."""
        if key in self._programs:
            yield
            return
        log.info("compiling the %s for %s, batch %d (once per size; later molecules of this size reuse it)",
                 what, sig.describe(), b)
        t0, built = time.perf_counter(), self.built
        yield
        log.info("%s compiled (%d programs) and run in %.1f s", what, self.built - built, time.perf_counter() - t0)

    # ------------------------------------------------------------------ user level

    def prepare(self, molecules: Sequence[Molecule], method: Method, restricted: bool | None = None
                ) -> list[Prepared]:
        """Host preparation of every molecule; an error names the molecule's position."""
        out = []
        for i, m in enumerate(molecules):
            if not isinstance(m, Molecule):
                raise InputError(f"molecule {i}: expected a mess.Molecule, got {type(m).__name__}")
            try:
                out.append(prepare(m, method, restricted, self.memory_limit))
            except ValueError as exc:
                raise InputError(f"molecule {i}: {exc}" if len(molecules) > 1 else str(exc)) from None
        return out

    def plan(self, prepared: Sequence[Prepared], max_buckets: int | None = None,
             known: Sequence[Signature] | None = None) -> Plan:
        """Buckets for ``prepared``, reusing the ``known`` signatures where they fit
        (default: those this engine has compiled). Pass an explicit list to make the
        padding, and with it the last bits of every number, independent of what the
        engine happened to run before (the dataset generator does)."""
        known = self.signatures if known is None else tuple(known)
        return plan_buckets(prepared, max_buckets or self.max_buckets, known=known)

    def run_batch(self, molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                  grid_level: int = 3, conv_tol: float = 1e-9, max_cycle: int = 50,
                  fixed_cycles: int | None = None, batch_size: int | None = None, progress: bool = False,
                  gradient: bool = False, **options) -> list[Result]:
        """See :func:`mess.run_batch`."""
        require_float64()
        if isinstance(molecules, Molecule):
            raise InputError("run_batch takes a sequence of molecules; use mess.run for one")
        molecules = list(molecules)
        for i, m in enumerate(molecules):
            require_molecule(m, f"molecule {i}: ")
        if not molecules:
            return []
        if fixed_cycles is not None and (not isinstance(fixed_cycles, (int, np.integer)) or fixed_cycles < 1):
            raise InputError(f"fixed_cycles must be a positive integer, got {fixed_cycles!r}")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        scf_options, rest = split_options({"conv_tol": conv_tol, "max_cycle": max_cycle, **options})
        if rest.get("init_guess", "minao") != "minao":
            raise InputError(f"unknown initial guess {rest['init_guess']!r} (the engine uses 'minao')")
        from mess.integrals.two_electron import SCHWARZ_THRESHOLD

        method = method_from_options(basis, xc, cart, grid_level, rest, SCHWARZ_THRESHOLD)
        prepared = self.prepare(molecules, method, rest.get("restricted"))
        return self.run_plan(prepared, self.plan(prepared), scf_options, fixed_cycles, batch_size, progress,
                             gradient)

    def run_plan(self, prepared: Sequence[Prepared], plan: Plan, scf_options: SCFOptions,
                 fixed_cycles: int | None = None, batch_size: int | None = None, progress: bool = False,
                 gradient: bool = False) -> list[Result]:
        """:meth:`run_batch` for molecules already prepared and planned (one
        :class:`Result` per item of ``prepared``, in order)."""
        if self.memory is None:
            # measured once per engine: the batch sizes it picks (shapes of its compiled
            # programs, and the last bits of their numbers) must not follow other
            # processes' memory use from one call to the next
            self.memory = available_memory()
        memory = self.memory
        results: list = [None] * len(prepared)
        bar = _progress(len(prepared), progress)
        try:
            for bucket in plan.buckets:
                sig, members = bucket.signature, list(bucket.members)
                b = batch_size or self.batch_size(sig, len(members), memory)
                for start in range(0, len(members), b):
                    part = members[start:start + b]
                    systems = [build(prepared[i], sig) for i in part]
                    systems += [systems[-1]] * (b - len(part))
                    batch = stack(systems)
                    res, props, std, ints, params = self.solve(sig, batch, scf_options, fixed_cycles,
                                                               n_real=len(part))
                    grads = None
                    if gradient:
                        grads = self.gradient(sig, batch, params, ints, res.mo_coeff, res.mo_occ)
                    for k, i in enumerate(part):
                        results[i] = _result(prepared[i], sig, res, props, std, grads, k)
                    bar.update(len(part))
        finally:
            bar.close()
        return results


def _progress(total: int, enabled: bool):
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="mol", desc="mess")

    class _Null:
        def update(self, n):
            pass

        def close(self):
            pass

    return _Null()


def _result(p: Prepared, sig: Signature, res, props, std, grads, k: int) -> Result:
    """Item k of a batch, without padding and in PySCF's AO order."""
    ix = p.layout.engine_index(sig.basis)
    n = p.layout.nao
    natom = p.natom
    item = jax.tree.map(lambda a: np.asarray(a)[k], res)
    mo_e = item.mo_energy[..., :n]
    mo_c = item.mo_coeff[..., ix, :][..., :n]
    mo_occ = item.mo_occ[..., :n]
    dm = item.density[..., ix, :][..., ix]
    comps = {"e_nuc": item.e_nuc, "e_one": item.e_one, **item.parts}
    f = sig.method.functional
    method = ("R" if sig.restricted else "U") + ("HF" if f.family == "hf" else "KS")
    return Result(energy=item.energy, converged=item.converged, iterations=item.iterations, mo_energy=mo_e,
                  mo_coeff=mo_c, mo_occ=mo_occ, density=dm, homo=item.homo, lumo=item.lumo,
                  dipole=np.asarray(props["dipole"])[k], mulliken=np.asarray(props["mulliken"])[k][:natom],
                  components=comps, energy_history=item.energy_history, grad_history=item.grad_history,
                  energy_std_last5=None if std is None else std[k],
                  gradient=None if grads is None else grads[k][:natom], nao=n, ngrid=p.npts,
                  method=method, basis=sig.method.basis, xc=sig.method.xc, molecule=p.molecule,
                  cart=sig.method.cart, grid_level=sig.method.grid_level, auxbasis=sig.method.auxbasis)


_DEFAULT: Engine | None = None


def default_engine() -> Engine:
    """The engine used by :func:`mess.run` and :func:`mess.run_batch` when none is
    passed, created on first use. Hold your own :class:`Engine` to control the lifetime
    of compiled programs; ``default_engine().clear()`` drops this one's."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Engine()
    return _DEFAULT
