"""One-electron integrals: overlap, kinetic energy, nuclear attraction, dipole (r).

McMurchie-Davidson scheme (Helgaker, Jorgensen & Olsen 2000, sections 9.3-9.9):

* overlap     S_ij^x = E^{ij}_0 sqrt(pi / p)                         (eq. 9.5.41)
* kinetic     T_ij^x = -2 b^2 S_{i,j+2} + b (2j + 1) S_ij - j (j - 1) / 2 S_{i,j-2}
              and T_ab = T^x S^y S^z + S^x T^y S^z + S^x S^y T^z         (eq. 9.3.40)
* multipole   M_ij^x = (E^{ij}_1 + X_P E^{ij}_0) sqrt(pi / p)   (operator x, origin 0)
* nuclear     V_ab = -sum_C Z_C (2 pi / p) sum_tuv E^{ab}_{tuv} R_{tuv}(p, R_PC)  (eq. 9.9.32)

Point nuclei, as PySCF's default. Matrices are in the engine AO order of
:mod:`mess.basis.shells` (PySCF's order via ``BasisLayout.engine_index``), Cartesian or
spherical, in atomic units (Hartree for kinetic and nuclear, Bohr for r). Every shell
pair of every pair of shell groups is evaluated (padding shells give zero blocks), so
the shapes depend only on the :class:`~mess.basis.shells.BasisShape`. Everything is a
JAX function of the positions (Bohr) and of the basis exponents and coefficients;
ghost atoms (charge 0) contribute nothing.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import BasisShape, ShellGroup, cart_to_sph, cartesian_powers, ncart, shell_data
from mess.errors import InputError
from mess.integrals.hermite import hermite_e_1d, hermite_e_pair, hermite_r, nherm
from mess.integrals.pairs import chunk_size, chunked_map


@functools.cache
def _cart_components(la: int, lb: int):
    pa, pb = cartesian_powers(la), cartesian_powers(lb)
    return pa[:, None, :], pb[None, :, :]


def _pair_kernel(la: int, lb: int, ea, ca, ra, eb, cb, rb, nuclei, charges):
    """Overlap, kinetic, nuclear attraction and dipole (x, y, z) blocks for a chunk of
    shell pairs of class (la, lb); returns [chunk, 6, ncart(la), ncart(lb)]."""
    a = ea[:, :, None]
    b = eb[:, None, :]
    p = a + b
    mu = a * b / p
    centre = (a[..., None] * ra[:, None, None, :] + b[..., None] * rb[:, None, None, :]) / p[..., None]
    ab = ra - rb
    # per-direction Hermite coefficients, lb raised by 2 for the kinetic energy
    e = hermite_e_1d(la, lb + 2, p[..., None], centre - ra[:, None, None, :], centre - rb[:, None, None, :],
                     jnp.exp(-mu[..., None] * ab[:, None, None, :] ** 2))
    e = jnp.moveaxis(e, -4, 0)  # [3, C, Ka, Kb, la+1, lb+3, L+3]
    sq = jnp.sqrt(jnp.pi / p)[..., None, None]
    s1 = e[..., 0] * sq  # 1D overlaps, j up to lb + 2
    js = np.arange(lb + 1)
    bb = b[..., None, None]
    minus2 = jnp.where(js >= 2, s1[..., np.maximum(js - 2, 0)], 0.0)
    t1 = -2.0 * bb ** 2 * s1[..., js + 2] + bb * (2 * js + 1) * s1[..., js] - 0.5 * js * (js - 1) * minus2
    m1 = (e[..., :lb + 1, 1] + jnp.moveaxis(centre, -1, 0)[..., None, None] * e[..., :lb + 1, 0]) * sq
    s1 = s1[..., :lb + 1]
    pa, pb = _cart_components(la, lb)

    def pick(arr, d):  # [3, C, Ka, Kb, la+1, lb+1] -> [C, Ka, Kb, ncart_a, ncart_b]
        return arr[d][..., pa[..., d], pb[..., d]]

    sx, sy, sz = (pick(s1, d) for d in range(3))
    tx, ty, tz = (pick(t1, d) for d in range(3))
    mx, my, mz = (pick(m1, d) for d in range(3))
    w = (ca[:, :, None] * cb[:, None, :])[..., None, None]

    def contract(x):
        return jnp.sum(x * w, axis=(1, 2))

    overlap = contract(sx * sy * sz)
    kinetic = contract(tx * sy * sz + sx * ty * sz + sx * sy * tz)
    dip = [contract(mx * sy * sz), contract(sx * my * sz), contract(sx * sy * mz)]

    # nuclear attraction: -sum_C Z_C (2 pi / p) sum_tuv E_tuv R_tuv(p, P - C)
    ka, kb = ea.shape[1], eb.shape[1]

    def flat(x):
        return x.reshape((x.shape[0], ka * kb) + x.shape[3:])

    E, pp, P = hermite_e_pair(la, lb, flat(jnp.broadcast_to(a, p.shape)), flat(jnp.broadcast_to(b, p.shape)),
                              flat(jnp.broadcast_to(ra[:, None, None, :], centre.shape)),
                              flat(jnp.broadcast_to(rb[:, None, None, :], centre.shape)))
    rpc = P[:, :, None, :] - nuclei[None, None, :, :]
    R = hermite_r(la + lb, pp[..., None], rpc)  # [C, K2, natom, nh]
    Rz = jnp.einsum("nkch,c->nkh", R, charges)
    pref = -2.0 * jnp.pi / pp * flat(w[..., 0, 0])
    nuclear = jnp.einsum("nkxh,nkh,nk->nx", E, Rz, pref).reshape(overlap.shape)
    return jnp.stack([overlap, kinetic, nuclear] + dip, axis=1)


def _to_shell_basis(blocks: Array, la: int, lb: int, cart: bool) -> Array:
    """[..., ncart(la), ncart(lb)] Cartesian blocks to the AO basis of the shells."""
    if cart:
        return blocks
    return jnp.einsum("...ab,aA,bB->...AB", blocks, jnp.asarray(cart_to_sph(la), blocks.dtype),
                      jnp.asarray(cart_to_sph(lb), blocks.dtype))


def _pair_chunk(la: int, lb: int, ka: int, kb: int, natom: int) -> int:
    work = ka * kb * (ncart(la) * ncart(lb) * (la + lb + 3) + 8 * (la + lb + 1) ** 3 + natom * nherm(la + lb))
    return chunk_size(work, budget=1 << 20, hi=512)


def _group_pair_blocks(la, lb, cart, data_a, data_b, nuclei, charges, which=slice(None)):
    """Blocks [6, na * sa, nb * sb] (overlap, kinetic, nuclear, dipole x, y, z) of every
    shell pair between two groups, rows and columns in the groups' AO order."""
    ea, ca, ra = data_a
    eb, cb, rb = data_b
    na, nb = ea.shape[0], eb.shape[0]
    ia, ib = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")

    def kernel(i, j):
        return _pair_kernel(la, lb, ea[i], ca[i], ra[i], eb[j], cb[j], rb[j], nuclei, charges)[:, which]

    chunk = _pair_chunk(la, lb, ea.shape[1], eb.shape[1], nuclei.shape[0])
    blocks = chunked_map(kernel, (jnp.asarray(ia.ravel()), jnp.asarray(ib.ravel())), chunk)
    blocks = _to_shell_basis(blocks, la, lb, cart)  # [na * nb, q, sa, sb]
    q, sa, sb = blocks.shape[1:]
    return blocks.reshape(na, nb, q, sa, sb).transpose(2, 0, 3, 1, 4).reshape(q, na * sa, nb * sb)


def one_electron(shape: BasisShape, groups: tuple[ShellGroup, ...], positions: Float[Array, "natom 3"],
                 charges: Float[Array, " natom"]) -> dict[str, Array]:
    """Overlap, kinetic and nuclear-attraction matrices ``[nao, nao]`` (Hartree for the
    operators) and the dipole matrices ``[3, nao, nao]`` (operator r, origin 0, Bohr), in
    engine AO order.

    Args:
        shape, groups: the (padded) basis.
        positions: nuclear positions (Bohr) ``[natom, 3]``; the AO centres.
        charges: nuclear charges ``[natom]`` (0 for ghost atoms).
    """
    data = shell_data(shape, groups, positions)
    charges = jnp.asarray(charges, positions.dtype)
    off = shape.offsets
    out = jnp.zeros((6, shape.nao, shape.nao), dtype=positions.dtype)
    for a, ga in enumerate(shape.groups):
        for b in range(a, len(shape.groups)):
            gb = shape.groups[b]
            blk = _group_pair_blocks(ga.l, gb.l, shape.cart, data[a], data[b], positions, charges)
            out = out.at[:, off[a]:off[a + 1], off[b]:off[b + 1]].set(blk)
            if b != a:
                out = out.at[:, off[b]:off[b + 1], off[a]:off[a + 1]].set(jnp.swapaxes(blk, -1, -2))
    return {"overlap": out[0], "kinetic": out[1], "nuclear": out[2], "dipole": out[3:]}


def cross_overlap(shape_a: BasisShape, groups_a: tuple[ShellGroup, ...], shape_b: BasisShape,
                  groups_b: tuple[ShellGroup, ...], positions: Float[Array, "natom 3"]
                  ) -> Float[Array, "nao_a nao_b"]:
    """Overlap matrix between two bases on the same atoms, ``[nao_a, nao_b]`` (engine AO
    orders of both), as PySCF's ``gto.intor_cross('int1e_ovlp', mol_a, mol_b)``."""
    if shape_a.cart != shape_b.cart:
        raise InputError("cross overlap needs both bases Cartesian or both spherical")
    da = shell_data(shape_a, groups_a, positions)
    db = shell_data(shape_b, groups_b, positions)
    nucleus, charge = jnp.zeros((1, 3), positions.dtype), jnp.zeros((1,), positions.dtype)
    rows = []
    for a, ga in enumerate(shape_a.groups):
        rows.append(jnp.concatenate([_group_pair_blocks(ga.l, gb.l, shape_a.cart, da[a], db[b], nucleus, charge,
                                                        which=slice(0, 1))[0]
                                     for b, gb in enumerate(shape_b.groups)], axis=1))
    return jnp.concatenate(rows, axis=0)


def nuclear_repulsion(positions: Float[Array, "natom 3"], charges: Float[Array, " natom"]) -> Float[Array, ""]:
    """Nuclear repulsion energy sum_{A<B} Z_A Z_B / |R_A - R_B| (Hartree).

    Pairs involving a ghost atom (charge 0) contribute exactly 0, with finite
    derivatives, even where ghost atoms coincide."""
    n = positions.shape[0]
    iu, ju = np.triu_indices(n, 1)
    if len(iu) == 0:
        return jnp.zeros((), positions.dtype)
    charges = jnp.asarray(charges, positions.dtype)
    zz = charges[iu] * charges[ju]
    d = positions[iu] - positions[ju]
    real = zz != 0
    r = jnp.sqrt(jnp.where(real, jnp.sum(d * d, axis=-1), 1.0))
    return jnp.sum(jnp.where(real, zz / r, 0.0))
