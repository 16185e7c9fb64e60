"""Implicit derivatives of converged SCF results (mess.implicit) against finite
differences and PySCF's finite-field response.

Most checks compile derivative programs of every integral kernel (minutes on a
2-core CPU) and are marked slow; run them with ``-m slow``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf

import mess
from mess.implicit import polarizability, scf_function
from mess.properties import AU2DEBYE

WATER = "3\n\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n"
METHANE = ("5\n\nC 0 0 0\nH 0.629 0.629 0.629\nH -0.629 -0.629 0.629\nH -0.629 0.629 -0.629\n"
           "H 0.629 -0.629 -0.629\n")
TIGHT = 1e-12


@pytest.fixture(scope="module")
def water():
    return mess.Molecule.from_xyz(WATER)


@pytest.fixture(scope="module")
def water_hf(water):
    params, solve = scf_function(water, "sto-3g", "hf", conv_tol=TIGHT)
    return params, solve, solve(params)


def _of_leaf(fn, params, name):
    """``fn`` as a function of one leaf of the parameters (the others constant, so
    JAX differentiates with respect to that leaf only)."""
    return lambda leaf: fn(eqx.tree_at(lambda p: getattr(p, name), params, leaf))


def _frontier_and_dipole(solve):
    """params -> [HOMO, LUMO, mu_x, mu_y, mu_z] (Hartree, e Bohr)."""

    def outputs(p):
        st = solve(p)
        return jnp.concatenate([jnp.stack([st.homo, st.lumo]), st.dipole_au])

    return outputs


def _fd(fn, params, path, index, h):
    """Central difference of fn(params) along one entry of the leaf at ``path``."""
    leaf = path(params)

    def at(delta):
        return np.asarray(fn(eqx.tree_at(path, params, leaf.at[index].add(delta))))

    return (at(h) - at(-h)) / (2 * h)


def test_state_matches_run(water, water_hf):
    _, _, st = water_hf
    res = mess.run(water, "sto-3g", "hf", conv_tol=TIGHT)
    assert abs(float(st.energy) - float(res.energy)) < 1e-10
    assert abs(float(st.homo) - float(res.homo)) < 1e-8
    assert abs(float(st.lumo) - float(res.lumo)) < 1e-8
    assert np.abs(np.asarray(st.mo_energy) - np.asarray(res.mo_energy)).max() < 1e-8
    assert np.abs(np.asarray(st.dipole) - np.asarray(res.dipole)).max() < 1e-6
    assert bool(st.converged)


@pytest.mark.slow  # ~95 s
def test_field_derivative_of_energy_is_minus_dipole(water_hf):
    params, solve, st = water_hf
    g = jax.grad(_of_leaf(lambda p: solve(p).energy, params, "field"))(params.field)
    assert np.abs(np.asarray(g) + np.asarray(st.dipole_au)).max() < 1e-7


@pytest.mark.slow
def test_homo_lumo_dipole_position_derivatives_vs_finite_differences(water_hf):
    params, solve, _ = water_hf
    outputs = _frontier_and_dipole(solve)

    jac = jax.jacrev(_of_leaf(outputs, params, "positions"))(params.positions)  # [5, natom, 3]
    assert np.isfinite(np.asarray(jac)).all()
    for index in [(0, 2), (1, 1), (1, 2)]:
        fd = _fd(outputs, params, lambda p: p.positions, index, 1e-4)
        assert np.abs(np.asarray(jac[(slice(None),) + index]) - fd).max() < 1e-6


@pytest.mark.slow
def test_field_derivatives_vs_finite_differences(water_hf):
    params, solve, _ = water_hf
    outputs = _frontier_and_dipole(solve)

    jac = jax.jacfwd(_of_leaf(outputs, params, "field"))(params.field)  # forward mode: [5, 3]
    fd = _fd(outputs, params, lambda p: p.field, 2, 1e-4)
    assert np.abs(np.asarray(jac[:, 2]) - fd).max() < 1e-6


@pytest.mark.slow
def test_basis_exponent_derivative_vs_finite_differences(water_hf):
    params, solve, _ = water_hf

    def objective(p):
        st = solve(p)
        return st.energy + st.homo

    g = jax.grad(_of_leaf(objective, params, "exponents"))(params.exponents)
    for index in [(0, 0), (2, 1)]:  # an O 1s and an O 2sp primitive
        fd = _fd(objective, params, lambda p: p.exponents, index, 1e-5)
        assert abs(float(g[index]) - float(fd)) < 1e-6


def _pyscf_polarizability(mol_pyscf, xc: str, h: float = 1e-3) -> np.ndarray:
    """alpha_ij = d mu_i / d F_j from PySCF by a four-point central difference of the
    finite-field dipole (h in atomic units)."""
    r = mol_pyscf.intor("int1e_r")

    def dipole(field):
        mf = scf.RHF(mol_pyscf) if xc == "hf" else dft.RKS(mol_pyscf)
        if xc != "hf":
            mf.xc, mf.grids.level, mf.small_rho_cutoff = xc, 3, 0
        h0 = mf.get_hcore()
        mf.get_hcore = lambda *a: h0 + np.einsum("x,xij->ij", field, r)
        mf.conv_tol, mf.conv_tol_grad = 1e-13, 1e-9
        mf.kernel()
        assert mf.converged
        charges = mol_pyscf.atom_charges()
        return charges @ mol_pyscf.atom_coords() - np.einsum("xij,ji->x", r, mf.make_rdm1())

    alpha = np.zeros((3, 3))
    for j in range(3):
        e = np.eye(3)[j]
        alpha[:, j] = (-dipole(2 * h * e) + 8 * dipole(h * e) - 8 * dipole(-h * e) + dipole(-2 * h * e)) / (12 * h)
    return alpha


@pytest.mark.slow
def test_polarizability_water_vs_pyscf_finite_field(water):
    alpha = np.asarray(polarizability(water, "6-31g", "hf", conv_tol=TIGHT))
    ref = _pyscf_polarizability(water.to_pyscf("6-31g"), "hf")
    assert np.abs(alpha - ref).max() < 1e-4
    assert np.abs(alpha - alpha.T).max() < 1e-6


@pytest.mark.slow
def test_polarizability_water_b3lyp_vs_pyscf_finite_field(water):
    alpha = np.asarray(polarizability(water, "6-31g", "b3lyp", conv_tol=TIGHT))
    ref = _pyscf_polarizability(water.to_pyscf("6-31g"), "b3lyp")
    assert np.abs(alpha - ref).max() < 1e-4


@pytest.mark.slow
def test_dft_functional_parameter_and_position_derivatives(water):
    params, solve = scf_function(water, "sto-3g", "b3lyp", grid_level=1, conv_tol=TIGHT)

    def outputs(p):
        st = solve(p)
        return jnp.stack([st.energy, st.lumo, st.dipole_au[2]])

    jac = jax.jacrev(outputs)(params)
    fd_hyb = (np.asarray(outputs(eqx.tree_at(lambda p: p.hyb, params, params.hyb + 1e-4)))
              - np.asarray(outputs(eqx.tree_at(lambda p: p.hyb, params, params.hyb - 1e-4)))) / 2e-4
    assert np.abs(np.asarray(jac.hyb) - fd_hyb).max() < 1e-6
    fd_w = _fd(outputs, params, lambda p: p.xc_weights, 2, 1e-4)  # B3LYP's VWN-RPA weight
    assert np.abs(np.asarray(jac.xc_weights[:, 2]) - fd_w).max() < 1e-6
    fd_r = _fd(outputs, params, lambda p: p.positions, (1, 2), 1e-4)  # grid moves with the atoms
    assert np.abs(np.asarray(jac.positions[:, 1, 2]) - fd_r).max() < 1e-6


@pytest.mark.slow
def test_degenerate_homo_has_finite_symmetric_derivative():
    """Methane's HOMO is triply degenerate: its derivative is the degenerate cluster's
    mean derivative, exact (vs finite differences) for the symmetric breathing mode."""
    mol = mess.Molecule.from_xyz(METHANE)
    params, solve = scf_function(mol, "sto-3g", "hf", conv_tol=TIGHT)
    g = np.asarray(jax.grad(_of_leaf(lambda p: solve(p).homo, params, "positions"))(params.positions))
    assert np.isfinite(g).all()
    assert np.abs(g.sum(axis=0)).max() < 1e-8  # translation invariance
    h = 1e-4

    def homo(t):
        return float(solve(eqx.tree_at(lambda p: p.positions, params, params.positions * (1 + t))).homo)

    fd = (homo(h) - homo(-h)) / (2 * h)
    analytic = float(np.sum(g * np.asarray(params.positions)))
    assert abs(analytic - fd) < 1e-6


def test_unconverged_outputs_are_flagged(water):
    params, solve = scf_function(water, "sto-3g", "hf", max_cycle=1, fallback=None)
    assert not bool(solve(params).converged)


def test_units_of_dipole(water_hf):
    _, _, st = water_hf
    assert np.allclose(np.asarray(st.dipole), np.asarray(st.dipole_au) * AU2DEBYE)
