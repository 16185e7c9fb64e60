"""The batched engine: signatures, padded systems, buckets, run_batch against single
runs and PySCF, compile-once-per-bucket, per-geometry guesses, bounded caches, SCF
robustness for degenerate radicals."""

from __future__ import annotations

import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf

import mess
from mess.engine import Engine, Method, build, fits, plan_buckets, prepare, signature_for
from mess.engine.calculation import Calculation

from molecules import (AMMONIUM, CH3_RADICAL, CH3CL, ETHANOL, H2S, HYDROXIDE, NH2_RADICAL, NO_RADICAL,
                       O2_TRIPLET, OH_RADICAL, WATER)
from reference import assert_matches, frontier, pyscf_solution

H2 = "2\nhydrogen\nH 0 0 0\nH 0 0 0.74\n"
TIGHT = 1e-11


def mol(xyz):
    return mess.Molecule.from_xyz(xyz)


def test_signature_is_hashed_by_value_and_shared():
    """Two geometries of one molecule, and a different molecule of similar size, pad
    to equal signatures; their systems differ only in array values."""
    water = mol(WATER)
    moved = mess.Molecule(water.numbers, water.positions * 1.05, 0, 0)
    method = Method("6-31g", "b3lyp", grid_level=1)
    a, b = prepare(water, method), prepare(moved, method)
    sa, sb = signature_for([a]), signature_for([b])
    assert sa == sb and hash(sa) == hash(sb) and sa is not sb
    hf = mess.Molecule.from_xyz("2\n\nF 0 0 0\nH 0 0 0.92\n")
    c = prepare(hf, method)
    assert fits(c, sa)
    sys_a, sys_c = build(a, sa), build(c, sa)
    assert jax.tree.structure(sys_a) == jax.tree.structure(sys_c)
    assert all(np.shape(x) == np.shape(y) for x, y in zip(jax.tree.leaves(sys_a), jax.tree.leaves(sys_c)))
    assert np.asarray(sys_c.nelec).tolist() == [5, 5] and np.asarray(sys_c.atom_mask).sum() == 2


MIXED = [H2, WATER, AMMONIUM, HYDROXIDE, H2S, CH3CL, CH3_RADICAL, O2_TRIPLET]


def _compare_with_pyscf(m, res, basis, xc):
    mf = pyscf_solution(m.to_pyscf(basis), xc)
    homo, lumo = frontier(mf)
    assert_matches({"energy": float(res.energy) - mf.e_tot, "homo": float(res.homo) - homo,
                    "lumo": float(res.lumo) - lumo,
                    "dipole": float(np.abs(res.dipole - mf.dip_moment(unit="Debye", verbose=0)).max()),
                    "converged": bool(res.converged) and mf.converged}, energy_tol=1e-8 if xc == "hf" else 1e-7)


def _batch_equals_single(molecules, basis, xc, singles=None):
    ms = [mol(x) for x in molecules]
    engine = Engine()
    batch = mess.run_batch(ms, basis, xc, conv_tol=TIGHT, engine=engine)
    assert len(engine.signatures) < len(ms)  # molecules share buckets
    alone = Engine()  # each molecule on its own signature
    for i, (m, res) in enumerate(zip(ms, batch)):
        _compare_with_pyscf(m, res, basis, xc)
        if singles is None or i in singles:
            one = mess.run(m, basis, xc, conv_tol=TIGHT, engine=alone)
            assert abs(float(res.energy) - float(one.energy)) < 1e-10
            assert np.abs(res.mo_energy - one.mo_energy).max() < 1e-8
            assert np.abs(res.dipole - one.dipole).max() < 1e-8


def test_run_batch_equals_single_runs_and_pyscf():
    """Closed and open shells, ions, H to Cl in one call (HF/STO-3G): each item equals
    PySCF and the molecule's own run."""
    _batch_equals_single(MIXED, "sto-3g", "hf", singles={0, 2, 6, 7})


BROAD = [H2, WATER, AMMONIUM, HYDROXIDE, H2S, CH3CL, ETHANOL, CH3_RADICAL, O2_TRIPLET, OH_RADICAL,
         NH2_RADICAL, "2\nhydrogen fluoride\nF 0 0 0\nH 0 0 0.917\n",
         "5\nmethane\nC 0 0 0\nH 0.629 0.629 0.629\nH -0.629 -0.629 0.629\nH -0.629 0.629 -0.629\n"
         "H 0.629 -0.629 -0.629\n",
         "4\nhydronium charge=1\nO 0 0 0.05\nH 0.9436 0 -0.1\nH -0.4718 0.8172 -0.1\nH -0.4718 -0.8172 -0.1\n",
         "4\nammonia\nN 0 0 0.1162\nH 0 0.9397 -0.2711\nH 0.8138 -0.4699 -0.2711\nH -0.8138 -0.4699 -0.2711\n",
         "3\nhydrogen cyanide\nC 0 0 0\nN 0 0 1.156\nH 0 0 -1.064\n"]


@pytest.mark.slow
@pytest.mark.parametrize("xc", ["hf", "b3lyp"])
@pytest.mark.parametrize("basis", ["sto-3g", "6-31g*"])
def test_run_batch_broad(basis, xc):
    """Sixteen molecules (closed and open shells, ions, H to Cl) in one call: each item
    equals its own run to 1e-10 Ha and PySCF to the usual tolerances."""
    assert len(BROAD) >= 16
    _batch_equals_single(BROAD, basis, xc)


def test_second_geometry_starts_from_its_own_guess():
    """The guess is computed for each geometry in JAX: at a scaled geometry it equals
    PySCF's MINAO guess computed from scratch there (and not the first geometry's)."""
    water = mol(WATER)
    calc = Calculation(water, "6-31g", "hf")
    scaled = mess.Molecule(water.numbers, water.positions * 1.1, 0, 0)
    prm = calc.default_params()
    prm_scaled = jax.tree.map(lambda x: x, prm)
    import equinox as eqx

    prm_scaled = eqx.tree_at(lambda p: p.positions, prm, prm.positions * 1.1)
    for p, m in [(prm, water), (prm_scaled, scaled)]:
        ham = calc.hamiltonian(p)
        got = np.asarray(calc.to_pyscf(calc.guess(ham, p)))
        ref = scf.hf.init_guess_by_minao(m.to_pyscf("6-31g"))
        assert np.abs(got - ref).max() < 1e-12
    ref0 = scf.hf.init_guess_by_minao(water.to_pyscf("6-31g"))
    assert np.abs(np.asarray(calc.to_pyscf(calc.guess(calc.hamiltonian(prm_scaled), prm_scaled))) - ref0).max() > 1e-3


@pytest.mark.parametrize("xyz, xc", [(WATER, "hf"), pytest.param(NH2_RADICAL, "pbe0", marks=pytest.mark.slow)])  # not OH: several DFT states
def test_dense_and_block_jk_agree(xyz, xc):
    """J and K from the dense tensor (small molecules) and from the integral blocks
    give the same SCF, restricted (HF) and unrestricted (hybrid DFT)."""
    m = mol(xyz)
    dense = mess.run(m, "6-31g", xc, jk="dense", conv_tol=TIGHT, grid_level=1)
    blocks = mess.run(m, "6-31g", xc, jk="blocks", conv_tol=TIGHT, grid_level=1)
    assert abs(float(dense.energy) - float(blocks.energy)) < 1e-10
    assert np.abs(dense.dipole - blocks.dipole).max() < 1e-8


def test_fixed_cycles_mode():
    """QM1B's mode: exactly N cycles, the std of the last five energies reported."""
    ms = [mol(WATER), mol(H2S)]
    engine = Engine()
    fixed = mess.run_batch(ms, "sto-3g", "b3lyp5", grid_level=0, fixed_cycles=12, engine=engine)
    conv = mess.run_batch(ms, "sto-3g", "b3lyp5", grid_level=0, conv_tol=TIGHT, engine=engine)
    for f, c in zip(fixed, conv):
        assert int(f.iterations) == 12 and f.energy_std_last5 is not None
        assert 0 <= float(f.energy_std_last5) < 1e-6
        assert abs(float(f.energy) - float(c.energy)) < 1e-8
        assert c.energy_std_last5 is None


def test_engine_owns_a_bounded_program_cache():
    engine = Engine(max_programs=4)
    mess.run(mol(WATER), "sto-3g", "hf", engine=engine)
    assert engine.built > 4 and len(engine._programs) <= 4
    engine.clear()
    assert not engine._programs and not engine.signatures


def test_map_pressure_keeps_the_programs_of_the_last_calls(monkeypatch):
    """When other owners' memory maps hold the process near the kernel's limit, an
    engine's evictions cannot lower the pressure; it keeps the programs of its last
    calls, so a second geometry compiles nothing (it used to recompile every call)."""
    import mess.engine.engine as engine_module

    monkeypatch.setattr(engine_module, "map_pressure", lambda: 0.9)
    engine = Engine()
    water = mol(WATER)
    mess.energy_and_gradient(water, "sto-3g", "hf", engine=engine)
    built = engine.built
    assert built > engine_module.MIN_PROGRAMS
    moved = mess.Molecule(water.numbers, water.positions * 1.01)
    mess.energy_and_gradient(moved, "sto-3g", "hf", engine=engine)
    assert engine.built == built


def test_no_library_code_clears_jax_caches():
    root = pathlib.Path(mess.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "clear_caches" in p.read_text()]
    assert not offenders


def _nine_heavy(n: int, seed: int = 0):
    from mess.dataset import builtin_smiles, embed

    smiles = [s for _, s in builtin_smiles(9, 9)]
    rng = np.random.default_rng(seed)
    return [embed(s, 1)[0] for s in rng.choice(smiles, n, replace=False)]


def test_compile_once_per_bucket(caplog):
    """After a first batch of 9-heavy-atom molecules (B3LYP/STO-3G) has compiled, a
    second batch of other molecules that fit its bucket compiles nothing new."""
    method = Method("sto-3g", "b3lyp", grid_level=0)
    pool = _nine_heavy(10)
    prepared = [prepare(m, method) for m in pool]
    order = np.argsort([-p.natom for p in prepared])
    first = [pool[i] for i in order[:2]]
    sig = signature_for([prepared[i] for i in order[:2]])
    # other molecules that the planner puts in the first batch's bucket
    second = [pool[i] for i in order[2:] if plan_buckets([prepared[i]], known=[sig]).signatures == (sig,)][:2]
    assert len(second) == 2
    engine = Engine()
    mess.run_batch(first, "sto-3g", "b3lyp", grid_level=0, engine=engine)
    built = engine.built
    assert engine.signatures == (sig,)
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        res = mess.run_batch(second, "sto-3g", "b3lyp", grid_level=0, engine=engine)
    compiles = [r for r in caplog.records if "Compiling" in r.getMessage() or "compiling" in r.getMessage()]
    assert engine.built == built and engine.signatures == (sig,)
    assert not compiles, [r.getMessage()[:120] for r in compiles[:5]]
    assert all(bool(r.converged) for r in res)


def test_repeated_calls_settle_on_compiled_signatures_and_batch_sizes():
    """A later call with molecules that fit a compiled signature reuses it (and its
    batch size) when the padding costs less than a compilation, so a stream of
    batches does not keep compiling new buckets."""
    method = Method("sto-3g", "hf")
    prepared = [prepare(mol(x), method) for x in (WATER, H2S, CH3CL)]
    sig = signature_for(prepared)
    for sub in ([prepared[0]], prepared[:2], prepared[1:]):
        assert plan_buckets(sub, known=[sig]).signatures == (sig,)
    engine = Engine()
    memory = 1 << 33
    assert engine.batch_size(sig, 8, memory) == 8
    assert engine.batch_size(sig, 5, memory) == 8 and engine.batch_size(sig, 16, memory) == 8


def test_planner_buckets_a_dataset():
    """Two hundred different molecules of 9-11 heavy atoms (C, N, O, F + H) at QM1B's
    setting fit in a handful of buckets, each molecule in exactly one bucket it fits,
    with less padding than QM1B's sorted equal-count split."""
    from mess.dataset import builtin_smiles, embed

    method = Method("sto-3g", "b3lyp5", grid_level=0)
    smiles = [s for _, s in builtin_smiles(9, 11)][:200]
    prepared = [prepare(embed(s, 1)[0], method) for s in smiles]
    plan = plan_buckets(prepared, max_buckets=6)
    assert 1 <= len(plan.buckets) <= 6
    members = sorted(i for b in plan.buckets for i in b.members)
    assert members == list(range(len(prepared)))
    for b in plan.buckets:
        assert all(fits(prepared[i], b.signature) for i in b.members)
    assert plan.overhead <= plan.baseline_overhead + 1e-12
    print(plan.report())


RADICALS = {"OH": OH_RADICAL, "NO": NO_RADICAL}
FUNCTIONALS = ["hf", "lda,vwn", "pbe", "b3lyp"]
BASES = ["sto-3g", "6-31g", "6-31g*", "def2-svp"]


def _pyscf_second_order(m, basis, xc):
    pm = m.to_pyscf(basis)
    mf = scf.UHF(pm) if xc == "hf" else dft.UKS(pm)
    if xc != "hf":
        mf.xc, mf.grids.level, mf.small_rho_cutoff = xc, 3, 0
    mf.conv_tol = 1e-10
    mf.verbose = 0
    mf = mf.newton()
    mf.kernel()
    return mf


def _robust(name, basis, xc, batched):
    m = mol(RADICALS[name])
    if batched:  # in a batch with another radical and a closed shell
        others = [mol(NH2_RADICAL), mol(WATER)]
        res = mess.run_batch([m] + others, basis, xc)[0]
    else:
        res = mess.run(m, basis, xc)
    ref = _pyscf_second_order(m, basis, xc)
    assert bool(res.converged)
    assert float(res.energy) <= ref.e_tot + 1e-8, (float(res.energy), ref.e_tot)
    # a stationary point of PySCF's functional: its orbital gradient at mess's density
    pm = m.to_pyscf(basis)
    mf = scf.UHF(pm) if xc == "hf" else dft.UKS(pm)
    if xc != "hf":
        mf.xc, mf.grids.level, mf.small_rho_cutoff = xc, 3, 0
    dm = res.density
    fock = mf.get_fock(dm=dm)
    s = pm.intor("int1e_ovlp")
    comm = np.stack([f @ d @ s - s @ d @ f for f, d in zip(fock, dm)])
    assert np.abs(comm).max() < 1e-4
    assert abs(mf.energy_tot(dm=dm) - float(res.energy)) < 1e-8


def test_degenerate_radical_converges_in_a_batch():
    """NO with lda,vwn in STO-3G defeats plain DIIS (PySCF's too); the fallback phase
    converges it as one item of a batch (only that item runs it), no higher than
    PySCF's second-order solver (on its own: the slow matrix below)."""
    _robust("NO", "sto-3g", "lda,vwn", batched=True)  # the single path: the slow matrix


def test_open_shell_saddle_point_is_left_for_the_minimum():
    """OH with B3LYP/STO-3G: DIIS (mess's, as PySCF's) converges to a saddle point
    8.4e-7 Ha above the minimum PySCF's second-order solver finds (the grid splits the
    pi pair, and the beta hole settles between its orientations); the stability phase
    sees the negative curvature and descends to that minimum."""
    _robust("OH", "sto-3g", "b3lyp", batched=False)


@pytest.mark.slow
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("xc", FUNCTIONALS)
@pytest.mark.parametrize("name", list(RADICALS))
def test_degenerate_radicals_converge(name, xc, basis, batched):
    _robust(name, basis, xc, batched)
