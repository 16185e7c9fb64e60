"""Gaussian integrals against PySCF's libcint (mol.intor), derivatives against finite
differences, and vmap against per-geometry evaluation."""

from decimal import Decimal, getcontext

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mess.basis import make_basis
from mess.integrals.boys import boys
from mess.integrals.one_electron import nuclear_repulsion, one_electron
from mess.integrals.two_electron import (BlockJK, degeneracy_scale, eri_blocks, eri_tensor, get_jk,
                                         make_eri_plan, split_by_primitives)
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


def _one_electron_errors(xyz, basis, cart):
    m = Molecule.from_xyz(xyz)
    mol = m.to_pyscf(basis, cart=cart)
    ints = one_electron(make_basis(m, basis, cart), m.positions, jnp.asarray(m.numbers, float))
    sfx = "_cart" if cart else "_sph"
    return {k: np.abs(np.asarray(ints[k]) - mol.intor(name + sfx)).max() for k, name in ONE_E}, mol


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
    m = Molecule.from_xyz(xyz)
    mol = m.to_pyscf(basis, cart=cart)
    b = make_basis(m, basis, cart)
    plan = make_eri_plan(b, m.positions, threshold=threshold)
    blocks = eri_blocks(plan, b, m.positions)
    full = np.asarray(eri_tensor(plan, blocks))
    ref = mol.intor("int2e_cart" if cart else "int2e_sph")
    assert np.abs(full - ref).max() < 1e-10
    rng = np.random.default_rng(1)
    dm = rng.normal(size=(2, mol.nao, mol.nao))
    dm = dm + dm.swapaxes(1, 2)
    j, k = get_jk(plan, blocks, jnp.asarray(dm))
    np.testing.assert_allclose(np.asarray(j), np.einsum("ijkl,xkl->xij", ref, dm), atol=1e-9, rtol=0)
    np.testing.assert_allclose(np.asarray(k), np.einsum("ikjl,xkl->xij", ref, dm), atol=1e-9, rtol=0)
    assert plan.nvalues < (mol.nao ** 4) / 4  # 8-fold symmetry: far fewer than N^4 values stored


@pytest.mark.parametrize("xyz,basis,cart", [(WATER, "sto-3g", False), (WATER, "def2-svp", False),
                                            (BENZENE, "sto-3g", False)])
def test_eri_match_pyscf(xyz, basis, cart):
    _eri_check(xyz, basis, cart)


@pytest.mark.slow
@pytest.mark.parametrize("xyz,basis,cart", [(BENZENE, "def2-svp", False), (BENZENE, "def2-svp", True),
                                            (HYDROGEN_FLUORIDE, "cc-pvtz", False),
                                            (HYDROGEN_FLUORIDE, "cc-pvtz", True), (H2S, "6-31g*", True),
                                            (WATER, "def2-svp", True)])
def test_eri_match_pyscf_large(xyz, basis, cart):
    _eri_check(xyz, basis, cart)


def test_schwarz_screening_drops_only_negligible_quartets():
    m = Molecule.from_xyz(BENZENE)
    b = make_basis(m, "sto-3g")
    full_plan = make_eri_plan(b, m.positions, threshold=0.0)
    plan = make_eri_plan(b, m.positions, threshold=1e-8)
    assert plan.nquartets < full_plan.nquartets
    ref = np.asarray(eri_tensor(full_plan, eri_blocks(full_plan, b, m.positions)))
    got = np.asarray(eri_tensor(plan, eri_blocks(plan, b, m.positions)))
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
    """The degeneracy weights computed from the shell indices are the plan's, and the
    J/K program keeps no per-quartet table as a constant (only the per-shell AO offsets),
    so its size does not grow with the number of quartets."""
    m = Molecule.from_xyz(WATER)
    b = make_basis(m, "6-31g")
    plan = make_eri_plan(b, m.positions)
    for cls, shells in zip(plan.classes, plan.shell_indices):
        np.testing.assert_array_equal(np.asarray(degeneracy_scale(shells)), cls.scale)

    def consts(closed):
        out = list(closed.consts)
        for eqn in closed.jaxpr.eqns:
            out += [c for p in eqn.params.values() if hasattr(p, "consts") and hasattr(p, "jaxpr")
                    for c in consts(p)]
        return out

    jk = BlockJK(plan, eri_blocks(plan, b, m.positions))
    found = consts(jax.make_jaxpr(lambda f, d: f(d))(jk, jnp.eye(b.nao)))
    assert sum(np.size(c) for c in found) <= len(plan.ao_offsets)


def test_jk_in_scf_loop_keeps_no_copies_of_the_integrals():
    """Inside a loop (as in the SCF), the J/K build must not make loop-invariant
    rearranged copies of the integral blocks: with a batched-matmul contraction XLA
    held transposed copies of every block (temporary memory 6.4x the blocks for
    ethanol/6-31g*, 31 GB for caffeine/def2-SVP); the fused contraction needs 3.8x."""
    m = Molecule.from_xyz(ETHANOL)
    b = make_basis(m, "6-31g*")
    plan = make_eri_plan(b, m.positions)
    blocks = eri_blocks(plan, b, jnp.asarray(m.positions))

    def loop(blocks, dm):
        def body(_, d):
            j, k = get_jk(plan, blocks, d)
            return 0.5 * d + 1e-3 * (j - 0.5 * k)
        return jax.lax.fori_loop(0, 3, body, dm)

    compiled = jax.jit(loop).lower(blocks, jnp.eye(b.nao)).compile()
    block_bytes = sum(x.size * x.dtype.itemsize for x in blocks)
    assert compiled.memory_analysis().temp_size_in_bytes < 5 * block_bytes


def _energy_like(basis, plan, charges, dm):
    def f(pos):
        one = one_electron(basis, pos, charges)
        j, k = get_jk(plan, eri_blocks(plan, basis, pos), dm)
        return (jnp.sum(dm * (one["kinetic"] + one["nuclear"] + one["overlap"])) + 0.5 * jnp.sum(j * dm)
                - 0.25 * jnp.sum(k * dm) + jnp.sum(one["dipole"][2] * dm))
    return f


@pytest.mark.parametrize("basis", ["sto-3g", pytest.param("6-31g*", marks=pytest.mark.slow)])
def test_integral_gradients_match_finite_differences(basis):
    m = Molecule.from_xyz(WATER)
    b = make_basis(m, basis)
    plan = make_eri_plan(b, m.positions, threshold=0.0)
    rng = np.random.default_rng(0)
    dm = rng.normal(size=(b.nao, b.nao)) * 0.3
    dm = jnp.asarray(dm + dm.T)
    f = _energy_like(b, plan, jnp.asarray(m.numbers, float), dm)
    pos = m.positions
    g = np.asarray(jax.grad(f)(pos))
    h = 1e-4
    fd = np.zeros_like(g)
    for a in range(3):
        for x in range(3):
            d = np.zeros((3, 3)); d[a, x] = h
            fd[a, x] = (float(f(pos + d)) - float(f(pos - d))) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-6, rtol=0)


def test_overlap_gradient_wrt_exponents():
    m = Molecule.from_xyz(HYDROGEN_FLUORIDE)
    b = make_basis(m, "6-31g")
    charges = jnp.asarray(m.numbers, float)
    w = jnp.asarray(np.random.default_rng(3).normal(size=(b.nao, b.nao)))

    def f(exps):
        bb = eqx.tree_at(lambda x: x.exponents, b, exps)
        one = one_electron(bb, m.positions, charges)
        return jnp.sum(w * (one["overlap"] + one["kinetic"]))

    g = np.asarray(jax.grad(f)(b.exponents))
    h = 1e-6
    for i, k in [(0, 0), (1, 1), (3, 0), (4, 0)]:
        e = np.asarray(b.exponents)
        step = h * e[i, k]
        ep, em = e.copy(), e.copy()
        ep[i, k] += step
        em[i, k] -= step
        fd = (float(f(jnp.asarray(ep))) - float(f(jnp.asarray(em)))) / (2 * step)
        assert abs(g[i, k] - fd) < 1e-6 * max(1.0, abs(fd)), (i, k, g[i, k], fd)


def test_vmap_over_geometries_equals_loop():
    m = Molecule.from_xyz(WATER)
    b = make_basis(m, "sto-3g")
    plan = make_eri_plan(b, m.positions, threshold=0.0)
    charges = jnp.asarray(m.numbers, float)
    rng = np.random.default_rng(2)
    batch = m.positions[None] + 0.05 * jnp.asarray(rng.normal(size=(4, 3, 3)))

    def ints(pos):
        one = one_electron(b, pos, charges)
        return one["overlap"], one["nuclear"], eri_tensor(plan, eri_blocks(plan, b, pos))

    batched = jax.vmap(ints)(batch)
    for i in range(4):
        single = ints(batch[i])
        for x, y in zip(batched, single):
            np.testing.assert_allclose(np.asarray(x[i]), np.asarray(y), atol=1e-12, rtol=0)
