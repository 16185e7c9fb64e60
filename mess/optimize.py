"""Geometry optimisation and harmonic vibrational frequencies from analytic gradients.

* :func:`optimize`: quasi-Newton (BFGS) minimisation of the SCF energy in Cartesian
  coordinates, with a backtracking (Armijo) line search and a step cap; each step warm
  starts the SCF from the previous density. Gradients are the analytic fixed-orbital
  gradients of :mod:`mess.gradients` (Pulay 1969). BFGS: Nocedal & Wright, *Numerical
  Optimization*, 2nd ed. (2006), Algorithm 6.1.
* :func:`frequencies`: harmonic frequencies (cm^-1) from a Hessian built by central
  finite differences of analytic gradients, mass weighted, with translations and
  rotations projected out (Wilson, Decius & Cross, *Molecular Vibrations* (1955);
  the same projection and constants as ``pyscf.hessian.thermo.harmonic_analysis``).

Units: Bohr, Hartree, Hartree/Bohr; frequencies in cm^-1 (imaginary ones negative).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from mess.engine.calculation import Calculation
from mess.engine.engine import default_engine, require_float64
from mess.structure import Molecule

__all__ = ["optimize", "minimize_bfgs", "frequencies", "hessian", "harmonic_analysis", "gradient_function"]


def gradient_function(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                      warm_start: bool = True, **options) -> Callable[[np.ndarray], tuple[float, np.ndarray, bool]]:
    """A host function ``positions [natom, 3] (Bohr) -> (E, dE/dR, converged)`` (Hartree,
    Hartree/Bohr, NumPy) for the atoms, charge and spin of ``molecule``.

    With ``warm_start`` each SCF starts from the density of the previous call (a good
    guess for nearby geometries); options are those of :func:`mess.run`."""
    require_float64()
    engine = options.pop("engine", None) or default_engine()
    state = {"dm": None, "signature": None}

    def fn(positions):
        pos = np.asarray(positions, dtype=np.float64).reshape(molecule.natom, 3)
        mol = Molecule(molecule.numbers, pos, molecule.charge, molecule.spin)
        calc = Calculation(mol, basis, xc, cart, options, engine)
        warm = warm_start and state["dm"] is not None and state["signature"] == calc.signature
        res, raw = calc.solve(dm0=state["dm"] if warm else None, gradient=True)
        if not bool(res.converged) and warm:  # a bad warm start: retry cold
            res, raw = calc.solve(gradient=True)
        state["dm"], state["signature"] = raw["res"].density[0], calc.signature
        return float(res.energy), np.asarray(res.gradient), bool(res.converged)

    return fn


def minimize_bfgs(fun: Callable, x0: np.ndarray, gtol: float = 3e-4, fmax: float = 4.5e-4,
                  etol: float = 1e-6, max_steps: int = 100, max_step: float = 0.3,
                  hess0: float = 0.5, verbose: bool = True) -> tuple[np.ndarray, dict]:
    """BFGS minimisation of ``fun(x) -> (E, grad, converged_flag)`` over ``x [natom, 3]``.

    Converged when the gradient norm is below ``gtol``, the largest gradient component
    below ``fmax`` (Hartree/Bohr; Gaussian's default maximum force 4.5e-4) and the last
    energy change below ``etol`` (Hartree). Steps are capped at ``max_step`` Bohr per
    atom; the initial inverse Hessian is ``1/hess0`` (``hess0`` in Hartree/Bohr^2, a
    typical stretching force constant). A backtracking line search enforces the Armijo
    condition; the BFGS update is skipped when the curvature ``y.s`` is not positive.

    Returns ``(x, info)``; info holds ``converged``, ``steps``, ``energy``,
    ``grad_norm``, ``max_grad``, ``n_evals``, ``trajectory`` (energies, Hartree) and
    ``positions`` (``[steps + 1, natom, 3]``, Bohr, one per accepted step).
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    shape = x.shape
    n = x.size
    e, g, ok = fun(x)
    g = g.reshape(-1)
    hinv = np.eye(n) / hess0
    n_evals = 1
    traj = [e]
    path = [x.copy()]
    de = np.inf
    converged = False
    t0 = time.time()
    step = 0

    def report(step, e, g, de):
        if verbose:
            print(f"step {step:3d}  E = {e:.10f}  dE = {de:+.2e}  |g| = {np.linalg.norm(g):.2e}  "
                  f"max|g| = {np.abs(g).max():.2e}  ({time.time() - t0:.1f} s)", flush=True)

    report(0, e, g, 0.0)
    for step in range(1, max_steps + 1):
        gnorm = np.linalg.norm(g)
        if gnorm < gtol and np.abs(g).max() < fmax and (step == 1 or abs(de) < etol):
            converged = True
            step -= 1
            break
        p = -hinv @ g
        if p @ g >= 0:  # not a descent direction: reset to steepest descent
            hinv = np.eye(n) / hess0
            p = -g / hess0
        longest = np.linalg.norm(p.reshape(-1, 3), axis=1).max()
        if longest > max_step:
            p *= max_step / longest
        alpha = 1.0
        for _ in range(8):
            x_new = x + alpha * p.reshape(shape)
            e_new, g_new, ok = fun(x_new)
            n_evals += 1
            if e_new <= e + 1e-4 * alpha * (g @ p) or alpha < 0.05:
                break
            alpha *= 0.5
        g_new = g_new.reshape(-1)
        s = (x_new - x).reshape(-1)
        y = g_new - g
        sy = s @ y
        if sy > 1e-12:
            rho = 1.0 / sy
            v = np.eye(n) - rho * np.outer(s, y)
            hinv = v @ hinv @ v.T + rho * np.outer(s, s)
        de = e_new - e
        x, e, g = x_new, e_new, g_new
        traj.append(e)
        path.append(x.copy())
        report(step, e, g, de)
    else:
        gnorm = np.linalg.norm(g)
        converged = gnorm < gtol and np.abs(g).max() < fmax and abs(de) < etol
        step = max_steps
    info = {"converged": bool(converged), "steps": step, "energy": e, "grad_norm": float(np.linalg.norm(g)),
            "max_grad": float(np.abs(g).max()), "gradient": g.reshape(shape), "n_evals": n_evals,
            "trajectory": np.asarray(traj), "positions": np.asarray(path)}
    return x, info


def optimize(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", gtol: float = 3e-4,
             max_steps: int = 100, cart: bool = False, fmax: float = 4.5e-4, etol: float = 1e-6,
             max_step: float = 0.3, verbose: bool = True, **options) -> tuple[Molecule, dict]:
    """Optimise the geometry of ``molecule`` (minimum of the HF/KS energy).

    Args:
        molecule: starting structure (Bohr).
        basis, xc, cart, **options: as :func:`mess.run` (e.g. ``conv_tol``; the default
            here is ``conv_tol=1e-10`` so that gradients are accurate to ~1e-6).
        gtol: gradient-norm threshold, Hartree/Bohr.
        fmax: largest-gradient-component threshold, Hartree/Bohr.
        etol: energy-change threshold, Hartree.
        max_steps: maximum BFGS steps; max_step: step cap per atom, Bohr.
        verbose: print one progress line per step.

    Returns:
        ``(optimised Molecule, info)``; see :func:`minimize_bfgs` for ``info``.
    """
    options.setdefault("conv_tol", 1e-10)
    fun = gradient_function(molecule, basis, xc, cart, **options)
    x, info = minimize_bfgs(fun, np.asarray(molecule.positions), gtol=gtol, fmax=fmax, etol=etol,
                            max_steps=max_steps, max_step=max_step, verbose=verbose)
    out = Molecule(molecule.numbers, np.asarray(x), molecule.charge, molecule.spin)
    return out, info


# --------------------------------------------------------------------------------------
# Hessian and harmonic frequencies
# --------------------------------------------------------------------------------------


def hessian(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
            step: float = 5e-3, **options) -> np.ndarray:
    """Cartesian Hessian ``[natom, natom, 3, 3]`` (Hartree/Bohr^2; PySCF's layout) by
    central differences of analytic gradients with displacement ``step`` (Bohr):
    6 natom SCF + gradient evaluations, symmetrised. Default ``conv_tol=1e-11``."""
    options.setdefault("conv_tol", 1e-11)
    fun = gradient_function(molecule, basis, xc, cart, warm_start=False, **options)
    x0 = np.asarray(molecule.positions, dtype=np.float64)
    natom = x0.shape[0]
    h = np.zeros((natom, 3, natom, 3))
    for a in range(natom):
        for k in range(3):
            grads = []
            for sign in (1.0, -1.0):
                x = x0.copy()
                x[a, k] += sign * step
                grads.append(fun(x)[1])
            h[a, k] = (grads[0] - grads[1]) / (2 * step)
    h = 0.5 * (h + h.transpose(2, 3, 0, 1))
    return h.transpose(0, 2, 1, 3)


def _constants():
    from pyscf.data import nist

    au2hz = (nist.HARTREE2J / (nist.ATOMIC_MASS * nist.BOHR_SI ** 2)) ** 0.5 / (2 * np.pi)
    return au2hz / nist.LIGHT_SPEED_SI * 1e-2


def _masses(numbers) -> np.ndarray:
    from pyscf.data import elements

    return np.asarray([elements.MASSES[z] for z in numbers], dtype=np.float64)


def harmonic_analysis(numbers, positions: np.ndarray, hess: np.ndarray, masses: np.ndarray | None = None):
    """Harmonic frequencies (cm^-1, imaginary as negative) and normal modes.

    Args:
        numbers: atomic numbers; positions: ``[natom, 3]`` Bohr.
        hess: Cartesian Hessian ``[natom, natom, 3, 3]`` (Hartree/Bohr^2).
        masses: atomic masses (amu); default isotope-averaged (PySCF's
            ``atom_mass_list(isotope_avg=True)``).

    Returns:
        ``(freqs [3N-6 or 3N-5], modes [3N, nvib])`` with modes in mass-weighted
        Cartesian coordinates. Translations and rotations (5 for linear molecules)
        are projected out before diagonalisation.
    """
    pos = np.asarray(positions, dtype=np.float64)
    natom = pos.shape[0]
    m = _masses(numbers) if masses is None else np.asarray(masses, dtype=np.float64)
    com = (m[:, None] * pos).sum(0) / m.sum()
    r = pos - com
    sq = np.sqrt(m)
    hm = np.einsum("pqxy,p,q->pxqy", hess, 1 / sq, 1 / sq).reshape(3 * natom, 3 * natom)
    vecs = []
    for k in range(3):
        t = np.zeros((natom, 3))
        t[:, k] = sq
        vecs.append(t.reshape(-1))
    for k in range(3):
        axis = np.zeros(3)
        axis[k] = 1.0
        vecs.append((np.cross(axis, r) * sq[:, None]).reshape(-1))
    tr = np.asarray(vecs).T
    u, s, _ = np.linalg.svd(tr, full_matrices=True)
    rank = int(np.sum(s > 1e-6 * s.max()))
    internal = u[:, rank:]
    k_au, modes = np.linalg.eigh(internal.T @ hm @ internal)
    freqs = np.sign(k_au) * np.sqrt(np.abs(k_au)) * _constants()
    return freqs, internal @ modes


def frequencies(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                step: float = 5e-3, **options) -> np.ndarray:
    """Harmonic vibrational frequencies (cm^-1, ascending; imaginary as negative) of
    ``molecule`` from a finite-difference Hessian of analytic gradients (see
    :func:`hessian`, :func:`harmonic_analysis`). Meaningful at a stationary point
    (optimise first with :func:`optimize`)."""
    h = hessian(molecule, basis, xc, cart, step=step, **options)
    return harmonic_analysis(molecule.numbers, np.asarray(molecule.positions), h)[0]
