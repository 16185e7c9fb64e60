"""Analytic nuclear gradients vs PySCF, physical invariants, finite differences, and
the transformations (grad, vmap, jit) of ``mess.energy_function``.

The fast tests all use 6-31G, so the derivative integral kernels compile once per
angular-momentum class and serve every molecule of the module."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf

import mess
from mess.engine.calculation import Calculation
from mess.gradients import energy_and_gradient, inline_gradient

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
AMMONIA = "N 0 0 0.1; H 0.9377 0 -0.2; H -0.4689 0.8121 -0.2; H -0.4689 -0.8121 -0.2"
TIGHT = 1e-11
# Orbital-gradient threshold of the SCFs whose analytic gradients are compared: the
# error of an analytic gradient is first order in the residual orbital gradient
# (glycine/def2-svp B3LYP at the default sqrt(1e-11): both codes ~1e-6 Ha/Bohr off a
# 4-point finite difference of their own energies), so both sides converge it to 1e-7.
TIGHT_GRAD = 1e-7


def molecule(atom: str, charge: int = 0, spin: int | None = None) -> mess.Molecule:
    text = "\n".join(a.strip() for a in atom.split(";"))
    n = len(text.splitlines())
    return mess.Molecule.from_xyz(f"{n}\n\n{text}\n", charge=charge, spin=spin)


def pyscf_gradient(mol: mess.Molecule, basis: str, xc: str, grid_level: int = 3):
    pm = mol.to_pyscf(basis)
    restricted = mol.spin == 0
    if xc == "hf":
        mf = scf.RHF(pm) if restricted else scf.UHF(pm)
    else:
        mf = dft.RKS(pm) if restricted else dft.UKS(pm)
        mf.xc = xc
        mf.grids.level = grid_level
        mf.small_rho_cutoff = 0
    mf.conv_tol = TIGHT
    mf.conv_tol_grad = TIGHT_GRAD
    mf.kernel()
    assert mf.converged
    g = mf.nuc_grad_method()
    if xc != "hf":
        g.grid_response = True
    return mf.e_tot, g.kernel()


@pytest.fixture(scope="module")
def water():
    return molecule(WATER)


def _check_gradient(mol: mess.Molecule, basis: str, xc: str):
    res, g = energy_and_gradient(mol, basis, xc, conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
    e_ref, g_ref = pyscf_gradient(mol, basis, xc)
    assert bool(res.converged)
    assert abs(float(res.energy) - e_ref) < (1e-9 if xc == "hf" else 1e-8)
    assert np.abs(np.asarray(g) - g_ref).max() < 1e-6
    # translational invariance: the forces sum to zero
    assert np.abs(np.asarray(g).sum(axis=0)).max() < 1e-8


def test_hf_gradient_vs_pyscf(water):
    _check_gradient(water, "6-31g", "hf")


@pytest.mark.slow  # ~150 s of compiling the direct autodiff; the PySCF gradient checks cover the staged path
def test_staged_gradient_equals_direct_autodiff(water):
    """The engine's gradient pulls the energy's derivative back through each integral
    stage's own program (one-electron part, each ERI class, grid); the result equals
    reverse-mode autodiff of the fixed-orbital energy in one program, and the
    fixed-orbital energy at the SCF geometry is the SCF energy."""
    calc = Calculation(water, "6-31g", "hf", {"conv_tol": TIGHT})
    res, raw = calc.solve(gradient=True)
    assert len(calc.signature.classes) > 1
    prm = jax.tree.map(lambda x: x[0], raw["params"])
    s0 = raw["ints"][0]["overlap"][0]
    c0, occ = jnp.asarray(raw["res"].mo_coeff[0]), jnp.asarray(raw["res"].mo_occ[0])
    g_direct = calc.program("gradient", inline_gradient)(calc.system, prm, c0, occ, s0)
    assert np.abs(np.asarray(g_direct[:3]) - res.gradient).max() < 1e-12
    assert np.abs(np.asarray(g_direct[3:])).max() == 0.0  # the ghost atom
    from mess.engine import fixed_orbital_energy
    from mess.engine.stages import eri_part, one_electron_part

    sig = calc.signature
    blocks = tuple(eri_part(sig, i, calc.system, prm) for i in range(len(sig.classes)))
    e = jax.jit(lambda q: fixed_orbital_energy(sig, calc.system, q, one_electron_part(sig, calc.system, q), blocks,
                                               None, c0, occ, s0))(prm)
    assert abs(float(e) - float(res.energy)) < 1e-10


@pytest.fixture(scope="module")
def water_energy_fn(water):
    return mess.energy_function(water, "6-31g", "hf", conv_tol=TIGHT)


@pytest.mark.slow  # ~140 s; the analytic gradient is checked against PySCF's in the default suite
def test_energy_function_grad_matches_finite_differences(water, water_energy_fn):
    pos = jnp.asarray(water.positions)
    e, g = jax.value_and_grad(water_energy_fn)(pos)
    ref = mess.run(water, "6-31g", "hf", conv_tol=TIGHT)
    assert abs(float(e) - float(ref.energy)) < 1e-10
    h = 1e-3
    for atom, k in [(1, 2), (0, 1)]:
        d = np.zeros((3, 3))
        d[atom, k] = h
        fd = (water_energy_fn(pos + d) - water_energy_fn(pos - d)) / (2 * h)
        assert abs(float(fd) - float(g[atom, k])) < 1e-6


def _conformers(mol: mess.Molecule, n: int, scale: float, seed: int = 0) -> jnp.ndarray:
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.asarray(mol.positions)[None] + scale * rng.standard_normal((n, mol.natom, 3)))


@pytest.mark.slow
def test_energy_function_vmap(water, water_energy_fn):
    batch = _conformers(water, 4, 0.05)
    batched = jax.vmap(water_energy_fn)(batch)
    single = jnp.stack([water_energy_fn(p) for p in batch])
    assert np.abs(np.asarray(batched - single)).max() < 1e-10


@pytest.mark.slow
def test_energy_function_vmap_grad_and_jit(water, water_energy_fn):
    batch = _conformers(water, 4, 0.05, seed=1)
    g_batched = jax.vmap(jax.grad(water_energy_fn))(batch)
    g_single = jnp.stack([jax.grad(water_energy_fn)(p) for p in batch])
    assert np.abs(np.asarray(g_batched - g_single)).max() < 1e-9
    e_jit, g_jit = jax.jit(jax.value_and_grad(water_energy_fn))(batch[0])
    assert abs(float(e_jit - water_energy_fn(batch[0]))) < 1e-10
    assert np.abs(np.asarray(g_jit - g_single[0])).max() < 1e-9


@pytest.mark.slow
def test_energy_function_vmap_ethanol():
    mol = molecule(HEAVY["ethanol"])
    f = mess.energy_function(mol, "sto-3g", "hf", conv_tol=TIGHT)
    batched_fn = jax.jit(jax.vmap(f))
    batch = _conformers(mol, 16, 0.03)
    batched = batched_fn(batch)
    single = jnp.stack([f(p) for p in batch])
    assert np.abs(np.asarray(batched - single)).max() < 1e-10
    # one compiled program serves the whole batch, and a second batch of conformers
    other = batched_fn(_conformers(mol, 16, 0.03, seed=7))
    assert np.all(np.isfinite(np.asarray(other)))
    assert batched_fn._cache_size() == 1


def test_batch_gradients_equal_single_and_are_finite_through_padding():
    """Forces of batched items (different molecules, padded to one signature) equal
    each molecule's own forces, and the gradient with respect to the padded batch
    positions is finite (zero on ghost atoms)."""
    mols = [molecule(WATER), molecule("O 0 0 0; H 0 0 0.97", spin=1)]  # padded: 3 and 2 atoms to 4
    batch = mess.run_batch(mols, "sto-3g", "hf", gradient=True, conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
    for m, r in zip(mols, batch):
        single, g = energy_and_gradient(m, "sto-3g", "hf", conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
        assert abs(float(r.energy) - float(single.energy)) < 1e-10
        assert r.gradient.shape == (m.natom, 3) and np.isfinite(r.gradient).all()
        assert np.abs(r.gradient - np.asarray(g)).max() < 1e-8


@pytest.mark.slow  # ~150 s; run_batch(gradient=True) against single forces stays in the default suite
def test_batch_energy_function_grad_gives_each_molecules_forces():
    """jax.grad of the summed batched energies with respect to the positions of
    different molecules (closed and open shell, so all unrestricted) gives each
    molecule's own gradient; energies equal the single-molecule runs."""
    mols = [molecule(WATER), molecule("O 0 0 0; H 0 0 0.97", spin=1)]
    energies = mess.batch_energy_function(mols, "sto-3g", "hf", conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
    positions = [m.positions for m in mols]
    values = energies(positions)
    grads = jax.grad(lambda ps: energies(ps).sum())(positions)
    assert values.shape == (2,) and len(grads) == 2
    for m, e, g in zip(mols, values, grads):
        single, ref = energy_and_gradient(m, "sto-3g", "hf", restricted=False, schwarz_threshold=0.0,
                                          conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
        assert abs(float(e) - float(single.energy)) < 1e-10
        assert g.shape == (m.natom, 3)
        assert np.abs(np.asarray(g) - np.asarray(ref)).max() < 1e-8
    with pytest.raises(ValueError, match="molecule 1 must have shape"):
        energies([positions[0], positions[0]])


@pytest.mark.slow
def test_batch_energy_function_under_jit_equals_eager():
    mols = [molecule(WATER), molecule(AMMONIA)]
    energies = mess.batch_energy_function(mols, "sto-3g", "hf", conv_tol=TIGHT, conv_tol_grad=TIGHT_GRAD)
    positions = [m.positions for m in mols]
    total = lambda ps: energies(ps).sum()  # noqa: E731
    eager_e, eager_g = energies(positions), jax.grad(total)(positions)
    jit_e, jit_g = jax.jit(energies)(positions), jax.jit(jax.grad(total))(positions)
    np.testing.assert_allclose(np.asarray(jit_e), np.asarray(eager_e), atol=1e-10, rtol=0)
    for a, b in zip(jit_g, eager_g):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-8, rtol=0)


def _ring(symbols_ring, subs, r=1.39):
    """Planar six-membered ring (Angstrom) with substituents (symbol, bond length) per
    ring atom (None for none)."""
    lines = []
    for i, (a, sub) in enumerate(zip(symbols_ring, subs)):
        t = np.deg2rad(90 + 60 * i)
        u = np.array([np.cos(t), np.sin(t), 0.0])
        lines.append(f"{a} {r * u[0]:.5f} {r * u[1]:.5f} 0")
        if sub is not None:
            s, d = sub
            p = (r + d) * u
            lines.append(f"{s} {p[0]:.5f} {p[1]:.5f} 0")
    return "; ".join(lines)


HEAVY = {
    "methane": "C 0 0 0; H 0.629 0.629 0.629; H -0.629 -0.629 0.629; H -0.629 0.629 -0.629; "
               "H 0.629 -0.629 -0.629",
    "HF": "F 0 0 0; H 0 0 0.917",
    "CO": "C 0 0 0; O 0 0 1.128",
    "ethanol": "C 1.1879 -0.3829 0; C 0 0.5526 0; O -1.1867 -0.2472 0; H -1.9237 0.3850 0; "
               "H 2.0985 0.2306 0; H 1.1184 -1.0093 0.8869; H 1.1184 -1.0093 -0.8869; "
               "H 0.0227 1.1812 0.8852; H 0.0227 1.1812 -0.8852",
    "glycine": "C -0.113 0.550 0; C -1.347 -0.339 0; O -1.315 -1.546 0; O -2.489 0.371 0; "
               "H -3.233 -0.259 0; N 1.120 -0.225 0; H 1.138 -0.848 0.807; H 1.138 -0.848 -0.807; "
               "H -0.120 1.208 0.877; H -0.120 1.208 -0.877",
    "benzene": _ring("CCCCCC", [("H", 1.09)] * 6, r=1.397),
    "uracil": _ring(["N", "C", "N", "C", "C", "C"],
                    [("H", 1.01), ("O", 1.22), ("H", 1.01), ("O", 1.22), ("H", 1.08), ("H", 1.08)]),
}


GRADIENT_MOLECULES = {"water": WATER, "ammonia": AMMONIA, **HEAVY}


@pytest.mark.slow
@pytest.mark.parametrize("xc", ["hf", "b3lyp"])
@pytest.mark.parametrize("basis", ["6-31g", "def2-svp"])
@pytest.mark.parametrize("name", list(GRADIENT_MOLECULES))
def test_gradient_vs_pyscf_broad(name, basis, xc):
    """RHF and RKS (B3LYP, grid response on both sides) against PySCF's analytic gradients."""
    _check_gradient(molecule(GRADIENT_MOLECULES[name]), basis, xc)


@pytest.mark.slow
@pytest.mark.parametrize("xc", ["hf", "b3lyp"])
@pytest.mark.parametrize("basis", ["6-31g", "def2-svp"])
def test_radical_gradient_vs_pyscf(basis, xc):
    """UHF and UKS for the NH2 radical (doublet with a non-degenerate singly occupied
    orbital; OH's half-filled pi pair has grid-split DFT states, see tests/test_dft.py)."""
    from molecules import NH2_RADICAL

    _check_gradient(mess.Molecule.from_xyz(NH2_RADICAL), basis, xc)
