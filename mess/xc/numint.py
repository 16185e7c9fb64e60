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

    xc_fn = build_xc_fn(functional, shape, groups, positions, coords, weights, restricted=True)
    e_xc, v_xc = xc_fn(dm)             # Hartree; [nao, nao] or [2, nao, nao]
    e_xc = xc_fn.energy(dm)            # differentiable in everything; dE/dD costs one pass
    e_xc = xc_energy(functional, shape, groups, positions, coords, weights, dm)

``XCFunction.energy`` has a custom derivative rule: its derivative with respect to the
density matrix is V_xc, computed block by block in the same pass as the energy, so the
Fock matrix of the engine's energy functional (:mod:`mess.engine.functional`, which
takes ``jax.grad`` of the total energy) costs one sweep over the grid. Derivatives
with respect to AO values, weights, positions or functional parameters go through
the (checkpointed) energy expression.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Array, Float

from mess.basis.ao_values import ao_values, ao_values_block, default_ao_block_size
from mess.basis.shells import BasisShape, ShellGroup
from mess.errors import InputError
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

    Exactly one of ``ao`` (precomputed [nd, npts, nao]), ``ao_blocks`` (precomputed,
    already in blocks: [nblk, nd, block_size, nao] from
    :func:`mess.basis.ao_values.ao_value_blocks`, with ``weights`` [nblk * block_size]
    zero past the grid's points) or ``shape``/``groups``/``positions``/``coords``
    (direct) is set. Otherwise blocks are contiguous slices of ``block_size`` points;
    the last block is shifted back to end at ``npts`` and its points already covered
    by the previous block get weight 0, so nothing is padded or copied.
    """

    functional: Functional
    restricted: bool = eqx.field(static=True)
    block_size: int = eqx.field(static=True)
    weights: Float[Array, " npts"]
    ao: Array | None = None
    shape: BasisShape | None = eqx.field(static=True, default=None)
    groups: tuple[ShellGroup, ...] | None = None
    positions: Array | None = None
    coords: Array | None = None
    ao_blocks: Array | None = None

    @property
    def npts(self) -> int:
        return self.weights.shape[0]

    @property
    def nblock(self) -> int:
        if self.ao_blocks is not None:
            return self.ao_blocks.shape[0]
        return -(-self.npts // self.block_size)

    def _block(self, i):
        """AO values [nd, B, nao] and masked weights [B] of block i (traced int)."""
        b = self.block_size
        if self.ao_blocks is not None:
            return self.ao_blocks[i], jax.lax.dynamic_slice_in_dim(self.weights, i * b, b)
        start = jnp.minimum(i * b, self.npts - b)
        idx = start + jnp.arange(b)
        w = jnp.where(idx >= i * b, jax.lax.dynamic_slice_in_dim(self.weights, start, b), 0.0)
        if self.ao is not None:
            ao = jax.lax.dynamic_slice_in_dim(self.ao, start, b, axis=1)
        else:
            pts = jax.lax.dynamic_slice_in_dim(self.coords, start, b, axis=0)
            ao = ao_values_block(self.shape, self.groups, self.positions, pts, ao_deriv(self.functional))
        return ao, w

    def _nao(self) -> int:
        if self.ao_blocks is not None:
            return self.ao_blocks.shape[-1]
        return self.ao.shape[-1] if self.ao is not None else self.shape.nao

    def energy(self, dm: Array) -> Array:
        """E_xc (Hartree) of ``dm``; differentiable in every input (AO values, weights,
        or positions/coords/basis for the direct path, functional weights, dm). The
        derivative with respect to ``dm`` is V_xc from the same block sweep (see the
        module docstring)."""
        if self.functional.family == "hf":
            return jnp.zeros((), self.weights.dtype)
        return _xc_energy(self, dm)

    def plain_energy(self, dm: Array) -> Array:
        """E_xc by a block sweep whose derivatives all come from autodiff; each block is
        rematerialised in the backward pass, so memory stays per-block."""
        if self.functional.family == "hf":
            return jnp.zeros((), self.weights.dtype)

        def body(e, i):
            ao, w = self._block(i)
            return e + block_xc_energy(self.functional, self.restricted, ao, w, dm), None

        e, _ = jax.lax.scan(jax.checkpoint(body), jnp.zeros((), self.weights.dtype),
                            jnp.arange(self.nblock))
        return e

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
            raise InputError(f"{kind} XC function expects dm of shape {want}, got {dm.shape}")


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
        raise InputError(f"GGA functional {functional.name!r} needs AO values with deriv=1 "
                         f"([4, npts, nao]), got shape {ao.shape}")
    if ao.shape[1] != weights.shape[0]:
        raise InputError(f"ao has {ao.shape[1]} points but weights has {weights.shape[0]}")
    b = _block_size(weights.shape[0], block_size, DEFAULT_BLOCK)
    return XCFunction(functional, bool(restricted), b, jnp.asarray(weights), ao=ao)


def make_xc_fn_direct(functional: Functional, shape: BasisShape, groups: tuple[ShellGroup, ...],
                      positions: Float[Array, "natom 3"], coords: Float[Array, "npts 3"],
                      weights: Float[Array, " npts"], restricted: bool, block_size: int | None = None) -> XCFunction:
    """XC energy and potential with AO values recomputed per block on every call.

    Memory O(block_size * (nao + nprim)) instead of O(npts * nao); each call costs one
    AO evaluation of the grid in addition to the density and potential work. Same
    arguments and result as :func:`make_xc_fn` with the AO inputs of
    :func:`mess.basis.ao_values` (positions, coords in Bohr).
    """
    b = _block_size(weights.shape[0], block_size, default_ao_block_size(shape))
    return XCFunction(functional, bool(restricted), b, jnp.asarray(weights), shape=shape, groups=groups,
                      positions=jnp.asarray(positions), coords=jnp.asarray(coords))


def build_xc_fn(functional: Functional, shape: BasisShape, groups: tuple[ShellGroup, ...],
                positions: Float[Array, "natom 3"], coords: Float[Array, "npts 3"], weights: Float[Array, " npts"],
                restricted: bool, max_memory: int = DEFAULT_AO_MEMORY, block_size: int | None = None) -> XCFunction:
    """:func:`make_xc_fn` with AO values computed now if they fit in ``max_memory``
    bytes (nd * npts * nao * itemsize), else :func:`make_xc_fn_direct`."""
    nd = 1 + 3 * ao_deriv(functional)
    need = nd * weights.shape[0] * shape.nao * jnp.dtype(weights.dtype).itemsize
    if functional.family == "hf" or need > max_memory:  # HF: nothing is ever evaluated
        return make_xc_fn_direct(functional, shape, groups, positions, coords, weights, restricted, block_size)
    ao = ao_values(shape, groups, positions, coords, deriv=ao_deriv(functional))
    return make_xc_fn(functional, ao, weights, restricted, block_size)


def xc_energy(functional: Functional, shape: BasisShape, groups: tuple[ShellGroup, ...],
              positions: Float[Array, "natom 3"], coords: Float[Array, "npts 3"], weights: Float[Array, " npts"],
              dm: Array, block_size: int | None = None) -> Array:
    """Semi-local XC energy E_xc = sum_p w_p e_xc(rho_p, sigma_p) (Hartree).

    Args:
        functional: from :func:`mess.xc.parse_xc` (exact exchange not included; 0 for HF).
        shape, groups, positions: AOs and nuclear positions (Bohr).
        coords, weights: grid points [npts, 3] (Bohr) and weights [npts] (Bohr^3), e.g.
            :func:`mess.grid.grid_coords_weights` (they may depend on positions).
        dm: total density [nao, nao] (restricted) or spin densities [2, nao, nao].
        block_size: points per block (static).

    Differentiable in positions, coords, weights, dm and the basis parameters; AO values
    are computed block by block (memory bounded, also for ``jax.grad``).
    """
    dm = jnp.asarray(dm)
    restricted = dm.ndim == 2
    fn = make_xc_fn_direct(functional, shape, groups, positions, coords, weights, restricted, block_size)
    fn._check(dm)
    return fn.energy(dm)


def _is_zero(t) -> bool:
    return isinstance(t, SymbolicZero)


def _materialise(t, x):
    """A tangent as an array: zeros (float0 for integer leaves) for a symbolic zero."""
    if not _is_zero(t):
        return t
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(jnp.shape(x), dtype=jax.dtypes.float0)


@jax.custom_jvp
def _xc_energy(xc: XCFunction, dm: Array) -> Array:
    return xc.plain_energy(dm)


def _xc_energy_jvp(primals, tangents):
    """d E_xc = <V_xc, dD> (V_xc from the per-block sweep) + the autodiff derivative of
    the energy expression along the tangents of everything else (AO values, weights,
    positions, functional weights), skipped when those are zero."""
    xc, dm = primals
    dxc, ddm = tangents
    aux_zero = all(_is_zero(t) for t in jax.tree.leaves(dxc, is_leaf=_is_zero))
    if aux_zero:
        e, v = xc(dm)
        t = jnp.zeros_like(e) if _is_zero(ddm) else jnp.sum(v * ddm)
        return e, t
    dxc = jax.tree.map(_materialise, dxc, xc, is_leaf=_is_zero)
    ddm = _materialise(ddm, dm)
    return jax.jvp(lambda x, d: x.plain_energy(d), (xc, dm), (dxc, ddm))


_xc_energy.defjvp(_xc_energy_jvp, symbolic_zeros=True)
