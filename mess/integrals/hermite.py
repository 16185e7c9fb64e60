"""McMurchie-Davidson Hermite machinery.

A product of two Cartesian Gaussians is expanded in Hermite Gaussians centred at
the Gaussian product centre P (McMurchie & Davidson 1978, J. Comput. Phys. 26, 218;
Helgaker, Jorgensen & Olsen 2000, sections 9.5 and 9.9):

    G_i(x; a, A) G_j(x; b, B) = sum_t E^{ij}_t  Lambda_t(x; p, P),

and Coulomb integrals over Hermite Gaussians reduce to the auxiliary integrals
R_{tuv}(alpha, R_PC), built from the Boys function by recursion.

All functions here are vectorised over arbitrary leading batch dimensions; the
angular momenta are static Python ints, so loops unroll at trace time.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import cartesian_powers, ncart
from mess.integrals.boys import boys


@functools.cache
def hermite_indices(L: int) -> np.ndarray:
    """All (t, u, v) with t + u + v <= L, shape [nherm(L), 3], in a fixed order."""
    out = [(t, u, v) for n in range(L + 1) for t in range(n, -1, -1)
           for u in range(n - t, -1, -1) for v in [n - t - u]]
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def nherm(L: int) -> int:
    return (L + 1) * (L + 2) * (L + 3) // 6


def _shift_down(x: Array) -> Array:
    """out[..., t] = x[..., t - 1] (zero at t = 0)."""
    return jnp.concatenate([jnp.zeros_like(x[..., :1]), x[..., :-1]], axis=-1)


def _shift_up(x: Array) -> Array:
    """out[..., t] = (t + 1) x[..., t + 1] (zero at the last t)."""
    t1 = jnp.arange(1, x.shape[-1], dtype=x.dtype)
    return jnp.concatenate([x[..., 1:] * t1, jnp.zeros_like(x[..., :1])], axis=-1)


def hermite_e_1d(la: int, lb: int, p: Array, xpa: Array, xpb: Array, e00: Array) -> Array:
    """Hermite expansion coefficients E^{ij}_t for Cartesian directions (vectorised).

    Recurrences (Helgaker et al. eq. 9.5.6-9.5.7):
        E^{i+1,j}_t = E^{ij}_{t-1} / (2p) + X_PA E^{ij}_t + (t+1) E^{ij}_{t+1}
        E^{i,j+1}_t = E^{ij}_{t-1} / (2p) + X_PB E^{ij}_t + (t+1) E^{ij}_{t+1}
    with E^{00}_0 = e00 (exp(-mu X_AB^2), passed in). All arguments broadcast
    together (batch shape); the recursion runs over whole t-vectors, so the number
    of traced operations grows only linearly with la + lb.

    Returns an array of shape batch + [la+1, lb+1, la+lb+1] (zero for t > i + j).
    """
    L = la + lb
    p, xpa, xpb, e00 = jnp.broadcast_arrays(p, xpa, xpb, e00)
    inv2p = (0.5 / p)[..., None]
    first = jnp.concatenate([e00[..., None], jnp.zeros(e00.shape + (L,), e00.dtype)], axis=-1)
    rows = [first]
    for _ in range(la):
        prev = rows[-1]
        rows.append(inv2p * _shift_down(prev) + xpa[..., None] * prev + _shift_up(prev))
    cols = [jnp.stack(rows, axis=-2)]  # [..., la+1, L+1] for j = 0
    inv2p, xpb = inv2p[..., None, :], xpb[..., None, None]
    for _ in range(lb):
        prev = cols[-1]
        cols.append(inv2p * _shift_down(prev) + xpb * prev + _shift_up(prev))
    return jnp.stack(cols, axis=-2)


@functools.cache
def _r_recursion(L: int):
    """Host tables for one step of the vectorised Hermite-R recursion at every level.

    For level k (R^{n} with t+u+v <= k computed from R^{n+1} with t+u+v <= k-1) returns
    (src1, src2, coef2, direction): R^n[i] = X_dir[i] R^{n+1}[src1[i]] + coef2[i] R^{n+1}[src2[i]]
    for i >= 1 (i = 0 is the Boys term)."""
    steps = {}
    for k in range(1, L + 1):
        tgt = hermite_indices(k)
        src = {tuple(x): i for i, x in enumerate(hermite_indices(k - 1))}
        src1, src2, coef2, direction = [0], [0], [0.0], [0]
        for t, u, v in tgt[1:]:
            idx = [t, u, v]
            d = 0 if t > 0 else (1 if u > 0 else 2)
            m = idx[d]
            one = list(idx); one[d] -= 1
            two = list(idx); two[d] -= 2
            src1.append(src[tuple(one)])
            if m > 1:
                src2.append(src[tuple(two)]); coef2.append(float(m - 1))
            else:
                src2.append(0); coef2.append(0.0)
            direction.append(d)
        steps[k] = tuple(np.asarray(x) for x in (src1, src2, coef2, direction))
    return steps


def hermite_r_list(L: int, alpha: Array, rpc: Float[Array, "... 3"]) -> list[Array]:
    """Hermite Coulomb integrals R_{tuv}(alpha, R_PC) for t + u + v <= L, as a list of
    arrays (one per (t, u, v) in :func:`hermite_indices` order, each shaped like
    ``alpha``).

    R^n_{000} = (-2 alpha)^n F_n(alpha |R_PC|^2) and
    R^n_{t+1,u,v} = t R^{n+1}_{t-1,u,v} + X_PC R^{n+1}_{t,u,v} (likewise for u, v)
    (Helgaker et al. eq. 9.9.18-9.9.20). Each term is its own array, so the recursion
    is elementwise work that XLA fuses (no gathers, no strided slices)."""
    alpha = jnp.broadcast_to(alpha, rpc.shape[:-1])
    xyz = [rpc[..., 0], rpc[..., 1], rpc[..., 2]]
    t_arg = alpha * (xyz[0] * xyz[0] + xyz[1] * xyz[1] + xyz[2] * xyz[2])
    f = boys(L, t_arg)
    scaled, power = [], jnp.ones_like(alpha)
    for n in range(L + 1):
        scaled.append(f[..., n] * power)
        power = power * (-2.0 * alpha)
    r = {(0, 0, 0): scaled[L]}
    for k in range(1, L + 1):
        new = {(0, 0, 0): scaled[L - k]}
        for t, u, v in hermite_indices(k)[1:]:
            idx = [int(t), int(u), int(v)]
            d = 0 if idx[0] > 0 else (1 if idx[1] > 0 else 2)
            one = list(idx)
            one[d] -= 1
            val = xyz[d] * r[tuple(one)]
            if idx[d] > 1:
                two = list(idx)
                two[d] -= 2
                val = val + (idx[d] - 1) * r[tuple(two)]
            new[tuple(idx)] = val
        r = new
    return [r[tuple(int(x) for x in h)] for h in hermite_indices(L)]


#: Largest total angular momentum for which the Hermite recursions are traced term by
#: term (one array per coefficient: fused elementwise work, fastest on CPU); above it
#: the term count, and with it XLA's compile time, grows too fast (an (ff) pair has
#: 8400 E terms), so whole index vectors are gathered instead.
TERMWISE_MAX_L = 4
TERMWISE_MAX_PAIR_L = 2


def hermite_r(L: int, alpha: Array, rpc: Float[Array, "... 3"]) -> Float[Array, "... h"]:
    """Hermite Coulomb integrals R_{tuv}(alpha, R_PC) for t + u + v <= L, stacked on a
    last axis ``[..., nherm(L)]`` in :func:`hermite_indices` order.

    Same recursion as :func:`hermite_r_list`; for L above :data:`TERMWISE_MAX_L` it
    runs level by level over whole index vectors (few, gathered operations)."""
    if L <= TERMWISE_MAX_L:
        return jnp.stack(hermite_r_list(L, alpha, rpc), axis=-1)
    alpha = jnp.broadcast_to(alpha, rpc.shape[:-1])
    t_arg = alpha * jnp.sum(rpc * rpc, axis=-1)
    f = boys(L, t_arg)  # [..., L+1]
    scaled = f * (-2.0 * alpha[..., None]) ** jnp.arange(L + 1)
    steps = _r_recursion(L)
    r = scaled[..., L:L + 1]  # R^{L}: only (0,0,0)
    for k in range(1, L + 1):
        n = L - k
        src1, src2, coef2, direction = steps[k]
        new = rpc[..., direction] * r[..., src1] + coef2 * r[..., src2]
        r = jnp.concatenate([scaled[..., n:n + 1], new[..., 1:]], axis=-1)
    return r


@functools.cache
def _pair_gather(la: int, lb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices into the per-direction E arrays [la+1, lb+1, L+1] for every
    (Cartesian pair, Hermite index), one per direction, shape [ncart_a*ncart_b, nherm]."""
    L = la + lb
    pa, pb, h = cartesian_powers(la), cartesian_powers(lb), hermite_indices(L)
    out = []
    for d in range(3):
        i = pa[:, None, None, d]
        j = pb[None, :, None, d]
        t = h[None, None, :, d]
        valid = t <= i + j
        flat = (i * (lb + 1) + j) * (L + 1) + np.where(valid, t, L)  # t = L unused if invalid
        out.append(np.broadcast_to(flat, (pa.shape[0], pb.shape[0], h.shape[0])).reshape(-1, h.shape[0]))
    return tuple(out)


def hermite_e_1d_terms(la: int, lb: int, p: Array, xpa: Array, xpb: Array, e00: Array) -> dict:
    """The Hermite coefficients E^{ij}_t of one direction as a dict ``(i, j, t) ->
    array`` (only t <= i + j; the recurrences of :func:`hermite_e_1d`). Every term is
    its own array, so no gathers or strided slices are needed to use them."""
    inv2p = 0.5 / p
    e = {(0, 0, 0): e00}

    def get(i, j, t):
        return e.get((i, j, t))

    def step(i, j, di, dj, x):
        for t in range(i + j + di + dj + 1):
            terms = []
            lower, same, upper = get(i, j, t - 1), get(i, j, t), get(i, j, t + 1)
            if lower is not None:
                terms.append(inv2p * lower)
            if same is not None:
                terms.append(x * same)
            if upper is not None:
                terms.append((t + 1) * upper)
            e[(i + di, j + dj, t)] = sum(terms[1:], terms[0])

    for i in range(la):
        step(i, 0, 1, 0, xpa)
    for j in range(lb):
        for i in range(la + 1):
            step(i, j, 0, 1, xpb)
    return e


def hermite_e_pair(la: int, lb: int, a: Array, b: Array, ra: Array, rb: Array) -> tuple[Array, Array, Array]:
    """Hermite expansion of all Cartesian pairs of two primitive shells.

    Args:
        a, b: exponents, shape batch.
        ra, rb: centres (Bohr), shape batch + [3].

    Returns:
        (E, p, P): E has shape batch + [ncart(la) * ncart(lb), nherm(la + lb)] with
        E[ab, tuv] = E^x_t E^y_u E^z_v (including exp(-mu |AB|^2)); p = a + b; P the
        product centre, batch + [3]. Built term by term from
        :func:`hermite_e_1d_terms` (XLA on CPU runs gathers with constant indices tens
        of times slower than the arithmetic).
    """
    p = a + b
    mu = a * b / p
    centre = (a[..., None] * ra + b[..., None] * rb) / p[..., None]
    pa = centre - ra
    pb = centre - rb
    ab = ra - rb
    if la + lb > TERMWISE_MAX_PAIR_L:
        return _hermite_e_gathered(la, lb, p, mu, pa, pb, ab), p, centre
    terms = [hermite_e_1d_terms(la, lb, p, pa[..., d], pb[..., d], jnp.exp(-mu * ab[..., d] ** 2)) for d in range(3)]
    zero = jnp.zeros_like(p)
    rows = []
    for ia in cartesian_powers(la):
        for ib in cartesian_powers(lb):
            cols = []
            for h in hermite_indices(la + lb):
                factors = [terms[d].get((int(ia[d]), int(ib[d]), int(h[d]))) for d in range(3)]
                cols.append(zero if any(f is None for f in factors) else factors[0] * factors[1] * factors[2])
            rows.append(jnp.stack(cols, axis=-1))
    return jnp.stack(rows, axis=-2), p, centre


def _hermite_e_gathered(la: int, lb: int, p, mu, pa, pb, ab) -> Array:
    """E[..., ab, tuv] of :func:`hermite_e_pair` from the per-direction coefficient
    tables of :func:`hermite_e_1d` by three constant-index gathers (few operations,
    quick to compile, for pairs of higher angular momentum)."""
    flat_e = []
    for d in range(3):
        e = hermite_e_1d(la, lb, p, pa[..., d], pb[..., d], jnp.exp(-mu * ab[..., d] ** 2))
        # entries of _pair_gather with t > i + j point at slot t = L of a pair with
        # i + j < L, which holds zero.
        flat_e.append(e.reshape(e.shape[:-3] + (-1,)))
    gx, gy, gz = _pair_gather(la, lb)
    return flat_e[0][..., gx] * flat_e[1][..., gy] * flat_e[2][..., gz]


def ncart_pair(la: int, lb: int) -> int:
    return ncart(la) * ncart(lb)
