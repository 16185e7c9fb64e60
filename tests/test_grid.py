"""mess.grid against pyscf.dft.gen_grid.Grids, plus grad / vmap / padding checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto

from mess.grid import GridPlan, grid_coords_weights, make_grid_plan, pad_plan
from mess.grid import tables
from mess.grid.plan import default_block_size
from mess.structure import Molecule

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
BENZENE = """
C 0.0000 1.3970 0.0000; C 1.2098 0.6985 0.0000; C 1.2098 -0.6985 0.0000
C 0.0000 -1.3970 0.0000; C -1.2098 -0.6985 0.0000; C -1.2098 0.6985 0.0000
H 0.0000 2.4810 0.0000; H 2.1486 1.2405 0.0000; H 2.1486 -1.2405 0.0000
H 0.0000 -2.4810 0.0000; H -2.1486 -1.2405 0.0000; H -2.1486 1.2405 0.0000
"""
CH3CL = "C 0 0 0; Cl 0 0 1.781; H 1.027 0 -0.363; H -0.513 0.889 -0.363; H -0.513 -0.889 -0.363"
H2S = "S 0 0 0.1030; H 0 0.9616 -0.8239; H 0 -0.9616 -0.8239"
HYDROXIDE = "O 0 0 0; H 0 0 0.964"  # OH-, charge -1 (the grid ignores the charge)

GCW = jax.jit(grid_coords_weights)

MOLECULES = {
    "water": (WATER, 0),
    "benzene": (BENZENE, 0),
    "ch3cl": (CH3CL, 0),
    "h2s": (H2S, 0),
    "hydroxide": (HYDROXIDE, -1),
}


def pyscf_grid(mol, level: int, alignment: int = 0):
    """PySCF's default grid in its unsorted order.

    In PySCF 2.14 ``sort_grids`` is an argument of ``Grids.build`` (not an attribute);
    by default the points are reordered into spatial boxes. ``alignment`` (default 8)
    appends zero-weight points at (1e-4, 1e-4, 1e-4) so the count is a multiple of 8;
    ``alignment = 0`` turns that off. No small-weight points are dropped by ``build``
    (only ``prune_by_density_`` drops points, and it is not part of the default grid).
    """
    grids = dft.gen_grid.Grids(mol)
    grids.level = level
    grids.alignment = alignment
    grids.build(sort_grids=False)
    return grids


def numbers_of(mol) -> tuple[int, ...]:
    return tuple(int(z) for z in mol.atom_charges())


@pytest.mark.parametrize("level", [0, 3, 5])
@pytest.mark.parametrize("name", list(MOLECULES))
def test_matches_pyscf(name, level):
    atom, charge = MOLECULES[name]
    mol = gto.M(atom=atom, charge=charge, spin=None, verbose=0)
    ref = pyscf_grid(mol, level)
    plan = make_grid_plan(numbers_of(mol), level)
    coords, weights = jax.jit(grid_coords_weights)(plan, mol.atom_coords())
    assert coords.shape == ref.coords.shape and weights.shape == ref.weights.shape
    np.testing.assert_allclose(coords, ref.coords, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weights, ref.weights, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(plan.atom_index, ref.atm_idx)
    np.testing.assert_allclose(plan.quadrature_weights, ref.quadrature_weights, rtol=0, atol=1e-10)


def test_molecule_interop_and_pyscf_alignment_padding():
    """Via mess.structure.Molecule; PySCF's default alignment only appends zero weights."""
    mol = Molecule.from_xyz("3\ncharge=0\n" + WATER.replace("; ", "\n"))
    ref = pyscf_grid(mol.to_pyscf("sto-3g"), 1, alignment=8)
    plan = make_grid_plan(mol.numbers, level=1)
    coords, weights = GCW(plan, mol.positions)
    n = plan.npts
    assert ref.weights.size == -(-n // 8) * 8
    np.testing.assert_allclose(coords, ref.coords[:n], rtol=0, atol=1e-10)
    np.testing.assert_allclose(weights, ref.weights[:n], rtol=0, atol=1e-10)
    assert np.all(ref.weights[n:] == 0)


def test_grid_integrates_gaussian():
    """Physical check: int exp(-|r - R_O|^2) d^3r = pi^{3/2}."""
    mol = gto.M(atom=WATER, verbose=0)
    plan = make_grid_plan(numbers_of(mol), level=3)
    coords, weights = grid_coords_weights(plan, mol.atom_coords())
    r2 = jnp.sum((coords - mol.atom_coords()[0]) ** 2, axis=1)
    # Level-3 quadrature error for this integrand is ~1e-7.
    assert abs(jnp.sum(weights * jnp.exp(-r2)) - np.pi**1.5) < 1e-6


R0 = np.array([0.3, -0.2, 0.4])


def gaussian_integral(plan, positions):
    coords, weights = grid_coords_weights(plan, positions)
    return jnp.sum(weights * jnp.exp(-jnp.sum((coords - R0) ** 2, axis=1)))


GRAD_GAUSSIAN = jax.jit(jax.grad(gaussian_integral, argnums=1))


def test_grad_matches_finite_differences():
    mol = gto.M(atom=WATER, verbose=0)
    # Small blocks so the blocked (lax.map + checkpoint) path is differentiated too.
    plan = make_grid_plan(numbers_of(mol), level=1, block_size=2048)
    assert plan.npts > 2 * plan.block_size
    pos = jnp.asarray(mol.atom_coords())
    f = jax.jit(gaussian_integral)
    grad = jax.jit(jax.grad(gaussian_integral, argnums=1))(plan, pos)
    assert np.all(np.isfinite(grad))
    h = 1e-4
    fd = np.zeros(pos.shape)
    for i in range(pos.shape[0]):
        for k in range(3):
            step = jnp.zeros_like(pos).at[i, k].set(h)
            fd[i, k] = (f(plan, pos + step) - f(plan, pos - step)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6)
    # The exact integral does not depend on the nuclei, so this gradient is the
    # derivative of the quadrature error: small (~1e-4 at level 1) but not zero.
    assert np.abs(grad).max() > 1e-5


def test_vjp_of_all_outputs_matches_finite_differences():
    """A random linear functional of (coords, weights): large, generic gradient."""
    mol = gto.M(atom=WATER, verbose=0)
    plan = make_grid_plan(numbers_of(mol), level=0, block_size=1000)
    rng = np.random.default_rng(1)
    u = rng.standard_normal(plan.npts) / plan.npts
    v = rng.standard_normal((plan.npts, 3)) / plan.npts

    def functional(positions):
        coords, weights = grid_coords_weights(plan, positions)
        return jnp.sum(u * weights) + jnp.sum(v * coords)

    pos = jnp.asarray(mol.atom_coords())
    f = jax.jit(functional)
    grad = jax.jit(jax.grad(functional))(pos)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-2
    h = 1e-4
    fd = np.zeros(pos.shape)
    for i in range(pos.shape[0]):
        for k in range(3):
            step = jnp.zeros_like(pos).at[i, k].set(h)
            fd[i, k] = (f(pos + step) - f(pos - step)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6)
    # Forward mode works too (custom rules are JVPs) and agrees with reverse mode.
    direction = jnp.asarray(rng.standard_normal(pos.shape))
    _, tangent = jax.jit(lambda p, d: jax.jvp(functional, (p,), (d,)))(pos, direction)
    np.testing.assert_allclose(tangent, jnp.sum(grad * direction), rtol=1e-10, atol=1e-12)


def test_translation_invariance_of_gradient():
    """An integrand that moves with the atoms gives forces summing to zero."""
    mol = gto.M(atom=WATER, verbose=0)
    plan = make_grid_plan(numbers_of(mol), level=0)

    def integral(positions):
        coords, weights = grid_coords_weights(plan, positions)
        d2 = jnp.sum((coords[:, None, :] - positions[None]) ** 2, axis=-1)
        return jnp.sum(weights * jnp.sum(jnp.exp(-0.7 * d2), axis=1))

    grad = jax.jit(jax.grad(integral))(jnp.asarray(mol.atom_coords()))
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-10)


def test_vmap_matches_loop():
    mol = gto.M(atom=WATER, verbose=0)
    plan = make_grid_plan(numbers_of(mol), level=0, block_size=1000)
    rng = np.random.default_rng(0)
    batch = mol.atom_coords()[None] + 0.05 * rng.standard_normal((3, 3, 3))
    cb, wb = jax.jit(jax.vmap(grid_coords_weights, in_axes=(None, 0)))(plan, batch)
    for b in range(3):
        c, w = GCW(plan, batch[b])
        np.testing.assert_allclose(cb[b], c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(wb[b], w, rtol=0, atol=1e-12)


def test_point_padding():
    mol = gto.M(atom=WATER, verbose=0)
    plan = make_grid_plan(numbers_of(mol), level=0)
    padded = make_grid_plan(numbers_of(mol), level=0, pad_to=plan.npts + 37)
    assert padded.npts == plan.npts + 37
    assert pad_plan(plan, padded.npts).npts == padded.npts
    pos = jnp.asarray(mol.atom_coords())
    c, w = GCW(padded, pos)
    assert np.all(w[plan.npts :] == 0)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w[: plan.npts], GCW(plan, pos)[1], rtol=0, atol=1e-14)
    integral = jax.jit(gaussian_integral)
    np.testing.assert_allclose(integral(padded, pos), integral(plan, pos), rtol=0, atol=1e-13)
    # Padding points sit on a nucleus (zero distance): gradients must stay finite.
    g_pad = GRAD_GAUSSIAN(padded, pos)
    g_ref = GRAD_GAUSSIAN(plan, pos)
    assert np.all(np.isfinite(g_pad))
    np.testing.assert_allclose(g_pad, g_ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        pad_plan(plan, plan.npts - 1)


def test_atom_padding():
    """Atomic number 0 marks a padding atom: no points, no part in the partition."""
    mol = gto.M(atom=WATER, verbose=0)
    pos = jnp.asarray(mol.atom_coords())
    plan = make_grid_plan(numbers_of(mol), level=0)
    padded = make_grid_plan(numbers_of(mol) + (0, 0), level=0, pad_to=plan.npts + 5)
    # Padding atoms placed on top of a real atom and of each other.
    pos_pad = jnp.concatenate([pos, pos[:1], pos[:1]])
    c, w = GCW(padded, pos_pad)
    np.testing.assert_allclose(c[: plan.npts], GCW(plan, pos)[0], atol=0)
    np.testing.assert_allclose(w[: plan.npts], GCW(plan, pos)[1], atol=1e-15)
    g = GRAD_GAUSSIAN(padded, pos_pad)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[:3], GRAD_GAUSSIAN(plan, pos), atol=1e-12)
    np.testing.assert_array_equal(g[3:], 0.0)


def test_same_shape_shares_compilation():
    """Different molecules with equal atom and point counts reuse one compiled graph."""
    f = jax.jit(grid_coords_weights)
    a = make_grid_plan((8, 1, 1), level=0, pad_to=3000)
    b = make_grid_plan((7, 1, 1), level=0, pad_to=3000)
    pos = jnp.asarray(gto.M(atom=WATER, verbose=0).atom_coords())
    f(a, pos)
    n_before = f._cache_size()
    f(b, pos + 0.01)
    assert f._cache_size() == n_before


def test_host_tables_and_errors():
    assert default_block_size(3) == 16384 and default_block_size(25) == 1024
    assert tables.grid_sizes(1, 3) == (50, 302)
    assert tables.grid_sizes(8, 3) == (75, 302)
    assert tables.grid_sizes(17, 3) == (80, 434)
    a = tables.treutler_radii_adjust((8, 1, 0))
    np.testing.assert_array_equal(a, -a.T)
    assert np.all(a[2] == 0) and np.all(np.abs(a) <= 0.5)
    assert isinstance(make_grid_plan((1,), 0), GridPlan)
    with pytest.raises(ValueError):
        make_grid_plan((8, 1), level=10)
    with pytest.raises(ValueError):
        make_grid_plan((200,), level=0)
    with pytest.raises(ValueError):
        make_grid_plan((0, 0), level=0)
    plan = make_grid_plan((8, 1), level=0)
    with pytest.raises(ValueError):
        grid_coords_weights(plan, jnp.zeros((3, 3)))
