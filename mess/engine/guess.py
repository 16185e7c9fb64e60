"""The initial density of each geometry: PySCF's MINAO guess, projected in JAX.

PySCF's default guess (``scf.hf.init_guess_by_minao``; Almlöf, Faegri & Korsell,
J. Comput. Chem. 3, 385 (1982)) superposes spherically averaged atomic occupations
in a minimal basis cut from the ANO basis set, and projects them onto the target
basis:

    D = P diag(n) P^T,   P = S^-1 S_{target, minao},

with S the target overlap and S_{target, minao} the cross overlap. The minimal basis
and the occupations depend only on the elements (host tables here, from PySCF's ANO
data and atomic configurations); the overlaps are JAX functions of the positions, so
every geometry gets its own guess with no host round trip, and molecules of one
batch get theirs in one vectorised call. Unrestricted calculations split D evenly
between the spins; for spin 0 the beta density keeps only its atom-diagonal blocks
(PySCF's ``init_guess_breaksym = 1``).

Minimal-basis functions with zero occupation (H's p, d, f functions, the empty
shells of heavier atoms) are left out: they do not contribute to D.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from mess.basis.shells import BasisLayout, BasisShape, ElementShells, ShellGroup, basis_layout, shells_of_mole
from mess.errors import InputError
from mess.integrals.one_electron import cross_overlap
from mess.structure import ELEMENTS


@functools.lru_cache(maxsize=256)
def minao_element(z: int, cart: bool = False) -> tuple[ElementShells, tuple[float, ...]]:
    """Shells of element ``z``'s minimal (truncated ANO) basis with non-zero
    occupation, and each shell's occupation per AO (electrons), as PySCF's
    ``init_guess_by_minao`` builds them (no ECP core). A memoised pure function."""
    from pyscf import gto
    from pyscf.scf import atom_hf

    symbol = ELEMENTS[z]
    ano = gto.basis.load("ano", symbol)
    basis, occ_of_ctr = [], []
    for l in range(4):
        ndocc, frac = atom_hf.frac_occ(symbol, l)
        occ_l = [2.0] * ndocc + [float(frac)]
        basis.append([l] + [b[:1] + b[1:ndocc + 2] for b in ano[l][1:]])
        occ_of_ctr.append(occ_l)
    mol = gto.Mole()
    mol.atom = [(symbol, (0.0, 0.0, 0.0))]
    mol.basis = {symbol: basis}
    mol.cart = cart
    mol.spin = z % 2
    mol.verbose = 0
    mol.build()
    es = shells_of_mole(mol, "minao")
    # one shell per contraction, in the order of basis[l]'s contractions
    count = {}
    keep, occ = [], []
    for i, (l, src) in enumerate(zip(es.l, es.source)):
        ic = count.get(src, 0)
        count[src] = ic + 1
        n = occ_of_ctr[l][ic]
        if n != 0.0:
            keep.append(i)
            occ.append(n)
    shells = ElementShells(tuple(es.l[i] for i in keep), tuple(es.exponents[i] for i in keep),
                           tuple(es.coefficients[i] for i in keep), tuple(es.source[i] for i in keep), es.nbas)
    if cart and any(l >= 2 for l in shells.l):
        raise InputError(f"the MINAO guess for {symbol} needs Cartesian d functions, which PySCF's guess does "
                         "not define; use init_guess='core' or spherical AOs")
    return shells, tuple(occ)


def minao_layout(numbers, cart: bool = False) -> tuple[BasisLayout, np.ndarray]:
    """The MINAO basis of a molecule and each of its shells' occupation (electrons per
    AO of the shell), in the layout's shell order."""
    layout = basis_layout(numbers, "minao", cart, shells_of=lambda z: minao_element(z, cart)[0])
    occ = np.concatenate([np.asarray(minao_element(int(z), cart)[1]) for z in numbers])
    return layout, occ


def ao_occupations(layout: BasisLayout, shell_occupation: np.ndarray, shape: BasisShape) -> np.ndarray:
    """Occupation of each engine AO of ``shape`` (0 for padding AOs), from per-shell
    occupations."""
    out = np.zeros(shape.nao)
    out[layout.engine_index(shape)] = np.repeat(shell_occupation, layout.sizes)
    return out


def minao_density(basis_shape: BasisShape, shells: tuple[ShellGroup, ...], guess_shape: BasisShape,
                  guess_shells: tuple[ShellGroup, ...], occupation: Float[Array, " nao_g"],
                  overlap: Float[Array, "nao nao"], ao_mask: Bool[Array, " nao"], ao_atom: Int[Array, " nao"],
                  positions: Float[Array, "natom 3"], restricted: bool, break_spin: Bool[Array, ""]
                  ) -> Float[Array, "... nao nao"]:
    """The MINAO initial density (module docstring): total ``[nao, nao]`` when
    ``restricted``, else ``[2, nao, nao]``. Padding AOs (``ao_mask`` False) get zero
    rows and columns; ``break_spin`` keeps only the atom-diagonal blocks of beta."""
    s21 = cross_overlap(basis_shape, shells, guess_shape, guess_shells, positions)
    s22 = overlap + jnp.diag(jnp.where(ao_mask, 0.0, 1.0))
    p = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(s22, lower=True), s21)
    dm = (p * occupation) @ p.T
    if restricted:
        return dm
    half = 0.5 * dm
    same_atom = ao_atom[:, None] == ao_atom[None, :]
    beta = jnp.where(break_spin & ~same_atom, 0.0, half)
    return jnp.stack([half, beta])
