"""Bucket planning: which molecules share a signature (host side).

Every signature compiles its own programs, and every molecule padded to a larger
signature pays for the padding in every SCF cycle. The planner trades the two: for a
list of prepared molecules it chooses at most ``max_buckets`` signatures per method
and kind (restricted or not) that minimise the total padded work, with the padding
overhead reported.

Algorithm: molecules that fit a signature the caller already compiled go there when
the extra work is small: at most ``reuse_overhead`` of their own, or, for all such
molecules together, less than compiling a new bucket would cost (so a few small
molecules reuse a larger compiled signature rather than waiting for a compilation,
and repeated calls with similar molecules settle on the same signatures); the others are sorted by their own work and
cut into contiguous segments by dynamic programming, minimising
sum over segments of (size x padded work of the segment) under a cost model of the
engine's work (:meth:`~mess.engine.signature.Signature.cost`). QM1B sorted molecules
by size and cut the list into equal parts; the dynamic program chooses the cut points
(equal-count cuts are one of the partitions it considers), and a padded signature is
the element-wise maximum over a segment of every size (atoms, shells per angular
momentum, quartets per class, grid points), so molecules of similar size but
different composition are priced by what they really pad to. Each bucket beyond the
first is charged :data:`COMPILE_WORK` (its programs must compile), so a handful of
small molecules share one bucket while a large dataset is cut where padding costs
more than compiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mess.basis.shells import shell_size
from mess.engine.resources import df_values, item_bytes
from mess.engine.signature import Prepared, Signature, dense_jk, fits, round_size, signature_for
from mess.errors import InputError
from mess.integrals.two_electron import _work_per_primitive


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One signature and the input positions of the molecules padded to it."""

    signature: Signature
    members: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Buckets for a list of molecules, with the cost model's work.

    Attributes:
        buckets: the buckets (each molecule in exactly one).
        own_work: total work without padding (cost-model units).
        padded_work: total work padded to the buckets' signatures.
        baseline_work: padded work of QM1B's baseline (sorted by size, equal-count
            cuts into as many buckets), for comparison.
    """

    buckets: tuple[Bucket, ...]
    own_work: float
    padded_work: float
    baseline_work: float

    @property
    def overhead(self) -> float:
        """Padded work over unpadded work, minus 1."""
        return self.padded_work / self.own_work - 1.0 if self.own_work else 0.0

    @property
    def baseline_overhead(self) -> float:
        return self.baseline_work / self.own_work - 1.0 if self.own_work else 0.0

    @property
    def signatures(self) -> tuple[Signature, ...]:
        return tuple(b.signature for b in self.buckets)

    def report(self) -> str:
        """A human-readable summary: one line per bucket, and the padding overhead."""
        lines = [f"{len(self.buckets)} bucket(s), padding overhead {100 * self.overhead:.1f}% of the work "
                 f"(sorted equal-count baseline: {100 * self.baseline_overhead:.1f}%)"]
        for b in self.buckets:
            lines.append(f"  {len(b.members):5d} molecules: {b.signature.describe()}")
        return "\n".join(lines)


def _dims(p: Prepared) -> tuple[np.ndarray, dict]:
    """Size vector of a molecule for the planner's cost proxy: atoms, grid points,
    shells per l, and per angular-momentum quartet class its quartet count and work."""
    counts = p.layout.counts()
    per_ls: dict = {}
    for (ls, sig), n in p.counts.items():
        c, w = per_ls.get(ls, (0, 0.0))
        per_ls[ls] = (c + n, w + n * float(np.prod(sig)) * _work_per_primitive(ls))
    return counts, per_ls


class _Proxy:
    """Cheap padded-work estimate of a segment of molecules (element-wise maxima of
    their sizes, rounded as signatures are)."""

    def __init__(self, members: list[Prepared]):
        self.members = members
        method = members[0].method
        self.cart = method.cart
        f = method.functional
        self.nd = 4 if f.family == "gga" else 1
        self.kfactor = 6.0 if f.hyb != 0 else 2.0
        self.method = method
        ls_all = sorted({l for p in members for l in p.layout.counts()})
        cls_all = sorted({ls for p in members for (ls, _) in p.counts})
        self.ls_all, self.cls_all = ls_all, cls_all
        m = len(members)
        self.natom = np.array([p.natom for p in members], float)
        self.npts = np.array([p.npts for p in members], float)
        self.naux = np.array([0 if p.aux_layout is None else p.aux_layout.nao for p in members], float)
        self.nshell = np.zeros((m, len(ls_all)))
        self.nq = np.zeros((m, len(cls_all)))
        self.work = np.zeros((m, len(cls_all)))
        for i, p in enumerate(members):
            counts, per_ls = _dims(p)
            for j, l in enumerate(ls_all):
                self.nshell[i, j] = counts.get(l, (0, 0))[0]
            for j, ls in enumerate(cls_all):
                c, w = per_ls.get(ls, (0, 0.0))
                self.nq[i, j], self.work[i, j] = c, w
        self.size = np.array([shell_size(l, self.cart) for l in ls_all], float)
        self.values = np.array([float(np.prod([shell_size(l, self.cart) for l in ls])) for ls in cls_all])

    def cost(self, natom, npts, nshell, nq, work, naux=0.0, cycles: int = 15) -> float:
        rnd = np.vectorize(lambda x: float(round_size(int(x))) if x > 0 else 0.0, otypes=[float])
        natom, npts = float(round_size(int(natom))), (float(round_size(int(npts))) if npts else 0.0)
        nshell = rnd(nshell)
        grow = np.where(nq > 0, rnd(nq) / np.maximum(nq, 1), 1.0)
        nao = float(np.sum(nshell * self.size))
        eri = float(np.sum(work * grow))
        if self.method.density_fit:  # as signature._cost
            naux = float(round_size(int(naux)))
            eri = 30.0 * naux * nao * nao + naux ** 3 / 3.0 + naux * naux * nao * nao
            jk = 4.0 * naux * nao * nao + (4.0 * naux * nao ** 3 if self.kfactor > 2.0 else 0.0)
        elif dense_jk(self.method, int(nao)):
            jk = 2.0 * nao ** 4 * self.kfactor / 2.0
        else:
            jk = float(np.sum(rnd(nq) * self.values)) * self.kfactor * 20.0
        xc = 3.0 * self.nd * npts * nao * nao
        grid = npts * natom * natom * 30.0 + npts * nao * 20.0 * self.nd if npts else 0.0
        return eri + grid + cycles * (jk + xc + 10.0 * nao ** 3)

    def own(self, i: int) -> float:
        return self.cost(self.natom[i], self.npts[i], self.nshell[i], self.nq[i], self.work[i], self.naux[i])

    def segment(self, i: int, j: int) -> float:
        """Padded work per molecule of members[i:j]."""
        s = slice(i, j)
        return self.cost(self.natom[s].max(), self.npts[s].max(), self.nshell[s].max(0), self.nq[s].max(0),
                         self.work[s].max(0), self.naux[s].max())


def _segment_costs(proxy: _Proxy, order: np.ndarray) -> np.ndarray:
    """``seg[i, j]``: padded work of the molecules at positions i..j-1 of ``order``."""
    n = len(order)
    seg = np.full((n + 1, n + 1), np.inf)
    sub = _Proxy([proxy.members[i] for i in order])
    for j in range(1, n + 1):
        for i in range(j):
            seg[i, j] = (j - i) * sub.segment(i, j)
    return seg


def _partition(seg: np.ndarray, k: int) -> tuple[list[tuple[int, int]], float]:
    """Optimal cut into at most k contiguous segments (dynamic program over the segment
    costs ``seg``). Returns the segments and their total padded work."""
    n = seg.shape[0] - 1
    best = np.full((k + 1, n + 1), np.inf)
    arg = np.zeros((k + 1, n + 1), dtype=int)
    best[0, 0] = 0.0
    for b in range(1, k + 1):
        for j in range(1, n + 1):
            cand = best[b - 1, :j] + seg[:j, j]
            i = int(np.argmin(cand))
            best[b, j], arg[b, j] = cand[i], i
    b = int(np.argmin(best[1:, n])) + 1
    cuts, j = [], n
    while j > 0:
        i = arg[b, j]
        cuts.append((i, j))
        j, b = i, b - 1
    return cuts[::-1], float(best[1:, n].min())


#: Work (cost-model units) that one more bucket must save to pay for compiling its
#: programs. Calibrated on a 2-core CPU at QM1B's setting: a 9-heavy-atom molecule of
#: cost ~2e10 runs in ~3 s (~7e9 units/s) and a bucket's five programs compile in
#: ~30 s, i.e. ~2e11 units. (On a GPU the run is faster and compiling is not, so the
#: true charge is higher; this is a floor.)
COMPILE_WORK = 2e11

#: Largest number of molecules a dynamic program runs on directly; longer lists are
#: planned on evenly spaced representatives of the sorted list.
MAX_DP = 400


def plan_buckets(prepared: Sequence[Prepared], max_buckets: int = 4, known: Sequence[Signature] = (),
                 reuse_overhead: float = 0.5, compile_work: float = COMPILE_WORK) -> Plan:
    """Assign molecules to signatures (see the module docstring).

    Args:
        prepared: the molecules (:func:`mess.engine.signature.prepare`).
        max_buckets: most new signatures per method and kind.
        known: signatures already compiled (reused when a molecule fits and the extra
            work is at most ``reuse_overhead`` of its own, or at most ``compile_work``
            spread over the molecules that would share a new bucket).
        compile_work: work charged for each bucket beyond the first.
    """
    if max_buckets < 1:
        raise InputError(f"max_buckets must be >= 1, got {max_buckets}")
    groups: dict = {}
    for i, p in enumerate(prepared):
        groups.setdefault((p.method, p.restricted, p.population.pieced), []).append(i)
    buckets: list[Bucket] = []
    own_total = padded_total = base_total = 0.0
    for (method, restricted, pieced), idx in groups.items():
        members = [prepared[i] for i in idx]
        proxy = _Proxy(members)
        own = np.array([proxy.own(i) for i in range(len(members))])
        own_total += float(own.sum())
        # 1. reuse compiled signatures
        reused: dict[Signature, list[int]] = {}
        rest = []
        cands = [s for s in known if s.method == method and s.restricted == restricted and s.pieced == pieced]
        movers: dict[int, Signature] = {}  # fit a known signature, but with much padding
        for i, p in enumerate(members):
            own_i = p.cost()
            fitting = [s for s in cands if fits(p, s)]
            if not fitting:
                rest.append(i)
                continue
            best = min(fitting, key=lambda s: s.cost())
            if best.cost() - own_i <= reuse_overhead * own_i:
                reused.setdefault(best, []).append(i)
            else:
                movers[i] = best
        # the movers get new buckets only when that saves more than a compilation, or
        # when new buckets are compiled anyway (molecules that fit no known signature)
        extra = sum(movers[i].cost() - members[i].cost() for i in movers)
        if movers and not rest and extra <= compile_work:
            for i, sig in movers.items():
                reused.setdefault(sig, []).append(i)
        else:
            rest += list(movers)
        for sig, mem in reused.items():
            buckets.append(Bucket(sig, tuple(idx[i] for i in mem)))
            padded_total += len(mem) * sig.cost()
            base_total += len(mem) * sig.cost()
        if not rest:
            continue
        # 2. new signatures for the rest
        order = np.asarray(sorted(rest, key=lambda i: own[i]))
        if len(order) > MAX_DP:
            reps = order[np.linspace(0, len(order) - 1, MAX_DP).round().astype(int)]
        else:
            reps = order
        seg = _segment_costs(proxy, reps)
        results = [_partition(seg, k) for k in range(1, min(max_buckets, len(reps)) + 1)]
        scale = len(order) / len(reps)
        cuts = min(results, key=lambda r: r[1] * scale + (len(r[0]) - 1) * compile_work)[0]
        # map representative cuts back to the full sorted list
        bounds = [0]
        for _, j in cuts[:-1]:
            last = reps[j - 1]
            bounds.append(int(np.nonzero(order == last)[0][0]) + 1)
        bounds.append(len(order))
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg = [members[i] for i in order[a:b]]
            sig = signature_for(seg)
            buckets.append(Bucket(sig, tuple(idx[i] for i in order[a:b])))
            padded_total += (b - a) * sig.cost()
        # QM1B's baseline: sorted by atom count, equal-count cuts
        nb = len(cuts)
        by_size = sorted(rest, key=lambda i: (members[i].natom, own[i]))
        for part in np.array_split(np.asarray(by_size), nb):
            if len(part):
                base_total += len(part) * _Proxy([members[i] for i in part]).segment(0, len(part))
    return Plan(tuple(buckets), own_total, padded_total, base_total)


def batch_size_for(sig: Signature, n: int, memory: int, cap: int = 256) -> int:
    """A batch size (power of two) for ``n`` molecules of ``sig`` whose stored
    integrals, grid values and SCF buffers fit in ``memory`` bytes."""
    values = sum(c.nvalues(sig.method.cart) for c in sig.classes) + (df_values(sig.naux, sig.nao) if sig.density_fit else 0)
    per_item = item_bytes(values, sig.nao, sig.npts, sig.dense_jk, sig.method.functional.family == "gga")
    fit = max(1, int(memory // max(per_item, 1.0)))
    b = min(cap, fit, 1 << max(0, (n - 1).bit_length()))
    return 1 << (b.bit_length() - 1)

