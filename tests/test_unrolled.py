"""The fixed-cycle SCF differentiated end to end (mess.unrolled)."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest

import mess
from mess.unrolled import unrolled_scf_function

WATER = "3\n\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n"
METHANE = ("5\n\nC 0 0 0\nH 0.629 0.629 0.629\nH -0.629 -0.629 0.629\nH -0.629 0.629 -0.629\n"
           "H 0.629 -0.629 -0.629\n")


@pytest.fixture(scope="module")
def water():
    return mess.Molecule.from_xyz(WATER)


@pytest.mark.slow
def test_enough_cycles_give_the_scf_energy_and_analytic_gradient(water):
    params, fn = unrolled_scf_function(water, "sto-3g", "hf", cycles=15)
    energy = jax.jit(lambda p: fn(p).energy)
    e, g = jax.jit(jax.value_and_grad(lambda p: fn(p).energy))(params)
    res, g_ref = mess.energy_and_gradient(water, "sto-3g", "hf", conv_tol=1e-12)
    assert abs(float(e) - float(res.energy)) < 1e-9
    assert abs(float(energy(params)) - float(e)) < 1e-12
    assert np.abs(np.asarray(g.positions) - np.asarray(g_ref)).max() < 1e-6


@pytest.mark.slow
def test_truncated_scf_derivatives_are_exact(water):
    """After 3 cycles the energy is not stationary: the unrolled derivative is the
    exact derivative of the truncated calculation (finite differences)."""
    params, fn = unrolled_scf_function(water, "sto-3g", "hf", cycles=3)

    def outputs(p):
        st = fn(p)
        return jax.numpy.stack([st.energy, st.homo, st.dipole[2]])

    jac = jax.jit(jax.jacrev(outputs))(params)
    out = jax.jit(outputs)
    h = 1e-4
    for path, index in [(lambda p: p.positions, (1, 1)), (lambda p: p.field, 2)]:
        leaf = path(params)
        fd = (np.asarray(out(eqx.tree_at(path, params, leaf.at[index].add(h))))
              - np.asarray(out(eqx.tree_at(path, params, leaf.at[index].add(-h))))) / (2 * h)
        got = np.asarray(path(jac)[(slice(None),) + (index if isinstance(index, tuple) else (index,))])
        assert np.abs(got - fd).max() < 1e-6
    assert float(fn(params).grad_norm) > 1e-4  # really unconverged


@pytest.mark.slow
def test_degenerate_orbitals_give_finite_gradients():
    mol = mess.Molecule.from_xyz(METHANE)
    params, fn = unrolled_scf_function(mol, "sto-3g", "hf", cycles=8)
    def objective(p):
        st = fn(p)
        return st.homo + st.energy

    g = jax.jit(jax.grad(objective))(params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(g))


def test_initial_density_is_differentiable(water):
    params, fn = unrolled_scf_function(water, "sto-3g", "hf", cycles=2, diis=False)
    from pyscf import scf

    dm0 = jax.numpy.asarray(scf.hf.init_guess_by_minao(water.to_pyscf("sto-3g")))
    g = jax.grad(lambda d: fn(params, d).energy)(dm0)
    assert g.shape == dm0.shape and np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


def test_bad_cycle_count(water):
    with pytest.raises(ValueError, match="cycles"):
        unrolled_scf_function(water, "sto-3g", "hf", cycles=0)
