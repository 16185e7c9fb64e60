"""mess against PySCF on one molecule: the numbers side by side (``mess check``).

:func:`compare` runs mess and PySCF with the same settings (basis, functional, grid
level with ``small_rho_cutoff = 0`` as mess's grids, convergence) and returns a
:class:`Comparison`: energy, HOMO, LUMO (Hartree), dipole (Debye), optionally the
largest force difference (Hartree/Bohr), SCF cycles and wall times, each difference
against the tolerance mess's own tests use (:data:`TOLERANCES`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from mess.structure import Molecule

#: Largest differences accepted (mess's PySCF cross-checks): energy in Hartree (HF,
#: DFT), HOMO/LUMO in Hartree, dipole components in Debye, gradient components in
#: Hartree/Bohr.
TOLERANCES = {"energy_hf": 1e-8, "energy_dft": 1e-7, "homo": 1e-6, "lumo": 1e-6, "dipole": 1e-4, "forces": 1e-6}


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared quantity (``tolerance`` None: shown, not compared)."""

    name: str
    unit: str
    mess: float | str
    pyscf: float | str
    difference: float | None = None
    tolerance: float | None = None

    @property
    def ok(self) -> bool:
        return self.tolerance is None or (self.difference is not None and self.difference <= self.tolerance)


@dataclasses.dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]

    @property
    def agree(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> str:
        def fmt(v):
            return f"{v:.10f}" if isinstance(v, float) else str(v)

        head = f"{'quantity':<22s} {'mess':>18s} {'PySCF':>18s} {'|difference|':>13s} {'tolerance':>10s}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            diff = "" if r.difference is None else f"{r.difference:.2e}"
            tol = "" if r.tolerance is None else f"{r.tolerance:.0e}"
            flag = "" if r.tolerance is None else ("  ok" if r.ok else "  DIFFERS")
            lines.append(f"{r.name + ' (' + r.unit + ')' if r.unit else r.name:<22s} {fmt(r.mess):>18s} "
                         f"{fmt(r.pyscf):>18s} {diff:>13s} {tol:>10s}{flag}")
        lines.append("mess and PySCF agree" if self.agree else "mess and PySCF DISAGREE beyond the tolerances")
        return "\n".join(lines)


def _frontier(mo_energy, mo_occ) -> tuple[float, float]:
    e, occ = np.asarray(mo_energy).ravel(), np.asarray(mo_occ).ravel()
    return float(e[occ > 0].max()), float(e[occ == 0].min()) if np.any(occ == 0) else float("nan")


def pyscf_mean_field(molecule: Molecule, basis: str, xc: str, grid_level: int, conv_tol: float,
                     conv_tol_grad: float | None):
    """The PySCF calculation mess is compared with (same settings, verbose 0)."""
    from pyscf import dft, scf

    pm = molecule.to_pyscf(basis)
    restricted = molecule.spin == 0
    if xc == "hf":
        mf = scf.RHF(pm) if restricted else scf.UHF(pm)
    else:
        mf = dft.RKS(pm) if restricted else dft.UKS(pm)
        mf.xc, mf.grids.level, mf.small_rho_cutoff = xc, grid_level, 0
    mf.conv_tol = conv_tol
    if conv_tol_grad is not None:
        mf.conv_tol_grad = conv_tol_grad
    mf.verbose = 0
    return mf


def compare(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", grid_level: int = 3,
            conv_tol: float = 1e-10, forces: bool = True, pyscf_basis: str | None = None,
            pyscf_xc: str | None = None) -> Comparison:
    """Run mess and PySCF on ``molecule`` and compare (see the module docstring).
    ``pyscf_basis``/``pyscf_xc`` give PySCF other settings on purpose (to see a
    disagreement reported)."""
    import mess

    grad_tol = 1e-7 if forces else None
    opts = dict(grid_level=grid_level, conv_tol=conv_tol)
    if grad_tol:
        opts["conv_tol_grad"] = grad_tol
    t = time.perf_counter()
    if forces:
        res, grad = mess.energy_and_gradient(molecule, basis, xc, **opts)
    else:
        res, grad = mess.run(molecule, basis, xc, **opts), None
    t_mess = time.perf_counter() - t
    t = time.perf_counter()
    mf = pyscf_mean_field(molecule, pyscf_basis or basis, pyscf_xc or xc, grid_level, conv_tol, grad_tol)
    mf.kernel()
    ref_grad = None
    if forces:
        g = mf.nuc_grad_method()
        if (pyscf_xc or xc) != "hf":
            g.grid_response = True
        g.verbose = 0
        ref_grad = g.kernel()
    t_pyscf = time.perf_counter() - t
    homo, lumo = _frontier(mf.mo_energy, mf.mo_occ)
    dip = np.asarray(mf.dip_moment(unit="Debye", verbose=0))
    e_tol = TOLERANCES["energy_hf" if xc == "hf" else "energy_dft"]
    rows = [
        Row("energy", "Ha", float(res.energy), float(mf.e_tot), abs(float(res.energy) - mf.e_tot), e_tol),
        Row("HOMO", "Ha", float(res.homo), homo, abs(float(res.homo) - homo), TOLERANCES["homo"]),
        Row("LUMO", "Ha", float(res.lumo), lumo, abs(float(res.lumo) - lumo), TOLERANCES["lumo"]),
    ]
    for k, axis in enumerate("xyz"):
        m = float(np.asarray(res.dipole)[k])
        rows.append(Row(f"dipole {axis}", "D", m, float(dip[k]), abs(m - float(dip[k])), TOLERANCES["dipole"]))
    if forces:
        diff = float(np.abs(np.asarray(grad) - ref_grad).max())
        rows.append(Row("max force difference", "Ha/Bohr", "", "", diff, TOLERANCES["forces"]))
    rows += [Row("converged", "", str(bool(res.converged)), str(bool(mf.converged)),
                 0.0 if bool(res.converged) and mf.converged else 1.0, 0.0),
             Row("SCF cycles", "", str(int(res.iterations)), str(getattr(mf, "cycles", "?"))),
             Row("wall time", "s", f"{t_mess:.2f}", f"{t_pyscf:.2f}")]
    return Comparison(tuple(rows))
