"""Molecular structure: atomic numbers, nuclear positions (Bohr), charge and spin.

A :class:`Molecule` is an equinox module, so it is a JAX pytree: the positions are a
traced leaf (``jax.grad`` reaches them), while the atomic numbers, charge and spin are
static (they fix array shapes and the number of electrons).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.errors import InputError

#: Bohr radius in Angstrom (CODATA 2010, the value PySCF uses).
BOHR = 0.52917721092
#: Smallest interatomic distance accepted, Angstrom.
MIN_DISTANCE_ANGSTROM = 0.1

ELEMENTS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu "
    "Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La "
    "Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po "
    "At Rn"
).split()
_SYMBOL_TO_Z = {s.upper(): z for z, s in enumerate(ELEMENTS) if z > 0}


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive; trailing digits such as
    ``C1`` are ignored, as in many xyz writers). Raises ``ValueError`` if unknown."""
    raw = symbol.strip()
    if raw.isdigit():  # an atomic number in place of the symbol
        z = int(raw)
        if 0 < z < len(ELEMENTS):
            return z
        raise InputError(f"unknown atomic number {raw} (1 to {len(ELEMENTS) - 1})")
    s = raw.rstrip("0123456789").upper()
    if s not in _SYMBOL_TO_Z:
        raise InputError(f"unknown element symbol {symbol!r}")
    return _SYMBOL_TO_Z[s]


class Molecule(eqx.Module):
    """A molecule: nuclei and the electron count.

    Attributes:
        numbers: atomic numbers, one per atom (static).
        positions: nuclear positions in Bohr, shape ``[natom, 3]`` (traced).
        charge: total charge in units of e (static).
        spin: number of unpaired electrons, ``2S = N_alpha - N_beta`` (static), as in PySCF.
    """

    numbers: tuple[int, ...] = eqx.field(static=True)
    positions: Float[Array, "natom 3"]
    charge: int = eqx.field(static=True, default=0)
    spin: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        validate(self.numbers, self.positions, self.charge, self.spin,
                 check_geometry=not _is_traced(self.positions))

    @property
    def natom(self) -> int:
        return len(self.numbers)

    @property
    def nelectron(self) -> int:
        """Total number of electrons."""
        return int(sum(self.numbers)) - self.charge

    @property
    def nelec(self) -> tuple[int, int]:
        """(N_alpha, N_beta) electron counts."""
        n = self.nelectron
        return (n + self.spin) // 2, (n - self.spin) // 2

    @property
    def symbols(self) -> list[str]:
        return [ELEMENTS[z] for z in self.numbers]

    @classmethod
    def from_arrays(cls, numbers, positions_bohr, charge: int = 0, spin: int | None = None) -> Molecule:
        """Build from atomic numbers (or symbols) and positions in Bohr."""
        zs = tuple(atomic_number(z) if isinstance(z, str) else whole_number(z, "atomic number") for z in numbers)
        pos = np.asarray(positions_bohr, dtype=np.float64)
        charge = whole_number(charge, "charge")
        if spin is None:
            spin = (sum(zs) - charge) % 2
        return cls(zs, jnp.asarray(pos), charge, whole_number(spin, "spin"))

    @classmethod
    def from_xyz(cls, path_or_text: str | os.PathLike, charge: int | None = None,
                 spin: int | None = None) -> Molecule:
        """Read an xyz file (or xyz text) with coordinates in Angstrom.

        When ``charge``/``spin`` are not given, ``charge=<int>`` and ``spin=<int>``
        tokens on the comment line are used; otherwise the molecule is neutral and in
        its lowest spin state (0 or 1 unpaired electron).
        """
        text = _read_text(path_or_text)
        numbers, coords, comment = parse_xyz(text)
        tokens = _comment_tokens(comment)
        if charge is None:
            charge = tokens.get("charge", 0)
        if spin is None:
            spin = tokens.get("spin")
        return cls.from_arrays(numbers, np.asarray(coords) / BOHR, charge=charge, spin=spin)

    @classmethod
    def from_xyz_frames(cls, path_or_text: str | os.PathLike, charge: int | None = None,
                        spin: int | None = None) -> list[Molecule]:
        """Every frame of a (multi-frame) xyz file or text, Angstrom there, Bohr here;
        charge and spin as :meth:`from_xyz`, per frame."""
        out = []
        for numbers, coords, comment in parse_xyz_frames(_read_text(path_or_text)):
            tokens = _comment_tokens(comment)
            out.append(cls.from_arrays(numbers, np.asarray(coords) / BOHR,
                                       charge=tokens.get("charge", 0) if charge is None else charge,
                                       spin=tokens.get("spin") if spin is None else spin))
        return out

    @classmethod
    def from_pyscf(cls, mole) -> Molecule:
        """Build from a ``pyscf.gto.Mole`` (positions taken in Bohr)."""
        return cls.from_arrays(
            [int(z) for z in mole.atom_charges()], mole.atom_coords(unit="Bohr"),
            charge=int(mole.charge), spin=int(mole.spin),
        )

    @classmethod
    def from_rdkit(cls, mol, conf_id: int = -1) -> Molecule:
        """Build from an ``rdkit.Chem.Mol`` with a conformer (Angstrom there); charge
        and spin from its formal charges and radical electrons
        (:func:`mess.interop.rdkit.from_rdkit`)."""
        from mess.interop.rdkit import from_rdkit

        return from_rdkit(mol, conf_id)

    @classmethod
    def from_smiles(cls, smiles: str, seed: int = 43, mmff: bool = False) -> Molecule:
        """One ETKDGv3 conformer of ``smiles`` with explicit hydrogens, the generator's
        embedding for ``seed`` (:func:`mess.interop.rdkit.from_smiles`)."""
        from mess.interop.rdkit import from_smiles

        return from_smiles(smiles, seed, mmff)

    @classmethod
    def from_ase(cls, atoms, charge: int | None = None, spin: int | None = None) -> Molecule:
        """Build from an ``ase.Atoms`` (Angstrom there); charge and spin from the
        arguments or ``atoms.info`` (:func:`mess.interop.ase.from_ase`)."""
        from mess.interop.ase import from_ase

        return from_ase(atoms, charge, spin)

    def to_ase(self):
        """An ``ase.Atoms`` (Angstrom) with ``info["charge"]`` and ``info["spin"]``."""
        from mess.interop.ase import to_ase

        return to_ase(self)

    def to_pyscf(self, basis: str = "sto-3g", cart: bool = False, **kwargs):
        """A built ``pyscf.gto.Mole`` with the same atoms (Bohr), charge and spin."""
        from pyscf import gto

        pos = np.asarray(self.positions, dtype=np.float64)
        atom = [(ELEMENTS[z], tuple(p)) for z, p in zip(self.numbers, pos)]
        mol = gto.Mole()
        mol.atom = atom
        mol.unit = "Bohr"
        mol.basis = basis
        mol.cart = cart
        mol.charge = self.charge
        mol.spin = self.spin
        mol.verbose = kwargs.pop("verbose", 0)
        for k, v in kwargs.items():
            setattr(mol, k, v)
        return mol.build()

    def to_xyz(self, comment: str | None = None) -> str:
        """xyz text in Angstrom."""
        pos = np.asarray(self.positions) * BOHR
        if comment is None:
            comment = f"charge={self.charge} spin={self.spin}"
        lines = [str(self.natom), comment]
        lines += [f"{ELEMENTS[z]:<2s} {x:16.10f} {y:16.10f} {w:16.10f}"
                  for z, (x, y, w) in zip(self.numbers, pos)]
        return "\n".join(lines) + "\n"


def require_molecule(x, where: str = "") -> None:
    """Raise ``InputError`` naming what ``x`` is (and how to convert it) unless it is a
    :class:`Molecule`."""
    if isinstance(x, Molecule):
        return
    kind = type(x).__module__.split(".")[0] + "." + type(x).__name__
    hints = {"ase.Atoms": "mess.Molecule.from_ase(atoms)", "rdkit.Mol": "mess.Molecule.from_rdkit(mol)",
             "pyscf.Mole": "mess.Molecule.from_pyscf(mol)", "builtins.str": "mess.Molecule.from_xyz(path) or "
             "mess.Molecule.from_smiles(smiles)", "builtins.list": "mess.run_batch for several molecules",
             "builtins.tuple": "mess.run_batch for several molecules"}
    hint = hints.get(kind)
    raise InputError(f"{where}expected a mess.Molecule, got {type(x).__name__}" + (f" (use {hint})" if hint else ""))


def _is_traced(x) -> bool:
    import jax.core

    return isinstance(x, jax.core.Tracer)


def whole_number(value, name: str) -> int:
    """``value`` as an int when it is a whole number (``2``, ``2.0``, ``np.int8(2)``);
    else :class:`~mess.errors.InputError` naming ``name`` (a charge of 0.5 is refused,
    never truncated)."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise InputError(f"{name} must be an integer, got {value!r}")


def validate(numbers, positions, charge: int, spin: int, check_geometry: bool = True) -> None:
    """Raise ``ValueError`` naming the first problem with a molecule's definition."""
    whole_number(charge, "charge")
    whole_number(spin, "spin")
    if len(numbers) == 0:
        raise InputError("molecule has no atoms")
    for z in numbers:
        if not (0 < int(z) < len(ELEMENTS)):
            raise InputError(f"unknown atomic number {z}")
    if len(positions.shape) != 2 or tuple(positions.shape) != (len(numbers), 3):
        raise InputError(f"positions must have shape ({len(numbers)}, 3), got {positions.shape}")
    if spin < 0:
        raise InputError(f"spin (number of unpaired electrons) must be >= 0, got {spin}")
    nelectron = int(sum(numbers)) - charge
    if nelectron < 0:
        raise InputError(f"charge {charge} leaves a negative number of electrons ({nelectron})")
    if (nelectron - spin) % 2 != 0 or spin > nelectron:
        raise InputError(
            f"electron count {nelectron} (charge {charge}) is incompatible with spin {spin}: "
            "N_electrons - spin must be even and non-negative")
    if check_geometry:
        checked_positions(np.asarray(positions, dtype=np.float64))


def checked_positions(positions, label: str = "positions"):
    """``positions`` (Bohr, ``[natom, 3]``) after the geometry checks of :func:`validate`
    (finite, no two atoms closer than ``MIN_DISTANCE_ANGSTROM``): raised on the host as
    :class:`~mess.errors.InputError` for concrete arrays; for traced ones (under
    ``jit``/``vmap``/``grad``) a runtime error with the same message
    (``equinox.error_if``), so a bad geometry never turns into a silent NaN or Inf."""
    import equinox as eqx

    limit = MIN_DISTANCE_ANGSTROM / BOHR
    if not _is_traced(positions):
        pos = np.asarray(positions, dtype=np.float64)
        if not np.all(np.isfinite(pos)):
            raise InputError(f"non-finite coordinate (nan or inf) in {label}")
        if len(pos) > 1:
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.diag(np.full(len(pos), np.inf))
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] < limit:
                where = "" if label == "positions" else f"{label}: "
                raise InputError(f"{where}atoms {min(i, j) + 1} and {max(i, j) + 1} are {d[i, j] * BOHR:.3g} "
                                 f"Angstrom apart (closer than {MIN_DISTANCE_ANGSTROM} Angstrom)")
        return positions
    positions = eqx.error_if(positions, ~jnp.all(jnp.isfinite(positions)),
                             f"non-finite coordinate (nan or inf) in {label}")
    n = positions.shape[0]
    if n > 1:
        diff = positions[:, None] - positions[None]
        d2 = jnp.sum(diff * diff, axis=-1) + jnp.diag(jnp.full(n, jnp.inf, positions.dtype))
        positions = eqx.error_if(positions, jnp.min(d2) < limit * limit,
                                 f"{label}: two atoms closer than {MIN_DISTANCE_ANGSTROM} Angstrom")
    return positions


def _read_text(path_or_text) -> str:
    if isinstance(path_or_text, os.PathLike):
        return Path(path_or_text).read_text()
    s = str(path_or_text)
    if not s.strip():
        raise InputError("empty xyz input")
    if "\n" not in s:
        p = Path(s)
        if not p.exists():
            raise InputError(f"xyz file not found: {s}")
        return p.read_text()
    return s


def parse_xyz(text: str) -> tuple[list[int], list[list[float]], str]:
    """Parse xyz text into (atomic numbers, coordinates in Angstrom, comment line)."""
    lines = text.strip("\n").splitlines()
    if not lines or not lines[0].strip():
        raise InputError("empty xyz input")
    try:
        natom = int(lines[0].split()[0])
    except ValueError:
        raise InputError(f"first xyz line must be the atom count, got {lines[0]!r}") from None
    if natom <= 0:
        raise InputError(f"atom count must be positive, got {natom}")
    comment = lines[1] if len(lines) > 1 else ""
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) != natom:
        frames = _count_frames(lines)
        if frames > 1:
            raise InputError(f"the xyz input holds {frames} frames; read them with Molecule.from_xyz_frames "
                             "(mess energy takes multi-frame files)")
        raise InputError(f"atom count mismatch: header says {natom}, found {len(body)} atom lines")
    numbers, coords = [], []
    for k, ln in enumerate(body, start=3):
        parts = ln.split()
        if len(parts) < 4:
            raise InputError(f"malformed xyz line {k}: {ln.strip()!r} (expected: symbol x y z)")
        numbers.append(atomic_number(parts[0]))
        try:
            xyz = [float(v) for v in parts[1:4]]
        except ValueError:
            raise InputError(f"malformed xyz line {k}: {ln.strip()!r} (coordinates must be numbers)") from None
        if not all(math.isfinite(v) for v in xyz):
            raise InputError(f"non-finite coordinate on xyz line {k}: {ln.strip()!r}")
        coords.append(xyz)
    return numbers, coords, comment


def _count_frames(lines: list[str]) -> int:
    """Number of well-formed frames ``lines`` splits into (0 if it does not)."""
    try:
        return len(parse_xyz_frames("\n".join(lines)))
    except InputError:
        return 0


def parse_xyz_frames(text: str) -> list[tuple[list[int], list[list[float]], str]]:
    """Parse xyz text holding one or more frames (each: atom count, comment, atom
    lines) into a list of :func:`parse_xyz` tuples (Angstrom)."""
    lines = text.strip("\n").splitlines()
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = lines[i].split()
        try:
            natom = int(head[0])
        except ValueError:
            where = f"line {i + 1}" + (f" (frame {len(frames) + 1})" if frames else "")
            raise InputError(f"xyz {where} must be an atom count, got {lines[i]!r}") from None
        block = lines[i:i + natom + 2]
        if len(block) < natom + 2:
            raise InputError(f"xyz frame {len(frames) + 1}: header says {natom} atoms, found {max(len(block) - 2, 0)} "
                             "atom lines")
        try:
            frames.append(parse_xyz("\n".join(block)))
        except InputError as exc:
            more = frames or any(ln.strip() for ln in lines[i + natom + 2:])
            raise (InputError(f"xyz frame {len(frames) + 1}: {exc}") if more else exc) from None
        i += natom + 2
    if not frames:
        raise InputError("empty xyz input")
    return frames


def _comment_tokens(comment: str) -> dict[str, int]:
    out = {}
    for tok in comment.replace(",", " ").split():
        if "=" in tok:
            key, _, val = tok.partition("=")
            key = key.strip().lower()
            if key in ("charge", "spin"):
                try:
                    out[key] = int(val)
                except ValueError:
                    raise InputError(f"comment line token {tok!r}: {key} must be an integer") from None
    return out
