"""Numerical integration of the XC energy and potential on a molecular grid.

With AO values phi_m(r_p) and quadrature weights w_p, the density of a (symmetric)
density matrix D and its gradient are

    rho(r)      = sum_mn D_mn phi_m(r) phi_n(r)
    grad rho(r) = 2 sum_mn D_mn grad phi_m(r) phi_n(r),   sigma = |grad rho|^2,

and the semi-local XC energy is E_xc = sum_p w_p e_xc(rho_p, sigma_p) with the energy
density e_xc of :class:`mess.xc.Functional` (Hartree / Bohr^3). Spin-polarised: rho_a,
rho_b from D_a, D_b and sigma_aa, sigma_ab, sigma_bb (Pople, Gill & Johnson, Chem. Phys.
Lett. 199, 557 (1992); Johnson, Gill & Pople, J. Chem. Phys. 98, 5612 (1993)).

The XC potential matrix is V_xc = dE_xc/dD (per spin for D = (D_a, D_b)), computed by
reverse-mode autodiff of the block energy with respect to the symmetrised density
matrix; it equals PySCF's ``NumInt.nr_rks`` / ``nr_uks`` ``vmat`` (the usual
V_mn = sum_p w_p [v_rho phi_m phi_n + 2 v_sigma grad rho . grad(phi_m phi_n)]) to
rounding, without hand-coding the functional derivatives.

Grid points are processed in blocks of fixed size inside a ``lax.scan`` (one compiled
body, memory O(block * nao) beyond the inputs). Two ways to get AO values:

* **precomputed** (:func:`make_xc_fn`): AO values on the whole grid are computed once
  per geometry with :func:`mess.basis.ao_values` and reused by every SCF iteration.
  Memory ``(1 + 3 [GGA]) * npts * nao * 8`` bytes: e.g. 300k points x 300 AOs x 4 is
  2.9 GB.
* **direct** (:func:`make_xc_fn_direct`): AO values are recomputed block by block on
  each call; memory O(block * nao), more arithmetic per call.

:func:`build_xc_fn` chooses between them by a memory budget.

Public API::

    xc_fn = build_xc_fn(functional, basis, positions, coords, weights, restricted=True)
    e_xc, v_xc = xc_fn(dm)             # Hartree; [nao, nao] or [2, nao, nao]
    e_xc = xc_energy(functional, basis, positions, coords, weights, dm)   # differentiable
    veff_fn = ks_veff(get_jk, xc_fn, functional, restricted=True)          # for mess.scf
"""

from __future__ import annotations

import inspect
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.basis.ao_values import ao_values, ao_values_block, default_ao_block_size
from mess.basis.shells import Basis
from mess.xc.registry import Functional

#: Default bytes allowed for precomputed AO values in :func:`build_xc_fn` (2 GiB).
DEFAULT_AO_MEMORY = 2 << 30
#: Default points per block when AO values are precomputed.
DEFAULT_BLOCK = 2048


def ao_deriv(functional: Functional) -> int:
    """AO derivative order a functional needs: 1 for GGA, 0 for LDA (and HF)."""
    return 1 if functional.family == "gga" else 0


def _sym(dm: Array) -> Array:
    return 0.5 * (dm + jnp.swapaxes(dm, -1, -2))


def _density(ao: Array, dm: Array, gga: bool):
    """rho [B] and grad rho [3, B] (None for LDA) of a symmetric dm on a block.

    ao: [nd, B, nao] (value first, then d/dx, d/dy, d/dz)."""
    c = ao[0] @ dm
    rho = jnp.sum(c * ao[0], axis=-1)
    if not gga:
        return rho, None
    return rho, 2.0 * jnp.einsum("xpi,pi->xp", ao[1:4], c)


def block_xc_energy(functional: Functional, restricted: bool, ao: Array, weights: Array, dm: Array) -> Array:
    """XC energy (Hartree) of one block of points.

    Args:
        functional: semi-local part is used (exact exchange is not included).
        restricted: dm is the total density [nao, nao] (True) or (D_a, D_b) [2, nao, nao].
        ao: AO values [nd, B, nao], nd = 4 for GGA (value, gradient) or >= 1 for LDA.
        weights: [B] quadrature weights (Bohr^3); zero for padding points.
        dm: density matrix; symmetrised here, so d/d dm is the symmetric V_xc.
    """
    gga = functional.family == "gga"
    dm = _sym(dm)
    if restricted:
        rho, grad = _density(ao, dm, gga)
        sigma = jnp.sum(grad * grad, axis=0) if gga else None
        exc = functional.exc_restricted(rho, sigma)
    else:
        ra, ga = _density(ao, dm[0], gga)
        rb, gb = _density(ao, dm[1], gga)
        if gga:
            saa = jnp.sum(ga * ga, axis=0)
            sab = jnp.sum(ga * gb, axis=0)
            sbb = jnp.sum(gb * gb, axis=0)
        else:
            saa = sab = sbb = None
        exc = functional.exc_polarized(ra, rb, saa, sab, sbb)
    return jnp.sum(weights * exc)


class XCFunction(eqx.Module):
    """``dm -> (E_xc, V_xc)`` on a fixed grid; see :func:`make_xc_fn` and
    :func:`make_xc_fn_direct`.

    Exactly one of ``ao`` (precomputed [nd, npts, nao]) or ``basis``/``positions``/
    ``coords`` (direct) is set. Blocks are contiguous slices of ``block_size`` points;
    the last block is shifted back to end at ``npts`` and its points already covered
    by the previous block get weight 0, so nothing is padded or copied.
    """

    functional: Functional
    restricted: bool = eqx.field(static=True)
    block_size: int = eqx.field(static=True)
    weights: Float[Array, " npts"]
    ao: Array | None = None
    basis: Basis | None = None
    positions: Array | None = None
    coords: Array | None = None

    @property
    def npts(self) -> int:
        return self.weights.shape[0]

    @property
    def nblock(self) -> int:
        return -(-self.npts // self.block_size)

    def _block(self, i):
        """AO values [nd, B, nao] and masked weights [B] of block i (traced int)."""
        b = self.block_size
        start = jnp.minimum(i * b, self.npts - b)
        idx = start + jnp.arange(b)
        w = jnp.where(idx >= i * b, jax.lax.dynamic_slice_in_dim(self.weights, start, b), 0.0)
        if self.ao is not None:
            ao = jax.lax.dynamic_slice_in_dim(self.ao, start, b, axis=1)
        else:
            pts = jax.lax.dynamic_slice_in_dim(self.coords, start, b, axis=0)
            ao = ao_values_block(self.basis, self.positions, pts, ao_deriv(self.functional))
        return ao, w

    def _nao(self) -> int:
        return self.ao.shape[-1] if self.ao is not None else self.basis.nao

    @eqx.filter_jit
    def energy(self, dm: Array) -> Array:
        """E_xc (Hartree) of ``dm``; differentiable in every input (AO values, weights,
        or positions/coords/basis for the direct path); each block is rematerialised
        in the backward pass, so memory stays per-block."""
        if self.functional.family == "hf":
            return jnp.zeros((), self.weights.dtype)

        def body(e, i):
            ao, w = self._block(i)
            return e + block_xc_energy(self.functional, self.restricted, ao, w, dm), None

        e, _ = jax.lax.scan(jax.checkpoint(body), jnp.zeros((), self.weights.dtype),
                            jnp.arange(self.nblock))
        return e

    @eqx.filter_jit
    def __call__(self, dm: Array) -> tuple[Array, Array]:
        """(E_xc in Hartree, V_xc = dE_xc/dD with dm's shape, symmetric)."""
        dm = jnp.asarray(dm)
        self._check(dm)
        if self.functional.family == "hf":
            return jnp.zeros((), dm.dtype), jnp.zeros_like(dm)

        def body(carry, i):
            e, v = carry
            ao, w = self._block(i)
            eb, vb = jax.value_and_grad(
                lambda d: block_xc_energy(self.functional, self.restricted, ao, w, d))(dm)
            return (e + eb, v + vb), None

        init = (jnp.zeros((), dm.dtype), jnp.zeros_like(dm))
        (e, v), _ = jax.lax.scan(body, init, jnp.arange(self.nblock))
        return e, v

    def _check(self, dm):
        n = self._nao()
        want = (n, n) if self.restricted else (2, n, n)
        if dm.shape != want:
            kind = "restricted" if self.restricted else "unrestricted"
            raise ValueError(f"{kind} XC function expects dm of shape {want}, got {dm.shape}")


def _block_size(npts: int, block_size: int | None, default: int) -> int:
    return max(1, min(npts, block_size or default))


def make_xc_fn(functional: Functional, ao: Array, weights: Float[Array, " npts"], restricted: bool,
               block_size: int | None = None) -> XCFunction:
    """XC energy and potential from precomputed AO values.

    Args:
        functional: from :func:`mess.xc.parse_xc`.
        ao: AO values from :func:`mess.basis.ao_values`: [npts, nao] or [1, npts, nao]
            (LDA) or [4, npts, nao] (needed for GGA), Bohr^-3/2.
        weights: [npts] quadrature weights (Bohr^3).
        restricted: dm is the total density [nao, nao] (True) or [2, nao, nao].
        block_size: points per block (static), default 2048.

    Returns:
        An :class:`XCFunction` ``xc_fn``: ``xc_fn(dm) -> (E_xc, V_xc)``, Hartree; the AO
        values are reused on every call (compute them once per geometry). Memory of the
        AO array: nd * npts * nao * 8 bytes (2.9 GB for 300k points x 300 AOs x 4);
        use :func:`make_xc_fn_direct` when that is too much.
    """
    ao = jnp.asarray(ao)
    if ao.ndim == 2:
        ao = ao[None]
    if ao_deriv(functional) and ao.shape[0] < 4:
        raise ValueError(f"GGA functional {functional.name!r} needs AO values with deriv=1 "
                         f"([4, npts, nao]), got shape {ao.shape}")
    if ao.shape[1] != weights.shape[0]:
        raise ValueError(f"ao has {ao.shape[1]} points but weights has {weights.shape[0]}")
    b = _block_size(weights.shape[0], block_size, DEFAULT_BLOCK)
    return XCFunction(functional, bool(restricted), b, jnp.asarray(weights), ao=ao)


def make_xc_fn_direct(functional: Functional, basis: Basis, positions: Float[Array, "natom 3"],
                      coords: Float[Array, "npts 3"], weights: Float[Array, " npts"], restricted: bool,
                      block_size: int | None = None) -> XCFunction:
    """XC energy and potential with AO values recomputed per block on every call.

    Memory O(block_size * (nao + nprim)) instead of O(npts * nao); each call costs one
    AO evaluation of the grid in addition to the density and potential work. Same
    arguments and result as :func:`make_xc_fn` with the AO inputs of
    :func:`mess.basis.ao_values` (positions, coords in Bohr).
    """
    b = _block_size(weights.shape[0], block_size, default_ao_block_size(basis))
    return XCFunction(functional, bool(restricted), b, jnp.asarray(weights), basis=basis,
                      positions=jnp.asarray(positions), coords=jnp.asarray(coords))


def build_xc_fn(functional: Functional, basis: Basis, positions: Float[Array, "natom 3"],
                coords: Float[Array, "npts 3"], weights: Float[Array, " npts"], restricted: bool,
                max_memory: int = DEFAULT_AO_MEMORY, block_size: int | None = None) -> XCFunction:
    """:func:`make_xc_fn` with AO values computed now if they fit in ``max_memory``
    bytes (nd * npts * nao * itemsize), else :func:`make_xc_fn_direct`."""
    nd = 1 + 3 * ao_deriv(functional)
    need = nd * weights.shape[0] * basis.nao * jnp.dtype(weights.dtype).itemsize
    if functional.family == "hf" or need > max_memory:  # HF: nothing is ever evaluated
        return make_xc_fn_direct(functional, basis, positions, coords, weights, restricted, block_size)
    ao = ao_values(basis, positions, coords, deriv=ao_deriv(functional))
    return make_xc_fn(functional, ao, weights, restricted, block_size)


def xc_energy(functional: Functional, basis: Basis, positions: Float[Array, "natom 3"],
              coords: Float[Array, "npts 3"], weights: Float[Array, " npts"], dm: Array,
              block_size: int | None = None) -> Array:
    """Semi-local XC energy E_xc = sum_p w_p e_xc(rho_p, sigma_p) (Hartree).

    Args:
        functional: from :func:`mess.xc.parse_xc` (exact exchange not included; 0 for HF).
        basis, positions: AOs and nuclear positions (Bohr).
        coords, weights: grid points [npts, 3] (Bohr) and weights [npts] (Bohr^3), e.g.
            :func:`mess.grid.grid_coords_weights` (they may depend on positions).
        dm: total density [nao, nao] (restricted) or spin densities [2, nao, nao].
        block_size: points per block (static).

    Differentiable in positions, coords, weights, dm and the basis parameters; AO values
    are computed block by block (memory bounded, also for ``jax.grad``).
    """
    dm = jnp.asarray(dm)
    restricted = dm.ndim == 2
    fn = make_xc_fn_direct(functional, basis, positions, coords, weights, restricted, block_size)
    fn._check(dm)
    return fn.energy(dm)


def _accepts_with_k(get_jk) -> bool:
    """Whether ``get_jk`` takes a ``with_k`` keyword (e.g. a partial of
    :func:`mess.integrals.two_electron.get_jk`)."""
    for f in (get_jk, getattr(get_jk, "func", None)):
        if f is None:
            continue
        try:
            if "with_k" in inspect.signature(f).parameters:
                return True
        except (TypeError, ValueError):
            pass
    return False


class KSVeff(eqx.Module):
    """Kohn-Sham two-electron potential; see :func:`ks_veff`."""

    get_jk: Callable
    xc_fn: Callable
    restricted: bool = eqx.field(static=True)
    hyb: float = eqx.field(static=True)
    with_k: bool = eqx.field(static=True)

    def __call__(self, dm):
        if self.hyb != 0:
            j, k = self.get_jk(dm)
        elif self.with_k:
            j, k = self.get_jk(dm, with_k=False)[0], None
        else:
            j, k = self.get_jk(dm)[0], None  # K unused: removed by XLA under jit
        e_xc, v_xc = self.xc_fn(dm)
        hyb = self.hyb
        if self.restricted:
            e_j = 0.5 * jnp.sum(j * dm)
            veff = j + v_xc
            if k is not None:
                e_k = -0.25 * hyb * jnp.sum(k * dm)
                veff = veff - 0.5 * hyb * k
        else:
            j_tot = j[0] + j[1]
            e_j = 0.5 * jnp.sum(j_tot * (dm[0] + dm[1]))
            veff = j_tot[None] + v_xc
            if k is not None:
                e_k = -0.5 * hyb * jnp.sum(k * dm)
                veff = veff - hyb * k
        if k is None:
            e_k = jnp.zeros((), dm.dtype)
        return veff, e_j + e_k + e_xc, {"coulomb": e_j, "exchange": e_k, "xc": e_xc}


def ks_veff(get_jk: Callable, xc_fn: Callable, functional: Functional, restricted: bool,
            with_k: bool | None = None) -> KSVeff:
    """Kohn-Sham effective potential ``veff_fn(dm) -> (veff, e_two, parts)`` for
    :func:`mess.scf.scf` (Kohn & Sham, Phys. Rev. 140, A1133 (1965); hybrids: Becke,
    J. Chem. Phys. 98, 5648 (1993)).

    Restricted (total density D)::

        veff = J[D] - hyb/2 K[D] + V_xc[D]
        e_two = 1/2 tr(J D) - hyb/4 tr(K D) + E_xc[D]

    Unrestricted (D_a, D_b)::

        veff_s = J[D_a + D_b] - hyb K[D_s] + V_xc,s
        e_two = 1/2 tr(J D) - hyb/2 sum_s tr(K[D_s] D_s) + E_xc[D_a, D_b]

    Args:
        get_jk: ``dm -> (J, K)`` (Hartree), as for :func:`mess.scf.hf_veff`.
        xc_fn: ``dm -> (E_xc, V_xc)``, e.g. :func:`make_xc_fn` / :func:`build_xc_fn`.
        functional: gives ``hyb``; for ``hyb == 0`` K is never used.
        restricted: dm is [n, n] (True) or [2, n, n].
        with_k: whether ``get_jk`` accepts ``with_k=False`` to skip K (used only when
            hyb == 0); default: detected from its signature. Otherwise K is computed
            and dropped (under jit XLA removes the unused work).

    Returns:
        A :class:`KSVeff` (equinox module); parts ``{"coulomb", "exchange", "xc"}``
        in Hartree.
    """
    if with_k is None:
        with_k = _accepts_with_k(get_jk)
    return KSVeff(get_jk, xc_fn, bool(restricted), float(functional.hyb), bool(with_k))
