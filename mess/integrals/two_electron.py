"""Electron repulsion integrals (mu nu | lambda sigma) and Coulomb/exchange builds.

Integrals (McMurchie & Davidson 1978; Helgaker, Jorgensen & Olsen 2000, eq. 9.9.33):

    (ab|cd) = 2 pi^{5/2} / (p q sqrt(p + q))
              sum_{tuv} E^{ab}_{tuv} sum_{tau nu phi} (-1)^{tau+nu+phi} E^{cd}_{tau nu phi}
              R_{t+tau, u+nu, v+phi}(p q / (p + q), R_PQ)

Only the symmetry-unique shell quartets are computed (8-fold permutational symmetry:
(ab|cd) = (ba|cd) = (ab|dc) = (cd|ab) = ...), and quartets whose Schwarz bound
sqrt((ab|ab)) sqrt((cd|cd)) falls below a threshold are skipped (Haser & Ahlrichs
1989, J. Comput. Chem. 10, 104).

**Quartet classes.** Quartets are grouped by the angular momenta of their four shells
and, within that, by primitive counts (the cost of a quartet is proportional to
Ka Kb Kc Kd, so a quartet of uncontracted shells should not pay for a core shell's
contraction length). A :class:`QuartetClass` ``(ls, ks, nq)`` evaluates ``nq`` quartets
with ``ks`` primitives per shell in one vectorised kernel; classes are chosen on the
host for a whole batch of molecules (:func:`choose_classes`; sub-classes too small to
repay a separately compiled kernel are merged, padding to the larger counts) and each
molecule's quartets are assigned to the cheapest class that covers them
(:func:`quartet_lists`).

**Host / device split.** Which quartets exist is decided on the host from a geometry
(:func:`quartet_population`). The device sees only arrays: a :class:`QuartetList` per
class, the quartets' shell rows (indices into the shell groups of
:mod:`mess.basis.shells`) and their weights, the degeneracy weight
0.5^([a==b] + [c==d] + [ab==cd]) for real quartets and 0 for padding. Integral values
are JAX functions of the positions (Bohr) and basis parameters; the integrals are
stored per class as dense blocks [nq, da, db, dc, dd] (about N^4 / 8 numbers in all,
never the full N^4 tensor), and Coulomb and exchange matrices are built directly from
the blocks by gathering density blocks and scatter-adding the results.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from mess.basis.shells import (BasisLayout, BasisShape, ShellGroup, cart_to_sph, cartesian_powers, ncart, shell_data,
                               shell_size)
from mess.errors import InputError
from mess.integrals.hermite import (TERMWISE_MAX_L, hermite_e_1d_terms, hermite_e_pair, hermite_indices, hermite_r,
                                    hermite_r_list, nherm)
from mess.integrals.pairs import chunk_size

#: Work (primitive quartets times Hermite terms) that a separately compiled
#: sub-class must save to be kept apart; about one second of compile time.
SPLIT_WORK = 3e7

#: Longest contraction evaluated as one piece. A quartet whose shells have longer
#: contractions is evaluated as the sum of quartets of pieces of at most this many
#: primitives (:func:`quartet_population` with ``pieces=True``).
PIECE_PRIMITIVES = 3

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
    # s and p functions are the same in both bases (PySCF's p order is x, y, z): only
    # the axes of d and higher shells are transformed, one axis at a time
    for axis, l in enumerate(ls, start=1):
        if l >= 2:
            block = jnp.moveaxis(jnp.tensordot(block, jnp.asarray(cart_to_sph(l), block.dtype), axes=([axis], [0])),
                                 -1, axis)
    return block


def _quartet_kernel(ls: tuple[int, int, int, int], cart: bool, single: bool,
                    ea, ca, ra, eb, cb, rb, ec, cc, rc, ed, cd, rd, termwise: bool | None = None) -> Array:
    """ERI blocks for a chunk of shell quartets of one class; [C, da, db, dc, dd];
    ``single``: evaluated in float32; ``termwise``: the kernel for the values (default:
    by angular momentum alone; see :func:`_kernel`)."""
    if termwise is None:
        termwise = sum(ls) <= TERMWISE_QUARTET_MAX_L
    return _kernel(ls, cart, single, bool(termwise), (ea, ca, ra, eb, cb, rb, ec, cc, rc, ed, cd, rd))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _kernel(ls: tuple[int, int, int, int], cart: bool, single: bool, termwise: bool, args: tuple) -> Array:
    """Values: the term-by-term kernel (:func:`_quartet_kernel_termwise`, fastest to
    run, slowest to compile) when ``termwise``, else the array kernel
    (:func:`_quartet_kernel_arrays`). Callers choose it per class with
    :meth:`QuartetClass.termwise`: classes up to total angular momentum
    :data:`TERMWISE_QUARTET_MAX_L` with enough work to repay the compilation.

    ``single`` (``precision="mixed"``): the blocks are evaluated and returned in
    float32. The term-by-term kernel forms the pair and quartet geometry (exponent
    sums, product centres, Hermite expansion coefficients, Boys arguments' factors,
    prefactors) from the float64 inputs and rounds only those, so that the basis
    itself is not perturbed (rounding the exponents and centres first would shift
    every integral of a shell the same way: 2.6e-6 Ha for water/6-31G HF against
    1e-6 with float32 arithmetic throughout); the array kernel rounds its inputs.

    Derivatives (any order, forward or reverse) are those of the array kernel, which
    computes the same integrals: differentiating the term-by-term graph compiled
    4.5x slower (water/STO-3G (pp|pp) gradient: 17 s against 3.8 s at XLA's
    optimisation level 0), so a differentiated call runs the array kernel alone."""
    if termwise:
        return _quartet_kernel_termwise(ls, cart, single, *args)
    return _arrays_in(single, ls, cart, args)


@_kernel.defjvp
def _kernel_jvp(ls, cart, single, termwise, primals, tangents):
    return jax.jvp(lambda a: _arrays_in(single, ls, cart, a), primals, tangents)


def _arrays_in(single: bool, ls, cart, args) -> Array:
    """:func:`_quartet_kernel_arrays`, from and to float32 when ``single``."""
    if not single:
        return _quartet_kernel_arrays(ls, cart, *args)
    return _quartet_kernel_arrays(ls, cart, *(a.astype(jnp.float32) for a in args)).astype(jnp.float32)


#: Largest total angular momentum of a quartet class evaluated by the term-by-term
#: kernel. Above it the number of traced terms (R_{t+tau,u+nu,v+phi} E_{tau nu phi}
#: products) makes XLA's compile time grow faster than the run time falls. Measured
#: for uracil/def2-SVP on 2 CPU cores, warm (compile) per class against the array
#: kernel: L = 5 classes ((dp|pp), (dp|ds), (dd|ps)) 0.61 s in all against 1.46 s,
#: 4-6 s of compilation each against 1.4-2.0 s; L = 6 classes 0.33 s against 0.63 s
#: but 7-11 s of compilation each, so L = 6 and above stay on the array kernel.
TERMWISE_QUARTET_MAX_L = 5

#: Least kernel work (:meth:`QuartetClass.work` times the batch size) of one program
#: call for which a class runs term by term. Below it the array kernel runs instead:
#: at about 1-3 ns per unit of work (2 CPU cores) such a class takes at most some
#: 10-20 ms with either kernel, while the term-by-term one compiles for 0.5-3 s
#: longer. Measured on 2 CPU cores, every ERI class compiled in one process:
#: water/STO-3G 5.7 s of compilation against 4.5 s, water/def2-SVP 45 s against 26 s
#: (30 ms and 67 ms warm).
TERMWISE_MIN_WORK = 5e6


def _pair_terms(la: int, lb: int, ea, ca, ra, eb, cb, rb):
    """Primitive-pair quantities of a chunk of C shell pairs, the pair axis last.

    Args: exponents ``ea`` [C, Ka] (Bohr^-2), normalised coefficients ``ca`` [C, Ka],
    centres ``ra`` [C, 3] (Bohr), likewise for b.

    Returns ``(p, P, E)``: total exponents p = a + b [K, C] (K = Ka Kb), product
    centres P as three [K, C] arrays, and the Hermite coefficients times the
    coefficient products, ``E[x][h]`` = c_a c_b E^x_t E^y_u E^z_v [K, C] for Cartesian
    pair x and Hermite index h = (t, u, v) (None where it vanishes identically;
    Helgaker et al. eq. 9.5.6-9.5.7, with exp(-mu X_AB^2) in E^{00}_0)."""
    c = ea.shape[0]
    a, b = ea.T[:, None, :], eb.T[None, :, :]  # [Ka, 1, C], [1, Kb, C]
    k = a.shape[0] * b.shape[1]

    def flat(x):
        return jnp.broadcast_to(x, (a.shape[0], b.shape[1], c)).reshape(k, c)

    p = a + b
    mu = a * b / p
    w = flat(ca.T[:, None, :] * cb.T[None, :, :])
    centre, terms = [], []
    for d in range(3):
        xa, xb = ra[:, d], rb[:, d]
        x_p = (a * xa + b * xb) / p
        centre.append(flat(x_p))
        terms.append(hermite_e_1d_terms(la, lb, p, x_p - xa, x_p - xb, jnp.exp(-mu * (xa - xb) ** 2)))
    herm = hermite_indices(la + lb)
    rows = []
    for ia in cartesian_powers(la):
        for ib in cartesian_powers(lb):
            row = []
            for h in herm:
                f = [terms[d].get((int(ia[d]), int(ib[d]), int(h[d]))) for d in range(3)]
                row.append(None if any(v is None for v in f) else flat(f[0] * f[1] * f[2]) * w)
            rows.append(row)
    return flat(p), centre, rows


def _quartet_kernel_termwise(ls: tuple[int, int, int, int], cart: bool, single: bool,
                             ea, ca, ra, eb, cb, rb, ec, cc, rc, ed, cd, rd) -> Array:
    """ERI blocks [C, da, db, dc, dd] of a chunk of quartets, every Hermite term its
    own array with the quartet axis last.

    Same formula as :func:`_quartet_kernel_arrays` (McMurchie & Davidson 1978):
    X[tuv][cd] = sum_{kl} sum_{tau nu phi} (-1)^{tau+nu+phi} E^{cd}_{tau nu phi}
    R_{t+tau,u+nu,v+phi}, then (ab|cd) = sum_{k} sum_{tuv} E^{ab}_{tuv} X[tuv][cd], with
    k, l the bra and ket primitive pairs. Every operation is elementwise over
    [Kab, Kcd, C] or [Kab, C] arrays (sums of products that XLA fuses and vectorises
    along the quartets), instead of small batched matrix products and constant-index
    gathers, which XLA's CPU backend runs several times slower."""
    la, lb, lc, ld = ls
    p, P, e_ab = _pair_terms(la, lb, ea, ca, ra, eb, cb, rb)
    q, Q, e_cd = _pair_terms(lc, ld, ec, cc, rc, ed, cd, rd)
    p, q = p[:, None, :], q[None, :, :]
    pq = p + q
    alpha = p * q / pq
    pref = 2.0 * jnp.pi ** 2.5 / (p * q * jnp.sqrt(pq))
    rpq = jnp.stack([P[d][:, None, :] - Q[d][None, :, :] for d in range(3)], axis=-1)
    if single:  # the geometry in float64 above, the recursions and sums below in float32
        alpha, rpq, pref = (x.astype(jnp.float32) for x in (alpha, rpq, pref))
        e_ab, e_cd = ([[None if e is None else e.astype(jnp.float32) for e in row] for row in rows]
                      for rows in (e_ab, e_cd))
    R = [r * pref for r in hermite_r_list(sum(ls), alpha, rpq)]  # [Kab, Kcd, C] each
    pos = {tuple(int(v) for v in h): i for i, h in enumerate(hermite_indices(sum(ls)))}
    h_ab, h_cd = hermite_indices(la + lb), hermite_indices(lc + ld)
    X = []
    for t in h_ab:
        row = []
        for e_row in e_cd:
            acc = None
            for u, e in zip(h_cd, e_row):
                if e is None:
                    continue
                term = R[pos[tuple(int(v) for v in t + u)]] * e[None]
                acc = term if acc is None else (acc - term if u.sum() % 2 else acc + term)
            row.append(acc.sum(axis=1))  # [Kab, C]
        X.append(row)
    out = []
    for e_row in e_ab:
        for y in range(len(e_cd)):
            acc = None
            for ti, e in enumerate(e_row):
                if e is not None:
                    acc = e * X[ti][y] if acc is None else acc + e * X[ti][y]
            out.append(acc.sum(axis=0))  # [C]
    return _to_shell_basis(jnp.stack(out, axis=-1), ls, cart)


def _quartet_kernel_arrays(ls: tuple[int, int, int, int], cart: bool,
                           ea, ca, ra, eb, cb, rb, ec, cc, rc, ed, cd, rd) -> Array:
    """ERI blocks for a chunk of shell quartets of one class; [C, da, db, dc, dd], the
    Hermite intermediates held as arrays [C, Kab, Kcd, ...] (quick to compile for
    high angular momentum)."""
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
    L = la + lb + lc + ld
    rpq = P[:, :, None, :] - Q[:, None, :, :]
    if L <= TERMWISE_MAX_L:
        R = hermite_r_list(L, alpha, rpq)  # nh x [C, Kab, Kcd]
        # R_{t+tau, u+nu, v+phi} for every (bra, ket) Hermite pair, axes [nh_ab, nh_cd]
        Rm = jnp.stack([jnp.stack([R[int(j)] * pref for j in row]) for row in idx])
        X = jnp.einsum("TUckl,clyU->ckTy", Rm, Ecd)
    else:
        Rm = (hermite_r(L, alpha, rpq) * pref[..., None])[..., idx]  # [C, Kab, Kcd, nh_ab, nh_cd]
        X = jnp.einsum("cklTU,clyU->ckTy", Rm, Ecd)
    out = jnp.einsum("ckxT,ckTy->cxy", Eab, X)
    return _to_shell_basis(out, ls, cart)




# --------------------------------------------------------------------------------------
# Host: which quartets exist
# --------------------------------------------------------------------------------------


def pair_list(layout: BasisLayout) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """All unique shell pairs, per pair class (la >= lb): ``(la, lb, rows_a, rows_b,
    shells_a, shells_b)`` with group rows and layout shell indices.

    Within a class with la == lb the shell with more primitives comes first (rows
    i >= j otherwise), so the primitive-count signatures of quartets take fewer
    distinct values."""
    groups = {int(l): np.nonzero(layout.l == l)[0] for l in np.unique(layout.l)}
    nprim = layout.nprim
    out = []
    for la, ga in groups.items():
        for lb, gb in groups.items():
            if lb > la:
                continue
            ia, ib = np.meshgrid(np.arange(len(ga)), np.arange(len(gb)), indexing="ij")
            ia, ib = ia.ravel(), ib.ravel()
            if la == lb:
                keep = ia >= ib
                ia, ib = ia[keep], ib[keep]
            sa, sb = ga[ia], gb[ib]
            if la == lb:
                swap = nprim[sa] < nprim[sb]
                ia, ib = np.where(swap, ib, ia), np.where(swap, ia, ib)
                sa, sb = np.where(swap, sb, sa), np.where(swap, sa, sb)
            out.append((la, lb, ia, ib, sa, sb))
    return out


def schwarz_bounds(layout: BasisLayout, numbers, positions) -> list[np.ndarray]:
    """sqrt(max |(ab|ab)|) for every unique pair, per pair class of :func:`pair_list`
    (host numpy; positions in Bohr).

    Taken from libcint through PySCF (``q_cond``, per PySCF shell; a generally
    contracted PySCF shell gives one bound for all its contractions, an upper bound)."""
    q = _pyscf_q_cond(layout, numbers, positions)
    return [q[layout.source[sa], layout.source[sb]] for _, _, _, _, sa, sb in pair_list(layout)]


def _pyscf_q_cond(layout: BasisLayout, numbers, positions) -> np.ndarray:
    from pyscf import gto
    from pyscf.scf import _vhf

    mol = gto.Mole()
    mol.atom = [(int(z), tuple(p)) for z, p in zip(numbers, np.asarray(positions, dtype=np.float64))]
    mol.unit = "Bohr"
    mol.basis = layout.name
    mol.cart = layout.cart
    mol.spin = int(sum(int(z) for z in numbers)) % 2
    mol.verbose = 0
    mol.build()
    opt = _vhf._VHFOpt(mol, "int2e", "CVHFnrs8_prescreen", "CVHFnr_int2e_q_cond", "CVHFnr_dm_cond")
    opt.init_cvhf_direct(mol, "int2e", "CVHFnr_int2e_q_cond")
    q = np.asarray(opt.q_cond)
    if q.shape != (mol.nbas, mol.nbas):
        raise RuntimeError(f"PySCF's q_cond has shape {q.shape}, expected {(mol.nbas, mol.nbas)}")
    return q


@dataclasses.dataclass(frozen=True, eq=False)
class QuartetPopulation:
    """A molecule's unique, screened quartets per angular-momentum class (host data).

    ``classes[ls] = (sigs [nq, 4], rows [4, nq], nsame [nq], pieces [4, nq])``: the
    primitive counts of the four shells, their group rows, the number of coinciding
    index pairs (a == b, c == d, ab == cd), which fixes the degeneracy weight
    0.5^nsame, and which piece of each shell's contraction the quartet holds (all 0
    unless ``pieced``).

    ``pieced``: a shell quartet with contractions longer than :data:`PIECE_PRIMITIVES`
    is listed once per combination of its shells' pieces (consecutive runs of at most
    that many primitives), each with the primitive counts ``min(K, PIECE_PRIMITIVES)``,
    the quartet's rows and its weight; the integrals are linear in each shell's
    contraction, so the pieces' blocks sum to the quartet's."""

    classes: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    pieced: bool = False

    @functools.cached_property
    def unique(self) -> dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per class: distinct primitive-count signatures ``[m, 4]``, the index of each
        quartet's signature ``[nq]`` and the count of each ``[m]`` (one 1-D sort of
        packed keys, not a row-wise unique)."""
        out = {}
        for ls, (sigs, _, _, _) in self.classes.items():
            keys = _pack(sigs)
            ukeys, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
            out[ls] = (_unpack(ukeys), inverse.ravel(), counts)
        return out

    def signature_counts(self) -> dict[tuple[tuple[int, ...], tuple[int, ...]], int]:
        """``{(ls, primitive counts): number of quartets}``."""
        out = {}
        for ls, (uniq, _, counts) in self.unique.items():
            for u, c in zip(uniq, counts):
                out[(ls, tuple(int(k) for k in u))] = int(c)
        return out

    @property
    def nquartets(self) -> int:
        return sum(v[0].shape[0] for v in self.classes.values())


def _pack(sigs: np.ndarray) -> np.ndarray:
    """Four primitive counts (each < 256) packed into one integer per row."""
    sigs = np.asarray(sigs, dtype=np.int64)
    return ((sigs[:, 0] * 256 + sigs[:, 1]) * 256 + sigs[:, 2]) * 256 + sigs[:, 3]


def _unpack(keys: np.ndarray) -> np.ndarray:
    out = np.empty((keys.size, 4), dtype=np.int64)
    for k in range(3, -1, -1):
        out[:, k] = keys % 256
        keys = keys // 256
    return out


def quartet_population(layout: BasisLayout, bounds: list[np.ndarray] | None,
                       threshold: float = SCHWARZ_THRESHOLD, pieces: bool = False) -> QuartetPopulation:
    """Unique shell quartets with Schwarz bound above ``threshold``.

    ``bounds`` are :func:`schwarz_bounds` at the geometry of interest; ``None`` (or
    ``threshold = 0``) keeps every unique quartet, a list valid for any geometry.
    ``pieces``: list quartets of long contractions as quartets of contraction pieces
    (see :class:`QuartetPopulation`)."""
    pairs = pair_list(layout)
    if bounds is None or threshold <= 0:
        bounds = [np.ones(len(p[2])) for p in pairs]
        threshold = 0.0
    nprim = layout.nprim
    out: dict = {}
    for u, (la, lb, ia, ib, sa, sb) in enumerate(pairs):
        for v in range(u + 1):
            lc, ld, ic, id_, sc, sd = pairs[v]
            P, Q = _screened_pairs(bounds[u], bounds[v], threshold, u == v)
            if P.size == 0:
                continue
            if u == v:  # (ab|cd) = (cd|ab): put the pair with more primitives first
                kp = nprim[sa[P]] * 64 + nprim[sb[P]]
                kq = nprim[sc[Q]] * 64 + nprim[sd[Q]]
                swap = kp < kq
                P, Q = np.where(swap, Q, P), np.where(swap, P, Q)
            shells = np.stack([sa[P], sb[P], sc[Q], sd[Q]])
            rows = np.stack([ia[P], ib[P], ic[Q], id_[Q]])
            nsame = ((shells[0] == shells[1]).astype(np.int64) + (shells[2] == shells[3])
                     + ((u == v) & (P == Q)))
            sigs = nprim[shells].T.copy()
            piece = np.zeros_like(rows)
            if pieces:
                sigs, rows, nsame, piece = _split_contractions(sigs, rows, nsame)
            out[(la, lb, lc, ld)] = (sigs, rows, nsame, piece)
    return QuartetPopulation(out, bool(pieces))


def contraction_pieces(nprim) -> np.ndarray:
    """Pieces of :data:`PIECE_PRIMITIVES` primitives that hold ``nprim`` (at least 1)."""
    return np.maximum(1, -(-np.asarray(nprim) // PIECE_PRIMITIVES))


def pair_pieces(layout: BasisLayout, pairs) -> list[np.ndarray]:
    """Per pair class of ``pairs`` (:func:`pair_list`): the contraction-piece
    combinations of each shell pair ``[npair]``, the factor by which a pieced
    :class:`QuartetPopulation` multiplies a quartet's entries."""
    pieces = contraction_pieces(layout.nprim)
    return [pieces[sa] * pieces[sb] for _la, _lb, _ia, _ib, sa, sb in pairs]


def _split_contractions(sigs: np.ndarray, rows: np.ndarray, nsame: np.ndarray):
    """Every quartet (``sigs`` [nq, 4], ``rows`` [4, nq], ``nsame`` [nq]) repeated once per
    combination of its shells' contraction pieces: (sigs capped at
    :data:`PIECE_PRIMITIVES`, rows, nsame, piece index of each shell [4, n])."""
    m = contraction_pieces(sigs)  # [nq, 4]
    total = m.prod(axis=1)
    owner = np.repeat(np.arange(len(total)), total)
    local = np.arange(owner.size) - np.repeat(np.cumsum(total) - total, total)
    piece = np.empty((4, owner.size), dtype=rows.dtype)
    for k in (3, 2, 1, 0):  # mixed-radix digits of the combination number
        piece[k] = local % m[owner, k]
        local = local // m[owner, k]
    return np.minimum(sigs[owner], PIECE_PRIMITIVES), rows[:, owner], nsame[owner], piece


def _screened_pairs(bu: np.ndarray, bv: np.ndarray, threshold: float, same: bool,
                    block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(P, Q)``, in P-major order, with ``bu[P] bv[Q] >= threshold`` (and
    ``P >= Q`` when both come from one pair class), looked at in blocks of about
    ``block`` candidates so that memory follows the pairs kept, not all candidates."""
    rows = max(1, block // max(1, len(bv)))
    out_p, out_q = [], []
    for p0 in range(0, len(bu), rows):
        P, Q = np.meshgrid(np.arange(p0, min(p0 + rows, len(bu))), np.arange(len(bv)), indexing="ij")
        P, Q = P.ravel(), Q.ravel()
        keep = bu[P] * bv[Q] >= threshold
        if same:
            keep &= P >= Q
        out_p.append(P[keep])
        out_q.append(Q[keep])
    if not out_p:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_p), np.concatenate(out_q)


def _work_per_primitive(ls: tuple[int, int, int, int]) -> int:
    """Kernel work per primitive quartet of a class (Hermite R terms and contractions)."""
    nab, ncd = nherm(ls[0] + ls[1]), nherm(ls[2] + ls[3])
    return nherm(sum(ls)) + nab * ncd


def split_by_primitives(ls: tuple[int, int, int, int], sigs: np.ndarray, split_work: float | None = None,
                        counts: np.ndarray | None = None) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Group primitive-count signatures ``sigs`` [m, 4] of one class.

    Each row stands for ``counts[i]`` quartets (default 1). Starts from one group per
    distinct signature and greedily merges the two groups whose union (padded to the
    element-wise largest counts) adds the least work, while that extra work is below
    ``split_work`` (the work a separate kernel must save to repay its compilation).
    Returns (padded counts, row indices) pairs."""
    split_work = SPLIT_WORK if split_work is None else split_work
    sigs = np.asarray(sigs)
    counts = np.ones(len(sigs)) if counts is None else np.asarray(counts, dtype=float)
    uniq, inverse = np.unique(sigs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    groups = []
    for i, u in enumerate(uniq):
        members = np.nonzero(inverse == i)[0]
        groups.append((tuple(int(k) for k in u), members, float(counts[members].sum())))
    unit = _work_per_primitive(ls)

    def work(ks, n):
        return n * float(np.prod(ks)) * unit

    while len(groups) > 1:
        best = None
        for i in range(len(groups)):
            for j in range(i):
                (ki, qi, ni), (kj, qj, nj) = groups[i], groups[j]
                km = tuple(max(x, y) for x, y in zip(ki, kj))
                extra = work(km, ni + nj) - work(ki, ni) - work(kj, nj)
                if best is None or extra < best[0]:
                    best = (extra, i, j, km)
        extra, i, j, km = best
        if extra >= split_work:
            break
        merged = (km, np.sort(np.concatenate([groups[i][1], groups[j][1]])), groups[i][2] + groups[j][2])
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]
    return [(ks, q) for ks, q, _ in groups]


def size_bucket(n: int) -> int:
    """A padded size >= n taking few distinct values: the next power of two up to 8,
    then m 2^k with m in 4..8 (at most 25% padding)."""
    if n <= 8:
        return 1 << max(0, (n - 1).bit_length())
    k = n.bit_length() - 3
    return -(-n // (1 << k)) << k


def class_chunk(ls: tuple[int, int, int, int], ks: tuple[int, int, int, int], termwise: bool | None = None) -> int:
    """Chunk length for a quartet class: bounded working memory per chunk.

    For the term-by-term kernel each term is a [Kab, Kcd, C] array: chunks of about
    2^15 primitive quartets were the fastest measured (uracil/def2-SVP classes on 2
    CPU cores; 2^12-2^17 within noise, 2^11 and below slower). ``termwise``: which
    kernel (default: by angular momentum alone)."""
    kab = ks[0] * ks[1]
    kcd = ks[2] * ks[3]
    if termwise is None:
        termwise = sum(ls) <= TERMWISE_QUARTET_MAX_L
    if termwise:
        return chunk_size(kab * kcd, budget=1 << 15, lo=16, hi=4096)
    nab, ncd = nherm(ls[0] + ls[1]), nherm(ls[2] + ls[3])
    work = kab * kcd * (nherm(sum(ls)) + nab * ncd) + kab * nab * ncart(ls[2]) * ncart(ls[3])
    return chunk_size(work)


@dataclasses.dataclass(frozen=True)
class QuartetClass:
    """Static description of one quartet class: angular momenta ``ls``, primitives per
    shell ``ks`` and the padded number of quartets ``nq`` (a multiple of
    :attr:`chunk`). Hashed by value; part of a batch signature."""

    ls: tuple[int, int, int, int]
    ks: tuple[int, int, int, int]
    nq: int

    @property
    def chunk(self) -> int:
        """Quartets evaluated per step by the term-by-term kernel: the class's chunk
        length, or the whole list when it is shorter (:func:`padded_quartet_count` makes
        either divide ``nq``)."""
        return divisor_chunk(self.nq, class_chunk(self.ls, self.ks))

    def termwise(self, batch: int = 1) -> bool:
        """Whether a program evaluating this class for ``batch`` molecules at once runs
        the term-by-term kernel: total angular momentum at most
        :data:`TERMWISE_QUARTET_MAX_L` and work of at least :data:`TERMWISE_MIN_WORK`
        (a program that compiles longer than it would ever run saves the difference)."""
        return sum(self.ls) <= TERMWISE_QUARTET_MAX_L and not self.light(batch)

    def light(self, batch: int = 1) -> bool:
        """Whether a program evaluating this class for ``batch`` molecules does less
        work than :data:`TERMWISE_MIN_WORK`: it compiles for far longer than it runs."""
        return self.work() * batch < TERMWISE_MIN_WORK

    def chunk_for(self, batch: int = 1) -> int:
        """Quartets per step for the kernel :meth:`termwise` picks (a divisor of ``nq``)."""
        return divisor_chunk(self.nq, class_chunk(self.ls, self.ks, self.termwise(batch)))

    def covers(self, ls, sig) -> bool:
        return tuple(ls) == self.ls and all(s <= k for s, k in zip(sig, self.ks))

    def work(self) -> float:
        """Kernel work of the class (primitive quartets times Hermite terms)."""
        return self.nq * float(np.prod(self.ks)) * _work_per_primitive(self.ls)

    def nvalues(self, cart: bool) -> int:
        """Integral values the class stores."""
        return self.nq * int(np.prod([shell_size(l, cart) for l in self.ls]))


def choose_class_shapes(counts: list[dict], split_work: float | None = None
                        ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(ls, ks)`` of the classes for a set of molecules, from each molecule's
    :meth:`QuartetPopulation.signature_counts`: per angular-momentum class, the
    signatures are merged by :func:`split_by_primitives` with each signature weighted by
    its largest count over the molecules."""
    by_ls: dict = {}
    for c in counts:
        for (ls, sig), n in c.items():
            d = by_ls.setdefault(ls, {})
            d[sig] = max(d.get(sig, 0), n)
    out = []
    for ls in sorted(by_ls):
        sigs = np.asarray(sorted(by_ls[ls]))
        weights = np.asarray([by_ls[ls][tuple(s)] for s in sigs])
        for ks, _ in split_by_primitives(ls, sigs, split_work, weights):
            out.append((ls, tuple(int(k) for k in ks)))
    return out


def assign_classes(population: QuartetPopulation, shapes) -> dict[int, tuple[tuple, np.ndarray]] | None:
    """Quartet indices of ``population`` per class position in ``shapes`` (a sequence of
    ``(ls, ks)``): every quartet goes to the cheapest class covering its primitive
    counts (first on ties), as ``{class position: (ls, quartet indices within ls)}``.
    Returns None if some quartet has no covering class."""
    out: dict[int, list] = {}
    for ls, (uniq, inverse, _) in population.unique.items():
        cands = [(float(np.prod(ks)), i, np.asarray(ks)) for i, (cls_ls, ks) in enumerate(shapes) if cls_ls == ls]
        if not cands:
            return None
        cands.sort(key=lambda t: (t[0], t[1]))
        target = np.empty(len(uniq), dtype=np.int64)
        for u_i, u in enumerate(uniq):
            t = next((i for _, i, ks in cands if np.all(u <= ks)), None)
            if t is None:
                return None
            target[u_i] = t
        per_quartet = target[inverse]
        order = np.argsort(per_quartet, kind="stable")
        bounds = np.searchsorted(per_quartet[order], np.unique(target))
        for t, chunk in zip(np.unique(target), np.split(order, bounds[1:])):
            out.setdefault(int(t), []).append(chunk)
    return {i: (shapes[i][0], np.sort(np.concatenate(v))) for i, v in out.items()}


def padded_quartet_count(n: int, ls, ks) -> int:
    """Padded length of a class list holding ``n`` quartets: :func:`size_bucket` of n
    when it fits in one chunk, else a multiple of the chunk length with the number of
    chunks rounded by :func:`size_bucket` (at most 25% padding either way)."""
    chunk = class_chunk(tuple(ls), tuple(ks))
    if n <= chunk:
        return min(size_bucket(max(1, n)), chunk)
    return size_bucket(-(-n // chunk)) * chunk


def divisor_chunk(nq: int, target: int) -> int:
    """The largest divisor of ``nq`` not above ``target`` (at least 1): a chunk length
    that cuts a list of ``nq`` quartets evenly."""
    target = max(1, min(nq, target))
    for c in range(target, 0, -1):
        if nq % c == 0:
            return c
    return 1


class QuartetList(eqx.Module):
    """One class's quartets of one molecule (arrays; padded to the class's ``nq``).

    Attributes:
        rows: ``[4, nq]`` group rows of the four shells (padding: 0).
        weights: ``[nq]`` degeneracy weight 0.5^([a==b] + [c==d] + [ab==cd]) (a quartet
            standing for 8, 4, 2 or 1 permutations of the full tensor), 0 for padding.
        pieces: ``[4, nq]`` contraction piece of each shell (:class:`QuartetPopulation`;
            0 for whole contractions and padding).
    """

    rows: Int[Array, "4 nq"]
    weights: Float[Array, " nq"]
    pieces: Int[Array, "4 nq"]


def quartet_lists(population: QuartetPopulation, classes: tuple[QuartetClass, ...]) -> tuple[QuartetList, ...]:
    """A molecule's padded :class:`QuartetList` per class (host numpy). Raises
    ``ValueError`` if the classes do not cover its quartets or are too short."""
    assigned = assign_classes(population, [(c.ls, c.ks) for c in classes])
    if assigned is None:
        raise InputError("quartet classes do not cover this molecule's quartets")
    out = []
    for i, cls in enumerate(classes):
        rows = np.zeros((4, cls.nq), dtype=np.int32)
        pieces = np.zeros((4, cls.nq), dtype=np.int32)
        weights = np.zeros(cls.nq)
        if i in assigned:
            ls, q = assigned[i]
            _, r, nsame, piece = population.classes[ls]
            if q.size > cls.nq:
                raise InputError(f"quartet class {cls.ls}/{cls.ks} holds {cls.nq} quartets, needs {q.size}")
            rows[:, :q.size] = r[:, q]
            pieces[:, :q.size] = piece[:, q]
            weights[:q.size] = 0.5 ** nsame[q]
        out.append(QuartetList(rows, weights, pieces))
    return tuple(out)


def class_counts(population: QuartetPopulation, shapes) -> list[int] | None:
    """Quartets of ``population`` per class ``(ls, ks)`` in ``shapes`` (None if not covered)."""
    assigned = assign_classes(population, shapes)
    if assigned is None:
        return None
    return [int(assigned[i][1].size) if i in assigned else 0 for i in range(len(shapes))]


# --------------------------------------------------------------------------------------
# Device: integral blocks and J/K
# --------------------------------------------------------------------------------------


def class_blocks(cls: QuartetClass, shape: BasisShape, data, quartets: QuartetList,
                 chunk: int | None = None, single: bool = False) -> Float[Array, "nq da db dc dd"]:
    """ERI blocks [nq, da, db, dc, dd] (Hartree) of one quartet class.

    ``data`` is :func:`mess.basis.shells.shell_data`; ``quartets`` the class's list. The
    quartets are evaluated in chunks of ``chunk`` (default :meth:`QuartetClass.chunk_for`)
    run sequentially (``lax.map``) to bound memory; each chunk is rematerialised
    (``jax.checkpoint``) when differentiated, so a pullback stores only row indices,
    not every primitive quartet's Hermite intermediates. Padding quartets give finite
    blocks (they are weighted 0 in J/K). ``single``: blocks evaluated and returned in
    float32 from float64 ``data`` (:func:`_kernel`)."""
    gdata, rows = [], []
    for k, l in enumerate(cls.ls):
        e, c, x = data[shape.index(l)]
        (e, c, x), m = _piece_data(e, c, x, cls.ks[k])
        gdata.append((e, c, x))
        rows.append(jnp.asarray(quartets.rows)[k] * m + jnp.asarray(quartets.pieces)[k])
    return _blocks_of_rows(cls, shape.cart, gdata, jnp.stack(rows), chunk, single)


def _piece_data(e: Float[Array, "n K"], c: Float[Array, "n K"], x: Float[Array, "n 3"], k: int):
    """Shell data of one group as contraction pieces for a class position with ``k``
    primitives: when the group's contractions are longer than
    :data:`PIECE_PRIMITIVES` and ``k`` is not, each shell becomes ``m`` consecutive
    rows of pieces (row ``m r + j``: piece ``j`` of shell ``r``; missing primitives have
    coefficient 0). Returns ``((exponents, coefficients, centres), m)``, ``m = 1`` when
    the data stay whole."""
    kmax = e.shape[-1]
    if kmax <= PIECE_PRIMITIVES or k > PIECE_PRIMITIVES:
        return (e, c, x), 1
    m = int(contraction_pieces(kmax))
    pad = m * PIECE_PRIMITIVES - kmax
    widths = [(0, 0)] * (e.ndim - 1) + [(0, pad)]
    e = jnp.pad(e, widths, constant_values=1.0).reshape(e.shape[:-1] + (m, PIECE_PRIMITIVES))
    c = jnp.pad(c, widths).reshape(c.shape[:-1] + (m, PIECE_PRIMITIVES))
    x = jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (m, 3))
    lead = e.shape[:-3]
    n = e.shape[-3] * m
    return (e.reshape(lead + (n, PIECE_PRIMITIVES)), c.reshape(lead + (n, PIECE_PRIMITIVES)),
            x.reshape(lead + (n, 3))), m


def class_blocks_batch(cls: QuartetClass, shape: BasisShape, data, quartets: QuartetList,
                       chunk: int | None = None, single: bool = False) -> Float[Array, "batch nq da db dc dd"]:
    """:func:`class_blocks` of a batch of molecules of one signature: ``data`` and
    ``quartets`` carry a leading batch axis (``quartets.rows`` [batch, 4, nq]).

    The batch's quartets are evaluated as one list of batch * nq quartets (each row
    offset into the flattened shell data of its molecule), so the chunks keep their
    full length; the engine used to ``jax.vmap`` :func:`class_blocks` with every chunk
    cut by the batch size (for 8 STO-3G molecules, 32 quartets per molecule and step
    instead of 256: short vectors along the kernel's quartet axis)."""
    rows = jnp.asarray(quartets.rows)
    pieces = jnp.asarray(quartets.pieces)
    b, _, nq = rows.shape
    gdata, flat_rows = [], []
    for k, l in enumerate(cls.ls):
        (e, c, x), m = _piece_data(*data[shape.index(l)], cls.ks[k])  # [batch, n, K], [batch, n, K], [batch, n, 3]
        n = e.shape[1]
        gdata.append((e.reshape((b * n,) + e.shape[2:]), c.reshape((b * n,) + c.shape[2:]), x.reshape(b * n, 3)))
        flat_rows.append((rows[:, k, :] * m + pieces[:, k, :]
                          + n * jnp.arange(b, dtype=rows.dtype)[:, None]).reshape(b * nq))
    live = jnp.asarray(quartets.weights).reshape(b * nq) > 0
    chunk = cls.chunk_for(b) if chunk is None else chunk
    out = _live_blocks(cls, shape.cart, chunk, single, gdata, jnp.stack(flat_rows), live)
    return out.reshape((b, nq) + out.shape[1:])


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _live_blocks(cls: QuartetClass, cart: bool, chunk: int, single: bool, gdata, rows: Int[Array, "4 nq"],
                 live: Bool[Array, " nq"]) -> Array:
    """Blocks of the quartets ``rows`` that are ``live`` (weight > 0), zero for the
    others, evaluating only the chunks that hold live quartets.

    A batch's list pads every molecule to the signature's quartet count: for eight
    9-heavy-atom molecules at B3LYP/STO-3G, 1.55 times the real quartets (a molecule
    with fewer hydrogens has under a third of the bucket's (ss|ss) quartets). The live
    quartets are moved to the front of the list and a loop with a traced trip count
    runs their chunks only; shapes stay those of the signature, so one compiled
    program still serves every batch of the bucket.

    Derivatives are those of :func:`_blocks_of_rows` on the whole list (the loop with
    a traced trip count cannot be transposed), masked the same way."""
    nq = rows.shape[1]
    if nq % chunk:
        raise InputError(f"quartet list of length {nq} is not a multiple of the chunk {chunk}")
    termwise = cls.termwise(_batch_of(cls, nq))
    gdata = [(e[:, :k], c[:, :k], x) for (e, c, x), k in zip(gdata, cls.ks)]
    (src,) = jnp.nonzero(live, size=nq, fill_value=0)  # live quartets first, in list order
    front = rows[:, src]
    n_live = jnp.sum(live)

    def one_chunk(i, out):
        r = jax.lax.dynamic_slice_in_dim(front, i * chunk, chunk, axis=1)
        args = []
        for k in range(4):
            e, c, x = gdata[k]
            args += [e[r[k]], c[r[k]], x[r[k]]]
        return jax.lax.dynamic_update_index_in_dim(out, _quartet_kernel(cls.ls, cart, single, *args,
                                                                        termwise=termwise), i, 0)

    dims = tuple(shell_size(l, cart) for l in cls.ls)
    dtype = jnp.float32 if single else jnp.float64
    out = jnp.zeros((nq // chunk, chunk) + dims, dtype)
    out = jax.lax.fori_loop(0, (n_live + chunk - 1) // chunk, one_chunk, out).reshape((nq,) + dims)
    dest = jnp.clip(jnp.cumsum(live) - 1, 0, nq - 1)  # position of each live quartet at the front
    return jnp.where(live.reshape((nq,) + (1,) * 4), out[dest], 0.0).astype(dtype)


@_live_blocks.defjvp
def _live_blocks_jvp(cls, cart, chunk, single, primals, tangents):
    gdata, rows, live = primals
    mask = live.reshape(live.shape + (1,) * 4)
    out, tan = jax.jvp(lambda g: _blocks_of_rows(cls, cart, g, rows, chunk, single), (gdata,), (tangents[0],))
    return jnp.where(mask, out, 0.0).astype(out.dtype), jnp.where(mask, tan, 0.0).astype(tan.dtype)


def _batch_of(cls: QuartetClass, n: int) -> int:
    """Molecules in a list of ``n`` quartets of class ``cls`` (each padded to ``nq``)."""
    return max(1, n // cls.nq)


def _blocks_of_rows(cls: QuartetClass, cart: bool, gdata, rows: Int[Array, "4 nq"], chunk: int | None,
                    single: bool = False):
    """Blocks of the quartets ``rows`` (rows into the per-position shell data
    ``gdata``: four (exponents, coefficients, centres)), in chunks (``lax.map``)."""
    ls, ks = cls.ls, cls.ks
    nq = rows.shape[1]
    termwise = cls.termwise(_batch_of(cls, nq))
    chunk = cls.chunk_for(_batch_of(cls, nq)) if chunk is None else chunk
    if nq % chunk:
        raise InputError(f"quartet list of length {nq} is not a multiple of the chunk {chunk}")
    gdata = [(e[:, :k], c[:, :k], x) for (e, c, x), k in zip(gdata, ks)]
    rows = rows.reshape(4, nq // chunk, chunk).transpose(1, 0, 2)

    def one_chunk(r):
        args = []
        for k in range(4):
            e, c, x = gdata[k]
            args += [e[r[k]], c[r[k]], x[r[k]]]
        return _quartet_kernel(ls, cart, single, *args, termwise=termwise)

    out = jax.lax.map(jax.checkpoint(one_chunk), rows)
    return out.reshape((nq,) + out.shape[2:])


def eri_blocks(shape: BasisShape, classes: tuple[QuartetClass, ...], groups: tuple[ShellGroup, ...],
               positions: Float[Array, "natom 3"], quartets: tuple[QuartetList, ...]) -> tuple[Array, ...]:
    """ERI blocks of every class, each [nq, da, db, dc, dd] (Hartree)."""
    data = shell_data(shape, groups, positions)
    return tuple(class_blocks(c, shape, data, q) for c, q in zip(classes, quartets))


def ao_indices(shape: BasisShape, l: int, rows: Int[Array, " nq"]) -> Int[Array, "nq size"]:
    """Engine AO indices [nq, size] of the functions of the shells at group ``rows``."""
    base = shape.offsets[shape.index(l)]
    size = shape.size(l)
    return base + rows[:, None] * size + jnp.arange(size, dtype=rows.dtype)


def get_jk(shape: BasisShape, classes: tuple[QuartetClass, ...], quartets: tuple[QuartetList, ...],
           blocks: tuple[Array, ...], dm: Float[Array, "... nao nao"], with_j: bool = True,
           with_k: bool = True) -> tuple[Array, Array]:
    """Coulomb J_{mn} = sum_{ls} (mn|ls) D_{ls} and exchange K_{mn} = sum_{ls} (ml|ns) D_{ls}.

    ``dm`` holds one or more symmetric density matrices [..., nao, nao]; J and K have
    the same shape (zeros where not requested). Each unique block contributes through
    all eight permutations, weighted by its degeneracy weight (0 for padding), and
    J = J' + J'^T, K = K' + K'^T.
    """
    jp = jnp.zeros_like(dm)
    kp = jnp.zeros_like(dm)
    for cls, q, blk in zip(classes, quartets, blocks):
        rows = jnp.asarray(q.rows)
        ia, ib, ic, id_ = (ao_indices(shape, cls.ls[k], rows[k]) for k in range(4))
        scale = jnp.asarray(q.weights, dm.dtype)[:, None, None]

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




def pair_count(nao: int) -> int:
    """Number of unordered AO pairs ``{i, j}``: nao (nao + 1) / 2."""
    return nao * (nao + 1) // 2


def pair_index(i: Int[Array, "..."], j: Int[Array, "..."]) -> Int[Array, "..."]:
    """Packed index of the unordered AO pair ``{i, j}``: ``hi (hi + 1) / 2 + lo`` with
    ``hi = max(i, j)``, ``lo = min(i, j)`` (the order of ``numpy.tril_indices``).
    Written with operators only, so that it serves NumPy arrays on the host and JAX
    arrays in a traced program alike."""
    spread = abs(i - j)
    hi = (i + j + spread) // 2
    lo = (i + j - spread) // 2
    return hi * (hi + 1) // 2 + lo


def _pair_multiplicity(nao: int) -> np.ndarray:
    """[npair] ordered pairs per unordered pair: 1 for ``{i, i}``, 2 otherwise."""
    i, j = np.tril_indices(nao)
    return np.where(i == j, 1.0, 2.0)


def _pair_table(nao: int) -> np.ndarray:
    """[nao, nao] packed pair index of ``(i, j)`` (:func:`pair_index` on the host)."""
    a = np.arange(nao)
    return pair_index(a[:, None], a[None, :])


def coulomb_pair_matrix(shape: BasisShape, classes: tuple[QuartetClass, ...], quartets: tuple[QuartetList, ...],
                        blocks: tuple[Array, ...]) -> Float[Array, "npair npair"]:
    """The Coulomb matrix over unordered AO pairs, ``M[{i,j}, {k,l}] = (ij|kl)``
    (Hartree; symmetric), from the unique blocks. Differentiable in the blocks.

    Each block element is added at ``(pair(a, b), pair(c, d))`` and at the bra-ket
    swapped ``(pair(c, d), pair(a, b))`` with four times its degeneracy weight (the
    four placements of a quartet that keep its bra and ket land on the same pair
    entry), divided by ``m_p m_q``, the numbers of ordered pairs of the two unordered
    ones. Every element then carries total weight one, including the pieces of a
    pieced quartet (which sum) and padding (weight 0, dropped). Two placements of
    the unique values instead of the eight of a dense ``nao^4`` tensor, a quarter of
    its memory, and no transposed copy (on a CPU, each large temporary costs its page
    faults on every call)."""
    n = shape.nao
    npair = pair_count(n)
    dtype = blocks[0].dtype if blocks else jnp.float64
    mult = jnp.asarray(_pair_multiplicity(n), dtype)
    h = jnp.zeros((npair * npair,), dtype)
    for cls, q, blk in zip(classes, quartets, blocks):
        rows = jnp.asarray(q.rows)
        ia, ib, ic, id_ = (ao_indices(shape, cls.ls[k], rows[k]) for k in range(4))
        bra = pair_index(ia[:, :, None], ib[:, None, :])
        ket = pair_index(ic[:, :, None], id_[:, None, :])
        weight = jnp.asarray(q.weights, blk.dtype).reshape((-1, 1, 1, 1, 1))
        bra, ket = bra[:, :, :, None, None], ket[:, None, None, :, :]
        val = (4.0 * weight * blk) / (mult[bra] * mult[ket])
        drop = jnp.where(weight > 0, 0, npair * npair)  # padding: dropped
        flat = jnp.concatenate([(bra * npair + ket + drop).reshape(-1), (ket * npair + bra + drop).reshape(-1)])
        h = h.at[flat].add(jnp.concatenate([val.reshape(-1), val.reshape(-1)]), mode="drop")
    return h.reshape(npair, npair)


def exchange_pair_matrix(coulomb: Float[Array, "npair npair"], nao: int) -> Float[Array, "npair npair"]:
    """The exchange matrix over unordered AO pairs,
    ``X[{i,k}, {j,l}] = ((ij|kl) + (il|kj)) / 2`` (Hartree; symmetric), gathered
    from :func:`coulomb_pair_matrix`. With it ``K[i,k] = sum_{j<=l} X[{i,k},{j,l}]
    m_{jl} D[j,l]`` for a symmetric ``D`` (``m``: 1 on the diagonal, 2 off it),
    because ``(ij|kl) D[j,l] + (il|kj) D[l,j]`` sums the two orders of ``{j, l}``."""
    i_np, k_np = np.tril_indices(nao)
    i, k = jnp.asarray(i_np)[:, None], jnp.asarray(k_np)[:, None]
    j, l = jnp.asarray(i_np)[None, :], jnp.asarray(k_np)[None, :]
    npair = pair_count(nao)
    flat = coulomb.reshape(-1)
    return 0.5 * (flat[pair_index(i, j) * npair + pair_index(k, l)] + flat[pair_index(i, l) * npair + pair_index(k, j)])


def get_jk_pairs(coulomb: Float[Array, "npair npair"], exchange: Float[Array, "npair npair"] | None,
                 dm: Float[Array, "... n n"], with_k: bool = True) -> tuple[Array, Array]:
    """J and K of symmetric densities ``dm`` [..., n, n] from the pair matrices of
    :func:`coulomb_pair_matrix` and :func:`exchange_pair_matrix` (Hartree): one
    matrix-vector product each over the ``n (n + 1) / 2`` pairs of the lower triangle
    of ``dm``, weighted by the pair multiplicity. Both matrices are symmetric, so
    ``d M`` needs no transposed operand (on XLA's CPU backend ``d @ M.T`` copies the
    whole matrix on every call)."""
    n = dm.shape[-1]
    i, j = np.tril_indices(n)
    v = dm[..., i, j] * jnp.asarray(_pair_multiplicity(n), dm.dtype)
    unpack = _pair_table(n)
    jmat = (v @ coulomb)[..., unpack]
    if not with_k:
        return jmat, jnp.zeros_like(dm)
    return jmat, (v @ exchange)[..., unpack]


def eri_tensor(shape: BasisShape, classes: tuple[QuartetClass, ...], quartets: tuple[QuartetList, ...],
               blocks: tuple[Array, ...]) -> Float[Array, "nao nao nao nao"]:
    """The full [nao]^4 ERI tensor (engine AO order) from the unique blocks, for small
    systems (the engine's dense J/K) and tests. Padding quartets are skipped by their
    zero weight. Differentiable in the blocks.

    A class that may hold contraction pieces (:func:`_piece_data`) is added, each of
    the 8 placements times the degeneracy weight, so that the pieces of a quartet sum
    (a placement reached ``m`` times has weight ``1/m``); other classes are set."""
    n = shape.nao
    out = jnp.zeros((n, n, n, n), dtype=blocks[0].dtype if blocks else jnp.float64)
    for cls, q, blk in zip(classes, quartets, blocks):
        rows = jnp.asarray(q.rows)
        ia, ib, ic, id_ = (ao_indices(shape, cls.ls[k], rows[k]) for k in range(4))
        ia = jnp.where((jnp.asarray(q.weights) > 0)[:, None], ia, n)  # padding: dropped
        pieced = any(k <= PIECE_PRIMITIVES < shape.group(l).nprim for l, k in zip(cls.ls, cls.ks))
        weight = jnp.asarray(q.weights, blk.dtype).reshape((-1, 1, 1, 1, 1))
        for (w, x, y, z), perm in [((ia, ib, ic, id_), (0, 1, 2, 3)), ((ib, ia, ic, id_), (1, 0, 2, 3)),
                                   ((ia, ib, id_, ic), (0, 1, 3, 2)), ((ib, ia, id_, ic), (1, 0, 3, 2)),
                                   ((ic, id_, ia, ib), (2, 3, 0, 1)), ((id_, ic, ia, ib), (3, 2, 0, 1)),
                                   ((ic, id_, ib, ia), (2, 3, 1, 0)), ((id_, ic, ib, ia), (3, 2, 1, 0))]:
            val = jnp.transpose(blk, (0,) + tuple(p + 1 for p in perm))
            idx = (w[:, :, None, None, None], x[:, None, :, None, None], y[:, None, None, :, None],
                   z[:, None, None, None, :])
            if pieced:
                out = out.at[idx].add(weight * val, mode="drop")
            else:
                out = out.at[idx].set(val, mode="drop")
    return out
