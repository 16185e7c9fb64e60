"""One-electron integrals: overlap, kinetic energy, nuclear attraction, dipole (r).

McMurchie-Davidson scheme (Helgaker, Jorgensen & Olsen 2000, sections 9.3-9.9):

* overlap     S_ij^x = E^{ij}_0 sqrt(pi / p)                         (eq. 9.5.41)
* kinetic     T_ij^x = -2 b^2 S_{i,j+2} + b (2j + 1) S_ij - j (j - 1) / 2 S_{i,j-2}
              and T_ab = T^x S^y S^z + S^x T^y S^z + S^x S^y T^z         (eq. 9.3.40)
* multipole   M_ij^x = (E^{ij}_1 + X_P E^{ij}_0) sqrt(pi / p)   (operator x, origin 0)
* nuclear     V_ab = -sum_C Z_C (2 pi / p) sum_tuv E^{ab}_{tuv} R_{tuv}(p, R_PC)  (eq. 9.9.32)

Point nuclei, as PySCF's default. All matrices are returned in the basis's AO order
(PySCF's), Cartesian or spherical, in atomic units (Hartree for kinetic and nuclear,
Bohr for r). Everything is a JAX function of the positions (Bohr) and of the basis
exponents and coefficients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import Basis, cartesian_powers, ncart
from mess.integrals.hermite import hermite_e_1d, hermite_e_pair, hermite_r
from mess.integrals.pairs import chunk_size, kmax_by_l, run_chunked, shell_data, shells_by_l


def to_ao(basis: Basis, m_cart: Array) -> Array:
    """Transform [..., ncart, ncart] Cartesian matrices to the AO basis (spherical or Cartesian)."""
    if basis.cart:
        return m_cart
    c = jnp.asarray(basis.cart_to_ao())
    return jnp.einsum("pi,...pq,qj->...ij", c, m_cart, c)


def unique_pairs(basis: Basis):
    """Shell pairs with la >= lb (and row i >= j within a group), grouped by class.

    Yields (la, lb, rows_a, rows_b, shells_a, shells_b): group-local rows and global
    shell indices of every pair of the class."""
    groups = shells_by_l(basis)
    for la, ga in groups.items():
        for lb, gb in groups.items():
            if lb > la:
                continue
            ia, ib = np.meshgrid(np.arange(len(ga)), np.arange(len(gb)), indexing="ij")
            ia, ib = ia.ravel(), ib.ravel()
            if la == lb:
                keep = ia >= ib
                ia, ib = ia[keep], ib[keep]
            yield la, lb, ia, ib, ga[ia], gb[ib]


@functools.cache
def _cart_components(la: int, lb: int):
    pa, pb = cartesian_powers(la), cartesian_powers(lb)
    return pa[:, None, :], pb[None, :, :]


@functools.partial(jax.jit, static_argnums=(0, 1))
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


def _pad_nuclei(positions, charges, multiple: int = 8):
    """Pad the nuclei with zero-charge entries so kernels see few distinct shapes."""
    n = positions.shape[0]
    extra = (-n) % multiple
    if extra == 0:
        return positions, charges
    return (jnp.concatenate([positions, jnp.zeros((extra, 3), positions.dtype)]),
            jnp.concatenate([charges, jnp.zeros((extra,), charges.dtype)]))


def one_electron_cart(basis: Basis, positions: Float[Array, "natom 3"], charges: Array) -> dict[str, Array]:
    """Cartesian overlap, kinetic, nuclear-attraction and dipole matrices.

    Returns a dict with "overlap", "kinetic", "nuclear" of shape [ncart, ncart] (Hartree
    for the operators) and "dipole" of shape [3, ncart, ncart] (operator r, origin 0, Bohr).
    """
    data = shell_data(basis, positions)
    kmax = kmax_by_l(basis)
    nuclei, zs = _pad_nuclei(positions, jnp.asarray(charges, positions.dtype))
    n = basis.ncart_total
    off = basis.cart_offsets
    out = jnp.zeros((6, n, n), dtype=positions.dtype)
    for la, lb, ia, ib, sa, sb in unique_pairs(basis):
        work = kmax[la] * kmax[lb] * (ncart(la) * ncart(lb) * (la + lb + 3) + 8 * (la + lb + 1) ** 3)
        chunk = chunk_size(work, budget=1 << 20, hi=512)
        ea, ca, ra = data[la]
        eb, cb, rb = data[lb]
        blocks = run_chunked(functools.partial(_pair_kernel, la, lb),
                             [(ea, ia), (ca, ia), (ra, ia), (eb, ib), (cb, ib), (rb, ib)],
                             [nuclei, zs], len(ia), chunk)
        blocks = jnp.moveaxis(blocks, 1, 0)  # [6, npair, ncart_a, ncart_b]
        rows = off[sa][:, None] + np.arange(ncart(la))
        cols = off[sb][:, None] + np.arange(ncart(lb))
        out = out.at[:, rows[:, :, None], cols[:, None, :]].set(blocks)
        out = out.at[:, cols[:, :, None], rows[:, None, :]].set(blocks.swapaxes(-1, -2))
    return {"overlap": out[0], "kinetic": out[1], "nuclear": out[2], "dipole": out[3:]}


def one_electron(basis: Basis, positions: Float[Array, "natom 3"], charges: Array) -> dict[str, Array]:
    """Overlap, kinetic, nuclear attraction [nao, nao] and dipole [3, nao, nao] in the AO basis.

    Not jitted as a whole: called eagerly, each pair class runs through its chunk
    kernel, whose compiled program serves every molecule; under ``jax.jit`` it is
    traced into the caller's program."""
    cart = one_electron_cart(basis, positions, charges)
    return {k: to_ao(basis, v) for k, v in cart.items()}


def nuclear_repulsion(positions: Float[Array, "natom 3"], charges: Array) -> Array:
    """Nuclear repulsion energy sum_{A<B} Z_A Z_B / |R_A - R_B| (Hartree)."""
    n = positions.shape[0]
    iu, ju = np.triu_indices(n, 1)
    if len(iu) == 0:
        return jnp.zeros((), positions.dtype)
    d = positions[iu] - positions[ju]
    r = jnp.sqrt(jnp.sum(d * d, axis=-1))
    return jnp.sum(jnp.asarray(charges)[iu] * jnp.asarray(charges)[ju] / r)
