"""AO values and XC energy / potential against PySCF; grid-response gradient vs FD."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto, scf

from mess.basis import ao_values, make_basis
from mess.grid import grid_coords_weights, make_grid_plan
from mess.scf import eri_get_jk
from mess.structure import Molecule
from mess.xc import build_xc_fn, ks_veff, make_xc_fn, make_xc_fn_direct, parse_xc, xc_energy

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
OH = "O 0 0 0; H 0 0 0.97"


def random_points(n=300, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)) * 1.5


def pyscf_grid(mol, level):
    grids = dft.gen_grid.Grids(mol)
    grids.level = level
    grids.alignment = 0
    grids.build(sort_grids=False)
    return grids


GCW = jax.jit(grid_coords_weights)


def mess_setup(mol, basis_name, level, cart=False):
    m = Molecule.from_pyscf(mol)
    basis = make_basis(m, basis_name, cart=cart)
    coords, weights = GCW(make_grid_plan(m.numbers, level), m.positions)
    return m, basis, coords, weights


@pytest.mark.parametrize("atom,basis_name", [(WATER, "def2-svp"), ("N 0 0 0; N 0 0 1.1", "cc-pvtz")])
@pytest.mark.parametrize("cart", [False, True])
def test_ao_values_match_pyscf(atom, basis_name, cart):
    mol = gto.M(atom=atom, basis=basis_name, cart=cart, verbose=0)
    basis = make_basis(Molecule.from_pyscf(mol), basis_name, cart=cart)
    pts = random_points()
    ref = dft.numint.eval_ao(mol, pts, deriv=1)
    pos = jnp.asarray(mol.atom_coords())
    got = ao_values(basis, pos, pts, deriv=1, block_size=128)  # 3 blocks, last one padded
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-10)
    got0 = ao_values(basis, pos, pts[:50], deriv=0)
    np.testing.assert_allclose(np.asarray(got0), ref[0, :50], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_ao_values_g_functions():
    mol = gto.M(atom="F 0 0 0; H 0 0 0.92", basis="cc-pvqz", verbose=0)
    basis = make_basis(Molecule.from_pyscf(mol), "cc-pvqz")
    pts = random_points(200)
    ref = dft.numint.eval_ao(mol, pts, deriv=1)
    got = ao_values(basis, jnp.asarray(mol.atom_coords()), pts, deriv=1)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-10)


def _call(fn, dm):
    return eqx.filter_jit(lambda f, d: f(d))(fn, jnp.asarray(dm))


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe", "b3lyp"])
def test_rks_xc_matches_pyscf(xc):
    mol = gto.M(atom=WATER, basis="def2-svp", verbose=0)
    grids = pyscf_grid(mol, 1)
    dm = scf.hf.init_guess_by_minao(mol)
    nelec, e_ref, v_ref = dft.numint.NumInt().nr_rks(mol, grids, xc, dm)
    m, basis, coords, weights = mess_setup(mol, "def2-svp", 1)
    f = parse_xc(xc)
    fn = build_xc_fn(f, basis, m.positions, coords, weights, restricted=True, block_size=1000)
    e, v = _call(fn, dm)
    assert abs(float(e) - e_ref) < 1e-10
    np.testing.assert_allclose(np.asarray(v), v_ref, rtol=0, atol=1e-10)
    e_direct = xc_energy(f, basis, m.positions, coords, weights, jnp.asarray(dm), block_size=1500)
    assert abs(float(e_direct) - e_ref) < 1e-10


def test_uks_xc_matches_pyscf():
    mol = gto.M(atom=OH, basis="def2-svp", spin=1, verbose=0)
    grids = pyscf_grid(mol, 1)
    dm = np.asarray(scf.uhf.UHF(mol).init_guess_by_minao())
    dm[0] *= 1.1  # make the spin densities differ in shape, not only in scale
    nelec, e_ref, v_ref = dft.numint.NumInt().nr_uks(mol, grids, "pbe", dm)
    m, basis, coords, weights = mess_setup(mol, "def2-svp", 1)
    f = parse_xc("pbe")
    fn = make_xc_fn_direct(f, basis, m.positions, coords, weights, restricted=False, block_size=1000)
    e, v = _call(fn, dm)
    assert abs(float(e) - e_ref) < 1e-10
    np.testing.assert_allclose(np.asarray(v), v_ref, rtol=0, atol=1e-10)


def test_ks_veff_matches_pyscf():
    """J - K/2 hyb + V_xc and e_two = E_J + E_K + E_xc as PySCF's RKS.get_veff."""
    mol = gto.M(atom=WATER, basis="sto-3g", verbose=0)
    mf = dft.RKS(mol, xc="b3lyp")
    mf.grids = pyscf_grid(mol, 0)
    dm = mf.get_init_guess()
    ref = mf.get_veff(mol, dm)
    m, basis, coords, weights = mess_setup(mol, "sto-3g", 0)
    f = parse_xc("b3lyp")
    ao = ao_values(basis, m.positions, coords, deriv=1)
    veff_fn = ks_veff(eri_get_jk(mol.intor("int2e")), make_xc_fn(f, ao, weights, True), f, True)
    veff, e_two, parts = veff_fn(jnp.asarray(dm))
    np.testing.assert_allclose(np.asarray(veff), ref, rtol=0, atol=1e-10)
    assert abs(float(e_two) - (ref.ecoul + ref.exc)) < 1e-10
    assert abs(float(parts["coulomb"]) - ref.ecoul) < 1e-10


def test_ks_veff_pure_skips_k():
    calls = []

    def get_jk(dm, with_j=True, with_k=True):
        calls.append(with_k)
        return jnp.eye(2) * jnp.trace(dm), jnp.eye(2) if with_k else None

    def xc_fn(dm):
        return jnp.sum(dm), jnp.ones_like(dm)

    fn = ks_veff(get_jk, xc_fn, parse_xc("pbe"), restricted=True)
    veff, e_two, parts = fn(jnp.eye(2))
    assert calls == [False]
    assert float(parts["exchange"]) == 0.0
    np.testing.assert_allclose(np.asarray(veff), 2 * np.eye(2) + 1)


def test_xc_energy_grad_positions_vs_fd():
    """dE_xc/dR at fixed dm, grid (points and Becke weights) moving with the atoms."""
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    dm = jnp.asarray(scf.hf.init_guess_by_minao(mol))
    m = Molecule.from_pyscf(mol)
    basis = make_basis(m, "6-31g")
    plan = make_grid_plan(m.numbers, 0)
    f = parse_xc("pbe")

    @jax.jit
    def energy(pos):
        coords, weights = grid_coords_weights(plan, pos)
        return xc_energy(f, basis, pos, coords, weights, dm, block_size=2048)

    pos0 = jnp.asarray(m.positions)
    g = np.asarray(jax.grad(energy)(pos0))
    h = 1e-4
    for atom, xyz in [(0, 2), (1, 1), (2, 0)]:
        step = jnp.zeros_like(pos0).at[atom, xyz].set(h)
        fd = (energy(pos0 + step) - energy(pos0 - step)) / (2 * h)
        assert abs(g[atom, xyz] - float(fd)) < 1e-6, (atom, xyz, g[atom, xyz], float(fd))
    # translation invariance of the energy with a co-moving grid
    assert abs(g.sum(axis=0)).max() < 1e-6


def test_hf_functional_has_no_xc():
    mol = gto.M(atom="H 0 0 0; H 0 0 0.74", basis="sto-3g", verbose=0)
    m, basis, coords, weights = mess_setup(mol, "sto-3g", 0)
    fn = build_xc_fn(parse_xc("hf"), basis, m.positions, coords, weights, restricted=True)
    e, v = fn(jnp.eye(2))
    assert float(e) == 0.0 and not np.any(np.asarray(v))
