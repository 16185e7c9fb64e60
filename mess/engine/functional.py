"""The energy functional E[D; system, params], defined once.

For a density matrix D (total ``[n, n]`` restricted, spin densities ``[2, n, n]``
unrestricted) at the integrals of one geometry (a :class:`Hamiltonian`),

    E[D] = E_nuc(R) - F . sum_A Z_A R_A + tr((h(R) + F . r) D_tot)
           + E_coulomb[D] + hyb E_exchange[D] + sum_k w_k c_k E_xc,k[D],

with the Coulomb and exchange energies of :func:`mess.scf.veff.coulomb_exchange_energy`
and the semi-local XC energy of :class:`mess.xc.XCFunction` (uniform field F in
atomic units, r the AO dipole integrals about the origin, so dE/dF = -mu). The
density is symmetrised first, so every derivative with respect to D is symmetric.

Everything else derives from this one definition by automatic differentiation:
the Fock matrix is dE/dD (:func:`fock`, :class:`FunctionalVeff` for the SCF kernel),
forces differentiate E at fixed orbitals with respect to the positions, implicit
derivatives and the unrolled SCF differentiate it with respect to any parameter.
Derivatives with respect to D are cheap: the Coulomb/exchange part has a custom
derivative rule that takes J and K from the energy's own build (so the Fock matrix
costs one J/K build, not two), and the XC energy likewise takes V_xc from its own grid
sweep (:meth:`mess.xc.XCFunction.energy`). Second derivatives (Newton steps, response
equations) differentiate those rules again.

References: Roothaan, Rev. Mod. Phys. 23, 69 (1951); Pople & Nesbet, J. Chem. Phys.
22, 571 (1954); Kohn & Sham, Phys. Rev. 140, A1133 (1965); finite-field response:
Cohen & Roothaan, J. Chem. Phys. 43, S34 (1965).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array, Float

from mess.integrals.three_center import df_jk
from mess.integrals.two_electron import (QuartetList, coulomb_pair_matrix, exchange_pair_matrix, get_jk,
                                        get_jk_pairs)
from mess.scf.veff import coulomb_exchange_energy, coulomb_potential, exchange_potential
from mess.engine.signature import Signature
from mess.xc.numint import XCFunction


class Hamiltonian(eqx.Module):
    """Everything E[D] needs at one geometry, for one molecule (no batch axis).

    Attributes:
        overlap: AO overlap ``[n, n]``.
        hcore: core Hamiltonian ``[n, n]`` (Hartree; the field's potential included).
        dipole: AO dipole integrals ``[3, n, n]`` (Bohr, origin 0).
        e_nuc: nuclear repulsion (Hartree; the nuclei's field energy included).
        eri: ERI blocks per quartet class, or for a signature with ``dense_jk`` the
            pair ``(coulomb, exchange)`` of AO-pair matrices of :func:`dense_eri`, or with density
            fitting ``(B,)``, the fitted factor ``[naux, n, n]``
            (:func:`mess.integrals.three_center.cholesky_cderi`); quartets: the
            classes' lists.
        xc: the XC quadrature (None for Hartree-Fock).
        hyb: exact-exchange fraction.
        sig: the signature (static).
    """

    overlap: Float[Array, "n n"]
    hcore: Float[Array, "n n"]
    dipole: Float[Array, "3 n n"]
    e_nuc: Float[Array, ""]
    eri: tuple[Array, ...]
    quartets: tuple[QuartetList, ...]
    xc: XCFunction | None
    hyb: Float[Array, ""]
    sig: Signature = eqx.field(static=True)

    @property
    def restricted(self) -> bool:
        return self.sig.restricted


def dense_eri(sig: Signature, quartets, blocks) -> tuple[Array, Array | None]:
    """The Coulomb and exchange matrices over AO pairs
    (:func:`~mess.integrals.two_electron.coulomb_pair_matrix`,
    :func:`~mess.integrals.two_electron.exchange_pair_matrix`; the exchange one None
    without exact exchange) from the blocks (differentiable in the blocks), in float64
    whatever the blocks' precision (the J/K contractions accumulate in float64)."""
    coulomb = coulomb_pair_matrix(sig.basis, sig.classes, quartets, tuple(b.astype(jnp.float64) for b in blocks))
    return coulomb, exchange_pair_matrix(coulomb, sig.nao) if sig.with_k else None


def _jk(sig: Signature, eri, quartets, dm):
    if sig.density_fit:
        return df_jk(eri[0], dm, with_k=sig.with_k)
    if sig.dense_jk:
        return get_jk_pairs(eri[0], eri[1], dm, with_k=sig.with_k)
    return get_jk(sig.basis, sig.classes, quartets, eri, dm, with_k=sig.with_k)


def _sym(a: Array) -> Array:
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _zero(t) -> bool:
    return isinstance(t, SymbolicZero)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _coulomb_exchange(sig: Signature, blocks, quartets, hyb, dm) -> tuple[Array, Array]:
    """(E_coulomb, hyb E_exchange) of a symmetric ``dm`` from the ERIs."""
    j, k = _jk(sig, blocks, quartets, dm)
    e_j, e_k = coulomb_exchange_energy(j, k if sig.with_k else None, dm, 1.0, sig.restricted)
    return e_j, hyb * e_k


def _coulomb_exchange_jvp(sig, primals, tangents):
    """Along dD the derivative is <J - hyb K/2, dD> (restricted) with J, K from this
    build; along the ERI blocks (in which the energy is linear) it is the same energy
    of the tangent blocks, along the density-fitting factor B (in which it is
    quadratic) twice the energy of the mixed integrals B B' (:func:`df_jk`); along
    hyb it is E_exchange / hyb."""
    blocks, quartets, hyb, dm = primals
    dblocks, _, dhyb, ddm = tangents
    restricted, with_k = sig.restricted, sig.with_k
    j, k = _jk(sig, blocks, quartets, dm)
    e_j, e_k1 = coulomb_exchange_energy(j, k if with_k else None, dm, 1.0, restricted)
    t_j = jnp.zeros_like(e_j)
    t_k = jnp.zeros_like(e_j)
    if not _zero(ddm):
        t_j = t_j + jnp.sum(coulomb_potential(j, restricted) * ddm)
        if with_k:
            t_k = t_k + hyb * jnp.sum(exchange_potential(k, restricted) * ddm)
    if not all(_zero(t) for t in dblocks):
        dbl = tuple(jnp.zeros_like(b) if _zero(t) else t for t, b in zip(dblocks, blocks))
        if sig.density_fit:
            jt, kt = df_jk(blocks[0], dm, with_k, right=dbl[0])
        else:
            jt, kt = _jk(sig, dbl, quartets, dm)
        ej_t, ek_t = coulomb_exchange_energy(jt, kt if with_k else None, dm, 1.0, restricted)
        scale = 2.0 if sig.density_fit else 1.0
        t_j = t_j + scale * ej_t
        t_k = t_k + scale * hyb * ek_t
    if not _zero(dhyb):
        t_k = t_k + e_k1 * dhyb
    return (e_j, hyb * e_k1), (t_j, t_k)


_coulomb_exchange.defjvp(_coulomb_exchange_jvp, symbolic_zeros=True)


def two_electron_energy(ham: Hamiltonian, dm: Array) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Two-electron energy (Hartree) of ``dm`` and its parts ``coulomb``, ``exchange``
    and (DFT) ``xc``."""
    dm = _sym(dm)
    e_j, e_k = _coulomb_exchange(ham.sig, ham.eri, ham.quartets, ham.hyb, dm)
    parts = {"coulomb": e_j, "exchange": e_k}
    if ham.xc is not None:
        parts["xc"] = ham.xc.energy(dm)
    return sum(parts.values()), parts


def energy(ham: Hamiltonian, dm: Array) -> tuple[Float[Array, ""], dict[str, Array]]:
    """The total energy E[D] (Hartree) and its parts (``e_nuc``, ``e_one`` and the
    two-electron parts); see the module docstring."""
    dm_tot = dm if ham.restricted else dm[0] + dm[1]
    e_one = jnp.sum(ham.hcore * _sym(dm_tot))
    e_two, parts = two_electron_energy(ham, dm)
    return ham.e_nuc + e_one + e_two, {"e_nuc": ham.e_nuc, "e_one": e_one, **parts}


def fock(ham: Hamiltonian, dm: Array) -> Array:
    """The Fock matrix dE/dD (Hartree), same layout as ``dm``."""
    return jax.grad(lambda d: energy(ham, d)[0])(dm)


class FunctionalVeff(eqx.Module):
    """``dm -> (veff, e_two, parts)`` for :func:`mess.scf.scf`, with ``veff`` the
    derivative of :func:`two_electron_energy` (so ``h + veff`` is the Fock matrix)."""

    ham: Hamiltonian

    def __call__(self, dm):
        (e_two, parts), v = jax.value_and_grad(lambda d: two_electron_energy(self.ham, d), has_aux=True)(dm)
        return v, e_two, parts
