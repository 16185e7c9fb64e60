"""Kohn-Sham DFT (RKS/UKS) against PySCF on the same grid (small_rho_cutoff = 0)."""

import pytest

import mess

from molecules import (AMMONIA, AMMONIUM, ASPIRIN, BENZENE, CAFFEINE, CH3_RADICAL, CH3CL, ETHANOL, GLYCINE,
                       H2S, HYDRONIUM, HYDROXIDE, METHANE, NO_RADICAL, O2_TRIPLET, OH_RADICAL, URACIL, WATER)
from reference import assert_matches, compare

FAST = [
    (WATER, "6-31g", "b3lyp", 3),
    (WATER, "sto-3g", "lda,vwn", 1),
    (WATER, "sto-3g", "pbe", 1),
    (HYDROXIDE, "sto-3g", "b3lyp5", 1),
    (OH_RADICAL, "sto-3g", "pbe0", 1),
]


@pytest.mark.parametrize("xyz,basis,xc,level", FAST)
def test_ks_matches_pyscf(xyz, basis, xc, level):
    d = compare(xyz, basis, xc, grid_level=level)
    assert_matches(d, energy_tol=1e-7)


def test_ks_result_has_xc_component_and_grid_size():
    d = compare(WATER, "sto-3g", "svwn", grid_level=1)
    res, mf = d["mess"], d["pyscf"]
    assert res.method == "RKS" and "xc" in res.components
    assert res.ngrid == mf.grids.weights.size - (mf.grids.weights == 0).sum()
    c = res.components
    total = c["e_nuc"] + c["e_one"] + c["coulomb"] + c["exchange"] + c["xc"]
    assert abs(float(total) - float(res.energy)) < 1e-10
    assert abs(float(c["xc"]) - mf.scf_summary["exc"]) < 1e-7


BROAD_MOLECULES = [WATER, AMMONIA, METHANE, H2S, CH3CL, ETHANOL, GLYCINE, BENZENE, URACIL,
                   OH_RADICAL, O2_TRIPLET, CH3_RADICAL, NO_RADICAL, HYDROXIDE, AMMONIUM, HYDRONIUM]
BROAD = [(x, b, xc) for x in BROAD_MOLECULES for b in ("sto-3g", "6-31g", "6-31g*", "def2-svp")
         for xc in ("lda,vwn", "pbe", "b3lyp", "b3lyp5", "pbe0")]
BROAD += [(ASPIRIN, "6-31g", "b3lyp"), (CAFFEINE, "sto-3g", "b3lyp"), (CAFFEINE, "def2-svp", "b3lyp")]


@pytest.mark.slow
@pytest.mark.parametrize("xyz,basis,xc", BROAD)
def test_ks_matches_pyscf_broad(xyz, basis, xc):
    assert_matches(compare(xyz, basis, xc, grid_level=3), energy_tol=1e-7)
