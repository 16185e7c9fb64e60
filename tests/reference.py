"""Run the same calculation in mess and in PySCF and return the differences."""

import numpy as np
from pyscf import dft, scf

import mess

CONV_TOL = 1e-11


def pyscf_mf(mol, xc, grid_level=3):
    """PySCF mean-field object matching mess's defaults (RHF/UHF by spin, point nuclei)."""
    restricted = mol.spin == 0
    if xc == "hf":
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = xc
        mf.grids.level = grid_level
        mf.small_rho_cutoff = 0
    mf.conv_tol = CONV_TOL
    mf.verbose = 0
    return mf


def pyscf_solution(mol, xc, grid_level=3):
    """PySCF's converged minimum: the default SCF, its second-order solver where that
    does not converge (hard open shells), and for an open shell PySCF's recipe for an
    internally unstable solution (follow ``stability()`` and re-converge until it
    reports stable), since mess's stability phase leaves such saddle points too (O2
    triplet UHF/STO-3G: DIIS stops 1.28 mHa above the minimum)."""
    mf = pyscf_mf(mol, xc, grid_level)
    mf.kernel()
    if not mf.converged:
        mf = mf.newton()
        mf.kernel()
    if mol.spin != 0:
        # re-converged tightly: PySCF's default sqrt(conv_tol) leaves its orbital
        # energies ~1e-6 Ha from the solution after a restart (O2 triplet, STO-3G)
        mf.conv_tol_grad = 1e-8
        for _ in range(4):
            mo = mf.stability()[0]
            if all(np.allclose(a, b) for a, b in zip(mo, mf.mo_coeff)):
                break
            mf.kernel(dm0=mf.make_rdm1(mo, mf.mo_occ))
    return mf


def frontier(mf):
    """(HOMO, LUMO) over both spins, Hartree."""
    e = np.atleast_2d(np.asarray(mf.mo_energy))
    occ = np.atleast_2d(np.asarray(mf.mo_occ))
    return e[occ > 0].max(), e[occ == 0].min()


def compare(xyz, basis, xc="hf", cart=False, grid_level=3):
    """Differences mess - PySCF: energy, HOMO, LUMO (Ha), max |dipole| (Debye), and both results."""
    m = mess.Molecule.from_xyz(xyz)
    res = mess.run(m, basis=basis, xc=xc, cart=cart, grid_level=grid_level, conv_tol=CONV_TOL)
    mol = m.to_pyscf(basis, cart=cart)
    mf = pyscf_solution(mol, xc, grid_level)
    homo, lumo = frontier(mf)
    return {
        "energy": float(res.energy) - mf.e_tot,
        "homo": float(res.homo) - homo,
        "lumo": float(res.lumo) - lumo,
        "dipole": float(np.abs(np.asarray(res.dipole) - mf.dip_moment(unit="Debye", verbose=0)).max()),
        "converged": bool(res.converged) and bool(mf.converged),
        "mess": res,
        "pyscf": mf,
    }


def assert_matches(d, energy_tol=1e-8):
    assert d["converged"], "an SCF did not converge"
    assert abs(d["energy"]) < energy_tol, d["energy"]
    assert abs(d["homo"]) < 1e-6, d["homo"]
    assert abs(d["lumo"]) < 1e-6, d["lumo"]
    assert d["dipole"] < 1e-4, d["dipole"]
