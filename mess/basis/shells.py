"""Contracted Gaussian shells taken from PySCF's basis library.

A :class:`Basis` holds one entry per contracted shell, in PySCF's AO order (atom by
atom, shells in the order PySCF builds them; a generally contracted PySCF shell with
``nctr`` contractions becomes ``nctr`` consecutive shells sharing exponents). The
primitive exponents and contraction coefficients are traced arrays, so derivatives
with respect to them are available; the structure (angular momenta, atom of each
shell, number of primitives) is static.

Normalisation follows PySCF/libcint exactly: each primitive radial function is
normalised (``gto_norm``), the contracted radial function is normalised, and the
Cartesian functions x^a y^b z^c share the radial normalisation, with the extra
angular factors 1/sqrt(4 pi) for s and sqrt(3 / (4 pi)) for p. Spherical functions are
obtained with PySCF's Cartesian-to-spherical matrices (real solid harmonics, p in
x, y, z order).
"""

from __future__ import annotations

import functools
import math
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.structure import ELEMENTS, Molecule

#: Highest angular momentum supported by the integral code.
L_MAX = 4


def ncart(l: int) -> int:
    """Number of Cartesian components of angular momentum l."""
    return (l + 1) * (l + 2) // 2


def nsph(l: int) -> int:
    """Number of real spherical harmonics of angular momentum l."""
    return 2 * l + 1


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


class Basis(eqx.Module):
    """Contracted Gaussian basis of one molecule.

    Attributes:
        name: basis-set name as given to PySCF.
        cart: True for Cartesian AOs, False for spherical (PySCF's default).
        shell_l: angular momentum of each shell (static).
        shell_atom: index of the atom carrying each shell (static).
        shell_nprim: number of primitives of each shell (static).
        shell_source: index of the PySCF shell (``mol._bas`` row) each shell comes from.
        numbers: atomic numbers of the molecule the basis was built for.
        exponents: primitive exponents, Bohr^-2, shape [nshell, kmax] (padded with 1.0).
        coefficients: contraction coefficients of the *unnormalised* primitives,
            shape [nshell, kmax] (padded with 0.0); normalisation is applied in
            :func:`normalized_coefficients`, so derivatives see it.
    """

    name: str = eqx.field(static=True)
    cart: bool = eqx.field(static=True)
    shell_l: tuple[int, ...] = eqx.field(static=True)
    shell_atom: tuple[int, ...] = eqx.field(static=True)
    shell_nprim: tuple[int, ...] = eqx.field(static=True)
    shell_source: tuple[int, ...] = eqx.field(static=True)
    numbers: tuple[int, ...] = eqx.field(static=True)
    exponents: Float[Array, "nshell kmax"]
    coefficients: Float[Array, "nshell kmax"]

    @property
    def nshell(self) -> int:
        return len(self.shell_l)

    def shell_size(self, i: int) -> int:
        l = self.shell_l[i]
        return ncart(l) if self.cart else nsph(l)

    @property
    def ao_offsets(self) -> np.ndarray:
        """First AO index of each shell, shape [nshell + 1] (last entry = nao)."""
        sizes = [self.shell_size(i) for i in range(self.nshell)]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def cart_offsets(self) -> np.ndarray:
        """First Cartesian AO index of each shell, shape [nshell + 1]."""
        sizes = [ncart(l) for l in self.shell_l]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def nao(self) -> int:
        return int(self.ao_offsets[-1])

    @property
    def ncart_total(self) -> int:
        return int(self.cart_offsets[-1])

    @property
    def ao_atom(self) -> np.ndarray:
        """Atom index of each AO, shape [nao]."""
        return np.repeat(np.asarray(self.shell_atom), [self.shell_size(i) for i in range(self.nshell)])

    def cart_to_ao(self) -> np.ndarray:
        """Block-diagonal [ncart_total, nao] matrix mapping Cartesian to the AO basis."""
        if self.cart:
            return np.eye(self.ncart_total)
        out = np.zeros((self.ncart_total, self.nao))
        co, so = self.cart_offsets, self.ao_offsets
        for i, l in enumerate(self.shell_l):
            out[co[i]:co[i + 1], so[i]:so[i + 1]] = cart_to_sph(l)
        return out


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


def normalized_coefficients(l: int, exponents: Array, coefficients: Array) -> Array:
    """Coefficients of the primitives x^a y^b z^c exp(-alpha r^2) for shells of angular
    momentum l, shape [..., k]: primitive and contracted radial normalisation times
    libcint's s/p angular factor, as PySCF's ``_libcint_ctr_coeff`` (plus that factor)."""
    c = coefficients * primitive_norm(l, exponents)
    ee = exponents[..., :, None] + exponents[..., None, :]
    s = jnp.einsum("...p,...pq,...q->...", c, gaussian_int(2 * l + 2, ee), c)
    return c / jnp.sqrt(s)[..., None] * angular_factor(l)


def make_basis(molecule: Molecule, name: str = "sto-3g", cart: bool = False) -> Basis:
    """Build the basis for a molecule from PySCF's basis library.

    Raises ``ValueError`` for an unknown basis name or one that lacks an element.
    """
    mol = pyscf_mole(molecule, name, cart)
    ls, atoms, nprims, exps, coefs, source = [], [], [], [], [], []
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        if l > L_MAX:
            raise ValueError(f"basis {name!r} has angular momentum {l} > {L_MAX}, not supported")
        e = np.asarray(mol.bas_exp(ib))
        c = np.asarray(mol.bas_ctr_coeff(ib))  # [nprim, nctr], contracted-normalised
        for ic in range(c.shape[1]):
            keep = c[:, ic] != 0.0
            ls.append(l)
            atoms.append(int(mol.bas_atom(ib)))
            nprims.append(int(keep.sum()))
            source.append(ib)
            exps.append(e[keep])
            coefs.append(c[keep, ic])
    kmax = max(nprims)
    exp_arr = np.ones((len(ls), kmax))
    coef_arr = np.zeros((len(ls), kmax))
    for i, (e, c) in enumerate(zip(exps, coefs)):
        exp_arr[i, :e.size] = e
        coef_arr[i, :c.size] = c
    return Basis(name=str(name), cart=bool(cart), shell_l=tuple(ls), shell_atom=tuple(atoms),
                 shell_nprim=tuple(nprims), shell_source=tuple(source),
                 numbers=tuple(int(z) for z in molecule.numbers), exponents=jnp.asarray(exp_arr),
                 coefficients=jnp.asarray(coef_arr))


def pyscf_mole(molecule: Molecule, name: str, cart: bool = False):
    """A built PySCF Mole for ``molecule`` in basis ``name``, with clear errors."""
    from pyscf import gto

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"basis name must be a non-empty string, got {name!r}")
    for z in sorted(set(molecule.numbers)):
        symbol = ELEMENTS[z]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = gto.basis.load(name, symbol)
        except Exception as exc:  # PySCF raises several types for unknown names
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "not found for" in msg:
                raise ValueError(f"basis set {name!r} lacks element {symbol}") from None
            raise ValueError(f"unknown basis set {name!r} ({msg})") from None
        if not data:
            raise ValueError(f"basis set {name!r} lacks element {symbol}")
    return molecule.to_pyscf(name, cart=cart)
