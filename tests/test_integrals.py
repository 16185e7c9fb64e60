"""Gaussian integrals against PySCF's libcint (mol.intor), derivatives against finite
differences, and vmap against per-geometry evaluation."""

from decimal import Decimal, getcontext

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mess.basis import ShellGroup
from mess.engine import Method, build, prepare, signature_for
from mess.integrals.boys import boys
from mess.integrals.one_electron import nuclear_repulsion, one_electron
from mess.integrals.two_electron import (coulomb_pair_matrix, eri_blocks, eri_tensor, exchange_pair_matrix, get_jk,
                                        get_jk_pairs, split_by_primitives)
from mess.structure import Molecule

from molecules import BENZENE, ETHANOL, H2S, HYDROGEN_FLUORIDE, WATER

ONE_E = [("overlap", "int1e_ovlp"), ("kinetic", "int1e_kin"), ("nuclear", "int1e_nuc"), ("dipole", "int1e_r")]


def _boys_reference(m: int, t: float) -> float:
    """F_m(T) = exp(-T) sum_k (2T)^k / ((2m+1)(2m+3)...(2m+2k+1)) in 50-digit decimals."""
    getcontext().prec = 50
    T = Decimal(repr(float(t)))
    term = Decimal(1) / (2 * m + 1)
    total = term
    k = 1
    while term > Decimal(10) ** -45 * total:
        term = term * 2 * T / (2 * m + 2 * k + 1)
        total += term
        k += 1
    return float(total * (-T).exp())


def test_boys_function_accuracy_and_derivative():
    ts = np.array([0.0, 1e-12, 1e-6, 0.01, 0.3, 1.0, 2.49, 7.7, 15.0, 29.99, 44.9, 45.0, 45.1, 60.0, 120.0])
    vals = np.asarray(boys(16, jnp.asarray(ts)))
    for i, t in enumerate(ts):
        for m in (0, 1, 4, 9, 16):
            ref = _boys_reference(m, t)
            assert abs(vals[i, m] - ref) <= 2e-14 * ref, (m, t, vals[i, m], ref)
    grad = jax.vmap(jax.grad(lambda t: boys(5, t)[3]))(jnp.asarray(ts))
    np.testing.assert_allclose(np.asarray(grad), -vals[:, 4], rtol=1e-14, atol=0)
    assert np.all(np.isfinite(np.asarray(jax.vmap(jax.grad(lambda t: boys(2, t)[0]))(jnp.zeros(3)))))


class Setup:
    """One molecule's basis and quartet lists, padded to its own signature (rounded
    sizes, so padding is exercised) unless ``rounding`` is False; ``ix`` maps PySCF's
    AO order to the engine's."""

    def __init__(self, xyz, basis, cart=False, threshold=1e-14, rounding=True, jk="auto"):
        self.molecule = Molecule.from_xyz(xyz) if isinstance(xyz, str) else xyz
        p = prepare(self.molecule, Method(basis, "hf", cart, schwarz_threshold=threshold, jk=jk))
        self.sig = signature_for([p], rounding=rounding)
        self.system = build(p, self.sig)
        self.shape, self.classes = self.sig.basis, self.sig.classes
        self.groups = jax.tree.map(jnp.asarray, self.system.shells)
        self.quartets = jax.tree.map(jnp.asarray, self.system.quartets)
        self.ix = p.layout.engine_index(self.shape)
        self.nao = p.layout.nao
        self.positions = jnp.asarray(self.system.positions)
        self.charges = jnp.asarray(self.system.charges)
        self._one = jax.jit(lambda p, g: one_electron(self.shape, g, p, self.charges))
        self._tensor = jax.jit(lambda b: eri_tensor(self.shape, self.classes, self.quartets, b))
        self._jk = jax.jit(lambda b, d: get_jk(self.shape, self.classes, self.quartets, b, d))
        self._pairs = jax.jit(lambda b: coulomb_pair_matrix(self.shape, self.classes, self.quartets, b))
        self._pair_jk = jax.jit(lambda c, d: get_jk_pairs(c, exchange_pair_matrix(c, self.shape.nao), d))

    def pyscf_order(self, a):
        a = np.asarray(a)
        return a[..., self.ix, :][..., self.ix]

    def one(self, positions=None, groups=None):
        return self._one(self.positions if positions is None else positions,
                         self.groups if groups is None else groups)

    def blocks(self, positions=None):
        return eri_blocks(self.shape, self.classes, self.groups, self.positions if positions is None else positions,
                          self.quartets)

    def tensor(self, blocks):
        full = self._tensor(blocks)
        return full[jnp.ix_(self.ix, self.ix, self.ix, self.ix)]

    def jk(self, blocks, dm_pyscf, pairs=False):
        n = self.shape.nao
        dm = jnp.zeros(dm_pyscf.shape[:-2] + (n, n)).at[..., self.ix[:, None], self.ix[None, :]].set(dm_pyscf)
        j, k = self._jk(blocks, dm) if not pairs else self._pair_jk(self._pairs(blocks), dm)
        return self.pyscf_order(j), self.pyscf_order(k)


def _one_electron_errors(xyz, basis, cart):
    st = Setup(xyz, basis, cart)
    mol = st.molecule.to_pyscf(basis, cart=cart)
    ints = st.one()
    sfx = "_cart" if cart else "_sph"
    return {k: np.abs(st.pyscf_order(ints[k]) - mol.intor(name + sfx)).max() for k, name in ONE_E}, mol


@pytest.mark.parametrize("xyz,basis", [(WATER, "sto-3g"), (WATER, "def2-svp"), (BENZENE, "def2-svp"),
                                       (HYDROGEN_FLUORIDE, "cc-pvtz"), (H2S, "6-31g*")])
@pytest.mark.parametrize("cart", [False, True])
def test_one_electron_match_pyscf(xyz, basis, cart):
    errors, mol = _one_electron_errors(xyz, basis, cart)
    for key, err in errors.items():
        assert err < 1e-10, (key, err)


def test_nuclear_repulsion_matches_pyscf():
    m = Molecule.from_xyz(BENZENE)
    e = nuclear_repulsion(m.positions, jnp.asarray(m.numbers, float))
    assert abs(float(e) - m.to_pyscf("sto-3g").energy_nuc()) < 1e-10


def _eri_check(xyz, basis, cart, threshold=1e-14):
    st = Setup(xyz, basis, cart, threshold)
    mol = st.molecule.to_pyscf(basis, cart=cart)
    blocks = jax.jit(lambda p: st.blocks(p))(st.positions)
    full = np.asarray(st.tensor(blocks))
    ref = mol.intor("int2e_cart" if cart else "int2e_sph")
    assert np.abs(full - ref).max() < 1e-10
    rng = np.random.default_rng(1)
    dm = rng.normal(size=(2, mol.nao, mol.nao))
    dm = dm + dm.swapaxes(1, 2)
    j, k = st.jk(blocks, jnp.asarray(dm))
    np.testing.assert_allclose(j, np.einsum("ijkl,xkl->xij", ref, dm), atol=1e-9, rtol=0)
    np.testing.assert_allclose(k, np.einsum("ikjl,xkl->xij", ref, dm), atol=1e-9, rtol=0)
    # 8-fold symmetry: far fewer than N^4 values stored (padding included)
    assert sum(c.nvalues(cart) for c in st.classes) < (mol.nao ** 4) / 4


@pytest.mark.parametrize("xyz,basis,cart", [(WATER, "sto-3g", False),
                                            pytest.param(WATER, "def2-svp", False, marks=pytest.mark.slow),
                                            (BENZENE, "sto-3g", False)])
def test_eri_match_pyscf(xyz, basis, cart):
    _eri_check(xyz, basis, cart)


def test_contraction_pieces_equal_whole_contractions():
    """Ethanol/6-31G with the six-primitive core shells evaluated as two pieces of three
    primitives (the dense-J/K default) and as whole contractions (``jk="blocks"``): the
    same tensor, J and K as libcint, with fewer primitive quartets evaluated."""
    pieced = Setup(ETHANOL, "6-31g")
    whole = Setup(ETHANOL, "6-31g", jk="blocks")
    assert pieced.sig.pieced and not whole.sig.pieced
    assert max(max(c.ks) for c in pieced.classes) == 3 and max(max(c.ks) for c in whole.classes) == 6

    def primitive_quartets(st):
        return sum(c.nq * int(np.prod(c.ks)) for c in st.classes)

    assert primitive_quartets(pieced) < 0.6 * primitive_quartets(whole)
    mol = pieced.molecule.to_pyscf("6-31g")
    ref = mol.intor("int2e_sph")
    dm = np.random.default_rng(4).normal(size=(2, mol.nao, mol.nao))
    dm = jnp.asarray(dm + dm.swapaxes(1, 2))
    for st in (pieced, whole):
        blocks = jax.jit(st.blocks)(st.positions)
        assert np.abs(np.asarray(st.tensor(blocks)) - ref).max() < 1e-10
        for pairs in (False, True):
            j, k = st.jk(blocks, dm, pairs)
            np.testing.assert_allclose(j, np.einsum("ijkl,xkl->xij", ref, dm), atol=1e-9, rtol=0)
            np.testing.assert_allclose(k, np.einsum("ikjl,xkl->xij", ref, dm), atol=1e-9, rtol=0)


@pytest.mark.parametrize("xyz,basis,cart", [(WATER, "def2-svp", False), (H2S, "6-31g*", True)])
def test_pair_matrices_hold_the_integrals(xyz, basis, cart):
    """The AO-pair Coulomb matrix holds (ij|kl) at ({i,j}, {k,l}) and the exchange one
    ((ij|kl) + (il|kj)) / 2 at ({i,k}, {j,l}), against libcint (d shells, so blocks of
    one shell with itself place each pair twice); J and K of an unsymmetric-looking
    but symmetric pair of densities match the tensor contractions."""
    st = Setup(xyz, basis, cart)
    mol = st.molecule.to_pyscf(basis, cart=cart)
    ref = mol.intor("int2e_cart" if cart else "int2e_sph")
    blocks = jax.jit(st.blocks)(st.positions)
    n = st.shape.nao
    coulomb = np.asarray(st._pairs(blocks))
    exchange = np.asarray(jax.jit(lambda c: exchange_pair_matrix(c, n))(coulomb))
    a = np.arange(mol.nao)
    i, j, k, l = np.meshgrid(a, a, a, a, indexing="ij")

    def pair(x, y):
        x, y = st.ix[x], st.ix[y]  # engine AOs of PySCF AOs
        hi, lo = np.maximum(x, y), np.minimum(x, y)
        return hi * (hi + 1) // 2 + lo

    np.testing.assert_allclose(coulomb[pair(i, j), pair(k, l)], ref, atol=1e-12, rtol=0)
    want = 0.5 * (ref + ref.transpose(0, 3, 2, 1))  # [i, j, k, l] -> ((ij|kl) + (il|kj)) / 2
    np.testing.assert_allclose(exchange[pair(i, k), pair(j, l)], want, atol=1e-12, rtol=0)
    dm = np.random.default_rng(5).normal(size=(2, mol.nao, mol.nao))
    dm = jnp.asarray(dm + dm.swapaxes(1, 2))
    j_ref, k_ref = np.einsum("ijkl,xkl->xij", ref, dm), np.einsum("ikjl,xkl->xij", ref, dm)
    jj, kk = st.jk(blocks, dm, pairs=True)
    np.testing.assert_allclose(jj, j_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(kk, k_ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("min_work", [0.0, float("inf")])
def test_both_eri_kernels_match_libcint(min_work, monkeypatch):
    """Each class runs the term-by-term kernel or the array kernel by its work
    (``QuartetClass.termwise``); forced to either (every class up to L = 5 term by
    term, or none), water/def2-SVP's integrals (s to d shells, L = 0 to 8) equal
    libcint's to 1e-12 Ha."""
    from mess.integrals import two_electron

    monkeypatch.setattr(two_electron, "TERMWISE_MIN_WORK", min_work)
    st = Setup(WATER, "def2-svp", False)
    kinds = {c.termwise() for c in st.classes}
    assert kinds == ({True, False} if min_work == 0 else {False})
    mol = st.molecule.to_pyscf("def2-svp")
    full = np.asarray(st.tensor(jax.jit(lambda p: st.blocks(p))(st.positions)))
    np.testing.assert_allclose(full, mol.intor("int2e_sph"), atol=1e-12, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("xyz,basis,cart", [(BENZENE, "def2-svp", False), (BENZENE, "def2-svp", True),
                                            (HYDROGEN_FLUORIDE, "cc-pvtz", False),
                                            (HYDROGEN_FLUORIDE, "cc-pvtz", True), (H2S, "6-31g*", True),
                                            (WATER, "def2-svp", True)])
def test_eri_match_pyscf_large(xyz, basis, cart):
    _eri_check(xyz, basis, cart)


def test_schwarz_screening_drops_only_negligible_quartets():
    full = Setup(BENZENE, "sto-3g", threshold=0.0, rounding=False)
    screened = Setup(BENZENE, "sto-3g", threshold=1e-8, rounding=False)
    def real(st):
        return sum(int(np.sum(np.asarray(q.weights) > 0)) for q in st.quartets)

    assert real(screened) < real(full)
    ref = np.asarray(full.tensor(jax.jit(full.blocks)(full.positions)))
    got = np.asarray(screened.tensor(jax.jit(screened.blocks)(screened.positions)))
    assert np.abs(got - ref).max() < 1e-8


def test_split_by_primitives_partitions_each_class():
    """Every quartet lands in exactly one sub-class, whose padded primitive counts cover
    its own; no merging keeps one sub-class per signature, unbounded merging one in all."""
    rng = np.random.default_rng(0)
    sigs = rng.choice([1, 3, 6], size=(500, 4))
    ls = (1, 0, 1, 0)
    n_sigs = len(np.unique(sigs, axis=0))
    for split_work, expect in [(0.0, n_sigs), (np.inf, 1), (None, None)]:
        groups = split_by_primitives(ls, sigs, split_work)
        members = np.sort(np.concatenate([q for _, q in groups]))
        np.testing.assert_array_equal(members, np.arange(len(sigs)))
        for ks, q in groups:
            assert np.all(sigs[q] <= np.asarray(ks)) and np.all(sigs[q].max(axis=0) == np.asarray(ks))
        if expect is not None:
            assert len(groups) == expect


def test_jk_takes_quartet_indices_as_arguments():
    """The J/K program keeps no per-quartet table as a constant (the quartets' rows and
    weights are arguments), so its size does not grow with the number of quartets, and
    one program serves every molecule of a signature."""
    st = Setup(WATER, "6-31g")
    blocks = jax.jit(st.blocks)(st.positions)

    def consts(closed):
        out = list(closed.consts)
        for eqn in closed.jaxpr.eqns:
            out += [c for p in eqn.params.values() if hasattr(p, "consts") and hasattr(p, "jaxpr")
                    for c in consts(p)]
        return out

    fn = lambda q, b, d: get_jk(st.shape, st.classes, q, b, d)  # noqa: E731
    found = consts(jax.make_jaxpr(fn)(st.quartets, blocks, jnp.eye(st.shape.nao)))
    assert sum(np.size(c) for c in found) <= 8 * len(st.classes) * max(st.shape.size(l) for l in st.shape.ls)


@pytest.mark.slow  # ~110 s
def test_jk_in_scf_loop_keeps_no_copies_of_the_integrals():
    """Inside a loop (as in the SCF), the J/K build must not make loop-invariant
    rearranged copies of the integral blocks: with a batched-matmul contraction XLA
    held transposed copies of every block (temporary memory 6.4x the blocks for
    ethanol/6-31g*, 31 GB for caffeine/def2-SVP); the fused contraction needs 3.8x."""
    st = Setup(ETHANOL, "6-31g*", rounding=False)
    blocks = jax.jit(st.blocks)(st.positions)

    def loop(blocks, dm):
        def body(_, d):
            j, k = get_jk(st.shape, st.classes, st.quartets, blocks, d)
            return 0.5 * d + 1e-3 * (j - 0.5 * k)
        return jax.lax.fori_loop(0, 3, body, dm)

    compiled = jax.jit(loop).lower(blocks, jnp.eye(st.shape.nao)).compile()
    block_bytes = sum(x.size * x.dtype.itemsize for x in blocks)
    assert compiled.memory_analysis().temp_size_in_bytes < 5 * block_bytes


def _energy_like(st, dm):
    @jax.jit
    def f(pos):
        one = st.one(pos)
        j, k = get_jk(st.shape, st.classes, st.quartets, st.blocks(pos), dm)
        return (jnp.sum(dm * (one["kinetic"] + one["nuclear"] + one["overlap"])) + 0.5 * jnp.sum(j * dm)
                - 0.25 * jnp.sum(k * dm) + jnp.sum(one["dipole"][2] * dm))
    return f


@pytest.mark.slow  # ~100 s; forces against PySCF cover the derivative integrals by default
@pytest.mark.parametrize("basis", ["sto-3g", "6-31g*"])
def test_integral_gradients_match_finite_differences(basis):
    st = Setup(WATER, basis, threshold=0.0)
    rng = np.random.default_rng(0)
    n = st.shape.nao
    dm = rng.normal(size=(n, n)) * 0.3
    dm = jnp.asarray(dm + dm.T)
    f = _energy_like(st, dm)
    pos = st.positions
    g = np.asarray(jax.grad(f)(pos))
    h = 1e-4
    fd = np.zeros_like(g)
    assert np.isfinite(g).all() and np.abs(g[3:]).max() == 0.0  # ghost atoms feel nothing
    g = g[:3]
    for a in range(3):
        for x in range(3):
            d = np.zeros(pos.shape); d[a, x] = h
            fd[a, x] = (float(f(pos + d)) - float(f(pos - d))) / (2 * h)
    np.testing.assert_allclose(g, fd[:3], atol=1e-6, rtol=0)


def test_overlap_gradient_wrt_exponents():
    st = Setup(HYDROGEN_FLUORIDE, "6-31g")
    w = jnp.asarray(np.random.default_rng(3).normal(size=(st.shape.nao, st.shape.nao)))
    g0 = st.groups[0]

    @jax.jit
    def f(exps):
        groups = (ShellGroup(exps, g0.coefficients, g0.atom),) + st.groups[1:]
        one = st.one(groups=groups)
        return jnp.sum(w * (one["overlap"] + one["kinetic"]))

    e0 = np.asarray(g0.exponents)
    g = np.asarray(jax.grad(f)(jnp.asarray(e0)))
    assert np.isfinite(g).all()
    h = 1e-6
    for i, k in [(0, 0), (1, 1), (2, 0), (3, 0)]:  # s shells of F (contracted and not) and H
        step = h * e0[i, k]
        ep, em = e0.copy(), e0.copy()
        ep[i, k] += step
        em[i, k] -= step
        fd = (float(f(jnp.asarray(ep))) - float(f(jnp.asarray(em)))) / (2 * step)
        assert abs(g[i, k] - fd) < 1e-6 * max(1.0, abs(fd)), (i, k, g[i, k], fd)


def test_vmap_over_geometries_equals_loop():
    st = Setup(WATER, "sto-3g", threshold=0.0)
    rng = np.random.default_rng(2)
    batch = st.positions[None] + 0.05 * jnp.asarray(rng.normal(size=(4,) + st.positions.shape))

    @jax.jit
    def ints(pos):
        one = st.one(pos)
        return one["overlap"], one["nuclear"], st.tensor(st.blocks(pos))

    batched = jax.vmap(ints)(batch)
    for i in range(4):
        single = ints(batch[i])
        for x, y in zip(batched, single):
            np.testing.assert_allclose(np.asarray(x[i]), np.asarray(y), atol=1e-12, rtol=0)


def test_padding_is_inert_and_nan_free():
    """Ghost atoms, ghost shells and padding quartets change no integral and give
    finite derivatives, also when ghost atoms coincide (all at the origin)."""
    tight = Setup(WATER, "6-31g", rounding=False)
    padded = Setup(WATER, "6-31g", rounding=True)
    assert padded.sig.natom > tight.sig.natom and padded.shape.nao > tight.shape.nao
    for st in (tight, padded):
        mol = st.molecule.to_pyscf("6-31g")
        one = st.one()
        assert np.abs(st.pyscf_order(one["overlap"]) - mol.intor("int1e_ovlp")).max() < 1e-12
        assert np.abs(np.asarray(st.tensor(jax.jit(st.blocks)(st.positions))) - mol.intor("int2e")).max() < 1e-10
    e = lambda p: nuclear_repulsion(p, padded.charges)  # noqa: E731
    g = np.asarray(jax.grad(e)(padded.positions))
    assert np.isfinite(g).all() and abs(float(e(padded.positions)) - tight.molecule.to_pyscf().energy_nuc()) < 1e-10
    s = lambda p: jnp.sum(padded.one(p)["overlap"] ** 2)  # noqa: E731
    assert np.isfinite(np.asarray(jax.jit(jax.grad(s))(padded.positions))).all()


def test_batch_blocks_skip_padding_and_equal_single_blocks():
    """A batch's ERI classes (one list of every molecule's quartets, the real ones
    moved to the front and only their chunks evaluated) equal each molecule's own
    blocks, with zeros at the padding quartets; their derivative (the whole-list
    kernel) equals the single molecule's."""
    from mess.engine import stages
    from mess.engine.system import default_params, stack

    method = Method("sto-3g", "hf", False, schwarz_threshold=1e-14)
    mols = [Molecule.from_xyz(WATER), Molecule.from_xyz(ETHANOL)]
    prepared = [prepare(m, method) for m in mols]
    sig = signature_for(prepared)
    systems = stack([build(p, sig) for p in prepared])
    params = default_params(sig, systems)
    live = [np.asarray(q.weights) > 0 for q in systems.quartets]
    assert any((~lv[0]).sum() > sig.classes[i].chunk_for(2) for i, lv in enumerate(live))  # whole padding chunks

    def single(i, system, prm):
        return stages.eri_part(sig, i, system, prm)

    for i in range(len(sig.classes)):
        batch = np.asarray(jax.jit(lambda s, p: stages.eri_part_batch(sig, i, s, p))(systems, params))
        each = np.asarray(jax.jit(jax.vmap(lambda s, p: single(i, s, p)))(systems, params))
        mask = live[i].reshape(live[i].shape + (1,) * 4)
        np.testing.assert_allclose(batch, np.where(mask, each, 0.0), atol=1e-14, rtol=0)

    def total(pos, fn):
        prm = eqx.tree_at(lambda p: p.positions, params, pos)
        return sum(jnp.sum(jnp.where(jnp.asarray(lv).reshape(lv.shape + (1,) * 4), b, 0.0) ** 2)
                   for lv, b in zip(live, fn(prm)))

    batched = lambda prm: [stages.eri_part_batch(sig, i, systems, prm) for i in range(len(sig.classes))]  # noqa: E731
    looped = lambda prm: [jax.vmap(lambda s, p: single(i, s, p))(systems, prm)  # noqa: E731
                          for i in range(len(sig.classes))]
    g_batch = np.asarray(jax.jit(jax.grad(lambda x: total(x, batched)))(params.positions))
    g_loop = np.asarray(jax.jit(jax.grad(lambda x: total(x, looped)))(params.positions))
    assert np.isfinite(g_batch).all()
    np.testing.assert_allclose(g_batch, g_loop, atol=1e-12, rtol=1e-12)
