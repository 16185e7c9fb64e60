"""How much memory a calculation needs, known before any of it is allocated.

mess keeps every screened two-electron integral in memory (no direct SCF yet), so a
molecule's memory grows with the number of significant shell quartets. That number
is counted here from the Schwarz bounds of the shell pairs, without listing the
quartets: for two pair classes with bounds ``q_P`` and ``q_Q`` the quartets kept are
the pairs with ``q_P q_Q >= threshold`` (Haser & Ahlrichs, J. Comput. Chem. 10, 104
(1989)), counted with one sort and one binary search per class pair. The bytes per
item follow the same model that sizes batches (:func:`item_bytes`), so the estimate a
user sees and the batch sizes the engine picks are one formula.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from mess.basis.shells import shell_size
from mess.errors import InputError

#: Host bytes per listed quartet: primitive counts [4] and group rows [4] (int64), the
#: coincidence count, and the class lists built from them.
HOST_BYTES_PER_QUARTET = 160

#: Fraction of the memory limit one molecule may claim (the rest: Python, XLA's
#: buffers and temporaries, the compiled programs).
USABLE_FRACTION = 0.8


def item_bytes(eri_values: float, nao: int, npts: int, dense_jk: bool, gga: bool) -> float:
    """Device bytes one molecule (one batch item) holds during the SCF: the stored ERI
    values, the AO-pair Coulomb and exchange matrices and their temporaries where J/K
    use them (four [npair, npair] arrays, npair = nao (nao + 1) / 2), AO values on
    the grid (with gradients for a GGA), the SCF's matrices (DIIS history, Fock,
    density, orbitals) and the grid tables. All float64."""
    nd = 4 if gga else 1
    return 8.0 * (eri_values + (4.0 * (nao * (nao + 1) / 2.0) ** 2 if dense_jk else 0.0) + nd * npts * nao
                  + 60.0 * nao * nao + 64.0 * npts)


def machine_memory() -> tuple[int, str]:
    """``(bytes, where)``: the accelerator's memory limit, or the host's available
    memory (``MemAvailable`` in ``/proc/meminfo``); 8 GiB where neither is known."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        limit = (dev.memory_stats() or {}).get("bytes_limit")
        if limit:
            return int(limit), f"{dev.platform} memory"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    return 8 << 30, "assumed memory"


def count_quartets(pairs, bounds, threshold: float, cart: bool, pieces=None) -> tuple[int, int, int]:
    """``(quartets, integral values, largest pair-class product)`` that
    :func:`~mess.integrals.two_electron.quartet_population` would list for the pair
    classes ``pairs`` (:func:`~mess.integrals.two_electron.pair_list`) with Schwarz
    ``bounds`` (``None``: no screening). ``pieces``: for a pieced population, the
    contraction-piece combinations of each pair
    (:func:`~mess.integrals.two_electron.pair_pieces`); a quartet then counts as the
    product of its two pairs' entries. The last number is the size of the biggest
    block of candidate quartets the listing looks at."""
    nq = nvals = peak = 0
    weights = [np.ones(len(p[2]), np.int64) for p in pairs] if pieces is None else \
        [np.asarray(w, np.int64) for w in pieces]
    suffix = []  # per pair class: bounds in ascending order, and the weight at or above each
    if bounds is not None:
        for b, w in zip(bounds, weights):
            order = np.argsort(b, kind="stable")
            suffix.append((b[order], np.concatenate([np.cumsum(w[order][::-1])[::-1], [0]])))
    for u, (la, lb, ia, *_rest) in enumerate(pairs):
        for v in range(u + 1):
            lc, ld, ic = pairs[v][:3]
            peak = max(peak, len(ia) * len(ic))
            wu, wv = weights[u], weights[v]
            if bounds is None or threshold <= 0:
                if u == v:
                    n = (int(wu.sum()) ** 2 + int((wu * wu).sum())) // 2
                else:
                    n = int(wu.sum()) * int(wv.sum())
            else:
                qv, above = suffix[v]
                need = threshold / np.maximum(bounds[u], 1e-300)
                ordered = int((wu * above[np.searchsorted(qv, need, side="left")]).sum())
                if u == v:
                    diag = int((wu * wu)[bounds[u] * bounds[u] >= threshold].sum())
                    n = (ordered + diag) // 2
                else:
                    n = ordered
            nq += n
            size = shell_size(la, cart) * shell_size(lb, cart) * shell_size(lc, cart) * shell_size(ld, cart)
            nvals += n * size
    return nq, nvals, peak


@dataclasses.dataclass(frozen=True)
class SizeEstimate:
    """Memory one molecule needs (bytes) and the sizes that decide it.

    Attributes:
        natom, nao, npts: atoms, atomic orbitals, grid points (0 for HF).
        quartets, eri_values: screened unique shell quartets and the integral values
            they hold.
        device_bytes: :func:`item_bytes` for this molecule (no padding).
        host_bytes: the host's quartet lists, and the largest block of candidate
            quartets looked at while listing them.
        naux: auxiliary functions under density fitting (no quartets then), else 0.
    """

    natom: int
    nao: int
    npts: int
    quartets: int
    eri_values: int
    device_bytes: float
    host_bytes: float
    naux: int = 0

    def describe(self) -> str:
        grid = f", {self.npts} grid points" if self.npts else ""
        if self.naux:
            return (f"{self.natom} atoms, {self.nao} AOs{grid}, {self.naux} auxiliary functions (density "
                    f"fitting): about {gib(self.device_bytes)} for integrals and SCF")
        return (f"{self.natom} atoms, {self.nao} AOs{grid}, {self.quartets:.3g} ERI quartets: "
                f"about {gib(self.device_bytes)} for integrals and SCF, {gib(self.host_bytes)} for quartet lists")


def gib(n: float) -> str:
    """``n`` bytes as a short GiB (or MiB) figure."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**29 else f"{n / 2**20:.0f} MiB"


def size_estimate(natom: int, layout, pairs, bounds, threshold: float, npts: int, dense_jk_nao: int,
                  dense: str, gga: bool, pieces=None) -> SizeEstimate:
    """The :class:`SizeEstimate` of a molecule with basis ``layout``, shell ``pairs``
    and Schwarz ``bounds`` (``None``: every quartet kept); ``dense`` is the method's
    J/K choice (``"auto"``: dense up to ``dense_jk_nao`` AOs); ``pieces`` as in
    :func:`count_quartets`."""
    nq, nvals, peak = count_quartets(pairs, bounds, threshold, layout.cart, pieces)
    nao = int(layout.nao)
    dense_jk = dense == "dense" or (dense == "auto" and nao <= dense_jk_nao)
    device = item_bytes(nvals, nao, npts, dense_jk, gga)
    host = HOST_BYTES_PER_QUARTET * nq + 24.0 * min(peak, 1 << 22)
    return SizeEstimate(int(natom), nao, int(npts), int(nq), int(nvals), device, host)


#: naux nao^2-sized arrays alive at the peak of a density-fitted calculation: the
#: three-centre integrals and their scatter, the fitted factor, and the half-transformed
#: exchange intermediates; measured: propranolol/def2-SVP (371 AOs, 1809 auxiliary
#: functions) peaked at 13.8 GiB, about 7 such arrays, PySCF's run in the same process
#: included (benchmarks/density_fit.py).
DF_ARRAYS = 6


def df_values(naux: int, nao: int) -> int:
    """The values a density-fitted molecule holds at its peak, ``DF_ARRAYS naux nao^2``."""
    return DF_ARRAYS * int(naux) * int(nao) ** 2


def df_size_estimate(natom: int, nao: int, naux: int, npts: int, gga: bool) -> SizeEstimate:
    """The :class:`SizeEstimate` of a density-fitted molecule: :func:`df_values`
    stand for the ERIs, with no quartet lists on the host."""
    values = df_values(naux, nao)
    device = item_bytes(values, int(nao), npts, False, gga) + 8.0 * naux * naux
    return SizeEstimate(int(natom), int(nao), int(npts), 0, values, device, 0.0, int(naux))


def check_size(est: SizeEstimate, limit: int | None = None, basis: str = "") -> None:
    """Raise :class:`~mess.errors.InputError` when ``est`` does not fit in ``limit``
    bytes (default: :func:`machine_memory`), naming the sizes and what to change."""
    where = "the memory limit"
    if limit is None:
        limit, where = machine_memory()
    need = est.device_bytes + est.host_bytes
    if need > USABLE_FRACTION * limit:
        raise InputError(
            f"molecule too large for this machine: {est.natom} atoms, {est.nao} AOs"
            + (f" ({basis})" if basis else "")
            + f" need about {gib(need)} ("
            + (f"{est.naux} auxiliary functions, density fitting" if est.naux else
               f"{est.quartets:.3g} two-electron quartets kept in memory; density_fit=True needs less")
            + f") and {where} is {gib(limit)}; use a smaller basis or a smaller molecule")
