"""Energy-based training: the loss (energy of the density a network proposes) is
differentiable in the network's parameters, its minimum is the SCF energy, padding
does not change it, and the model is exactly equivariant."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mess
from mess.train import AOTransformer, batch_loss, item_energies, training_batches
from mess.train.objective import fock, predicted_energy

from molecules import WATER


@pytest.fixture(scope="module")
def engine():
    return mess.Engine()


@pytest.fixture(scope="module")
def water():
    return mess.Molecule.from_xyz(WATER)


@pytest.fixture(scope="module")
def water_batch(engine, water):
    (batch,) = training_batches([water], "sto-3g", "hf", engine=engine)
    return batch


def _split(model):
    return eqx.partition(model, eqx.is_inexact_array)


def _directional_fd(loss, params, direction, eps):
    """Central difference of ``loss`` along ``direction``, Richardson-extrapolated
    (error O(eps^4))."""
    def central(h):
        plus = jax.tree.map(lambda a, d: a + h * d, params, direction)
        minus = jax.tree.map(lambda a, d: a - h * d, params, direction)
        return (loss(plus) - loss(minus)) / (2 * h)

    return (4 * central(eps / 2) - central(eps)) / 3


@pytest.mark.parametrize("cycles", [0, 3])
def test_loss_gradient_matches_finite_differences(water_batch, cycles):
    model = AOTransformer.tiny(jax.random.PRNGKey(0))
    params, static = _split(model)

    def loss(p):
        return batch_loss(eqx.combine(p, static), water_batch, cycles)

    grad = jax.grad(loss)(params)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    def unit(vs):
        norm = jnp.sqrt(sum(jnp.sum(v * v) for v in vs))
        return [v / norm for v in vs]

    # a unit step in parameter space: half along the gradient (well above the finite
    # differences' rounding), half random (every parameter's derivative enters)
    random = unit([jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    direction = jax.tree.unflatten(tree, unit([a + b for a, b in zip(unit(jax.tree.leaves(grad)), random)]))
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
    numeric = _directional_fd(loss, params, direction, 1e-3)
    assert abs(analytic) > 1e-5
    assert abs(analytic - numeric) <= 1e-6 * abs(analytic), (float(analytic), float(numeric))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))


@pytest.mark.slow
def test_loss_minimum_is_the_scf_energy(water_batch, water, engine):
    """The correction W* = F[D_SCF] - F[D_MINAO] gives back the converged SCF energy,
    and every other correction a higher energy (variational)."""
    ref = mess.run(water, "sto-3g", conv_tol=1e-12, engine=engine)
    problem = jax.tree.map(lambda a: a[0], water_batch.problems)
    sig = water_batch.signature
    from mess.basis.shells import basis_layout

    ix = basis_layout(water.numbers, "sto-3g").engine_index(sig.basis)
    dm = jnp.zeros((1, sig.nao, sig.nao)).at[0, ix[:, None], ix[None, :]].set(ref.density)
    w_star = (fock(problem, dm) - problem.fock0)[0]
    assert abs(float(predicted_energy(problem, w_star)) - float(ref.energy)) < 1e-9
    model = AOTransformer.tiny(jax.random.PRNGKey(3))
    e_model = item_energies(model, water_batch)[0]
    assert float(e_model) > float(ref.energy)


def test_predicted_energy_is_invariant_under_translation_and_rotation(water_batch, water, engine):
    model = AOTransformer.tiny(jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.physics_weights, model, jnp.asarray([0.0, 0.01, -0.02, 0.05, 0.03, -0.01]))
    pos = np.asarray(water.positions)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    moved = [mess.Molecule(water.numbers, pos + np.array([0.3, -1.2, 2.0]), water.charge, water.spin),
             mess.Molecule(water.numbers, pos @ rot.T, water.charge, water.spin)]
    base = float(item_energies(model, water_batch)[0])
    shifted, rotated = (float(item_energies(model, b)[0])
                        for b in (training_batches([m], "sto-3g", "hf", engine=engine)[0] for m in moved))
    assert abs(base - float(water_batch.problems.ham.e_nuc[0])) > 1.0  # a real energy, not a constant
    assert abs(shifted - base) < 1e-9
    assert abs(rotated - base) < 1e-9


@pytest.mark.slow
def test_batch_of_different_molecules_equals_sum_of_singles():
    engine = mess.Engine(max_buckets=1)
    mols = [mess.Molecule.from_smiles(s) for s in ("O", "N", "C", "[H]F")]
    (batch,) = training_batches(mols, "sto-3g", "hf", engine=engine)
    assert sorted(batch.index) == [0, 1, 2, 3]
    model = AOTransformer.tiny(jax.random.PRNGKey(0))
    params, static = _split(model)

    def loss_of(b):
        return jax.value_and_grad(lambda p: batch_loss(eqx.combine(p, static), b, 3))(params)

    total, grad = loss_of(batch)
    singles = [loss_of(training_batches([m], "sto-3g", "hf", engine=mess.Engine())[0]) for m in mols]
    assert abs(float(total) - sum(float(s[0]) for s in singles)) <= 1e-10 * abs(float(total))
    summed = jax.tree.map(lambda *g: sum(g), *[s[1] for s in singles])
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(summed)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))))
