"""Contracted Gaussian shells from PySCF's basis library, laid out for padded batches.

Three pieces, from the host to the device:

* :func:`element_shells` (host, memoised pure function): the shells of one element in
  one basis set, in PySCF's order. A generally contracted PySCF shell with ``nctr``
  contractions becomes ``nctr`` consecutive shells sharing exponents.
* :class:`BasisLayout` (host, one molecule): its shells in PySCF's order (atom by
  atom), each with its angular momentum, primitive count, atom, PySCF AO offset and
  its *row* within the group of shells of the same angular momentum.
* :class:`BasisShape` (static, hashed by value) and :class:`ShellGroup` (arrays): the
  shells grouped by angular momentum, one group per l, each padded to a shell count
  and a primitive count that the shape fixes. A shape is the basis part of a batch
  signature (:mod:`mess.engine.signature`); molecules with the same shape share every
  compiled program.

**Engine AO order.** Inside the engine AOs are ordered group by group (l = 0, 1, ...),
shell by shell within a group (rows in PySCF's order of those shells), and component
by component within a shell (PySCF's component order). Padding shells fill the end
of each group; their AOs are identically zero functions (zero coefficients), which
the SCF removes as linearly dependent directions. PySCF's AO order is restored at the
output boundary with :meth:`BasisLayout.engine_index`.

**Normalisation** follows PySCF/libcint exactly: each primitive radial function is
normalised (``gto_norm``), the contracted radial function is normalised, and the
Cartesian functions x^a y^b z^c share the radial normalisation, with the extra angular
factors 1/sqrt(4 pi) for s and sqrt(3 / (4 pi)) for p. Spherical functions are obtained
with PySCF's Cartesian-to-spherical matrices (real solid harmonics, p in x, y, z order).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from mess.errors import InputError
from mess.structure import ELEMENTS

#: Highest angular momentum supported by the integral code.
L_MAX = 4


def ncart(l: int) -> int:
    """Number of Cartesian components of angular momentum l."""
    return (l + 1) * (l + 2) // 2


def nsph(l: int) -> int:
    """Number of real spherical harmonics of angular momentum l."""
    return 2 * l + 1


def shell_size(l: int, cart: bool) -> int:
    """Number of AOs of a shell of angular momentum l (Cartesian or spherical)."""
    return ncart(l) if cart else nsph(l)


@functools.cache
def cartesian_powers(l: int) -> np.ndarray:
    """Exponents (a, b, c) of x^a y^b z^c in PySCF's order (xx, xy, xz, yy, yz, zz, ...)."""
    out = []
    for a in range(l, -1, -1):
        for b in range(l - a, -1, -1):
            out.append((a, b, l - a - b))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


@functools.cache
def cart_to_sph(l: int) -> np.ndarray:
    """PySCF's Cartesian -> spherical matrix for one shell, shape [ncart(l), nsph(l)]."""
    from pyscf import gto

    return np.asarray(gto.cart2sph(l, normalized="sp"))


def gaussian_int(n: int, alpha: Array) -> Array:
    """\\int_0^inf r^n exp(-alpha r^2) dr = Gamma((n+1)/2) / (2 alpha^((n+1)/2))."""
    n1 = (n + 1) * 0.5
    return math.gamma(n1) / (2.0 * alpha ** n1)


def primitive_norm(l: int, alpha: Array) -> Array:
    """Radial normalisation of r^l exp(-alpha r^2): 1 / sqrt(\\int r^(2l+2) exp(-2 alpha r^2) dr)."""
    return 1.0 / jnp.sqrt(gaussian_int(2 * l + 2, 2.0 * alpha))


def angular_factor(l: int) -> float:
    """libcint's extra factor for Cartesian s and p functions (1 for l >= 2)."""
    if l == 0:
        return 0.282094791773878143  # 1 / sqrt(4 pi)
    if l == 1:
        return 0.488602511902919921  # sqrt(3 / (4 pi))
    return 1.0


def normalized_coefficients(l: int, exponents: Float[Array, "... k"],
                            coefficients: Float[Array, "... k"]) -> Float[Array, "... k"]:
    """Coefficients of the primitives x^a y^b z^c exp(-alpha r^2) for shells of angular
    momentum l, shape [..., k]: primitive and contracted radial normalisation times
    libcint's s/p angular factor, as PySCF's ``_libcint_ctr_coeff`` (plus that factor).

    A padding shell (all coefficients 0) stays exactly 0, with finite derivatives: its
    norm 0/0 is guarded."""
    c = coefficients * primitive_norm(l, exponents)
    ee = exponents[..., :, None] + exponents[..., None, :]
    s = jnp.einsum("...p,...pq,...q->...", c, gaussian_int(2 * l + 2, ee), c)
    s = jnp.where(s > 0, s, 1.0)
    return c / jnp.sqrt(s)[..., None] * angular_factor(l)


# --------------------------------------------------------------------------------------
# Host: the shells of an element, and of a molecule
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ElementShells:
    """Shells of one element in one basis set (host data, PySCF's order).

    Attributes:
        l: angular momentum of each shell.
        exponents, coefficients: per shell, the primitive exponents (Bohr^-2) and
            PySCF's contraction coefficients (``bas_ctr_coeff``), zeros removed.
        source: index of the PySCF shell (row of the atom's ``_bas``) each shell
            comes from; ``nbas`` is the number of PySCF shells of the atom.
    """

    l: tuple[int, ...]
    exponents: tuple[np.ndarray, ...]
    coefficients: tuple[np.ndarray, ...]
    source: tuple[int, ...]
    nbas: int

    @property
    def nprim(self) -> tuple[int, ...]:
        return tuple(int(e.size) for e in self.exponents)


def check_basis_name(name) -> None:
    """Raise ``ValueError`` unless ``name`` is a non-empty string."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"basis name must be a non-empty string, got {name!r}")


@functools.lru_cache(maxsize=1024)
def element_shells(name: str, z: int, cart: bool = False) -> ElementShells:
    """The shells of element ``z`` in basis set ``name`` (any name PySCF knows).

    A memoised pure function of its arguments (the data are immutable). Raises
    ``ValueError`` for an unknown basis name, a basis that lacks the element, or
    angular momenta above :data:`L_MAX`."""
    from pyscf import gto

    check_basis_name(name)
    if not 0 < int(z) < len(ELEMENTS):
        raise InputError(f"element Z={z} is not supported (mess knows H to {ELEMENTS[-1]})")
    symbol = ELEMENTS[z]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = gto.basis.load(name, symbol)
    except Exception as exc:  # PySCF raises several types for unknown names
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not found for" in msg:
            raise InputError(f"basis set {name!r} lacks element {symbol}") from None
        raise InputError(f"unknown basis set {name!r} ({msg})") from None
    if not data:
        raise InputError(f"basis set {name!r} lacks element {symbol}")
    mol = gto.Mole()
    mol.atom = [(symbol, (0.0, 0.0, 0.0))]
    mol.basis = {symbol: data}
    mol.cart = cart
    mol.spin = z % 2
    mol.verbose = 0
    mol.build()
    return shells_of_mole(mol, name)


def shells_of_mole(mol, name: str = "") -> ElementShells:
    """The shells of a built single-atom PySCF ``Mole`` (generally contracted shells
    split into one shell per contraction, zero coefficients dropped)."""
    ls, exps, coefs, source = [], [], [], []
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        if l > L_MAX:
            raise InputError(f"basis {name!r} has angular momentum {l} > {L_MAX}, not supported")
        e = np.asarray(mol.bas_exp(ib), dtype=np.float64)
        c = np.asarray(mol.bas_ctr_coeff(ib), dtype=np.float64)  # [nprim, nctr]
        for ic in range(c.shape[1]):
            keep = c[:, ic] != 0.0
            ls.append(l)
            exps.append(e[keep])
            coefs.append(c[keep, ic])
            source.append(ib)
    return ElementShells(tuple(ls), tuple(exps), tuple(coefs), tuple(source), int(mol.nbas))


@dataclasses.dataclass(frozen=True)
class GroupShape:
    """One angular-momentum group of a :class:`BasisShape`: angular momentum ``l``,
    primitives per shell ``nprim`` (the group's longest contraction) and shells
    ``nshell`` (padding included)."""

    l: int
    nprim: int
    nshell: int


@dataclasses.dataclass(frozen=True)
class BasisShape:
    """Static shape of a padded basis: one :class:`GroupShape` per angular momentum, in
    increasing l, and whether AOs are Cartesian. Hashed by value."""

    cart: bool
    groups: tuple[GroupShape, ...]

    def size(self, l: int) -> int:
        """AOs per shell of angular momentum l."""
        return shell_size(l, self.cart)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First engine AO index of each group; the last entry is ``nao``."""
        out = [0]
        for g in self.groups:
            out.append(out[-1] + g.nshell * self.size(g.l))
        return tuple(out)

    @property
    def nao(self) -> int:
        """Number of AOs, padding included."""
        return self.offsets[-1]

    @property
    def ls(self) -> tuple[int, ...]:
        return tuple(g.l for g in self.groups)

    def group(self, l: int) -> GroupShape:
        """The group of angular momentum l."""
        for g in self.groups:
            if g.l == l:
                return g
        raise KeyError(f"no shells of angular momentum {l} in this basis shape")

    def index(self, l: int) -> int:
        """Position of the group of angular momentum l in :attr:`groups`."""
        return self.ls.index(l)


class ShellGroup(eqx.Module):
    """The shells of one angular momentum of a padded basis (arrays only).

    Attributes:
        exponents: ``[nshell, nprim]`` primitive exponents, Bohr^-2 (padding 1.0).
        coefficients: ``[nshell, nprim]`` contraction coefficients of the
            unnormalised primitives (PySCF's ``bas_ctr_coeff``; padding 0.0);
            normalisation is applied in :func:`normalized_coefficients`, so
            derivatives with respect to them see it.
        atom: ``[nshell]`` index of the atom carrying each shell (padding: 0).
    """

    exponents: Float[Array, "nshell nprim"]
    coefficients: Float[Array, "nshell nprim"]
    atom: Int[Array, " nshell"]


@dataclasses.dataclass(frozen=True, eq=False)
class BasisLayout:
    """A molecule's shells in PySCF's order (host data; see the module docstring).

    Attributes:
        name, cart: basis-set name and Cartesian flag.
        l, nprim, atom: per shell, angular momentum, primitive count and atom index.
        source: per shell, the row of the molecule's PySCF ``_bas`` it comes from.
        exponents, coefficients: per shell (lists of 1-D arrays).
    """

    name: str
    cart: bool
    l: np.ndarray
    nprim: np.ndarray
    atom: np.ndarray
    source: np.ndarray
    exponents: tuple[np.ndarray, ...]
    coefficients: tuple[np.ndarray, ...]

    @property
    def nshell(self) -> int:
        return int(self.l.size)

    @functools.cached_property
    def sizes(self) -> np.ndarray:
        """AOs of each shell."""
        return np.asarray([shell_size(int(l), self.cart) for l in self.l], dtype=np.int64)

    @property
    def nao(self) -> int:
        """Number of AOs (no padding)."""
        return int(self.sizes.sum())

    @functools.cached_property
    def pyscf_offsets(self) -> np.ndarray:
        """First PySCF AO index of each shell."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @functools.cached_property
    def row(self) -> np.ndarray:
        """Row of each shell within the group of its angular momentum."""
        out = np.zeros(self.nshell, dtype=np.int64)
        for l in np.unique(self.l):
            sel = np.nonzero(self.l == l)[0]
            out[sel] = np.arange(sel.size)
        return out

    def counts(self) -> dict[int, tuple[int, int]]:
        """``{l: (number of shells, longest contraction)}``."""
        out = {}
        for l in np.unique(self.l):
            sel = self.l == l
            out[int(l)] = (int(sel.sum()), int(self.nprim[sel].max()))
        return out

    def shape(self) -> BasisShape:
        """The unpadded shape of this basis."""
        return BasisShape(self.cart, tuple(GroupShape(l, k, n) for l, (n, k) in sorted(self.counts().items())))

    def check_fits(self, shape: BasisShape) -> None:
        if shape.cart != self.cart:
            raise InputError("basis shape and layout disagree on Cartesian/spherical AOs")
        for l, (n, k) in self.counts().items():
            try:
                g = shape.group(l)
            except KeyError:
                raise InputError(f"basis shape has no group for l = {l}") from None
            if g.nshell < n or g.nprim < k:
                raise InputError(f"basis shape group l = {l} ({g.nshell} shells, {g.nprim} primitives) "
                                 f"is too small for {n} shells of up to {k} primitives")

    def groups(self, shape: BasisShape) -> tuple[ShellGroup, ...]:
        """Padded per-group arrays (numpy) for ``shape``; see :class:`ShellGroup`."""
        self.check_fits(shape)
        out = []
        for g in shape.groups:
            exps = np.ones((g.nshell, g.nprim))
            coefs = np.zeros((g.nshell, g.nprim))
            atom = np.zeros(g.nshell, dtype=np.int32)
            for i in np.nonzero(self.l == g.l)[0]:
                r, k = self.row[i], self.nprim[i]
                exps[r, :k] = self.exponents[i]
                coefs[r, :k] = self.coefficients[i]
                atom[r] = self.atom[i]
            out.append(ShellGroup(exps, coefs, atom))
        return tuple(out)

    def engine_offsets(self, shape: BasisShape) -> np.ndarray:
        """First engine AO index of each shell for ``shape``."""
        base = dict(zip(shape.ls, shape.offsets[:-1]))
        return np.asarray([base[int(l)] + self.row[i] * shape.size(int(l)) for i, l in enumerate(self.l)],
                          dtype=np.int64)

    def engine_index(self, shape: BasisShape) -> np.ndarray:
        """Engine AO index of each PySCF AO, ``[nao]``: ``engine_matrix[ix][:, ix]`` is
        the matrix in PySCF's AO order."""
        start = self.engine_offsets(shape)
        return np.concatenate([start[i] + np.arange(self.sizes[i]) for i in range(self.nshell)])

    def ao_atom(self, shape: BasisShape) -> np.ndarray:
        """Atom of each engine AO, ``[shape.nao]`` (padding AOs: atom 0)."""
        out = np.zeros(shape.nao, dtype=np.int32)
        out[self.engine_index(shape)] = np.repeat(self.atom, self.sizes)
        return out

    def ao_mask(self, shape: BasisShape) -> np.ndarray:
        """``True`` for the engine AOs that are real functions, ``[shape.nao]``."""
        out = np.zeros(shape.nao, dtype=bool)
        out[self.engine_index(shape)] = True
        return out


def basis_layout(numbers, name: str = "sto-3g", cart: bool = False, shells_of=None) -> BasisLayout:
    """The :class:`BasisLayout` of a molecule with atomic ``numbers`` in basis ``name``.

    ``shells_of(z)`` (default :func:`element_shells` of ``name``) gives each element's
    shells. Raises ``ValueError`` for an unknown basis name or one that lacks an
    element."""
    check_basis_name(name)
    if shells_of is None:
        def shells_of(z):
            return element_shells(name, z, bool(cart))
    ls, nprim, atoms, source, exps, coefs = [], [], [], [], [], []
    bas_offset = 0
    for ia, z in enumerate(numbers):
        es = shells_of(int(z))
        ls += es.l
        nprim += es.nprim
        atoms += [ia] * len(es.l)
        source += [bas_offset + s for s in es.source]
        exps += es.exponents
        coefs += es.coefficients
        bas_offset += es.nbas
    return BasisLayout(name=str(name), cart=bool(cart), l=np.asarray(ls, dtype=np.int64),
                       nprim=np.asarray(nprim, dtype=np.int64), atom=np.asarray(atoms, dtype=np.int64),
                       source=np.asarray(source, dtype=np.int64), exponents=tuple(exps),
                       coefficients=tuple(coefs))


def shell_data(shape: BasisShape, groups: tuple[ShellGroup, ...], positions: Float[Array, "natom 3"]
               ) -> tuple[tuple[Array, Array, Array], ...]:
    """Per group: (exponents [n, K] in Bohr^-2, normalised contraction coefficients
    [n, K], centres [n, 3] in Bohr), in the order of ``shape.groups``."""
    out = []
    for g, grp in zip(shape.groups, groups):
        exps = jnp.asarray(grp.exponents)
        coefs = normalized_coefficients(g.l, exps, jnp.asarray(grp.coefficients))
        out.append((exps, coefs, positions[jnp.asarray(grp.atom)]))
    return tuple(out)
