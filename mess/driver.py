"""The main entry points: ``mess.run(molecule, ...)`` and ``mess.run_batch(molecules, ...)``.

Both are thin: the work is done by the batched engine (:mod:`mess.engine`). A single
molecule is a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence

from mess.engine.calculation import run as _run
from mess.engine.engine import Engine, Result, default_engine, require_float64
from mess.errors import InputError
from mess.structure import Molecule

__all__ = ["Result", "run", "run_batch", "require_float64", "size_estimate"]


def run(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
        engine: Engine | None = None, **options) -> Result:
    """Hartree-Fock or Kohn-Sham DFT energy and properties of a molecule.

    Args:
        molecule: the :class:`mess.Molecule` (positions in Bohr).
        basis: any basis-set name PySCF knows (``sto-3g``, ``6-31g*``, ``def2-svp``, ...).
        xc: ``"hf"`` or a functional name with PySCF's meaning (``b3lyp``, ``pbe``, ...).
        cart: Cartesian (True) or spherical (False, default) d/f functions.
        engine: the :class:`mess.Engine` whose compiled programs to use (default
            :func:`mess.engine.default_engine`).
        **options: SCF settings of :class:`mess.scf.SCFOptions` (``conv_tol``,
            ``max_cycle``, ``level_shift``, ``damping``, ``diis_space``, ``fallback``,
            ...) and ``grid_level`` (0-9, default 3), ``init_guess`` (``"minao"`` or
            ``"core"``), ``restricted`` (default: spin == 0), ``schwarz_threshold``
            (default 1e-14, screening at the molecule's geometry),
            ``density_fit`` (default False: J and K from density fitting, PySCF's
            ``mf.density_fit()``) with ``auxbasis`` (default: PySCF's JK-fitting set
            for the basis, :func:`mess.engine.signature.default_auxbasis`),
            ``precision`` (``"float64"``, default, or ``"mixed"``: the four-centre
            ERIs in float32, everything else float64; its error budget is in the
            performance guide).

    Returns:
        :class:`Result` (energies in Hartree, dipole in Debye).
    """
    return _run(molecule, basis, xc, cart, engine, **options)


def run_batch(molecules: Sequence[Molecule], basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
              grid_level: int = 3, conv_tol: float = 1e-9, max_cycle: int = 50, fixed_cycles: int | None = None,
              batch_size: int | None = None, progress: bool = False, gradient: bool = False,
              engine: Engine | None = None, **options) -> list[Result]:
    """Energies and properties of many molecules, batched over padding buckets.

    Molecules may differ in elements, size, charge and spin. They are assigned to a few
    padding buckets (signatures); molecules of one bucket share every compiled program
    and run through each SCF cycle together (``jax.vmap``). Each molecule's result
    equals :func:`run` on it alone (to rounding).

    Args:
        molecules: the :class:`mess.Molecule` objects.
        basis, xc, cart, grid_level: as :func:`run`.
        conv_tol: SCF energy convergence, Hartree (converged mode).
        max_cycle: most plain SCF cycles before the fallback (second-order steps) runs
            for the molecules that have not converged.
        fixed_cycles: run exactly this many DIIS cycles for every molecule (QM1B ran
            20) instead of iterating to convergence; each result then carries
            ``energy_std_last5``, and ``converged`` reports the convergence test at the
            last cycle.
        batch_size: molecules per compiled batch; None picks a power of two whose
            integrals and buffers fit a quarter of the available memory.
        progress: show a progress bar (tqdm).
        gradient: also compute each molecule's analytic gradient dE/dR
            (``Result.gradient``, Hartree/Bohr).
        engine: the :class:`mess.Engine` (default :func:`mess.engine.default_engine`).
        **options: further SCF options as :func:`run`.

    Returns:
        One :class:`Result` per molecule, in input order.
    """
    engine = engine or default_engine()
    return engine.run_batch(molecules, basis, xc, cart, grid_level, conv_tol, max_cycle, fixed_cycles, batch_size,
                            progress, gradient, **options)


def size_estimate(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                  grid_level: int = 3, **options):
    """How much memory :func:`run` would need for ``molecule``, without running it.

    Counts atomic orbitals, grid points and the Schwarz-screened two-electron quartets
    (at the molecule's geometry) that the engine keeps in memory, in seconds even for
    molecules far too large to run. :func:`run` and :func:`run_batch` refuse a molecule
    whose estimate exceeds the machine's memory with a :class:`mess.InputError` that
    names these sizes.

    Args:
        molecule, basis, xc, cart, grid_level: as :func:`run`; ``schwarz_threshold``
            ``jk``, ``density_fit`` and ``auxbasis`` may be given as options.

    Returns:
        :class:`mess.engine.resources.SizeEstimate` (``nao``, ``npts``, ``quartets``,
        ``eri_values``, ``device_bytes`` and ``host_bytes`` in bytes; ``describe()``).
    """
    from mess.engine.signature import estimate, method_from_options
    from mess.integrals.two_electron import SCHWARZ_THRESHOLD
    from mess.structure import require_molecule

    require_molecule(molecule)
    unknown = set(options) - {"schwarz_threshold", "jk", "density_fit", "auxbasis"}
    if unknown:
        raise InputError(f"unknown option(s) for size_estimate: {', '.join(sorted(unknown))}")
    method = method_from_options(basis, xc, cart, grid_level, options, SCHWARZ_THRESHOLD)
    return estimate(molecule, method)
