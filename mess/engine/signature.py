"""Signatures: the ints and strings that fix every shape of a batch.

A :class:`Signature` is a frozen record, hashed by value, of the padded sizes of a
batch (atoms, shells per angular momentum, quartets per ERI class, grid points, the
MINAO basis) and of the method (basis, functional, restricted or not, grid level,
screening threshold, precision). It is the only thing the engine's compiled programs
are keyed on: two batches with equal signatures share every compiled program, however
different their molecules.

The host side of one molecule is a :class:`Prepared` record (:func:`prepare`): its
basis layout, its MINAO layout, its Schwarz-screened quartets at its geometry, and
its grid size. :func:`signature_for` pads a set of prepared molecules to one
signature; :func:`fits` tells whether a molecule fits an existing signature.
Sizes are rounded up to few distinct values (:func:`round_size`, at most 25%
padding), so that later batches of similar molecules land on signatures already
compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from mess.basis.shells import BasisLayout, BasisShape, GroupShape, shell_size
from mess.engine.guess import minao_layout
from mess.engine.resources import SizeEstimate, check_size, df_size_estimate, size_estimate
from mess.errors import InputError
from mess.grid import make_grid_plan
from mess.grid.plan import default_block_size
from mess.integrals.two_electron import (PIECE_PRIMITIVES, SCHWARZ_THRESHOLD, QuartetClass, QuartetPopulation,
                                         _work_per_primitive, choose_class_shapes, class_counts, padded_quartet_count,
                                         pair_list, pair_pieces, quartet_population, schwarz_bounds, size_bucket)
from mess.structure import Molecule

log = logging.getLogger("mess")

#: Precisions the engine offers: ``"float64"`` throughout, or ``"mixed"``: the
#: four-centre ERIs evaluated and stored in float32 (from float64 pair and quartet
#: geometry, :func:`mess.integrals.two_electron.class_blocks`), everything else
#: (one-electron integrals, density fitting, the grid and XC quadrature, J/K
#: accumulation, the SCF, energies and gradients) in float64. The error budget is
#: measured by ``benchmarks/precision.py`` (docs: performance).
PRECISIONS = ("float64", "mixed")
#: Largest (padded) AO count for which J and K come from dense Coulomb and exchange
#: matrices over AO pairs (two [npair, npair] matrices, npair = nao (nao + 1) / 2:
#: about nao^4 / 2 8 bytes per molecule, 2.7 GB at 160 AOs): matrix-vector products
#: instead of the gathers and scatter-adds of the block build, which XLA runs
#: serially on a CPU (7x faster J/K for a 54-AO molecule on two cores; uracil/def2-SVP
#: B3LYP, 132 AOs, 16.9 s warm against 22.0 s from the blocks).
DENSE_JK_NAO = 160


def round_size(n: int) -> int:
    """Padded size for a count: :func:`~mess.integrals.two_electron.size_bucket` (the
    next power of two up to 8, then m 2^k with m in 4..8; at most 25% padding)."""
    return size_bucket(max(1, int(n)))


@functools.lru_cache(maxsize=64)
def functional_of(xc: str):
    """:func:`mess.xc.parse_xc` of a name (memoised; raises ``ValueError`` for unknown
    or unsupported functionals)."""
    from mess.xc import parse_xc

    if not isinstance(xc, str) or not xc.strip():
        raise InputError(f"functional name must be a non-empty string, got {xc!r}")
    return parse_xc(xc.strip().lower())


@dataclasses.dataclass(frozen=True)
class Method:
    """What is computed, apart from the molecule (hashed by value).

    Attributes:
        basis: basis-set name (PySCF's library), ``cart``: Cartesian AOs.
        xc: ``"hf"`` or a functional name with PySCF's meaning (lower case).
        grid_level: PySCF grid level 0-9 (unused for HF).
        schwarz_threshold: Schwarz screening threshold on ERI bounds (0: none).
        precision: ``"float64"`` or ``"mixed"`` (:data:`PRECISIONS`).
        jk: how J and K are built: ``"dense"`` from dense AO-pair matrices, ``"blocks"``
            from the unique integral blocks, ``"auto"`` (dense up to
            :data:`DENSE_JK_NAO` padded AOs). Unused with density fitting.
        auxbasis: auxiliary basis of density fitting (J and K from three-centre
            integrals, :mod:`mess.integrals.three_center`), any name PySCF knows;
            ``None``: exact four-centre integrals.
    """

    basis: str
    xc: str = "hf"
    cart: bool = False
    grid_level: int = 3
    schwarz_threshold: float = SCHWARZ_THRESHOLD
    precision: str = "float64"
    jk: str = "auto"
    auxbasis: str | None = None

    def __post_init__(self):
        from mess.basis.shells import check_basis_name

        check_basis_name(self.basis)
        object.__setattr__(self, "xc", str(self.xc).strip().lower())
        functional_of(self.xc)
        if not isinstance(self.grid_level, (int, np.integer)) or isinstance(self.grid_level, bool) \
                or not 0 <= self.grid_level <= 9:
            raise InputError(f"grid level must be an integer from 0 to 9, got {self.grid_level!r}")
        if not self.schwarz_threshold >= 0:
            raise InputError(f"schwarz_threshold must be >= 0, got {self.schwarz_threshold!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be {' or '.join(map(repr, PRECISIONS))}, got {self.precision!r}")
        if self.jk not in ("auto", "dense", "blocks"):
            raise InputError(f"jk must be 'auto', 'dense' or 'blocks', got {self.jk!r}")
        if self.auxbasis is not None:
            check_basis_name(self.auxbasis)
            object.__setattr__(self, "auxbasis", self.auxbasis.strip())
        object.__setattr__(self, "grid_level", int(self.grid_level))
        object.__setattr__(self, "cart", bool(self.cart))
        object.__setattr__(self, "schwarz_threshold", float(self.schwarz_threshold))

    @property
    def functional(self):
        return functional_of(self.xc)

    @property
    def dft(self) -> bool:
        return self.functional.family != "hf"

    @property
    def density_fit(self) -> bool:
        """Whether J and K come from density fitting (:attr:`auxbasis` set)."""
        return self.auxbasis is not None


def default_auxbasis(basis: str) -> str:
    """PySCF's default auxiliary basis for orbital basis ``basis`` (``make_auxbasis``'s
    predefined JK-fitting set: ``def2-svp-jkfit`` etc. for the def2 family, which
    PySCF maps to Weigend's def2-universal-jkfit; ``cc-pvdz-jkfit`` for Pople's
    6-31G family; the basis's own ``-jkfit`` set for cc-pVXZ). Raises ``InputError``
    for a basis without one (PySCF would generate even-tempered functions; name a
    set with ``auxbasis=``, e.g. ``"def2-universal-jkfit"``)."""
    name = _predefined_auxbasis(str(basis).strip().lower())
    if name is None:
        raise InputError(f"no predefined auxiliary basis for {basis!r}: give auxbasis= explicitly "
                         "(e.g. 'def2-universal-jkfit')")
    return name


@functools.lru_cache(maxsize=64)
def _predefined_auxbasis(basis: str) -> str | None:
    from pyscf import gto
    from pyscf.df import addons

    alias = addons._format_basis_name(basis)
    if gto.basis._is_pople_basis(alias):
        alias = alias.split("g")[0] + "g"
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    name = addons.predefined_auxbasis(mol, alias, "HF", False)
    return name if isinstance(name, str) else None


def method_from_options(basis: str, xc: str, cart: bool, grid_level: int, options: dict,
                        schwarz_threshold: float = SCHWARZ_THRESHOLD) -> Method:
    """The :class:`Method` of user options (``schwarz_threshold``, ``jk``,
    ``density_fit``, ``auxbasis``, ``precision``; the rest is ignored here). ``auxbasis`` without
    ``density_fit=True`` is an error; ``density_fit=True`` alone takes
    :func:`default_auxbasis`."""
    fit = options.get("density_fit", False)
    if not isinstance(fit, (bool, np.bool_)):
        raise InputError(f"density_fit must be True or False, got {fit!r}")
    aux = options.get("auxbasis")
    if aux is not None and not fit:
        raise InputError("auxbasis is given but density_fit is not True; pass density_fit=True as well")
    if fit and aux is None:
        aux = default_auxbasis(basis)
    return Method(basis, xc, cart, grid_level, options.get("schwarz_threshold", schwarz_threshold),
                  precision=options.get("precision", "float64"), jk=options.get("jk", "auto"),
                  auxbasis=aux if fit else None)


@dataclasses.dataclass(frozen=True)
class Signature:
    """Every shape of a batch (see the module docstring). Hashed by value.

    Attributes:
        method: the :class:`Method`.
        restricted: closed-shell RHF/RKS (True) or UHF/UKS.
        natom: padded atom count (ghost atoms: charge 0, no basis functions).
        basis: padded :class:`~mess.basis.shells.BasisShape` (shells per l).
        classes: ERI quartet classes with their padded quartet counts.
        guess: padded shape of the MINAO basis.
        npts: padded grid points (0 for HF).
        aux: padded shape of the auxiliary basis (density fitting; no ERI classes
            then), or None.
        pieced: whether the quartets of long contractions are listed as quartets of
            contraction pieces (:func:`use_pieces`).
    """

    method: Method
    restricted: bool
    natom: int
    basis: BasisShape
    classes: tuple[QuartetClass, ...]
    guess: BasisShape
    npts: int
    aux: BasisShape | None = None
    pieced: bool = False

    @property
    def density_fit(self) -> bool:
        return self.aux is not None

    @property
    def naux(self) -> int:
        """Padded auxiliary functions (0 without density fitting)."""
        return 0 if self.aux is None else self.aux.nao

    @property
    def nao(self) -> int:
        return self.basis.nao

    @property
    def grid_block(self) -> int:
        """Points per block of the Becke partition."""
        return default_block_size(self.natom)

    @property
    def with_k(self) -> bool:
        """Whether exact exchange is built."""
        return self.method.functional.hyb != 0

    @property
    def dense_jk(self) -> bool:
        """Whether J and K come from a dense ERI tensor (small molecules, see
        :data:`DENSE_JK_NAO`, or as :attr:`Method.jk` says) rather than from the
        blocks directly."""
        return dense_jk(self.method, self.nao)

    def cost(self, cycles: int = 15) -> float:
        """Estimated floating-point work of one item of this signature (a model for
        bucketing, not a timing): ERIs once, then per cycle J/K, the XC quadrature and
        the eigensolver."""
        return _cost(self.method, self.basis, self.natom, self.npts,
                     [(c.ls, c.ks, c.nq) for c in self.classes], cycles, self.naux)

    def describe(self) -> str:
        kind = "R" if self.restricted else "U"
        groups = " ".join(f"l{g.l}:{g.nshell}x{g.nprim}" for g in self.basis.groups)
        nq = sum(c.nq for c in self.classes)
        grid = f", {self.npts} grid points" if self.npts else ""
        two = (f"{self.naux} {self.method.auxbasis} fitting functions" if self.density_fit
               else f"{len(self.classes)} ERI classes / {nq} quartets")
        return (f"{kind} {self.method.xc}/{self.method.basis}: {self.natom} atoms, {self.nao} AOs ({groups}), "
                f"{two}{grid}")


def dense_jk(method: Method, nao: int) -> bool:
    """Whether a signature of ``nao`` padded AOs builds J and K from a dense tensor
    (never with density fitting)."""
    if method.density_fit:
        return False
    return method.jk == "dense" or (method.jk == "auto" and nao <= DENSE_JK_NAO)


def use_pieces(method: Method, layout) -> bool:
    """Whether a molecule's quartets of contractions longer than
    :data:`~mess.integrals.two_electron.PIECE_PRIMITIVES` primitives are listed as
    quartets of contraction pieces: when it has such contractions and its J and K will
    come from the dense tensor (built once from the blocks). Pieces evaluate a quartet
    class without padding short contractions to the long ones (benzene/6-31G: 33 M
    primitive quartets in 12 classes instead of 62.6 M in 18), but store a block per
    piece quartet (1.6x as many), which direct J/K builds would read every cycle."""
    if method.density_fit or int(np.max(layout.nprim, initial=0)) <= PIECE_PRIMITIVES:
        return False
    return dense_jk(method, layout.nao)


def _cost(method: Method, shape: BasisShape, natom: int, npts: int, classes, cycles: int, naux: int = 0
          ) -> float:
    eri = sum(nq * float(np.prod(ks)) * _work_per_primitive(ls) for ls, ks, nq in classes)
    nao = shape.nao
    if method.density_fit:
        # three-centre integrals (about 30 flops per value) and the Cholesky solve
        # once; per cycle J (2 naux nao^2) and K (2 naux nao^3 with the occupied-free
        # contraction of :func:`mess.integrals.three_center.df_jk`)
        eri = 30.0 * naux * nao * nao + naux ** 3 / 3.0 + naux * naux * nao * nao
        jk = 4.0 * naux * nao * nao + (4.0 * naux * nao ** 3 if method.functional.hyb != 0 else 0.0)
    elif dense_jk(method, nao):
        jk = 2.0 * (nao * (nao + 1) / 2.0) ** 2 * (2.0 if method.functional.hyb != 0 else 1.0)
    else:
        nvals = sum(nq * float(np.prod([shell_size(l, shape.cart) for l in ls])) for ls, ks, nq in classes)
        jk = nvals * (6.0 if method.functional.hyb != 0 else 2.0) * 20.0  # gathers and scatter-adds
    nd = 4 if method.functional.family == "gga" else 1
    xc = 3.0 * nd * npts * nao * nao
    grid = npts * natom * natom * 30.0 + npts * nao * 20.0 * nd if npts else 0.0
    eig = 10.0 * nao ** 3
    return eri + grid + cycles * (jk + xc + eig)


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """Host data of one molecule for one :class:`Method` (at its geometry).

    Attributes:
        molecule: the molecule (positions in Bohr).
        method: the method.
        restricted: closed-shell (True) or unrestricted.
        layout: its basis layout; guess_layout, guess_occupation: MINAO basis and
            per-shell occupations.
        population: unique quartets screened at this geometry (none with density
            fitting).
        npts: grid points (0 for HF).
        size: the memory estimate checked before the quartets were listed.
        aux_layout: the auxiliary basis layout (density fitting), or None.
    """

    molecule: Molecule
    method: Method
    restricted: bool
    layout: BasisLayout
    guess_layout: BasisLayout
    guess_occupation: np.ndarray
    population: QuartetPopulation
    npts: int
    size: SizeEstimate | None = None
    aux_layout: BasisLayout | None = None

    @functools.cached_property
    def counts(self) -> dict:
        """Quartets per (angular momenta, primitive counts)."""
        return self.population.signature_counts()

    @property
    def natom(self) -> int:
        return self.molecule.natom

    def cost(self, cycles: int = 15) -> float:
        """:meth:`Signature.cost` of this molecule without padding."""
        classes = [(ls, sig, n) for (ls, sig), n in self.counts.items()]
        naux = 0 if self.aux_layout is None else self.aux_layout.nao
        return _cost(self.method, self.layout.shape(), self.natom, self.npts, classes, cycles, naux)


def prepare(molecule: Molecule, method: Method, restricted: bool | None = None,
            memory_limit: int | None = None) -> Prepared:
    """The host data of ``molecule`` for ``method``: basis and MINAO layouts, quartets
    screened at the molecule's geometry, grid size. Raises ``InputError`` naming the
    problem (basis lacking an element, restricted with unpaired electrons, a molecule
    whose :class:`~mess.engine.resources.SizeEstimate` exceeds ``memory_limit`` bytes,
    default the machine's memory, ...) before anything large is allocated."""
    if restricted is None:
        restricted = molecule.spin == 0
    if restricted and molecule.spin != 0:
        raise InputError(f"restricted calculation requested for spin {molecule.spin}; use restricted=False")
    layout, bounds, npts, size, aux_layout = _sizes(molecule, method)
    check_size(size, memory_limit, method.basis)
    log.log(logging.INFO if size.device_bytes + size.host_bytes > 2**30 else logging.DEBUG, "%s", size.describe())
    guess_layout, guess_occ = minao_layout(molecule.numbers, method.cart)
    if method.density_fit:
        population = QuartetPopulation({})
    else:
        population = quartet_population(layout, bounds, method.schwarz_threshold, use_pieces(method, layout))
    return Prepared(molecule, method, bool(restricted), layout, guess_layout, guess_occ, population, int(npts),
                    size, aux_layout)


def estimate(molecule: Molecule, method: Method) -> SizeEstimate:
    """The memory ``molecule`` needs with ``method`` (:class:`~mess.engine.resources.SizeEstimate`),
    from its basis, Schwarz bounds and grid size only: seconds even for molecules far
    too large to run."""
    return _sizes(molecule, method)[3]


def _sizes(molecule: Molecule, method: Method):
    from mess.basis.shells import basis_layout

    layout = basis_layout(molecule.numbers, method.basis, method.cart)
    npts = make_grid_plan(molecule.numbers, method.grid_level).npts if method.dft else 0
    gga = method.functional.family == "gga"
    if method.density_fit:
        aux_layout = basis_layout(molecule.numbers, method.auxbasis, method.cart)
        size = df_size_estimate(molecule.natom, layout.nao, aux_layout.nao, npts, gga)
        return layout, None, npts, size, aux_layout
    if method.schwarz_threshold > 0:
        bounds = schwarz_bounds(layout, molecule.numbers, np.asarray(molecule.positions))
    else:
        bounds = None
    pairs = pair_list(layout)
    pieces = pair_pieces(layout, pairs) if use_pieces(method, layout) else None
    size = size_estimate(molecule.natom, layout, pairs, bounds, method.schwarz_threshold, npts,
                         DENSE_JK_NAO, method.jk, gga, pieces)
    return layout, bounds, npts, size, None


def _padded_shape(layouts: list[BasisLayout], cart: bool, rounding: bool) -> BasisShape:
    counts: dict[int, tuple[int, int]] = {}
    for lay in layouts:
        for l, (n, k) in lay.counts().items():
            n0, k0 = counts.get(l, (0, 0))
            counts[l] = (max(n0, n), max(k0, k))
    rnd = round_size if rounding else int
    return BasisShape(cart, tuple(GroupShape(l, k, rnd(n)) for l, (n, k) in sorted(counts.items())))


def signature_for(members: list[Prepared], rounding: bool = True, split_work: float | None = None) -> Signature:
    """The smallest signature (sizes rounded by :func:`round_size` unless ``rounding``
    is False) that holds every molecule of ``members`` (same method and
    restricted/unrestricted kind). ``split_work``: the work a quartet sub-class of its
    own primitive counts must save to be compiled apart
    (:func:`~mess.integrals.two_electron.split_by_primitives`; default
    :data:`~mess.integrals.two_electron.SPLIT_WORK`, 0 keeps every primitive-count
    sub-class apart: least work per call, most programs to compile)."""
    if not members:
        raise InputError("a signature needs at least one molecule")
    method, restricted, pieced = members[0].method, members[0].restricted, members[0].population.pieced
    for p in members:
        if p.method != method or p.restricted != restricted or p.population.pieced != pieced:
            raise InputError("molecules of one signature must share the method, the restricted/unrestricted "
                             "kind and the contraction pieces")
    rnd = round_size if rounding else int
    shape = _padded_shape([p.layout for p in members], method.cart, rounding)
    guess = _padded_shape([p.guess_layout for p in members], method.cart, rounding)
    aux = _padded_shape([p.aux_layout for p in members], method.cart, rounding) if method.density_fit else None
    shapes = choose_class_shapes([p.counts for p in members], split_work)
    per_member = [class_counts(p.population, shapes) for p in members]
    classes = []
    for i, (ls, ks) in enumerate(shapes):
        n = max(c[i] for c in per_member)
        if n > 0:
            classes.append(QuartetClass(ls, ks, padded_quartet_count(n, ls, ks)))
    natom = rnd(max(p.natom for p in members))
    npts = rnd(max(p.npts for p in members)) if method.dft else 0
    return Signature(method, restricted, natom, shape, tuple(classes), guess, npts, aux, pieced)


def fits(p: Prepared, sig: Signature) -> bool:
    """Whether molecule ``p`` fits signature ``sig`` (same method and kind, every size
    within the padded sizes, every quartet covered by a class with room for it)."""
    if p.method != sig.method or p.restricted != sig.restricted or p.population.pieced != sig.pieced:
        return False
    if p.natom > sig.natom or p.npts > sig.npts:
        return False
    pairs = [(sig.basis, p.layout), (sig.guess, p.guess_layout)]
    if sig.density_fit:
        pairs.append((sig.aux, p.aux_layout))
    for shape, layout in pairs:
        try:
            layout.check_fits(shape)
        except ValueError:
            return False
    counts = class_counts(p.population, [(c.ls, c.ks) for c in sig.classes])
    return counts is not None and all(n <= c.nq for n, c in zip(counts, sig.classes))
