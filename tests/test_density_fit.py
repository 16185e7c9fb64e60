"""Density fitting: three- and two-centre integrals against libcint, fitted HF and
DFT energies against PySCF's ``density_fit()``, analytic gradients against PySCF's
DF gradients (auxiliary-basis response included), option errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import df

import mess
from mess.basis.shells import basis_layout, shell_data
from mess.engine.signature import Method, default_auxbasis, method_from_options
from mess.errors import InputError
from mess.integrals.three_center import cholesky_cderi, df_jk, three_center, two_center

from molecules import CH3_RADICAL, WATER
from reference import CONV_TOL, frontier, pyscf_mf

H2 = "2\nhydrogen\nH 0 0 0\nH 0.1 0 0.74\n"
H3 = "3\nlinear H3 radical spin=1\nH 0 0 0\nH 0 0.05 0.93\nH 0 0 1.86\n"
AUX = "def2-universal-jkfit"


def _integrals(xyz, basis, aux):
    m = mess.Molecule.from_xyz(xyz)
    mol = m.to_pyscf(basis)
    lay, alay = basis_layout(m.numbers, basis), basis_layout(m.numbers, aux)
    shp, ashp = lay.shape(), alay.shape()
    g, ag = lay.groups(shp), alay.groups(ashp)

    @jax.jit
    def both(pos):
        data, adata = shell_data(shp, g, pos), shell_data(ashp, ag, pos)
        return three_center(shp, data, ashp, adata), two_center(ashp, adata)

    i3, i2 = both(jnp.asarray(m.positions))
    ei, ai = lay.engine_index(shp), alay.engine_index(ashp)
    auxmol = df.addons.make_auxmol(mol, aux)
    ref3 = df.incore.aux_e2(mol, auxmol, "int3c2e", aosym="s1").transpose(2, 0, 1)
    return (np.asarray(i3)[ai][:, ei][:, :, ei], ref3, np.asarray(i2)[ai][:, ai], auxmol.intor("int2c2e"),
            np.asarray(i3), np.asarray(i2), alay.ao_mask(ashp))


def test_three_and_two_centre_integrals_match_libcint():
    """(P|ij) and (P|Q) of H2 in def2-svp / def2-universal-jkfit (s, p, d orbital and
    auxiliary shells, with padding) equal libcint's int3c2e and int2c2e to 1e-12; the
    padding functions give zero integrals and a unit metric diagonal."""
    i3, ref3, i2, ref2, raw3, raw2, mask = _integrals(H2, "def2-svp", AUX)
    assert np.abs(ref3).max() > 0.5
    assert np.abs(i3 - ref3).max() < 1e-12
    assert np.abs(i2 - ref2).max() < 1e-12
    if not mask.all():
        assert np.abs(raw3[~mask]).max() == 0.0
        np.testing.assert_array_equal(raw2[~mask][:, ~mask], np.eye(int((~mask).sum())))


def test_fitted_jk_are_the_contractions_of_the_fitted_four_centre_tensor():
    """J and K of df_jk equal the contractions of the fitted tensor sum_P B_P B_P (any
    symmetric density), and the mixed build is the bilinear form the JVP uses."""
    rng = np.random.default_rng(0)
    b = rng.normal(size=(7, 5, 5))
    b = b + b.transpose(0, 2, 1)
    b2 = rng.normal(size=(7, 5, 5))
    b2 = b2 + b2.transpose(0, 2, 1)
    d = rng.normal(size=(5, 5))
    d = d + d.T
    eri = np.einsum("Pij,Pkl->ijkl", b, b2)
    j, k = df_jk(jnp.asarray(b), jnp.asarray(d), right=jnp.asarray(b2))
    np.testing.assert_allclose(j, np.einsum("ijkl,kl->ij", eri, d), atol=1e-12)
    np.testing.assert_allclose(k, np.einsum("iklj,kl->ij", eri, d), atol=1e-12)  # (ik|lj) D_kl
    # B = L^-1 (P|ij): sum_P B_P B_P = (ij|P) V^-1 (P|kl)
    v = rng.normal(size=(7, 7))
    v = v @ v.T + 7 * np.eye(7)
    cd = np.asarray(cholesky_cderi(jnp.asarray(b), jnp.asarray(v)))
    np.testing.assert_allclose(np.einsum("Pij,Pkl->ijkl", cd, cd),
                               np.einsum("Pij,PQ,Qkl->ijkl", b, np.linalg.inv(v), b), atol=1e-12)


def _pyscf_df(xyz, basis, xc, aux):
    m = mess.Molecule.from_xyz(xyz)
    mf = pyscf_mf(m.to_pyscf(basis), xc).density_fit(auxbasis=aux)
    mf.conv_tol = CONV_TOL
    mf.kernel()
    assert mf.converged
    return m, mf


def _check_energy(xyz, basis, xc, aux=AUX, gradient=False):
    m, mf = _pyscf_df(xyz, basis, xc, aux)
    opts = dict(density_fit=True, auxbasis=aux, conv_tol=CONV_TOL, conv_tol_grad=1e-8)
    if gradient:
        res, g = mess.energy_and_gradient(m, basis, xc, **opts)
    else:
        res = mess.run(m, basis, xc, **opts)
    assert res.converged
    assert abs(float(res.energy) - mf.e_tot) < 1e-9, float(res.energy) - mf.e_tot
    homo, lumo = frontier(mf)
    assert abs(float(res.homo) - homo) < 1e-6 and abs(float(res.lumo) - lumo) < 1e-6
    # density fitting changes the energy visibly: the check compares like with like
    exact = pyscf_mf(m.to_pyscf(basis), xc)
    exact.kernel()
    assert abs(exact.e_tot - mf.e_tot) > 1e-7
    if gradient:
        ref = mf.nuc_grad_method()
        ref.verbose = 0
        np.testing.assert_allclose(np.asarray(g), ref.kernel(), atol=2e-7)
    return res


def test_fitted_b3lyp_energy_and_gradient_match_pyscf():
    """RKS B3LYP/def2-svp with def2-universal-jkfit fitting of H2: energy within
    1e-9 Ha of PySCF's density_fit(), frontier orbitals within 1e-6 Ha, and the
    analytic gradient (through the fitted integrals, the auxiliary functions moving
    with the atoms) within 2e-7 Ha/Bohr of PySCF's DF gradient. The result says it
    was fitted (summary, JSON) and hands PySCF a fitted object."""
    res = _check_energy(H2, "def2-svp", "b3lyp", gradient=True)
    assert res.auxbasis == AUX and res.to_dict()["auxbasis"] == AUX and AUX in res.summary()
    mf = res.to_pyscf()
    assert mf.with_df.auxbasis == AUX
    assert abs(mf.energy_tot(dm=mf.make_rdm1()) - float(res.energy)) < 1e-9


def test_fitted_unrestricted_hf_matches_pyscf():
    """UHF/def2-svp with fitting, the H3 radical (two alpha, one beta electron): energy
    within 1e-9 Ha, frontier orbitals within 1e-6 Ha."""
    _check_energy(H3, "def2-svp", "hf")


@pytest.mark.slow
@pytest.mark.parametrize("xyz,basis,xc", [(WATER, "def2-svp", "hf"), (WATER, "def2-svp", "b3lyp"),
                                          (CH3_RADICAL, "def2-svp", "b3lyp"), (WATER, "6-31g*", "pbe")])
def test_fitted_energies_match_pyscf_slow(xyz, basis, xc):
    """Water and the methyl radical (f and g auxiliary shells), RHF, RKS and UKS:
    energy within 1e-9 Ha of PySCF's density_fit() with the same auxiliary basis.
    (Not OH: its half-filled pi pair has several UKS solutions 1e-8-1e-6 Ha apart on
    a Lebedev grid, see docs/performance.md, fitted or not.)"""
    _check_energy(xyz, basis, xc, aux=default_auxbasis(basis))


@pytest.mark.slow
def test_fitted_water_gradient_matches_pyscf_slow():
    """RHF/def2-svp water with def2-universal-jkfit: energy within 1e-9 Ha and the
    analytic gradient within 2e-7 Ha/Bohr of PySCF's DF gradient."""
    _check_energy(WATER, "def2-svp", "hf", gradient=True)


@pytest.mark.slow
def test_water_integrals_match_libcint_slow():
    i3, ref3, i2, ref2, *_ = _integrals(WATER, "def2-svp", AUX)
    assert np.abs(i3 - ref3).max() < 1e-12 and np.abs(i2 - ref2).max() < 1e-11


def test_options_and_defaults():
    """density_fit=True takes PySCF's default JK-fitting set; auxbasis alone, a basis
    without a predefined set, and a non-boolean density_fit are clear errors; exact
    and fitted methods are different signatures."""
    from pyscf.df.addons import make_auxbasis

    water = mess.Molecule.from_xyz(WATER)
    for basis in ("sto-3g", "def2-svp", "def2-TZVP", "6-31G*", "cc-pvdz"):
        assert set(make_auxbasis(water.to_pyscf(basis)).values()) == {default_auxbasis(basis)}
    m = method_from_options("def2-svp", "hf", False, 3, {"density_fit": True})
    assert m.auxbasis == default_auxbasis("def2-svp") and m.density_fit
    assert m != Method("def2-svp", "hf") and not Method("def2-svp", "hf").density_fit
    with pytest.raises(InputError, match="auxbasis is given but density_fit"):
        method_from_options("def2-svp", "hf", False, 3, {"auxbasis": AUX})
    # PySCF generates even-tempered functions for pc-1; mess asks for a named set
    assert not any(isinstance(v, str) for v in make_auxbasis(water.to_pyscf("pc-1")).values())
    with pytest.raises(InputError, match="no predefined auxiliary basis for 'pc-1'"):
        method_from_options("pc-1", "hf", False, 3, {"density_fit": True})
    with pytest.raises(InputError, match="density_fit must be True or False"):
        method_from_options("def2-svp", "hf", False, 3, {"density_fit": "yes"})
    with pytest.raises(InputError, match="unknown option"):
        mess.run(mess.Molecule.from_xyz(H2), "def2-svp", density_fitting=True)
    with pytest.raises(InputError):
        mess.run(mess.Molecule.from_xyz(H2), "def2-svp", density_fit=True, auxbasis="no-such-basis")


def test_cli_options(tmp_path, capsys):
    """``mess energy --density-fit [--auxbasis NAME]``: the estimate counts auxiliary
    functions instead of quartets; --auxbasis alone and an unknown set exit 2."""
    from mess.cli import main

    path = tmp_path / "h2.xyz"
    path.write_text(H2)
    assert main(["energy", str(path), "--basis", "def2-svp", "--density-fit", "--estimate", "--no-cache"]) == 0
    assert "auxiliary functions (density fitting)" in capsys.readouterr().out
    assert main(["energy", str(path), "--basis", "def2-svp", "--auxbasis", AUX, "--no-cache"]) == 2
    assert "--auxbasis needs --density-fit" in capsys.readouterr().err
    assert main(["energy", str(path), "--basis", "pc-1", "--density-fit", "--no-cache"]) == 2
    assert "no predefined auxiliary basis" in capsys.readouterr().err


@pytest.mark.slow
def test_fitted_batch_matches_pyscf_slow():
    """mess.run_batch with density_fit=True over H2 at two bond lengths and water (one
    bucket or several, as the planner decides): every energy within 1e-9 Ha of
    PySCF's density_fit()."""
    xyzs = [H2, H2.replace("0.74", "0.80"), WATER]
    mols = [mess.Molecule.from_xyz(x) for x in xyzs]
    results = mess.run_batch(mols, "def2-svp", "hf", density_fit=True, auxbasis=AUX, conv_tol=CONV_TOL)
    for xyz, res in zip(xyzs, results):
        _, mf = _pyscf_df(xyz, "def2-svp", "hf", AUX)
        assert res.converged and res.auxbasis == AUX
        assert abs(float(res.energy) - mf.e_tot) < 1e-9
