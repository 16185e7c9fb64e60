"""Hartree-Fock energies, frontier orbitals and dipoles against PySCF (same state)."""

import numpy as np
import pytest

import mess

from molecules import (AMMONIA, AMMONIUM, ASPIRIN, BENZENE, CAFFEINE, CH3_RADICAL, CH3CL, ETHANOL, GLYCINE,
                       H2S, HYDRONIUM, HYDROXIDE, METHANE, NO_RADICAL, O2_TRIPLET, OH_RADICAL, URACIL, WATER)
from reference import assert_matches, compare

FAST = [
    (WATER, "6-31g", False),
    pytest.param(WATER, "def2-svp", True, marks=pytest.mark.slow),  # ~150 s; cart d also in test_integrals
    (AMMONIUM, "sto-3g", False),
    (HYDROXIDE, "6-31g", False),
    (OH_RADICAL, "6-31g", False),
    (O2_TRIPLET, "sto-3g", False),
    (CH3CL, "sto-3g", False),
]


@pytest.mark.parametrize("xyz,basis,cart", FAST)
def test_hf_matches_pyscf(xyz, basis, cart):
    assert_matches(compare(xyz, basis, "hf", cart))


BROAD_MOLECULES = [WATER, AMMONIA, METHANE, H2S, CH3CL, ETHANOL, GLYCINE, BENZENE, URACIL,
                   OH_RADICAL, O2_TRIPLET, CH3_RADICAL, NO_RADICAL, HYDROXIDE, AMMONIUM, HYDRONIUM]
BROAD = [(x, b, c) for x in BROAD_MOLECULES for b in ("sto-3g", "6-31g", "6-31g*", "def2-svp")
         for c in (False, True) if not (c and b in ("sto-3g", "6-31g"))]
BROAD += [(ASPIRIN, "sto-3g", False), (ASPIRIN, "6-31g", False), (CAFFEINE, "sto-3g", False),
          (CAFFEINE, "def2-svp", False)]


@pytest.mark.slow
@pytest.mark.parametrize("xyz,basis,cart", BROAD)
def test_hf_matches_pyscf_broad(xyz, basis, cart):
    assert_matches(compare(xyz, basis, "hf", cart))


def test_uhf_spin_state_matches_pyscf():
    d = compare(OH_RADICAL, "sto-3g", "hf")
    res, mf = d["mess"], d["pyscf"]
    from mess.properties import spin_square

    s2, _ = spin_square(res.mo_coeff, res.mo_occ, mf.get_ovlp())
    assert abs(float(s2) - mf.spin_square()[0]) < 1e-6
    assert res.method == "UHF"


def test_result_fields_and_components():
    res = mess.run(mess.Molecule.from_xyz(WATER), basis="sto-3g")
    c = res.components
    total = c["e_nuc"] + c["e_one"] + c["coulomb"] + c["exchange"]
    assert abs(float(total) - float(res.energy)) < 1e-10
    assert res.nao == 7 and res.method == "RHF" and res.ngrid == 0
    assert res.mo_energy.shape == (7,) and res.mulliken.shape == (3,)
    assert abs(float(np.sum(np.asarray(res.mulliken)))) < 1e-10
    assert "E =" in res.summary()
