"""Electron repulsion integrals (mu nu | lambda sigma) and Coulomb/exchange builds.

Integrals (McMurchie & Davidson 1978; Helgaker, Jorgensen & Olsen 2000, eq. 9.9.33):

    (ab|cd) = 2 pi^{5/2} / (p q sqrt(p + q))
              sum_{tuv} E^{ab}_{tuv} sum_{tau nu phi} (-1)^{tau+nu+phi} E^{cd}_{tau nu phi}
              R_{t+tau, u+nu, v+phi}(p q / (p + q), R_PQ)

Only the symmetry-unique shell quartets are computed (8-fold permutational
symmetry: (ab|cd) = (ba|cd) = (ab|dc) = (cd|ab) = ...), and quartets whose Schwarz
bound sqrt((ab|ab)) sqrt((cd|cd)) falls below a threshold are skipped (Haser &
Ahlrichs 1989, J. Comput. Chem. 10, 104). Quartets of one angular-momentum class are
further split by the primitive counts of their four shells, so a quartet of
uncontracted shells never pays for the contraction length of a core shell (the cost
of a quartet is proportional to Ka Kb Kc Kd); sub-classes too small to repay a
separately compiled kernel are merged back (:func:`split_by_primitives`). The integrals are stored per quartet
class as dense blocks [nquartet, da, db, dc, dd] (about N^4 / 8 numbers in all, never
the full N^4 tensor), and Coulomb and exchange matrices are built directly from the
blocks by gathering density blocks and scatter-adding the results.

The quartet plan (which quartets exist, their degeneracy weights) is decided on the
host from a reference geometry; the integral values are JAX functions of the
positions (Bohr) and basis parameters, so gradients and vmap over geometries work.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import Basis, cart_to_sph, ncart, nsph
from mess.integrals.hermite import hermite_e_pair, hermite_indices, hermite_r, nherm
from mess.integrals.one_electron import unique_pairs
from mess.integrals.pairs import chunk_size, kmax_by_l, shell_data

#: Work (primitive quartets times Hermite terms) that a separately compiled
#: sub-class must save to be kept apart; about one second of compile time.
SPLIT_WORK = 3e7

#: Default Schwarz screening threshold on |(ab|cd)| bounds (PySCF's direct_scf_tol is 1e-13).
SCHWARZ_THRESHOLD = 1e-14


@functools.cache
def _ket_tables(lab: int, lcd: int):
    """Index of R_{t+tau,u+nu,v+phi} for every (tuv, tau nu phi) pair, and the ket sign."""
    hab, hcd, hsum = hermite_indices(lab), hermite_indices(lcd), hermite_indices(lab + lcd)
    pos = {tuple(x): i for i, x in enumerate(hsum)}
    idx = np.asarray([[pos[tuple(x + y)] for y in hcd] for x in hab])
    sign = (-1.0) ** hcd.sum(axis=1)
    return idx, sign


def _flat_pairs(ea, ca, ra, eb, cb, rb):
    """Primitive-pair arrays [C, Ka*Kb] (exponents, coefficient products, centres)."""
    c, ka = ea.shape
    kb = eb.shape[1]
    a = jnp.broadcast_to(ea[:, :, None], (c, ka, kb)).reshape(c, ka * kb)
    b = jnp.broadcast_to(eb[:, None, :], (c, ka, kb)).reshape(c, ka * kb)
    w = (ca[:, :, None] * cb[:, None, :]).reshape(c, ka * kb)
    A = jnp.broadcast_to(ra[:, None, :], (c, ka * kb, 3))
    B = jnp.broadcast_to(rb[:, None, :], (c, ka * kb, 3))
    return a, b, w, A, B


def _to_shell_basis(block: Array, ls: tuple[int, int, int, int], cart: bool) -> Array:
    """Transform the last four (Cartesian) axes of a [C, ...] block to spherical if needed."""
    c = block.shape[0]
    block = block.reshape((c,) + tuple(ncart(l) for l in ls))
    if cart:
        return block
    m = [jnp.asarray(cart_to_sph(l)) for l in ls]
    return jnp.einsum("qabcd,aA,bB,cC,dD->qABCD", block, *m)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _quartet_kernel(ls: tuple[int, int, int, int], cart: bool,
                    ea, ca, ra, eb, cb, rb, ec, cc, rc, ed, cd, rd) -> Array:
    """ERI blocks for a chunk of shell quartets of one class; [C, da, db, dc, dd]."""
    la, lb, lc, ld = ls
    a, b, wab, A, B = _flat_pairs(ea, ca, ra, eb, cb, rb)
    c, d, wcd, Cc, D = _flat_pairs(ec, cc, rc, ed, cd, rd)
    Eab, p, P = hermite_e_pair(la, lb, a, b, A, B)  # [C, Kab, ncp, nh]
    Ecd, q, Q = hermite_e_pair(lc, ld, c, d, Cc, D)
    idx, sign = _ket_tables(la + lb, lc + ld)
    Eab = Eab * wab[..., None, None]
    Ecd = Ecd * (wcd[..., None, None] * sign)
    pq = p[:, :, None] + q[:, None, :]
    alpha = p[:, :, None] * q[:, None, :] / pq
    pref = 2.0 * jnp.pi ** 2.5 / (p[:, :, None] * q[:, None, :] * jnp.sqrt(pq))
    R = hermite_r(la + lb + lc + ld, alpha, P[:, :, None, :] - Q[:, None, :, :])  # [C, Kab, Kcd, nh]
    R = R * pref[..., None]
    Rm = R[..., idx]  # [C, Kab, Kcd, nh_ab, nh_cd]
    X = jnp.einsum("cklTU,clyU->ckTy", Rm, Ecd)
    out = jnp.einsum("ckxT,ckTy->cxy", Eab, X)
    return _to_shell_basis(out, ls, cart)


@dataclasses.dataclass(frozen=True, eq=False)
class QuartetClass:
    """Unique shell quartets of one angular-momentum class (host data).

    ``rows`` are group-local shell rows (index into :func:`shell_data` arrays) of the
    four shells, ``shells`` their global shell indices, ``ks`` the number of primitives
    the kernel evaluates per shell, and ``scale`` the degeneracy
    weight 0.5^([a==b] + [c==d] + [ab==cd]) used by :func:`get_jk`.
    """

    ls: tuple[int, int, int, int]
    ks: tuple[int, int, int, int]  # primitives per shell (padded to the class's largest)
    rows: np.ndarray  # [4, nq]
    shells: np.ndarray  # [4, nq]
    scale: np.ndarray  # [nq]

    @property
    def size(self) -> int:
        return self.scale.shape[0]


@dataclasses.dataclass(frozen=True, eq=False)
class EriPlan:
    """Which ERI blocks exist and where they go: the host-side, shape-fixing part."""

    classes: tuple[QuartetClass, ...]
    ao_offsets: np.ndarray
    nao: int
    cart: bool
    threshold: float

    @property
    def nquartets(self) -> int:
        return sum(c.size for c in self.classes)

    @property
    def nvalues(self) -> int:
        """Number of stored integral values."""
        sz = (lambda l: ncart(l)) if self.cart else nsph
        return sum(c.size * int(np.prod([sz(l) for l in c.ls])) for c in self.classes)

    @functools.cached_property
    def shell_indices(self) -> tuple[Array, ...]:
        """Global shell indices [4, nq] (int32) of every class, as device arrays.

        Made once per plan, outside any trace, and handed to :func:`get_jk` as
        arguments, so compiled J/K programs never capture per-quartet index tables
        (which grow as N^4) as constants."""
        with jax.ensure_compile_time_eval():
            return tuple(jnp.asarray(c.shells, dtype=jnp.int32) for c in self.classes)


def _pair_list(basis: Basis):
    """All unique shell pairs: list of (la, lb, rows_a, rows_b, shells_a, shells_b).

    Within a class with la == lb the shell with more primitives comes first, so the
    primitive-count signatures of quartets take fewer distinct values."""
    nprim = np.asarray(basis.shell_nprim)
    out = []
    for la, lb, ia, ib, sa, sb in unique_pairs(basis):
        if la == lb:
            swap = nprim[sa] < nprim[sb]
            ia, ib = np.where(swap, ib, ia), np.where(swap, ia, ib)
            sa, sb = np.where(swap, sb, sa), np.where(swap, sa, sb)
        out.append((la, lb, ia, ib, sa, sb))
    return out


def _work_per_primitive(ls: tuple[int, int, int, int]) -> int:
    """Kernel work per primitive quartet of a class (Hermite R terms and contractions)."""
    nab, ncd = nherm(ls[0] + ls[1]), nherm(ls[2] + ls[3])
    return nherm(sum(ls)) + nab * ncd


def split_by_primitives(ls: tuple[int, int, int, int], sigs: np.ndarray,
                        split_work: float | None = None) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Group the quartets of one class by primitive counts ``sigs`` [nq, 4].

    Starts from one group per distinct signature and greedily merges the two groups
    whose union (padded to the element-wise largest counts) adds the least work,
    while that extra work is below ``split_work`` (the work a separate kernel must
    save to repay its compilation). Returns (padded counts, quartet indices) pairs."""
    split_work = SPLIT_WORK if split_work is None else split_work
    uniq, inverse = np.unique(sigs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    groups = [(tuple(int(k) for k in u), np.nonzero(inverse == i)[0]) for i, u in enumerate(uniq)]
    unit = _work_per_primitive(ls)

    def work(ks, n):
        return float(n) * float(np.prod(ks)) * unit

    while len(groups) > 1:
        best = None
        for i in range(len(groups)):
            for j in range(i):
                (ki, qi), (kj, qj) = groups[i], groups[j]
                km = tuple(max(x, y) for x, y in zip(ki, kj))
                extra = work(km, qi.size + qj.size) - work(ki, qi.size) - work(kj, qj.size)
                if best is None or extra < best[0]:
                    best = (extra, i, j, km)
        extra, i, j, km = best
        if extra >= split_work:
            break
        merged = (km, np.sort(np.concatenate([groups[i][1], groups[j][1]])))
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]
    return groups


def schwarz_bounds(basis: Basis, positions: Array) -> list[np.ndarray]:
    """sqrt(max |(ab|ab)|) for every unique pair, per pair class (host numpy).

    Taken from libcint through PySCF (``q_cond``, per PySCF shell; a generally
    contracted PySCF shell gives one bound for all its contractions, an upper bound);
    if that interface is unavailable the diagonal blocks are computed here."""
    q = _pyscf_q_cond(basis, positions)
    out = []
    if q is not None:
        src = np.asarray(basis.shell_source)
        for la, lb, ia, ib, sa, sb in _pair_list(basis):
            out.append(q[src[sa], src[sb]])
        return out
    data = shell_data(basis, positions)
    kmax = kmax_by_l(basis)
    for la, lb, ia, ib, _, _ in _pair_list(basis):
        ks = (kmax[la], kmax[lb], kmax[la], kmax[lb])
        blocks = class_blocks(basis.cart, data, (la, lb, la, lb), ks, np.stack([ia, ib, ia, ib]))
        diag = np.asarray(jnp.max(jnp.abs(blocks.reshape(blocks.shape[0], -1)), axis=1))
        out.append(np.sqrt(diag))
    return out


def _pyscf_q_cond(basis: Basis, positions) -> np.ndarray | None:
    try:
        from pyscf import gto
        from pyscf.scf import _vhf

        mol = gto.Mole()
        mol.atom = [(int(z), tuple(p)) for z, p in zip(basis.numbers, np.asarray(positions))]
        mol.unit = "Bohr"
        mol.basis = basis.name
        mol.cart = basis.cart
        mol.spin = sum(basis.numbers) % 2
        mol.verbose = 0
        mol.build()
        opt = _vhf._VHFOpt(mol, "int2e", "CVHFnrs8_prescreen", "CVHFnr_int2e_q_cond", "CVHFnr_dm_cond")
        opt.init_cvhf_direct(mol, "int2e", "CVHFnr_int2e_q_cond")
        q = np.asarray(opt.q_cond)
        if q.shape != (mol.nbas, mol.nbas):
            return None
        return q
    except Exception:  # a private PySCF interface: fall back to our own kernels
        return None


def make_eri_plan(basis: Basis, positions: Array, threshold: float = SCHWARZ_THRESHOLD) -> EriPlan:
    """Unique shell quartets with Schwarz bound above ``threshold`` at ``positions`` (Bohr).

    ``threshold = 0`` keeps every quartet (a plan valid for any geometry)."""
    pairs = _pair_list(basis)
    bounds = schwarz_bounds(basis, positions) if threshold > 0 else [np.ones(len(p[2])) for p in pairs]
    nprim = np.asarray(basis.shell_nprim)
    classes = []
    for u, (la, lb, ia, ib, sa, sb) in enumerate(pairs):
        for v in range(u + 1):
            lc, ld, ic, id_, sc, sd = pairs[v]
            P, Q = np.meshgrid(np.arange(len(ia)), np.arange(len(ic)), indexing="ij")
            P, Q = P.ravel(), Q.ravel()
            if u == v:
                keep = P >= Q
                P, Q = P[keep], Q[keep]
            keep = bounds[u][P] * bounds[v][Q] >= threshold
            P, Q = P[keep], Q[keep]
            if P.size == 0:
                continue
            if u == v:  # (ab|cd) = (cd|ab): put the pair with more primitives first
                kp = nprim[sa[P]] * 64 + nprim[sb[P]]
                kq = nprim[sc[Q]] * 64 + nprim[sd[Q]]
                swap = kp < kq
                P, Q = np.where(swap, Q, P), np.where(swap, P, Q)
            shells = np.stack([sa[P], sb[P], sc[Q], sd[Q]])
            rows = np.stack([ia[P], ib[P], ic[Q], id_[Q]])
            nsame = (shells[0] == shells[1]).astype(int) + (shells[2] == shells[3]) + ((u == v) & (P == Q))
            ls = (la, lb, lc, ld)
            for ks, q in split_by_primitives(ls, nprim[shells].T):
                classes.append(QuartetClass(ls=ls, ks=ks, rows=rows[:, q], shells=shells[:, q],
                                            scale=0.5 ** nsame[q]))
    return EriPlan(classes=tuple(classes), ao_offsets=basis.ao_offsets, nao=basis.nao,
                   cart=basis.cart, threshold=float(threshold))


def class_chunk(ls: tuple[int, int, int, int], ks: tuple[int, int, int, int]) -> int:
    """Chunk length for a quartet class: bounded working memory per chunk."""
    kab = ks[0] * ks[1]
    kcd = ks[2] * ks[3]
    nab, ncd = nherm(ls[0] + ls[1]), nherm(ls[2] + ls[3])
    work = kab * kcd * (nherm(sum(ls)) + nab * ncd) + kab * nab * ncart(ls[2]) * ncart(ls[3])
    return chunk_size(work)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _class_program(ls: tuple[int, int, int, int], ks: tuple[int, int, int, int], cart: bool, chunk: int,
                   data, rows) -> Array:
    """All quartets of one class: ``rows`` [4, nq] (nq a multiple of ``chunk``) index the
    per-l shell data, of which the first ``ks`` primitives are used; chunks run
    sequentially (``lax.map``) to bound memory. Each chunk is rematerialised
    (``jax.checkpoint``) when differentiated, so a pullback stores only the chunks'
    row indices, not every primitive quartet's Hermite intermediates."""
    nq = rows.shape[1]
    rows = rows.reshape(4, nq // chunk, chunk).transpose(1, 0, 2)

    def one_chunk(r):
        args = []
        for k in range(4):
            e, c, x = data[k]
            args += [e[r[k], :ks[k]], c[r[k], :ks[k]], x[r[k]]]
        return _quartet_kernel(ls, cart, *args)

    out = jax.lax.map(jax.checkpoint(one_chunk), rows)
    return out.reshape((nq,) + out.shape[2:])


def size_bucket(n: int) -> int:
    """A padded size >= n taking few distinct values, so compiled kernels are shared
    by molecules: the next power of two up to 8, then m 2^k with m in 4..8 (at most
    25% padding)."""
    if n <= 8:
        return 1 << max(0, (n - 1).bit_length())
    k = n.bit_length() - 3
    return -(-n // (1 << k)) << k


def _bucketed_data(data, l: int, k: int):
    """Shell data of angular momentum l cut to k primitives, with rows padded to a
    power of two, at least 16 (padding shells have exponent 1, coefficient 0 and
    centre 0 and are never referenced; the arrays are small, the padding is free)."""
    e, c, x = data[l]
    e, c = e[:, :k], c[:, :k]
    n = e.shape[0]
    pad = max(16, 1 << (n - 1).bit_length()) - n
    if pad:
        e = jnp.concatenate([e, jnp.ones((pad, k), e.dtype)])
        c = jnp.concatenate([c, jnp.zeros((pad, k), c.dtype)])
        x = jnp.concatenate([x, jnp.zeros((pad, 3), x.dtype)])
    return e, c, x


def class_blocks(cart: bool, data, ls, ks, rows) -> Array:
    """ERI blocks [nq, da, db, dc, dd] (Hartree) of one quartet class.

    ``data`` is :func:`mess.integrals.pairs.shell_data`; ``ls``/``ks`` the class's
    angular momenta and primitive counts; ``rows`` [4, nq] its shells' rows in
    ``data``. The compiled kernel's shapes depend only on the class, the bucketed
    shell counts and the bucketed number of chunks, so one compilation serves many
    molecules (and, called eagerly, its derivative programs too)."""
    chunk = class_chunk(tuple(ls), tuple(ks))
    nq = rows.shape[1]
    pad = size_bucket(-(-nq // chunk)) * chunk - nq
    if pad:
        rows = np.concatenate([rows, np.zeros((4, pad), dtype=rows.dtype)], axis=1)
    args = tuple(_bucketed_data(data, l, k) for l, k in zip(ls, ks))
    out = _class_program(tuple(ls), tuple(ks), cart, chunk, args, rows)
    return out[:nq] if pad else out


def eri_blocks(plan: EriPlan, basis: Basis, positions: Float[Array, "natom 3"]) -> list[Array]:
    """ERI blocks of every class in ``plan``, each [nq, da, db, dc, dd] (Hartree).

    Each class runs as its own compiled kernel, whose shapes are bucketed so that
    other geometries and other molecules reuse it; under ``jax.jit`` the kernels
    are traced into the caller's program."""
    data = shell_data(basis, positions)
    return [class_blocks(basis.cart, data, c.ls, c.ks, c.rows) for c in plan.classes]


def ao_indices(offsets: Array, shells: Array, size: int) -> Array:
    """AO indices [nq, size] of the functions of shells ``shells`` [nq]."""
    return offsets[shells][:, None] + jnp.arange(size, dtype=shells.dtype)


def degeneracy_scale(shells: Array) -> Array:
    """Weight 0.5^([a==b] + [c==d] + [ab==cd]) of unique quartets ``shells`` [4, nq]
    (a quartet standing for 8, 4, 2 or 1 permutations of the full tensor)."""
    a, b, c, d = shells
    n = (a == b).astype(jnp.int32) + (c == d) + ((a == c) & (b == d))
    one = jnp.ones((), jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)
    return jnp.ldexp(one, -n)  # exact powers of two


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("with_j", "with_k"))
def get_jk(plan: EriPlan, blocks: list[Array], dm: Float[Array, "... nao nao"],
           with_j: bool = True, with_k: bool = True,
           shells: tuple[Array, ...] | None = None) -> tuple[Array, Array]:
    """Coulomb J_{mn} = sum_{ls} (mn|ls) D_{ls} and exchange K_{mn} = sum_{ls} (ml|ns) D_{ls}.

    ``dm`` holds one or more symmetric density matrices [..., nao, nao]; J and K have
    the same shape. Each unique block contributes through all eight permutations,
    weighted by its degeneracy scale, and J = J' + J'^T, K = K' + K'^T. ``shells``
    are the classes' shell indices (default ``plan.shell_indices``).
    """
    shells = plan.shell_indices if shells is None else shells
    offsets = jnp.asarray(plan.ao_offsets, dtype=jnp.int32)
    size = ncart if plan.cart else nsph
    jp = jnp.zeros_like(dm)
    kp = jnp.zeros_like(dm)
    for cls, blk, sh in zip(plan.classes, blocks, shells):
        ia, ib, ic, id_ = (ao_indices(offsets, sh[k], size(cls.ls[k])) for k in range(4))
        scale = degeneracy_scale(sh).astype(dm.dtype)[:, None, None]

        def dblock(x, y):  # density blocks [..., nq, dx, dy], scaled by the degeneracy weight
            return dm[..., x[:, :, None], y[:, None, :]] * scale

        def add(acc, x, y, val):
            return acc.at[..., x[:, :, None], y[:, None, :]].add(val)

        # the (large) integral blocks are used as they are; the weights go on the small
        # density blocks, so no scaled copy of the integrals is ever made
        if with_j:
            jp = add(jp, ia, ib, 2.0 * _contract(blk, dblock(ic, id_), (1, 2)))
            jp = add(jp, ic, id_, 2.0 * _contract(blk, dblock(ia, ib), (3, 4)))
        if with_k:
            kp = add(kp, ia, ic, _contract(blk, dblock(ib, id_), (1, 3)))
            kp = add(kp, ib, ic, _contract(blk, dblock(ia, id_), (2, 3)))
            kp = add(kp, ia, id_, _contract(blk, dblock(ib, ic), (1, 4)))
            kp = add(kp, ib, id_, _contract(blk, dblock(ia, ic), (2, 4)))
    return jp + jnp.swapaxes(jp, -1, -2), kp + jnp.swapaxes(kp, -1, -2)


def _contract(blk: Float[Array, "nq da db dc dd"], d: Float[Array, "... nq x y"],
              keep: tuple[int, int]) -> Float[Array, "... nq k0 k1"]:
    """``sum blk[q,a,b,c,d] * d[..., q, x, y]`` over the two block axes not in ``keep``
    (axes 1-4 of ``blk``; ``d``'s last two axes are the summed ones, in order), giving
    ``[..., q, keep0, keep1]`` (Hartree for integrals in Hartree).

    Written as one broadcast multiply and reduce. An einsum here lowers to a batched
    matrix product on a transposed copy of the block; those copies do not depend on
    the density, and in the SCF loop XLA kept them as loop invariants: temporary
    memory was 6.4x the integral blocks for ethanol/6-31g* (3.8x with this form), and
    caffeine/def2-SVP with exact exchange asked for 31 GB
    (``tests/test_integrals.py::test_jk_in_scf_loop_keeps_no_copies_of_the_integrals``)."""
    summed = tuple(ax for ax in (1, 2, 3, 4) if ax not in keep)
    lead = d.ndim - 3
    # place d's two axes on the summed block axes, with size-1 axes on the kept ones
    shape = list(d.shape[:-2]) + [1, 1, 1, 1]
    shape[lead + summed[0]] = d.shape[-2]
    shape[lead + summed[1]] = d.shape[-1]
    prod = blk * d.reshape(shape)
    return prod.sum(axis=tuple(lead + ax for ax in summed))


@functools.partial(jax.jit, static_argnums=(0,))
def eri_tensor(plan: EriPlan, blocks: list[Array]) -> Float[Array, "nao nao nao nao"]:
    """The full [nao]^4 ERI tensor from the unique blocks (for tests and small systems)."""
    n = plan.nao
    out = jnp.zeros((n, n, n, n), dtype=blocks[0].dtype if blocks else jnp.float64)
    offsets = jnp.asarray(plan.ao_offsets, dtype=jnp.int32)
    size = ncart if plan.cart else nsph
    for cls, blk, sh in zip(plan.classes, blocks, plan.shell_indices):
        ia, ib, ic, id_ = (ao_indices(offsets, sh[k], size(cls.ls[k])) for k in range(4))
        for (w, x, y, z), perm in [((ia, ib, ic, id_), (0, 1, 2, 3)), ((ib, ia, ic, id_), (1, 0, 2, 3)),
                                   ((ia, ib, id_, ic), (0, 1, 3, 2)), ((ib, ia, id_, ic), (1, 0, 3, 2)),
                                   ((ic, id_, ia, ib), (2, 3, 0, 1)), ((id_, ic, ia, ib), (3, 2, 0, 1)),
                                   ((ic, id_, ib, ia), (2, 3, 1, 0)), ((id_, ic, ib, ia), (3, 2, 1, 0))]:
            val = jnp.transpose(blk, (0,) + tuple(p + 1 for p in perm))
            out = out.at[w[:, :, None, None, None], x[:, None, :, None, None],
                         y[:, None, None, :, None], z[:, None, None, None, :]].set(val)
    return out


class BlockJK(eqx.Module):
    """J/K builder over stored ERI blocks: ``jk(dm) -> (J, K)`` (see :func:`get_jk`).

    The plan is static (host data); the blocks and the quartets' shell indices are
    array leaves, so a jitted SCF compiled for one geometry serves another geometry
    with the same plan, and no index table is compiled in as a constant."""

    plan: EriPlan = eqx.field(static=True)
    blocks: list[Array]
    with_k: bool = eqx.field(static=True, default=True)
    shells: tuple[Array, ...] | None = None

    def __post_init__(self):
        if self.shells is None:
            object.__setattr__(self, "shells", self.plan.shell_indices)

    def __call__(self, dm):
        return _block_jk(self, dm)


@eqx.filter_jit
def _block_jk(jk: BlockJK, dm):
    return get_jk(jk.plan, jk.blocks, dm, with_k=jk.with_k, shells=jk.shells)
