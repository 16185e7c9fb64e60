"""precision="mixed": float32 ERIs, everything else float64, inside the stated budget.

The budget (docs/performance.md, from ``benchmarks/precision.py``) is checked on a
small set; the float64 results are the reference, computed in the same test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mess
from mess.engine import stages
from mess.engine.signature import method_from_options
from mess.engine.system import build, default_params, stack
from mess.errors import InputError
from mess.integrals.boys import boys
from mess.integrals.two_electron import SCHWARZ_THRESHOLD

from molecules import AMMONIA, WATER

#: The budget docs/performance.md states (from benchmarks/precision.py over 12 cases up
#: to caffeine): total energy per heavy atom (the error grows with the number of core
#: integrals), Hartree; HOMO/LUMO, Hartree; dipole, Debye; forces, Hartree/Bohr.
BUDGET = {"energy_per_heavy_atom": 5e-6, "orbital": 2e-6, "dipole": 5e-5, "forces": 5e-6}


def test_boys_function_in_float32_keeps_float32_and_six_digits():
    t32 = jnp.asarray(np.concatenate([np.linspace(0.0, 60.0, 1201), np.geomspace(1e-8, 1e3, 100)]), jnp.float32)
    for m in (0, 4, 8):
        low = boys(m, t32)
        ref = np.asarray(boys(m, t32.astype(jnp.float64)))  # the same arguments, float64 arithmetic
        assert low.dtype == jnp.float32
        assert np.max(np.abs(np.asarray(low, np.float64) - ref) / ref) < 2e-6


def test_mixed_eri_blocks_are_float32_and_close_to_float64():
    m = mess.Molecule.from_xyz(WATER)
    blocks = {}
    for prec in ("float64", "mixed"):
        method = method_from_options("6-31g", "hf", False, 3, {"precision": prec}, SCHWARZ_THRESHOLD)
        engine = mess.Engine()
        prep = engine.prepare([m], method)
        sig = engine.plan(prep).buckets[0].signature
        system = build(prep[0], sig)
        params = jax.tree.map(lambda x: x[0], default_params(sig, stack([system])))
        blocks[prec] = [stages.eri_part(sig, i, system, params) for i in range(len(sig.classes))]
    for ref, low in zip(blocks["float64"], blocks["mixed"]):
        assert ref.dtype == jnp.float64 and low.dtype == jnp.float32
        # relative to the largest integral of the class (|(ss|ss)| ~ 5 Hartree for O 1s)
        assert np.abs(np.asarray(low, np.float64) - np.asarray(ref)).max() < 2e-7 * max(1.0, float(jnp.abs(ref).max()))


def test_mixed_results_stay_inside_the_budget():
    """Energies, orbital energies, dipoles and forces of a batch (water and ammonia,
    B3LYP/6-31G) in mixed precision against float64."""
    mols = [mess.Molecule.from_xyz(x) for x in (WATER, AMMONIA)]
    engine = mess.Engine()
    out = {p: mess.run_batch(mols, "6-31g", "b3lyp", conv_tol=1e-10, conv_tol_grad=1e-7, gradient=True,
                             precision=p, engine=engine) for p in ("float64", "mixed")}
    assert len(engine.signatures) == 2  # the precision is part of the signature
    for ref, low in zip(out["float64"], out["mixed"]):
        assert bool(ref.converged) and bool(low.converged)
        de = abs(float(low.energy) - float(ref.energy))
        heavy = sum(z > 1 for z in ref.molecule.numbers)
        assert 0 < de < BUDGET["energy_per_heavy_atom"] * heavy  # float32 ERIs change it, within the budget
        assert abs(float(low.homo) - float(ref.homo)) < BUDGET["orbital"]
        assert abs(float(low.lumo) - float(ref.lumo)) < BUDGET["orbital"]
        assert np.abs(np.asarray(low.dipole) - np.asarray(ref.dipole)).max() < BUDGET["dipole"]
        assert np.abs(np.asarray(low.gradient) - np.asarray(ref.gradient)).max() < BUDGET["forces"]


@pytest.mark.parametrize("bad", ["float32", "half", None])
def test_unknown_precision_is_a_one_line_error(bad):
    with pytest.raises(InputError, match="precision must be 'float64' or 'mixed'") as info:
        mess.run(mess.Molecule.from_xyz(WATER), "sto-3g", precision=bad)
    assert "\n" not in str(info.value)
