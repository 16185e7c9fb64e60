"""Two-electron potentials: ``veff_fn(dm) -> (veff, e_two, parts)`` builders.

A *veff function* maps a density matrix to the effective two-electron potential
in the AO basis, the two-electron energy and its named parts:

* restricted: ``dm`` is the total density ``[nao, nao]``, ``veff`` ``[nao, nao]``;
* unrestricted: ``dm`` is ``[2, nao, nao]`` (alpha, beta), ``veff`` ``[2, nao, nao]``.

The total energy is ``E = e_nuc + tr(h dm_total) + e_two``. Potentials compose by
addition (:func:`sum_veff`): a hybrid functional is
``sum_veff(hf_veff(get_jk, restricted, hyb=a0), xc_veff)``.

The builders return equinox modules (pytrees): arrays they hold (e.g. an ERI
tensor) are traced leaves, so ``eqx.filter_jit(scf)`` compiles once per shape and a
new geometry's integrals do not recompile.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

#: ``dm -> (veff, e_two, parts)``; see the module docstring.
VeffFn = Callable[[Array], tuple[Array, Array, dict[str, Array]]]
#: ``dm -> (J, K)`` with J and K of the same shape as dm ([n,n] or [2,n,n]).
GetJK = Callable[[Array], tuple[Array, Array]]


def coulomb_exchange_energy(j: Array, k: Array | None, dm: Array, hyb, restricted: bool
                            ) -> tuple[Array, Array]:
    """Coulomb and exact-exchange energies (Hartree) from J and K of ``dm``.

    Restricted (Roothaan 1951), total density D, J = J[D], K = K[D]::

        E_coulomb = 1/2 tr(J D),   E_exchange = -hyb/4 tr(K D)

    Unrestricted (Pople & Nesbet 1954), spin densities D_s, J and K per spin::

        E_coulomb = 1/2 tr((J_a + J_b)(D_a + D_b)),   E_exchange = -hyb/2 sum_s tr(K_s D_s)

    ``k = None`` means no exact exchange (E_exchange = 0). This is the one place the
    formula is written; :func:`coulomb_exchange_potential` is its derivative."""
    if restricted:
        e_j = 0.5 * jnp.sum(j * dm)
        e_k = jnp.zeros((), dm.dtype) if k is None else -0.25 * hyb * jnp.sum(k * dm)
    else:
        e_j = 0.5 * jnp.sum((j[0] + j[1]) * (dm[0] + dm[1]))
        e_k = jnp.zeros((), dm.dtype) if k is None else -0.5 * hyb * jnp.sum(k * dm)
    return e_j, e_k


def coulomb_potential(j: Array, restricted: bool) -> Array:
    """d E_coulomb / dD of :func:`coulomb_exchange_energy`: ``J`` (restricted) or
    ``J_a + J_b`` for each spin (using tr(J[A] B) = tr(J[B] A))."""
    return j if restricted else jnp.broadcast_to((j[0] + j[1])[None], j.shape)


def exchange_potential(k: Array, restricted: bool) -> Array:
    """d E_exchange / dD per unit ``hyb``: ``-K/2`` (restricted) or ``-K_s``."""
    return -0.5 * k if restricted else -k


def coulomb_exchange_potential(j: Array, k: Array | None, hyb, restricted: bool) -> Array:
    """d(E_coulomb + E_exchange)/dD of :func:`coulomb_exchange_energy` (Hartree), same
    layout as the density: ``J - hyb/2 K`` (restricted) or ``J_a + J_b - hyb K_s``."""
    v = coulomb_potential(j, restricted)
    return v if k is None else v + hyb * exchange_potential(k, restricted)


class HFVeff(eqx.Module):
    """Hartree-Fock potential from a J/K builder; see :func:`hf_veff`."""

    get_jk: GetJK
    restricted: bool = eqx.field(static=True)
    hyb: float | Array = 1.0

    def __call__(self, dm):
        j, k = self.get_jk(dm)
        e_j, e_k = coulomb_exchange_energy(j, k, dm, self.hyb, self.restricted)
        veff = coulomb_exchange_potential(j, k, self.hyb, self.restricted)
        return veff, e_j + e_k, {"coulomb": e_j, "exchange": e_k}


def hf_veff(get_jk: GetJK, restricted: bool, hyb: float = 1.0) -> HFVeff:
    """Hartree-Fock potential from a J/K builder.

    Restricted (Roothaan 1951), with total density D::

        veff = J[D] - hyb/2 K[D]
        E_coulomb = 1/2 tr(J D),  E_exchange = -hyb/4 tr(K D)

    Unrestricted (Pople & Nesbet 1954), with spin densities D_a, D_b::

        veff_s = J[D_a] + J[D_b] - hyb K[D_s]
        E_coulomb = 1/2 tr(J[D_a + D_b] (D_a + D_b)),  E_exchange = -hyb/2 sum_s tr(K[D_s] D_s)

    Args:
        get_jk: ``dm -> (J, K)``, Coulomb and exchange matrices (Hartree) of a
            density of shape ``[n, n]`` or ``[2, n, n]`` (J[D]_ij = (ij|kl) D_lk,
            K[D]_ij = (ik|jl) D_kl).
        restricted: whether ``dm`` is a total density (True) or spin densities.
        hyb: fraction of exact exchange (1 for HF; e.g. 0.2 for B3LYP).

    Returns:
        A veff function (an equinox module); parts are ``{"coulomb", "exchange"}``,
        Hartree.
    """
    return HFVeff(get_jk, restricted, hyb)


class SumVeff(eqx.Module):
    """Sum of veff functions; see :func:`sum_veff`."""

    fns: tuple

    def __call__(self, dm):
        veff = jnp.zeros_like(dm)
        e_two = jnp.zeros((), dm.dtype)
        parts: dict[str, Array] = {}
        for fn in self.fns:
            v, e, p = fn(dm)
            veff = veff + v
            e_two = e_two + e
            for name, val in p.items():
                parts[name] = parts[name] + val if name in parts else val
        return veff, e_two, parts


def sum_veff(*fns: VeffFn) -> SumVeff:
    """Sum of veff functions: potentials and energies add, parts are merged
    (a part named by several functions is summed)."""
    return SumVeff(tuple(fns))


class EriJK(eqx.Module):
    """J/K builder from a dense ERI tensor ``(ij|kl)`` in chemists' notation (PySCF
    ``mol.intor('int2e')``); for tests and small systems: O(N^4) memory.

    ``J_ij = sum_kl (ij|kl) D_lk``, ``K_ij = sum_kl (ik|jl) D_kl``, for ``D`` of shape
    ``[n, n]`` or ``[2, n, n]``.
    """

    eri: Float[Array, "n n n n"]

    def __call__(self, dm):
        j = jnp.einsum("ijkl,...lk->...ij", self.eri, dm)
        k = jnp.einsum("ikjl,...kl->...ij", self.eri, dm)
        return j, k


def eri_get_jk(eri: Float[Array, "n n n n"]) -> EriJK:
    """J/K builder from a dense ERI tensor; see :class:`EriJK`."""
    return EriJK(jnp.asarray(eri))
