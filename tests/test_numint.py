"""AO values and XC energy / potential against PySCF; grid-response gradient vs FD;
the engine's energy functional (J/K + XC) and its Fock matrix against PySCF."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto, scf

import mess
from mess.basis import ao_values, basis_layout
from mess.basis.ao_values import ao_value_blocks
from mess.engine import Method, build, energy, fock, hamiltonian, prepare, signature_for
from mess.engine.system import default_params
from mess.grid import grid_coords_weights, make_grid_plan
from mess.structure import Molecule
from mess.xc import build_xc_fn, make_xc_fn_direct, parse_xc, xc_energy

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


class Basis:
    """An unpadded basis in engine AO order, with the maps to PySCF's order."""

    def __init__(self, mol, name, cart=False):
        self.molecule = Molecule.from_pyscf(mol)
        self.layout = basis_layout(self.molecule.numbers, name, cart)
        self.shape = self.layout.shape()
        self.groups = jax.tree.map(jnp.asarray, self.layout.groups(self.shape))
        self.ix = self.layout.engine_index(self.shape)
        self.positions = jnp.asarray(self.molecule.positions)

    def to_engine(self, a):
        a = jnp.asarray(a)
        n = self.shape.nao
        return jnp.zeros(a.shape[:-2] + (n, n)).at[..., self.ix[:, None], self.ix[None, :]].set(a)

    def to_pyscf(self, a):
        a = np.asarray(a)
        return a[..., self.ix, :][..., self.ix]


def mess_setup(mol, basis_name, level, cart=False):
    b = Basis(mol, basis_name, cart)
    coords, weights = GCW(make_grid_plan(b.molecule.numbers, level), b.positions)
    return b, coords, weights


@pytest.mark.parametrize("atom,basis_name", [(WATER, "def2-svp"), ("N 0 0 0; N 0 0 1.1", "cc-pvtz")])
@pytest.mark.parametrize("cart", [False, True])
def test_ao_values_match_pyscf(atom, basis_name, cart):
    mol = gto.M(atom=atom, basis=basis_name, cart=cart, verbose=0)
    b = Basis(mol, basis_name, cart)
    pts = random_points()
    ref = dft.numint.eval_ao(mol, pts, deriv=1)
    fn = jax.jit(lambda g, p, c: ao_values(b.shape, g, p, c, deriv=1, block_size=128))  # 3 blocks, last padded
    got = np.asarray(fn(b.groups, b.positions, pts))[..., b.ix]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    got0 = np.asarray(ao_values(b.shape, b.groups, b.positions, pts[:50], deriv=0))[..., b.ix]
    np.testing.assert_allclose(got0, ref[0, :50], rtol=0, atol=1e-10)
    # the XC sweep's layout: [nblk, nd, B, nao], the last block's extra points repeat the first
    blocks = np.asarray(ao_value_blocks(b.shape, b.groups, b.positions, pts, 1, 128))[..., b.ix]
    npts = pts.shape[0]
    assert blocks.shape == (-(-npts // 128), 4, 128, mol.nao)
    np.testing.assert_allclose(np.concatenate(list(blocks), axis=1)[:, :npts], ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(blocks[-1, :, npts % 128:], np.broadcast_to(ref[:, :1], blocks[-1, :, npts % 128:].shape),
                               rtol=0, atol=1e-10)


@pytest.mark.slow
def test_ao_values_g_functions():
    mol = gto.M(atom="F 0 0 0; H 0 0 0.92", basis="cc-pvqz", verbose=0)
    b = Basis(mol, "cc-pvqz")
    pts = random_points(200)
    ref = dft.numint.eval_ao(mol, pts, deriv=1)
    got = np.asarray(jax.jit(lambda p: ao_values(b.shape, b.groups, p, pts, deriv=1))(b.positions))[..., b.ix]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def _call(fn, dm):
    return jax.jit(lambda f, d: f(d))(fn, jnp.asarray(dm))


@pytest.mark.parametrize("xc", ["lda,vwn", "pbe", "b3lyp"])
def test_rks_xc_matches_pyscf(xc):
    mol = gto.M(atom=WATER, basis="def2-svp", verbose=0)
    grids = pyscf_grid(mol, 1)
    dm = scf.hf.init_guess_by_minao(mol)
    nelec, e_ref, v_ref = dft.numint.NumInt().nr_rks(mol, grids, xc, dm)
    b, coords, weights = mess_setup(mol, "def2-svp", 1)
    f = parse_xc(xc)
    fn = build_xc_fn(f, b.shape, b.groups, b.positions, coords, weights, restricted=True, block_size=1000)
    e, v = _call(fn, b.to_engine(dm))
    assert abs(float(e) - e_ref) < 1e-10
    np.testing.assert_allclose(b.to_pyscf(v), v_ref, rtol=0, atol=1e-10)
    e_direct = jax.jit(lambda d: xc_energy(f, b.shape, b.groups, b.positions, coords, weights, d,
                                           block_size=1500))(b.to_engine(dm))
    assert abs(float(e_direct) - e_ref) < 1e-10


def test_uks_xc_matches_pyscf():
    mol = gto.M(atom=OH, basis="def2-svp", spin=1, verbose=0)
    grids = pyscf_grid(mol, 1)
    dm = np.asarray(scf.uhf.UHF(mol).init_guess_by_minao())
    dm[0] *= 1.1  # make the spin densities differ in shape, not only in scale
    nelec, e_ref, v_ref = dft.numint.NumInt().nr_uks(mol, grids, "pbe", dm)
    b, coords, weights = mess_setup(mol, "def2-svp", 1)
    f = parse_xc("pbe")
    fn = make_xc_fn_direct(f, b.shape, b.groups, b.positions, coords, weights, restricted=False, block_size=1000)
    e, v = _call(fn, b.to_engine(dm))
    assert abs(float(e) - e_ref) < 1e-10
    np.testing.assert_allclose(b.to_pyscf(v), v_ref, rtol=0, atol=1e-10)


def test_xc_energy_derivative_rule_matches_autodiff():
    """XCFunction.energy's custom derivative (V_xc from the same sweep) equals plain
    autodiff of the energy expression, along the density and along the positions."""
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    b, coords, weights = mess_setup(mol, "6-31g", 0)
    f = parse_xc("pbe")
    dm = b.to_engine(scf.hf.init_guess_by_minao(mol))

    def xc_at(pos):
        c, w = grid_coords_weights(make_grid_plan(b.molecule.numbers, 0), pos)
        return make_xc_fn_direct(f, b.shape, b.groups, pos, c, w, restricted=True, block_size=512)

    g_fast = jax.jit(jax.grad(lambda d, p: xc_at(p).energy(d), argnums=(0, 1)))(dm, b.positions)
    g_plain = jax.jit(jax.grad(lambda d, p: xc_at(p).plain_energy(d), argnums=(0, 1)))(dm, b.positions)
    for x, y in zip(g_fast, g_plain):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-11)


@pytest.mark.parametrize("xc,spin", [("b3lyp", 0), ("pbe", 1)])
def test_energy_functional_and_fock_match_pyscf(xc, spin):
    """The engine's one energy functional at a (padded) system: E[D] and dE/dD are
    PySCF's energy_tot and Fock matrix at the same density (grid level 0)."""
    atom = WATER if spin == 0 else OH
    m = mess.Molecule.from_xyz(f"{len(atom.split(';'))}\n\n" + atom.replace("; ", "\n"), spin=spin)
    p = prepare(m, Method("sto-3g", xc, grid_level=0))
    sig = signature_for([p])
    system = jax.tree.map(jnp.asarray, build(p, sig))
    ham = jax.jit(lambda s, q: hamiltonian(sig, s, q))(system, default_params(sig, system))
    mol = m.to_pyscf("sto-3g")
    mf = (dft.RKS if spin == 0 else dft.UKS)(mol, xc=xc)
    mf.grids = pyscf_grid(mol, 0)
    mf.small_rho_cutoff = 0
    dm = mf.get_init_guess()
    ix = p.layout.engine_index(sig.basis)
    n = sig.nao
    dme = jnp.zeros(np.shape(dm)[:-2] + (n, n)).at[..., ix[:, None], ix[None, :]].set(dm)
    e, parts = jax.jit(energy)(ham, dme)
    assert abs(float(e) - mf.energy_tot(dm=dm)) < 1e-10
    f = np.asarray(jax.jit(fock)(ham, dme))[..., ix, :][..., ix]
    np.testing.assert_allclose(f, mf.get_fock(dm=dm), rtol=0, atol=1e-10)


def test_xc_energy_grad_positions_vs_fd():
    """dE_xc/dR at fixed dm, grid (points and Becke weights) moving with the atoms."""
    mol = gto.M(atom=WATER, basis="6-31g", verbose=0)
    b = Basis(mol, "6-31g")
    dm = b.to_engine(scf.hf.init_guess_by_minao(mol))
    plan = make_grid_plan(b.molecule.numbers, 0)
    f = parse_xc("pbe")

    @jax.jit
    def energy_at(pos):
        coords, weights = grid_coords_weights(plan, pos)
        return xc_energy(f, b.shape, b.groups, pos, coords, weights, dm, block_size=2048)

    pos0 = b.positions
    g = np.asarray(jax.grad(energy_at)(pos0))
    h = 1e-4
    for atom, xyz in [(0, 2), (1, 1), (2, 0)]:
        step = jnp.zeros_like(pos0).at[atom, xyz].set(h)
        fd = (energy_at(pos0 + step) - energy_at(pos0 - step)) / (2 * h)
        assert abs(g[atom, xyz] - float(fd)) < 1e-6, (atom, xyz, g[atom, xyz], float(fd))
    # translation invariance of the energy with a co-moving grid
    assert abs(g.sum(axis=0)).max() < 1e-6


def test_hf_functional_has_no_xc():
    mol = gto.M(atom="H 0 0 0; H 0 0 0.74", basis="sto-3g", verbose=0)
    b, coords, weights = mess_setup(mol, "sto-3g", 0)
    fn = build_xc_fn(parse_xc("hf"), b.shape, b.groups, b.positions, coords, weights, restricted=True)
    e, v = fn(jnp.eye(2))
    assert float(e) == 0.0 and not np.any(np.asarray(v))
