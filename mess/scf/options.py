"""Options of the SCF kernel (static: they fix the compiled program, not its inputs)."""

from __future__ import annotations

import math

import equinox as eqx

from mess.errors import InputError


class SCFOptions(eqx.Module):
    """Settings of :func:`mess.scf.scf`; defaults mirror PySCF's ``scf.hf.SCF``.

    All fields are static Python numbers: changing one recompiles the kernel, new
    integrals (a new geometry) do not.

    Attributes:
        conv_tol: convergence threshold on the change of the total energy between
            two cycles, Hartree (PySCF ``conv_tol``).
        conv_tol_grad: threshold on the 2-norm of the orbital gradient
            (occupied-virtual block of the Fock matrix in the MO basis; for restricted
            orbitals ``2 C_vir^T F C_occ``, PySCF ``get_grad``), Hartree. ``None``
            means ``sqrt(conv_tol)``, as in PySCF.
        max_cycle: maximum number of plain SCF cycles (Fock diagonalisations).
        diis_space: number of Fock/error pairs kept by CDIIS (Pulay 1980, 1982).
        diis_start_cycle: first cycle (0-based) whose Fock matrix is extrapolated;
            PySCF's default 1 leaves the Fock matrix of the initial guess untouched.
        level_shift: shift of the virtual orbitals, Hartree (Saunders & Hillier 1973).
        damping: mixing factor of the previous Fock matrix, used on the cycles before
            DIIS starts (``cycle < diis_start_cycle - 1``), as PySCF's ``damp``.
        fallback: what to do when the plain (PySCF-like) iteration has not converged
            in ``max_cycle`` cycles: ``"newton"`` (default) continues from its last
            orbitals with trust-region Newton steps on the orbital rotations (exact
            Hessian-vector products by autodiff; see :mod:`mess.scf.newton`);
            ``"level_shift"`` restarts DIIS with ``fallback_level_shift`` and
            ``fallback_damping``; ``None`` stops there, unconverged. The fallback only
            acts on iterations that did not converge, so results that PySCF's
            iteration converges are unchanged.
        fallback_max_cycle: most cycles of the fallback (after the plain ones).
        fallback_level_shift: level shift of the ``"level_shift"`` fallback, Hartree.
        fallback_damping: Fock damping factor of the ``"level_shift"`` fallback.
        newton_cg_iter: conjugate-gradient iterations (Hessian-vector products) per
            Newton step.
        trust_radius: initial trust radius of the Newton fallback (preconditioned
            rotation norm, i.e. roughly radians times sqrt(Hartree)).
        max_trust_radius: largest trust radius.
        stability: check that a converged unrestricted open-shell solution is a
            minimum and not a saddle point (lowest eigenvalue of the orbital Hessian),
            and descend along the negative-curvature direction when it is not
            (:func:`mess.scf.kernel.stability_phase`). The engine runs it only for
            open-shell items (``n_alpha != n_beta``) in the converged mode; it costs a
            Lanczos space of Hessian-vector products per item.
        stability_krylov: Lanczos dimension (Hessian-vector products) of the check.
        stability_threshold: an eigenvalue of the preconditioned orbital Hessian
            below minus this (about Hartree / orbital gap) counts as unstable.
        lindep_threshold: overlap eigenvalues below this are dropped (canonical
            orthogonalisation, Löwdin 1970), PySCF's default 1e-6.
    """

    conv_tol: float = eqx.field(static=True, default=1e-9)
    conv_tol_grad: float | None = eqx.field(static=True, default=None)
    max_cycle: int = eqx.field(static=True, default=50)
    diis_space: int = eqx.field(static=True, default=8)
    diis_start_cycle: int = eqx.field(static=True, default=1)
    level_shift: float = eqx.field(static=True, default=0.0)
    damping: float = eqx.field(static=True, default=0.0)
    fallback: str | None = eqx.field(static=True, default="newton")
    fallback_max_cycle: int = eqx.field(static=True, default=50)
    fallback_level_shift: float = eqx.field(static=True, default=0.5)
    fallback_damping: float = eqx.field(static=True, default=0.0)
    newton_cg_iter: int = eqx.field(static=True, default=10)
    trust_radius: float = eqx.field(static=True, default=0.5)
    max_trust_radius: float = eqx.field(static=True, default=2.0)
    stability: bool = eqx.field(static=True, default=True)
    stability_krylov: int = eqx.field(static=True, default=40)
    stability_threshold: float = eqx.field(static=True, default=1e-7)
    lindep_threshold: float = eqx.field(static=True, default=1e-6)

    def __check_init__(self):
        if self.max_cycle < 0:
            raise InputError(f"max_cycle must be >= 0, got {self.max_cycle}")
        if self.fallback_max_cycle < 0:
            raise InputError(f"fallback_max_cycle must be >= 0, got {self.fallback_max_cycle}")
        if self.stability_krylov < 2:
            raise InputError(f"stability_krylov must be >= 2, got {self.stability_krylov}")
        if self.diis_space < 1:
            raise InputError(f"diis_space must be >= 1, got {self.diis_space}")
        if not 0.0 <= self.damping < 1.0 or not 0.0 <= self.fallback_damping < 1.0:
            raise InputError("damping factors must lie in [0, 1)")
        if self.fallback not in (None, "newton", "level_shift"):
            raise InputError(f"fallback must be None, 'newton' or 'level_shift', got {self.fallback!r}")

    @property
    def tol_grad(self) -> float:
        """The orbital-gradient threshold actually used (``sqrt(conv_tol)`` by default)."""
        return math.sqrt(self.conv_tol) if self.conv_tol_grad is None else self.conv_tol_grad
