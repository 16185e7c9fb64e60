"""The main entry point: ``mess.run(molecule, basis, xc)`` -> :class:`Result`.

The work splits into a host part that fixes every shape (basis structure, ERI
quartet plan, integration grid plan, initial guess) and JAX parts that compute
numbers (integrals, grid, SCF). The host part is cached per molecular structure,
so a new geometry of the same molecule reuses the compiled integral kernels and
the compiled SCF program.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis import Basis, make_basis
from mess.basis.shells import pyscf_mole
from mess.integrals.one_electron import nuclear_repulsion, one_electron
from mess.integrals.two_electron import SCHWARZ_THRESHOLD, BlockJK, EriPlan, eri_blocks, make_eri_plan
from mess.properties import dipole_moment, mulliken_charges
from mess.scf import SCFOptions, SCFResult, hf_veff, minao_guess, hcore_guess, scf
from mess.structure import Molecule

_SCF_OPTION_NAMES = {f.name for f in dataclasses.fields(SCFOptions)}


class Result(eqx.Module):
    """Outcome of :func:`run`. Energies in Hartree, dipole in Debye, charges in e.

    Attributes:
        energy: total energy.
        converged, iterations: SCF convergence flag and cycle count.
        mo_energy: orbital energies ``[nao]`` (restricted) or ``[2, nao]``.
        mo_coeff, mo_occ, density: orbitals (columns), occupations, density matrix.
        homo, lumo: frontier orbital energies (over both spins when unrestricted).
        dipole: dipole moment ``[3]`` in Debye (nuclear + electronic, origin 0).
        mulliken: Mulliken atomic charges ``[natom]``.
        components: ``e_nuc``, ``e_one``, ``coulomb``, ``exchange`` (and ``xc`` for DFT).
        energy_history: total energy after each cycle (nan-padded).
        nao: number of atomic orbitals; ngrid: number of grid points (0 for HF).
        method: e.g. ``"RHF"``, ``"UKS"``; basis, xc: as requested.
        scf: the underlying :class:`mess.scf.SCFResult`.
    """

    energy: Float[Array, ""]
    converged: Array
    iterations: Array
    mo_energy: Array
    mo_coeff: Array
    mo_occ: Array
    density: Array
    homo: Array
    lumo: Array
    dipole: Float[Array, "3"]
    mulliken: Float[Array, "natom"]
    components: dict[str, Array]
    energy_history: Array
    nao: int = eqx.field(static=True)
    ngrid: int = eqx.field(static=True)
    method: str = eqx.field(static=True)
    basis: str = eqx.field(static=True)
    xc: str = eqx.field(static=True)
    scf: SCFResult

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        conv = "converged" if bool(self.converged) else "NOT CONVERGED"
        lines = [
            f"{self.method}/{self.basis} ({self.xc}): E = {float(self.energy):.10f} Ha "
            f"({conv} in {int(self.iterations)} cycles)",
            f"  nao = {self.nao}" + (f", grid points = {self.ngrid}" if self.ngrid else ""),
            "  components (Ha): " + ", ".join(f"{k} = {float(v):.8f}" for k, v in self.components.items()),
            f"  HOMO = {float(self.homo):.6f} Ha, LUMO = {float(self.lumo):.6f} Ha",
            "  dipole (Debye): [" + ", ".join(f"{float(x):.4f}" for x in self.dipole) + "]"
            + f"  |mu| = {float(jnp.linalg.norm(self.dipole)):.4f}",
            "  Mulliken charges: [" + ", ".join(f"{float(x):.4f}" for x in self.mulliken) + "]",
        ]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Host-side, shape-fixing data for one molecule / basis / method (cached)."""

    molecule: Molecule
    basis: Basis
    eri_plan: EriPlan
    restricted: bool
    functional: Any
    grid_plan: Any
    pyscf_mol: Any


def _split_options(options: dict) -> tuple[SCFOptions, dict]:
    scf_kw = {k: v for k, v in options.items() if k in _SCF_OPTION_NAMES}
    rest = {k: v for k, v in options.items() if k not in _SCF_OPTION_NAMES}
    known = {"init_guess", "schwarz_threshold", "restricted", "grid_level"}
    unknown = set(rest) - known
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return SCFOptions(**scf_kw), rest


def require_float64() -> None:
    """Raise a clear error unless JAX's float64 mode is on."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError(
            "mess needs float64: enable it with jax.config.update('jax_enable_x64', True) "
            "or the environment variable JAX_ENABLE_X64=1")


_SETUP_CACHE: dict = {}


def prepare(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
            grid_level: int = 3, restricted: bool | None = None,
            schwarz_threshold: float = SCHWARZ_THRESHOLD) -> Setup:
    """Build (or fetch from the cache) the host-side setup for a calculation.

    The cache key is the molecular structure (atomic numbers, charge, spin), basis,
    method and thresholds, not the geometry: the ERI screening plan is decided at the
    first geometry seen."""
    from mess.config import release_compiled_programs_if_needed

    release_compiled_programs_if_needed()
    if restricted is None:
        restricted = molecule.spin == 0
    if restricted and molecule.spin != 0:
        raise ValueError(f"restricted calculation requested for spin {molecule.spin}; use restricted=False")
    from mess.xc import parse_xc

    functional = parse_xc(xc)
    if not isinstance(grid_level, int) or not 0 <= grid_level <= 9:
        raise ValueError(f"grid level must be an integer from 0 to 9, got {grid_level!r}")
    key = (molecule.numbers, molecule.charge, molecule.spin, basis.lower(), bool(cart), xc.lower(),
           int(grid_level), bool(restricted), float(schwarz_threshold))
    hit = _SETUP_CACHE.get(key)
    if hit is not None:
        return dataclasses.replace(hit, molecule=molecule)
    bas = make_basis(molecule, basis, cart)
    plan = make_eri_plan(bas, molecule.positions, threshold=schwarz_threshold)
    grid_plan = None
    if functional.family != "hf":
        from mess.grid import make_grid_plan

        grid_plan = make_grid_plan(molecule.numbers, grid_level)
    setup = Setup(molecule=molecule, basis=bas, eri_plan=plan, restricted=bool(restricted),
                  functional=functional, grid_plan=grid_plan, pyscf_mol=pyscf_mole(molecule, basis, cart))
    _SETUP_CACHE[key] = setup
    return setup


def prepare_from_options(molecule: Molecule, basis: str, xc: str, cart: bool,
                         options: dict) -> tuple[Setup, SCFOptions, dict]:
    """Split user options (as :func:`run` takes them) into SCF settings and setup
    settings, and build the setup: returns ``(setup, scf_options, other_options)``."""
    scf_options, rest = _split_options(options)
    setup = prepare(molecule, basis, xc, cart, grid_level=rest.get("grid_level", 3),
                    restricted=rest.get("restricted"),
                    schwarz_threshold=rest.get("schwarz_threshold", SCHWARZ_THRESHOLD))
    return setup, scf_options, rest


@functools.partial(eqx.filter_jit)
def _run_scf(overlap, hcore, e_nuc, nelec, veff_fn, dm0, restricted, options):
    return scf(overlap, hcore, e_nuc, nelec, veff_fn, dm0, restricted=restricted, options=options)


def one_electron_parts(setup: Setup, positions: Float[Array, "natom 3"]) -> dict[str, Array]:
    """One-electron matrices at ``positions`` (Bohr): ``overlap``, ``hcore`` (kinetic +
    nuclear attraction, Hartree), ``dipole`` (AO dipole integrals, Bohr) and ``e_nuc``
    (nuclear repulsion, Hartree)."""
    charges = jnp.asarray(setup.molecule.numbers, dtype=positions.dtype)
    one = one_electron(setup.basis, positions, charges)
    return {
        "overlap": one["overlap"],
        "hcore": one["kinetic"] + one["nuclear"],
        "dipole": one["dipole"],
        "e_nuc": nuclear_repulsion(positions, charges),
    }


def integrals(setup: Setup, positions: Float[Array, "natom 3"]) -> dict[str, Any]:
    """All integrals for ``setup`` at ``positions`` (Bohr): one-electron matrices,
    nuclear repulsion and the ERI J/K builder."""
    blocks = eri_blocks(setup.eri_plan, setup.basis, positions)
    return {**one_electron_parts(setup, positions),
            "jk": BlockJK(setup.eri_plan, blocks, with_k=setup.functional.hyb != 0)}


def make_veff(setup: Setup, ints: dict, positions: Array):
    """The two-electron potential function for the setup's method (HF or KS-DFT)."""
    f = setup.functional
    if f.family == "hf":
        return hf_veff(ints["jk"], setup.restricted, hyb=1.0)
    from mess.grid import grid_coords_weights
    from mess.xc import build_xc_fn, ks_veff

    coords, weights = grid_coords_weights(setup.grid_plan, positions)
    xc_fn = build_xc_fn(f, setup.basis, positions, coords, weights, setup.restricted)
    return ks_veff(ints["jk"], xc_fn, f, setup.restricted)


def initial_guess(setup: Setup, ints: dict, method: str = "minao") -> Array:
    """Initial density: PySCF's MINAO guess (host) or the core-Hamiltonian guess."""
    if method == "minao":
        return jnp.asarray(minao_guess(setup.pyscf_mol, restricted=setup.restricted))
    if method in ("core", "hcore", "1e"):
        return hcore_guess(ints["overlap"], ints["hcore"], setup.molecule.nelec, setup.restricted)
    raise ValueError(f"unknown initial guess {method!r} (use 'minao' or 'core')")


def run(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
        **options) -> Result:
    """Hartree-Fock or Kohn-Sham DFT energy and properties of a molecule.

    Args:
        molecule: the :class:`mess.Molecule` (positions in Bohr).
        basis: any basis-set name PySCF knows (``sto-3g``, ``6-31g*``, ``def2-svp``, ...).
        xc: ``"hf"`` or a functional name with PySCF's meaning (``b3lyp``, ``pbe``, ...).
        cart: Cartesian (True) or spherical (False, default) d/f functions.
        **options: SCF settings of :class:`mess.scf.SCFOptions` (``conv_tol``,
            ``max_cycle``, ``level_shift``, ``damping``, ``diis_space``, ...) and
            ``grid_level`` (0-9, default 3), ``init_guess`` (``"minao"`` or ``"core"``),
            ``restricted`` (default: spin == 0), ``schwarz_threshold`` (default 1e-14).

    Returns:
        :class:`Result` (energies in Hartree, dipole in Debye).
    """
    setup, ints, res, positions = run_scf(molecule, basis, xc, cart, options)
    return make_result(setup, ints, res, positions)


def run_scf(molecule: Molecule, basis: str, xc: str, cart: bool, options: dict):
    """Setup, integrals and converged SCF: returns (setup, integrals, SCFResult, positions)."""
    require_float64()
    setup, scf_options, rest = prepare_from_options(molecule, basis, xc, cart, options)
    positions = jnp.asarray(molecule.positions)
    ints = integrals(setup, positions)
    veff_fn = make_veff(setup, ints, positions)
    dm0 = initial_guess(setup, ints, rest.get("init_guess", "minao"))
    res = solve(setup, ints, veff_fn, dm0, scf_options, fallback_given="fallback" in options)
    return setup, ints, res, positions


def solve(setup: Setup, ints: dict, veff_fn, dm0: Array, options: SCFOptions,
          fallback_given: bool = False) -> SCFResult:
    """Run the SCF. Unless the caller chose a fallback, the plain PySCF-like iteration
    is compiled and run first, and only a run that fails to converge is repeated with
    the second-order (Newton) fallback, so the common case does not pay its compile time."""
    nelec = setup.molecule.nelec
    args = (ints["overlap"], ints["hcore"], ints["e_nuc"], nelec, veff_fn, dm0, setup.restricted)
    if fallback_given:
        return _run_scf(*args, options)
    res = _run_scf(*args, dataclasses.replace(options, fallback=None))
    if not bool(res.converged):
        res = _run_scf(*args, dataclasses.replace(options, fallback="newton"))
    return res


def make_result(setup: Setup, ints: dict, res: SCFResult, positions: Array) -> Result:
    """Wrap an SCF result with properties (dipole, Mulliken charges)."""
    mol = setup.molecule
    dm = res.density_total
    charges = jnp.asarray(mol.numbers, dtype=positions.dtype)
    dip = dipole_moment(dm, ints["dipole"], charges, positions)
    mull = mulliken_charges(dm, ints["overlap"], setup.basis.ao_atom, charges)
    comps = {"e_nuc": res.e_nuc, "e_one": res.e_one, **res.parts}
    f = setup.functional
    method = ("R" if setup.restricted else "U") + ("HF" if f.family == "hf" else "KS")
    ngrid = 0 if setup.grid_plan is None else int(setup.grid_plan.npts)
    return Result(energy=res.energy, converged=res.converged, iterations=res.iterations,
                  mo_energy=res.mo_energy, mo_coeff=res.mo_coeff, mo_occ=res.mo_occ, density=res.density,
                  homo=res.homo, lumo=res.lumo, dipole=dip, mulliken=mull, components=comps,
                  energy_history=res.energy_history, nao=setup.basis.nao, ngrid=ngrid, method=method,
                  basis=setup.basis.name, xc=f.name, scf=res)
