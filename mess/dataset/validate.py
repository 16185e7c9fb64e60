"""Validation of generated rows against an independent PySCF calculation (float64).

``--validate-fraction F`` recomputes a random fraction F of a run's conformers (chosen
per shard by a seeded generator, so a resumed run validates the same rows) with
PySCF's ``RHF/UHF`` or ``RKS/UKS`` at the dataset's settings (same basis, functional,
grid level; in fixed-cycle mode the same number of cycles without early stop) and
reports the largest differences of energy, HOMO, LUMO (Hartree) and dipole (Debye).
"""

from __future__ import annotations

import numpy as np


def pyscf_reference(molecule, settings) -> dict:
    """Energy, HOMO, LUMO (Hartree) and dipole (Debye) of ``molecule`` from PySCF."""
    from pyscf import dft, scf

    mol = molecule.to_pyscf(settings.basis)
    restricted = molecule.spin == 0
    if settings.xc == "hf":
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = settings.xc
        mf.grids.level = settings.grid_level
    mf.verbose = 0
    if settings.fixed_cycles:
        mf.max_cycle, mf.conv_tol, mf.conv_check = settings.fixed_cycles, 0.0, False
    else:
        mf.conv_tol, mf.max_cycle = settings.conv_tol, max(settings.max_cycle, 100)
        mf.conv_tol_grad = settings.conv_tol_grad
    energy = float(mf.kernel())
    e = np.asarray(mf.mo_energy).ravel()
    occ = np.asarray(mf.mo_occ).ravel()
    return {"energy": energy, "homo": float(e[occ > 0].max()), "lumo": float(e[occ == 0].min()),
            "dipole": np.asarray(mf.dip_moment(unit="Debye", verbose=0), dtype=np.float64)}


def differences(result, ref: dict) -> dict:
    """Absolute differences of one mess :class:`~mess.Result` from its reference."""
    return {"energy": abs(float(result.energy) - ref["energy"]), "homo": abs(float(result.homo) - ref["homo"]),
            "lumo": abs(float(result.lumo) - ref["lumo"]),
            "dipole": float(np.abs(np.asarray(result.dipole) - ref["dipole"]).max())}


def pick(n: int, fraction: float, seed: int, shard: int) -> np.ndarray:
    """Indices of the ``n`` conformers of a shard to validate (seeded per shard)."""
    if fraction <= 0 or n == 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng([int(seed), int(shard), 0x76616C])
    return np.nonzero(rng.random(n) < fraction)[0]


def merge(total: dict, diffs: list[dict]) -> dict:
    """Running summary: ``rows`` validated and the largest difference of each field."""
    out = dict(total) if total else {"rows": 0, "energy": 0.0, "homo": 0.0, "lumo": 0.0, "dipole": 0.0}
    for d in diffs:
        out["rows"] += 1
        for k in ("energy", "homo", "lumo", "dipole"):
            out[k] = max(out[k], d[k])
    return out
