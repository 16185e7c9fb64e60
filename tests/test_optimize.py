"""Geometry optimisation and harmonic frequencies vs PySCF (6-31G, so the kernels
compiled by tests/test_gradients.py are reused): HF water, B3LYP water, ethanol and
benzene, each against the same optimiser driven by PySCF."""

from __future__ import annotations

import numpy as np
import pytest
from pyscf import dft, scf
from pyscf.hessian import rhf as rhf_hessian
from pyscf.hessian import thermo

import mess
from molecules import BENZENE, ETHANOL
from mess.optimize import harmonic_analysis, minimize_bfgs

# A distorted water (Angstrom): stretched bonds, opened angle.
WATER_START = "3\ndistorted water\nO 0 0 0.13\nH 0 0.80 -0.50\nH 0 -0.78 -0.47\n"
BASIS = "6-31g"


def pyscf_fun(mol: mess.Molecule, basis: str, xc: str):
    """``positions -> (E, grad, converged)`` from PySCF, for the same optimiser."""

    def fun(x):
        m = mess.Molecule(mol.numbers, np.asarray(x), mol.charge, mol.spin)
        pm = m.to_pyscf(basis)
        if xc == "hf":
            mf = scf.RHF(pm)
        else:
            mf = dft.RKS(pm)
            mf.xc = xc
            mf.small_rho_cutoff = 0
        mf.conv_tol = 1e-11
        mf.kernel()
        g = mf.nuc_grad_method()
        if xc != "hf":
            g.grid_response = True
        return mf.e_tot, g.kernel(), mf.converged

    return fun


def _check_optimum(xc, start_xyz=WATER_START):
    """Optimise with mess, then run the same BFGS driven by PySCF energies and
    gradients from the same start: both reach gradient norm < 3e-4 Ha/Bohr and the
    same minimum energy to 1e-6 Ha."""
    start = mess.Molecule.from_xyz(start_xyz)
    opt, info = mess.optimize(start, BASIS, xc, gtol=3e-4, conv_tol=1e-11)
    assert info["converged"]
    assert info["grad_norm"] < 3e-4
    g = mess.gradient(opt, BASIS, xc, conv_tol=1e-11)
    assert np.linalg.norm(np.asarray(g)) < 3e-4
    _, ref = minimize_bfgs(pyscf_fun(start, BASIS, xc), np.asarray(start.positions), gtol=3e-4,
                           verbose=False)
    assert ref["converged"]
    assert abs(info["energy"] - ref["energy"]) < 1e-6
    return opt, info


@pytest.fixture(scope="module")
def water_hf_optimum():
    return _check_optimum("hf")


@pytest.mark.slow
def test_optimize_water_hf(water_hf_optimum):
    opt, info = water_hf_optimum
    assert info["trajectory"][-1] < info["trajectory"][0]
    # symmetric O-H bonds at the optimum
    pos = np.asarray(opt.positions)
    r1, r2 = np.linalg.norm(pos[1] - pos[0]), np.linalg.norm(pos[2] - pos[0])
    assert abs(r1 - r2) < 2e-3


@pytest.mark.slow
def test_frequencies_water_vs_pyscf_hessian(water_hf_optimum):
    opt, _ = water_hf_optimum
    freqs = mess.frequencies(opt, BASIS, "hf")
    mf = scf.RHF(opt.to_pyscf(BASIS))
    mf.conv_tol = 1e-11
    mf.kernel()
    h_ref = rhf_hessian.Hessian(mf).kernel()
    ref = thermo.harmonic_analysis(mf.mol, h_ref, imaginary_freq=False)["freq_wavenumber"]
    assert freqs.shape == (3,)
    assert np.abs(freqs - np.sort(ref)).max() < 1.0
    # our projection/analysis applied to PySCF's Hessian reproduces PySCF's numbers
    mine_on_ref = harmonic_analysis(opt.numbers, np.asarray(opt.positions), h_ref)[0]
    assert np.abs(mine_on_ref - np.sort(ref)).max() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("start", [WATER_START, ETHANOL, BENZENE])
def test_optimize_b3lyp(start):
    _check_optimum("b3lyp", start)
