"""SCF kernel vs PySCF, with PySCF's integrals as inputs (tests the SCF machinery apart
from the JAX integrals): energies, frontier orbitals, dipoles, Mulliken charges, <S^2>,
DIIS against ``pyscf.lib.diis``, the Newton fallback, and compile-once behaviour."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import gto
from pyscf import lib as pyscf_lib
from pyscf import scf as pyscf_scf

from mess.properties import dipole_moment, mulliken_charges, spin_square
from mess.scf import (
    SCFOptions,
    diis_init,
    diis_update,
    eri_get_jk,
    hcore_guess,
    hf_veff,
    minao_guess,
    scf,
    sum_veff,
)

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
AMMONIA = "N 0 0 0.1; H 0.9377 0 -0.2; H -0.4689 0.8121 -0.2; H -0.4689 -0.8121 -0.2"
HYDRONIUM = "O 0 0 0.05; H 0.9436 0 -0.1; H -0.4718 0.8172 -0.1; H -0.4718 -0.8172 -0.1"
HYDROXIDE = "O 0 0 0; H 0 0 0.964"
OH = "O 0 0 0; H 0 0 0.97"
O2 = "O 0 0 0; O 0 0 1.21"
CH3 = "C 0 0 0; H 1.079 0 0; H -0.5395 0.9344 0; H -0.5395 -0.9344 0"
NO = "N 0 0 0; O 0 0 1.15"

# Tight convergence on both sides, so that differences measure agreement of the
# converged states rather than of the stopping points.
TIGHT = SCFOptions(conv_tol=1e-11)
run_scf = eqx.filter_jit(scf)


def pyscf_mol(atom, basis, charge=0, spin=0):
    return gto.M(atom=atom, basis=basis, charge=charge, spin=spin, verbose=0)


def integrals(mol):
    s = mol.intor("int1e_ovlp")
    h = mol.intor("int1e_kin") + mol.intor("int1e_nuc")
    return s, h, mol.intor("int2e"), mol.energy_nuc()


def run_mess(mol, restricted, options=TIGHT, dm0=None, static_nelec=False):
    """Run the kernel on PySCF's integrals. By default the electron counts are passed
    as an array (traced), so molecules with the same number of AOs share one compiled
    kernel (keeps the test run short)."""
    s, h, eri, e_nuc = integrals(mol)
    if dm0 is None:
        dm0 = minao_guess(mol, restricted)
    veff_fn = hf_veff(eri_get_jk(eri), restricted)
    nelec = mol.nelec if static_nelec else jnp.asarray(mol.nelec)
    return run_scf(s, h, e_nuc, nelec, veff_fn, dm0, restricted=restricted, options=options)


def run_pyscf(mol, restricted, newton=False):
    mf = pyscf_scf.RHF(mol) if restricted else pyscf_scf.UHF(mol)
    if newton:
        mf = mf.newton()
    mf.conv_tol = 1e-11
    mf.kernel()
    assert mf.converged
    return mf


def pyscf_frontier(mf):
    e = np.atleast_2d(mf.mo_energy)
    occ = np.atleast_2d(mf.mo_occ)
    return e[occ > 0].max(), e[occ == 0].min()


# ---------------------------------------------------------------- restricted


RHF_CASES = {
    "water/6-31g": (WATER, "6-31g", 0),
    "ammonia/sto-3g": (AMMONIA, "sto-3g", 0),
    "hydronium/6-31g": (HYDRONIUM, "6-31g", 1),
    "hydroxide/6-31g": (HYDROXIDE, "6-31g", -1),
}


@pytest.mark.parametrize("name", list(RHF_CASES))
def test_rhf_matches_pyscf(name):
    atom, basis, charge = RHF_CASES[name]
    mol = pyscf_mol(atom, basis, charge=charge)
    res = run_mess(mol, restricted=True)
    mf = run_pyscf(mol, restricted=True)

    assert bool(res.converged)
    assert abs(float(res.energy) - mf.e_tot) < 1e-8
    homo, lumo = pyscf_frontier(mf)
    assert abs(float(res.homo) - homo) < 1e-6
    assert abs(float(res.lumo) - lumo) < 1e-6
    np.testing.assert_allclose(res.mo_energy, mf.mo_energy, atol=1e-6)

    # energy decomposition
    e_one = np.einsum("ij,ji", mf.get_hcore(), mf.make_rdm1())
    assert abs(float(res.e_one) - e_one) < 1e-6
    total = res.e_nuc + res.e_one + res.parts["coulomb"] + res.parts["exchange"]
    assert abs(float(total - res.energy)) < 1e-10

    # properties from the converged density
    s = mol.intor("int1e_ovlp")
    numbers = mol.atom_charges()
    dip = dipole_moment(res.density, mol.intor("int1e_r"), numbers, mol.atom_coords())
    np.testing.assert_allclose(dip, mf.dip_moment(unit="Debye", verbose=0), atol=1e-4)
    ao_atom = np.array([label[0] for label in mol.ao_labels(fmt=None)])
    charges = mulliken_charges(res.density, s, ao_atom, numbers)
    np.testing.assert_allclose(charges, mf.mulliken_pop(verbose=0)[1], atol=1e-6)
    assert abs(float(jnp.sum(charges)) - charge) < 1e-8
    # the density integrates to the number of electrons
    assert abs(float(jnp.sum(res.density * s)) - mol.nelectron) < 1e-8


@pytest.mark.slow
def test_default_tolerance_energy():
    """PySCF's default conv_tol (1e-9) already gives energies to ~1e-10."""
    mol = pyscf_mol(WATER, "6-31g")
    res = run_mess(mol, restricted=True, options=SCFOptions())
    mf = run_pyscf(mol, restricted=True)
    assert bool(res.converged)
    assert abs(float(res.energy) - mf.e_tot) < 1e-8


def test_hcore_guess_converges_to_same_state():
    mol = pyscf_mol(WATER, "6-31g")
    s, h, _, _ = integrals(mol)
    dm0 = hcore_guess(jnp.asarray(s), jnp.asarray(h), mol.nelec, restricted=True)
    assert abs(float(jnp.sum(dm0 * s)) - mol.nelectron) < 1e-10
    res = run_mess(mol, restricted=True, dm0=dm0)
    assert bool(res.converged)
    assert abs(float(res.energy) - run_pyscf(mol, restricted=True).e_tot) < 1e-8


def test_result_bookkeeping():
    mol = pyscf_mol(WATER, "6-31g")
    res = run_mess(mol, restricted=True)
    hist = np.asarray(res.energy_history)
    n = int(res.iterations)
    assert hist.shape == (TIGHT.max_cycle + TIGHT.fallback_max_cycle + 1,)
    assert np.all(np.isfinite(hist[: n + 1])) and np.all(np.isnan(hist[n + 1:]))
    assert abs(hist[n] - float(res.energy)) < 1e-9
    assert res.mo_occ.shape == (13,) and float(jnp.sum(res.mo_occ)) == 10.0
    assert res.mo_coeff.shape == (13, 13) and res.density.shape == (13, 13)
    assert float(res.grad_norm) < TIGHT.tol_grad


@pytest.mark.slow
def test_non_convergence_is_flagged():
    mol = pyscf_mol(WATER, "6-31g")
    res = run_mess(mol, restricted=True, options=SCFOptions(max_cycle=3, fallback=None))
    assert not bool(res.converged)
    assert int(res.iterations) == 3
    hist = np.asarray(res.energy_history)
    assert hist.shape == (4,) and np.all(np.isfinite(hist))


def test_restricted_needs_closed_shell():
    mol = pyscf_mol(OH, "sto-3g", spin=1)
    with pytest.raises(ValueError, match="n_alpha == n_beta"):
        run_mess(mol, restricted=True, dm0=minao_guess(mol, restricted=True), static_nelec=True)


# -------------------------------------------------------------- unrestricted


UHF_CASES = {
    "OH/6-31g": (OH, "6-31g", 1),
    "O2-triplet/6-31g": (O2, "6-31g", 2),
    "CH3/6-31g": (CH3, "6-31g", 1),
    "NO/6-31g": (NO, "6-31g", 1),
    "OH/sto-3g": pytest.param((OH, "sto-3g", 1), marks=pytest.mark.slow),
    "CH3/sto-3g": pytest.param((CH3, "sto-3g", 1), marks=pytest.mark.slow),
}


@pytest.mark.parametrize("case", list(UHF_CASES.values()), ids=list(UHF_CASES))
def test_uhf_matches_pyscf(case):
    atom, basis, spin = case
    mol = pyscf_mol(atom, basis, spin=spin)
    res = run_mess(mol, restricted=False)
    mf = run_pyscf(mol, restricted=False)

    assert bool(res.converged)
    assert abs(float(res.energy) - mf.e_tot) < 1e-8
    homo, lumo = pyscf_frontier(mf)
    assert abs(float(res.homo) - homo) < 1e-6
    assert abs(float(res.lumo) - lumo) < 1e-6
    s = mol.intor("int1e_ovlp")
    ss, mult = spin_square(res.mo_coeff, res.mo_occ, s)
    ss_ref, mult_ref = mf.spin_square()
    assert abs(float(ss) - ss_ref) < 1e-5
    assert abs(float(mult) - mult_ref) < 1e-5
    na, nb = mol.nelec
    np.testing.assert_allclose(jnp.einsum("sij,ji->s", res.density, s), [na, nb], atol=1e-8)
    dip = dipole_moment(res.density_total, mol.intor("int1e_r"), mol.atom_charges(),
                        mol.atom_coords())
    np.testing.assert_allclose(dip, mf.dip_moment(unit="Debye", verbose=0), atol=1e-4)


@pytest.mark.slow
def test_uhf_closed_shell_equals_rhf():
    mol = pyscf_mol(WATER, "sto-3g")
    res = run_mess(mol, restricted=False)
    assert bool(res.converged)
    assert abs(float(res.energy) - run_pyscf(mol, restricted=True).e_tot) < 1e-8


def test_minao_guess_matches_pyscf_default():
    mol = pyscf_mol(OH, "6-31g", spin=1)
    np.testing.assert_allclose(minao_guess(mol), pyscf_scf.UHF(mol).get_init_guess(), atol=0)
    mol = pyscf_mol(WATER, "6-31g")
    np.testing.assert_allclose(minao_guess(mol), pyscf_scf.RHF(mol).get_init_guess(), atol=0)


def test_newton_fallback_converges_where_pyscf_diis_fails():
    """NO/STO-3G: PySCF's default DIIS oscillates for 50 cycles; our Newton fallback
    converges to the state PySCF's second-order solver finds."""
    mol = pyscf_mol(NO, "sto-3g", spin=1)
    mf_diis = pyscf_scf.UHF(mol)
    mf_diis.kernel()
    assert not mf_diis.converged  # the reason for the fallback

    res = run_mess(mol, restricted=False, options=SCFOptions())
    mf = run_pyscf(mol, restricted=False, newton=True)
    assert bool(res.converged)
    assert int(res.iterations) <= 100  # 50 plain cycles, then the fallback
    assert abs(float(res.energy) - mf.e_tot) < 1e-8
    # PySCF's Newton solver stops at |g| ~ 3e-6, and <S^2> is first order in the orbitals
    ss, _ = spin_square(res.mo_coeff, res.mo_occ, mol.intor("int1e_ovlp"))
    assert abs(float(ss) - mf.spin_square()[0]) < 1e-4


def test_lowest_curvature_matches_eigh():
    """The Lanczos Ritz pair equals the lowest eigenpair of a symmetric matrix, also
    when the Krylov space is exhausted before ``krylov`` steps (dimension 5 < 12)."""
    from mess.scf.newton import lowest_curvature

    rng = np.random.default_rng(3)
    for n, krylov in ((30, 30), (5, 12)):
        a = rng.normal(size=(n, n))
        a = a + a.T
        a[0, 0] -= 5.0
        w, v = np.linalg.eigh(a)
        theta, vec = lowest_curvature(lambda x: jnp.asarray(a) @ x, jnp.asarray(rng.normal(size=n)), krylov)
        assert abs(float(theta) - w[0]) < 1e-10
        assert abs(abs(float(np.dot(np.asarray(vec), v[:, 0]))) - 1) < 1e-10


def test_stability_phase_leaves_the_saddle_of_stretched_h2():
    """H2 at 2.5 Angstrom, UHF/6-31G from a spin-symmetric guess: DIIS converges to
    the restricted solution, a saddle point of the UHF energy (past the Coulson-Fischer
    point); the stability phase finds the negative curvature and converges to the
    broken-symmetry minimum that PySCF's UHF reaches from a spin-polarised guess.
    (PySCF's own ``stability()`` calls this saddle stable: its Davidson starts from
    spin-symmetric vectors, which never reach the spin-antisymmetric mode; ours
    starts from a random vector.)"""
    from mess.scf.kernel import diis_phase, finalize, initial_state, make_problem, stability_phase

    mol = pyscf_mol("H 0 0 0; H 0 0 2.5", "6-31g")
    s, h, eri, e_nuc = integrals(mol)
    veff_fn = hf_veff(eri_get_jk(eri), False)
    dm0 = minao_guess(mol, True)  # split evenly between the spins: the symmetric saddle

    @jax.jit
    def run(check):
        p = make_problem(s, h, e_nuc, mol.nelec, veff_fn, restricted=False, options=TIGHT)
        plain = diis_phase(p, initial_state(p, dm0))
        return finalize(p, plain), finalize(p, stability_phase(p, plain, check))

    plain, stable = run(True)
    saddle = pyscf_scf.UHF(mol)
    saddle.conv_tol = 1e-11
    saddle.kernel(dm0=np.stack([0.5 * dm0, 0.5 * dm0]))
    assert abs(float(plain.energy) - saddle.e_tot) < 1e-8  # both stop at the saddle
    mf = pyscf_scf.UHF(mol)
    mf.conv_tol = 1e-11
    polarised = np.stack([0.5 * dm0, 0.5 * dm0])
    polarised[0, 0, 0] += 0.3
    polarised[1, 0, 0] -= 0.3
    mf.kernel(dm0=polarised)
    assert mf.e_tot < saddle.e_tot - 0.1
    assert bool(stable.converged)
    assert abs(float(stable.energy) - mf.e_tot) < 1e-8
    # the check off: the state passes through unchanged
    _, unchecked = run(False)
    assert float(unchecked.energy) == float(plain.energy)


@pytest.mark.slow
def test_no_fallback_reports_non_convergence():
    mol = pyscf_mol(NO, "sto-3g", spin=1)
    res = run_mess(mol, restricted=False, options=SCFOptions(fallback=None))
    assert not bool(res.converged)
    assert int(res.iterations) == 50


# ------------------------------------------------------------------- pieces


def test_diis_matches_pyscf_lib_diis():
    """Ring-buffer CDIIS extrapolation = pyscf.lib.diis.DIIS, also after wrap-around."""
    rng = np.random.default_rng(0)
    space, shape, m = 4, (3, 3), 6
    ref = pyscf_lib.diis.DIIS()
    ref.space = space
    state = diis_init(space, shape, m)
    for _ in range(7):
        x = rng.normal(size=shape)
        err = rng.normal(size=m) * 0.1
        expected = ref.update(x, xerr=err)
        state, got = jax.jit(diis_update)(state, jnp.asarray(x), jnp.asarray(err))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_sum_veff_merges_parts():
    mol = pyscf_mol(WATER, "sto-3g")
    _, _, eri, _ = integrals(mol)
    jk = eri_get_jk(eri)
    dm = jnp.asarray(minao_guess(mol))
    full = hf_veff(jk, True)(dm)
    # J - K/2 == (J - 0.3 K/2) + (-0.7 K/2): a "hybrid" plus an exchange-only part
    exchange_only = lambda d: (  # noqa: E731
        -0.35 * jk(d)[1], -0.175 * jnp.sum(jk(d)[1] * d), {"xc": -0.175 * jnp.sum(jk(d)[1] * d)})
    combo = sum_veff(hf_veff(jk, True, hyb=0.3), exchange_only)(dm)
    np.testing.assert_allclose(combo[0], full[0], atol=1e-12)
    assert abs(float(combo[1] - full[1])) < 1e-10
    assert set(combo[2]) == {"coulomb", "exchange", "xc"}


def test_jit_compiles_once_per_shape():
    """A new geometry's integrals (same shapes) reuse the compiled kernel."""
    traces = []

    @eqx.filter_jit
    def energy(s, h, eri, e_nuc, dm0):
        traces.append(1)
        veff_fn = hf_veff(eri_get_jk(eri), restricted=True)
        return scf(s, h, e_nuc, (5, 5), veff_fn, dm0, restricted=True, options=TIGHT)

    for dz in (0.0, 0.05):
        geometry = f"O 0 0 {0.1173 + dz}; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
        mol = pyscf_mol(geometry, "sto-3g")
        res = energy(*integrals(mol), minao_guess(mol))
        assert abs(float(res.energy) - run_pyscf(mol, restricted=True).e_tot) < 1e-8
    assert len(traces) == 1


@pytest.mark.slow
def test_plain_jax_jit():
    """``jax.jit`` works too: the veff module is a pytree argument (its ERIs traced)."""
    mol = pyscf_mol(WATER, "sto-3g")
    s, h, eri, e_nuc = integrals(mol)
    jitted = jax.jit(scf, static_argnames=("nelec", "restricted", "options"))
    res = jitted(s, h, e_nuc, (5, 5), hf_veff(eri_get_jk(eri), True), minao_guess(mol),
                 restricted=True, options=TIGHT)
    assert abs(float(res.energy) - run_pyscf(mol, restricted=True).e_tot) < 1e-8
