"""The SCF kernel: Roothaan-Hall / Pople-Nesbet iterations with CDIIS, under jit.

The plain iteration follows PySCF's ``scf.hf.kernel`` step by step so that, from the
same initial density, it converges to the same state:

1. ``F = h + veff[D]``; damping (cycles before DIIS), CDIIS extrapolation
   (cycles ``>= diis_start_cycle``), level shift;
2. diagonalise, fill orbitals by aufbau, build the new density and potential;
3. converged when ``|dE| < conv_tol`` and ``|g| < conv_tol_grad``;
4. after convergence one extra diagonalisation of the unshifted, unextrapolated
   Fock matrix, accepted with the looser tolerances ``10 conv_tol`` or
   ``3 conv_tol_grad`` (PySCF's ``conv_check``).

The work is split into phases over one :class:`SCFState`, so that a batch (``vmap``)
can run them separately and a fallback costs nothing for the items that do not need
it: :func:`initial_state`, :func:`diis_phase` (the plain iteration, up to
``max_cycle`` cycles), :func:`fixed_cycles` (exactly N cycles, no convergence test:
QM1B's mode), :func:`fallback_phase` (for a state that did not converge: trust-region
Newton steps on the orbital rotations, :mod:`mess.scf.newton`, or DIIS restarted with
a level shift), :func:`stability_phase` (for a converged open shell: is it a minimum,
and if it is a saddle point, descend to one) and :func:`finalize`. Each phase is a ``while_loop`` whose condition is
false for a converged state, so under ``vmap`` a batch in which every item converged
never runs a fallback step. :func:`scf` composes them for one molecule.

A state converged by second-order steps keeps its occupations (which need not be
aufbau for a degenerate open shell, e.g. the pi* electron of NO) and is canonicalised
within its occupied and virtual spaces, as PySCF's second-order solver does; it is not
re-diagonalised with aufbau filling, which would jump to another state.

References: Roothaan, Rev. Mod. Phys. 23, 69 (1951); Pople & Nesbet, J. Chem. Phys.
22, 571 (1954); Pulay, Chem. Phys. Lett. 73, 393 (1980) and J. Comput. Chem. 3, 556
(1982); Saunders & Hillier, Int. J. Quantum Chem. 7, 699 (1973) (level shift).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from mess.errors import InputError
from mess.scf.diis import DIISState, commutator_error, diis_init, diis_reset, diis_update
from mess.scf.eig import REMOVED_ORBITAL_ENERGY, eig, eigh_safe, orthogonalizer
from mess.scf.newton import lowest_curvature, newton_step, rotate, rotation_mask, scaled_derivatives
from mess.scf.occupation import aufbau, channel_occupancy, make_rdm1
from mess.scf.options import SCFOptions
from mess.scf.result import SCFResult
from mess.scf.veff import VeffFn


class _Step(eqx.Module):
    """Quantities attached to one density (channel layout ``[c, ...]``)."""

    mo_energy: Float[Array, "c n"]
    mo_coeff: Float[Array, "c n n"]
    mo_occ: Float[Array, "c n"]
    dm: Float[Array, "c n n"]
    vhf: Float[Array, "c n n"]
    energy: Float[Array, ""]
    e_one: Float[Array, ""]
    e_two: Float[Array, ""]
    parts: dict[str, Array]
    grad_norm: Float[Array, ""]


#: Phases of the plain iteration (:attr:`SCFState.phase`).
ITERATING, CHECKING, DONE = 0, 1, 2


class SCFState(eqx.Module):
    """The iteration's state between phases (a pytree of arrays).

    Attributes:
        cycle: diagonalisations done so far (all phases); the pending density came
            from the last of them.
        dm, mo_energy, mo_coeff: the pending density (not yet evaluated) and the
            orbitals it was built from.
        fock_last: the Fock matrix used in the last cycle (for damping).
        diis: the CDIIS history.
        phase: :data:`ITERATING`, :data:`CHECKING` (the pending density is PySCF's
            conv-check diagonalisation) or :data:`DONE`.
        step: the last evaluated density and what is attached to it.
        converged: the convergence test of the phase that ran last passed.
        second_order: the state was converged by second-order steps.
        history: total energy of the initial density and after each cycle (nan-padded).
        grad_history: orbital-gradient norm after each cycle (nan for the initial
            density and padding).
        radius: trust radius of the second-order phase.
    """

    cycle: Int[Array, ""]
    dm: Float[Array, "c n n"]
    mo_energy: Float[Array, "c n"]
    mo_coeff: Float[Array, "c n n"]
    fock_last: Float[Array, "c n n"]
    diis: DIISState
    phase: Int[Array, ""]
    step: _Step
    converged: Bool[Array, ""]
    second_order: Bool[Array, ""]
    history: Float[Array, " h"]
    grad_history: Float[Array, " h"]
    radius: Float[Array, ""]


class SCFProblem(eqx.Module):
    """What the iterations need for one molecule: integrals, the two-electron potential,
    the orthogonaliser and the occupations (arrays and a veff pytree; statics)."""

    overlap: Float[Array, "n n"]
    hcore: Float[Array, "n n"]
    e_nuc: Float[Array, ""]
    veff_fn: VeffFn
    x: Float[Array, "n n"]
    keep: Bool[Array, " n"]
    occ: Float[Array, "c n"]
    restricted: bool = eqx.field(static=True)
    occ_value: float = eqx.field(static=True)
    options: SCFOptions = eqx.field(static=True)

    @property
    def n(self) -> int:
        return self.hcore.shape[-1]

    @property
    def nchan(self) -> int:
        return self.occ.shape[0]

    @property
    def history_length(self) -> int:
        opt = self.options
        return opt.max_cycle + (opt.fallback_max_cycle if opt.fallback else 0) \
            + (opt.fallback_max_cycle if opt.stability and not self.restricted else 0) + 1

    def to_user(self, a):
        return a[0] if self.restricted else a

    def potential(self, dm_c):
        veff, e_two, parts = self.veff_fn(self.to_user(dm_c))
        veff = veff[None] if self.restricted else veff
        return veff, e_two, parts

    def evaluate(self, mo_energy, mo_coeff, occ=None) -> _Step:
        occ = self.occ if occ is None else occ
        dm = make_rdm1(mo_coeff, occ)
        vhf, e_two, parts = self.potential(dm)
        e_one = jnp.sum(self.hcore * jnp.sum(dm, axis=0))
        gnorm = orbital_gradient_norm(mo_coeff, occ, self.hcore + vhf, self.restricted)
        return _Step(mo_energy, mo_coeff, occ, dm, vhf, self.e_nuc + e_one + e_two, e_one, e_two, parts, gnorm)

    def energy_of_orbitals(self, mo_coeff):
        dm = make_rdm1(mo_coeff, self.occ)
        _, e_two, _ = self.potential(dm)
        return self.e_nuc + jnp.sum(self.hcore * jnp.sum(dm, axis=0)) + e_two

    def converged(self, new: _Step, old: _Step) -> Array:
        return (jnp.abs(new.energy - old.energy) < self.options.conv_tol) & (new.grad_norm < self.options.tol_grad)


def orbital_gradient_norm(
    mo_coeff: Float[Array, "c n n"], mo_occ: Float[Array, "c n"], fock: Float[Array, "c n n"],
    restricted: bool,
) -> Float[Array, ""]:
    """2-norm of the occupied-virtual Fock block in the MO basis (PySCF ``get_grad``:
    ``2 C_vir^T F C_occ`` for restricted, the alpha and beta blocks for unrestricted)."""
    f_mo = jnp.swapaxes(mo_coeff, -1, -2) @ fock @ mo_coeff
    occ = mo_occ > 0
    mask = (~occ)[..., :, None] & occ[..., None, :]
    g = jnp.where(mask, f_mo, 0.0) * (2.0 if restricted else 1.0)
    return jnp.sqrt(jnp.sum(g * g))


def frontier_energies(
    mo_energy: Float[Array, "c n"], mo_occ: Float[Array, "c n"], n_kept: Int[Array, ""]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(HOMO, LUMO) over all spin channels, Hartree; nan where there is none.
    Orbitals beyond the ``n_kept`` linearly independent ones, and orbitals in removed
    directions (energy :data:`~mess.scf.eig.REMOVED_ORBITAL_ENERGY`), are ignored."""
    real = (jnp.arange(mo_energy.shape[-1]) < n_kept) & (mo_energy < 0.5 * REMOVED_ORBITAL_ENERGY)
    homo = jnp.max(jnp.where(mo_occ > 0, mo_energy, -jnp.inf))
    lumo = jnp.min(jnp.where((mo_occ == 0) & real, mo_energy, jnp.inf))
    return (jnp.where(jnp.isfinite(homo), homo, jnp.nan),
            jnp.where(jnp.isfinite(lumo), lumo, jnp.nan))


def _diag_fock(mo_coeff: Float[Array, "c n n"], fock: Float[Array, "c n n"]) -> Float[Array, "c n"]:
    """Diagonal of ``C^T F C``: orbital energies of non-canonical orbitals, Hartree."""
    return jnp.einsum("...pi,...pq,...qi->...i", mo_coeff, fock, mo_coeff)


def channels_dm0(dm0: Array, restricted: bool, n: int) -> Array:
    """An initial density in channel layout ``[c, n, n]``; for unrestricted a total
    density ``[n, n]`` is split evenly between the spins."""
    dm0 = jnp.asarray(dm0)
    if restricted:
        if dm0.shape != (n, n):
            raise InputError(f"restricted dm0 must have shape ({n}, {n}), got {dm0.shape}")
        return dm0[None]
    if dm0.shape == (n, n):
        return jnp.stack([0.5 * dm0, 0.5 * dm0])
    if dm0.shape != (2, n, n):
        raise InputError(f"unrestricted dm0 must have shape (2, {n}, {n}), got {dm0.shape}")
    return dm0


def make_problem(overlap, hcore, e_nuc, nelec, veff_fn: VeffFn, *, restricted: bool,
                 options: SCFOptions = SCFOptions()) -> SCFProblem:
    """The :class:`SCFProblem` of one molecule (see :func:`scf` for the arguments)."""
    if not jax.config.read("jax_enable_x64") and getattr(hcore, "dtype", None) == np.float64:
        raise InputError(
            "float64 integrals would be silently cast to float32: SCF energies need "
            "float64. Enable it with jax.config.update('jax_enable_x64', True) (or "
            "JAX_ENABLE_X64=1), or pass float32 arrays to opt into single precision.")
    hcore = jnp.asarray(hcore)
    overlap = jnp.asarray(overlap)
    dtype = hcore.dtype
    nocc, occ_value = channel_occupancy(nelec, restricted)
    x, keep = orthogonalizer(overlap, options.lindep_threshold)
    occ = aufbau(hcore.shape[-1], nocc, occ_value, dtype)
    return SCFProblem(overlap, hcore, jnp.asarray(e_nuc, dtype), veff_fn, x, keep, occ, bool(restricted),
                      float(occ_value), options)


def initial_state(problem: SCFProblem, dm0: Array) -> SCFState:
    """The state before the first cycle: the initial density pending evaluation."""
    p = problem
    dtype = p.hcore.dtype
    n, c = p.n, p.nchan
    dm_init = channels_dm0(dm0, p.restricted, n).astype(dtype)
    zero_e, zero_c = jnp.zeros((c, n), dtype), jnp.zeros((c, n, n), dtype)
    nan = jnp.asarray(jnp.nan, dtype)
    step0 = _Step(zero_e, zero_c, p.occ, dm_init, zero_c, nan, nan, nan,
                  jax.eval_shape(lambda d: p.potential(d)[2], dm_init), nan)
    step0 = eqx.tree_at(lambda t: t.parts, step0, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), step0.parts))
    return SCFState(
        cycle=jnp.zeros((), jnp.int32),
        dm=dm_init,
        mo_energy=zero_e,
        mo_coeff=zero_c,
        fock_last=zero_c,
        diis=diis_init(p.options.diis_space, (c, n, n), c * n * n, dtype),
        phase=jnp.asarray(ITERATING, jnp.int32),
        step=step0,
        converged=jnp.zeros((), bool),
        second_order=jnp.zeros((), bool),
        history=jnp.full((p.history_length,), jnp.nan, dtype),
        grad_history=jnp.full((p.history_length,), jnp.nan, dtype),
        radius=jnp.asarray(p.options.trust_radius, dtype),
    )


def _where(c, a, b):
    return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)


def _plain_body(p: SCFProblem, st: SCFState, limit, stop_on_convergence: bool, level_shift: float,
                damping: float | None = None) -> SCFState:
    """Evaluate the pending density (the one Fock build of the cycle), test
    convergence, and make the next density: extrapolated (iterating) or by a plain
    diagonalisation (PySCF's conv check), or none (done)."""
    opt = p.options
    k = st.cycle
    mo_e, mo_c = st.mo_energy, st.mo_coeff
    # the orbitals of the initial density are unknown: use those of its Fock matrix
    vhf, e_two, parts = p.potential(st.dm)
    fock = p.hcore + vhf
    first_e, first_c = eig(fock, p.x, p.keep)
    mo_e = jnp.where(k == 0, first_e, mo_e)
    mo_c = jnp.where(k == 0, first_c, mo_c)
    e_one = jnp.sum(p.hcore * jnp.sum(st.dm, axis=0))
    energy = p.e_nuc + e_one + e_two
    gnorm = orbital_gradient_norm(mo_c, p.occ, fock, p.restricted)
    step = _Step(mo_e, mo_c, p.occ, st.dm, vhf, energy, e_one, e_two, parts, gnorm)
    e_last = st.step.energy
    iterating = st.phase == ITERATING
    history = jnp.where(iterating, st.history.at[k].set(energy), st.history)
    # the initial density's orbitals diagonalise its own Fock matrix: no gradient to report
    grad_history = jnp.where(iterating & (k > 0), st.grad_history.at[k].set(gnorm), st.grad_history)

    test = (k > 0) & (jnp.abs(energy - e_last) < opt.conv_tol) & (gnorm < opt.tol_grad)
    extra_ok = (jnp.abs(energy - e_last) < 10 * opt.conv_tol) | (gnorm < 3 * opt.tol_grad)
    converged_now = iterating & test & stop_on_convergence
    stop = iterating & ~converged_now & (k >= limit)
    converged = jnp.where(iterating, test, extra_ok)
    phase = jnp.where(converged_now, CHECKING, jnp.where(iterating & ~stop, ITERATING, DONE)).astype(jnp.int32)

    # next density: damping / CDIIS / level shift while iterating, a plain
    # diagonalisation for the conv check
    if damping is None:
        damp = jnp.where((k > 0) & (k < opt.diis_start_cycle - 1), opt.damping, 0.0)
    else:
        damp = jnp.where(k > 0, damping, 0.0)
    f = (1.0 - damp) * fock + damp * st.fock_last
    err = commutator_error(f, st.dm, p.overlap, p.x)
    diis_new, f_diis = diis_update(st.diis, f, err)
    use_diis = iterating & ~converged_now & (k >= opt.diis_start_cycle)
    diis = _where(use_diis, diis_new, st.diis)
    f = jnp.where(use_diis, f_diis, f)
    f = f + level_shift * (p.overlap - p.overlap @ (st.dm / p.occ_value) @ p.overlap)
    f = jnp.where(converged_now, fock, f)
    next_e, next_c = eig(f, p.x, p.keep)
    advance = phase != DONE
    return SCFState(
        cycle=jnp.where(advance & ~converged_now, k + 1, k).astype(k.dtype),
        dm=make_rdm1(next_c, p.occ),
        mo_energy=next_e,
        mo_coeff=next_c,
        fock_last=f,
        diis=diis,
        phase=phase,
        step=step,
        converged=converged,
        second_order=st.second_order,
        history=history,
        grad_history=grad_history,
        radius=st.radius,
    )


def _plain_loop(problem: SCFProblem, state: SCFState, limit, stop_on_convergence: bool,
                level_shift: float | None = None, damping: float | None = None) -> SCFState:
    shift = problem.options.level_shift if level_shift is None else level_shift
    return jax.lax.while_loop(lambda st: st.phase != DONE,
                              lambda st: _plain_body(problem, st, limit, stop_on_convergence, shift, damping), state)


def diis_phase(problem: SCFProblem, state: SCFState) -> SCFState:
    """The plain (PySCF-like) iteration until convergence (with PySCF's conv check)
    or ``max_cycle`` cycles."""
    return _plain_loop(problem, state, problem.options.max_cycle, True)


def fixed_cycles(problem: SCFProblem, state: SCFState, cycles: int) -> SCFState:
    """Exactly ``cycles`` plain cycles (no early stop); ``converged`` reports the
    convergence test of the last cycle. The state's history must hold cycles + 1."""
    return _plain_loop(problem, state, cycles, False)


def _newton_cycle(p: SCFProblem, st: SCFState) -> SCFState:
    """One trust-region Newton step on the orbital rotations (occupations fixed)."""
    opt = p.options
    s = st.step
    n_kept = jnp.sum(p.keep)
    rot_mask = rotation_mask(s.mo_occ, n_kept)
    eps = _diag_fock(s.mo_coeff, p.hcore + s.vhf)
    mo_coeff, predicted, step_norm = newton_step(
        p.energy_of_orbitals, s.mo_coeff, rot_mask, eps, st.radius, opt.newton_cg_iter)
    new = p.evaluate(eps, mo_coeff)
    new = eqx.tree_at(lambda t: t.mo_energy, new, _diag_fock(mo_coeff, p.hcore + new.vhf))
    actual = new.energy - s.energy
    rho = actual / jnp.where(predicted < 0, predicted, -jnp.finfo(actual.dtype).tiny)
    # accept any decrease, and changes at the level of rounding noise
    accept = actual < jnp.maximum(1e-12 * jnp.abs(s.energy), 0.1 * opt.conv_tol)
    radius = jnp.where(rho < 0.25, 0.25 * step_norm, st.radius)
    grow = (rho > 0.75) & (step_norm > 0.99 * st.radius)
    radius = jnp.where(grow, jnp.minimum(2 * st.radius, opt.max_trust_radius), radius)
    step = _where(accept, new, s)
    converged = accept & (jnp.abs(actual) < opt.conv_tol) & (new.grad_norm < opt.tol_grad)
    return eqx.tree_at(lambda t: (t.cycle, t.step, t.converged, t.second_order, t.history, t.grad_history,
                                  t.radius), st,
                       (st.cycle + 1, step, converged, converged, st.history.at[st.cycle + 1].set(step.energy),
                        st.grad_history.at[st.cycle + 1].set(step.grad_norm), radius))


def fallback_phase(problem: SCFProblem, state: SCFState) -> SCFState:
    """For a state that has not converged: ``options.fallback`` steps (``"newton"``:
    trust-region second-order steps from the current orbitals with their occupations;
    ``"level_shift"``: DIIS restarted with ``fallback_level_shift`` and
    ``fallback_damping``), at most ``fallback_max_cycle`` cycles. A converged state
    passes through unchanged (the loop runs no step)."""
    p = problem
    opt = p.options
    if not opt.fallback:
        return state
    limit = opt.max_cycle + opt.fallback_max_cycle
    if opt.fallback == "newton":
        def cond(st):
            return (st.cycle < limit) & ~st.converged

        return jax.lax.while_loop(cond, lambda st: _newton_cycle(p, st), state)
    # restart the plain iteration from the last evaluated density, with a level shift
    restart = eqx.tree_at(lambda t: (t.dm, t.mo_energy, t.mo_coeff, t.diis, t.phase), state,
                          (state.step.dm, state.step.mo_energy, state.step.mo_coeff, diis_reset(state.diis),
                           jnp.asarray(ITERATING, jnp.int32)))
    restart = eqx.tree_at(lambda t: t.cycle, restart, state.cycle + 1)
    out = _plain_loop(p, restart, limit, True, opt.fallback_level_shift, opt.fallback_damping)
    return _where(state.converged, state, out)


#: Trial steps along a direction of negative curvature, in the preconditioned
#: rotation norm (both signs are tried; the lowest energy wins).
STABILITY_STEPS = (0.003, 0.01, 0.03, 0.1, 0.3)


def stability_phase(problem: SCFProblem, state: SCFState, check: Bool[Array, ] | bool = True) -> SCFState:
    """Internal stability of a converged solution, and the way down when it is a
    saddle point.

    The lowest eigenvalue of the orbital Hessian (real rotations within the same
    spin channel, occupations fixed: the internal stability problem of Seeger &
    Pople, J. Chem. Phys. 66, 3045 (1977)) comes from a Lanczos space of
    ``options.stability_krylov`` exact Hessian-vector products
    (:func:`mess.scf.newton.lowest_curvature`). When it is below
    ``-options.stability_threshold`` the orbitals are rotated along its eigenvector
    (the lowest energy of :data:`STABILITY_STEPS`, either sign) and trust-region
    Newton steps converge from there (:func:`_newton_cycle`). The result replaces the
    state only when it converged to a lower energy; a stable state, one that is not
    converged, and one whose descent fails pass through unchanged (the Newton loop
    runs no step for them), and so does every state when ``check`` is false (a
    traced per-item flag: the engine checks open-shell items only).

    PySCF's DIIS can stop at such a saddle too (its ``stability()`` reports it);
    e.g. OH with B3LYP/def2-SVP, where the grid splits the degenerate pi pair and the
    beta hole can settle between its two orientations.
    """
    p = problem
    opt = p.options
    s = state.step
    rot_mask = rotation_mask(s.mo_occ, jnp.sum(p.keep))
    eps = _diag_fock(s.mo_coeff, p.hcore + s.vhf)
    scale, _, hvp = scaled_derivatives(p.energy_of_orbitals, s.mo_coeff, rot_mask, eps)
    start = jnp.where(rot_mask, jax.random.normal(jax.random.PRNGKey(0), s.mo_coeff.shape, s.mo_coeff.dtype), 0.0)
    curvature, mode = lowest_curvature(hvp, start, opt.stability_krylov)
    steps = jnp.asarray(STABILITY_STEPS, s.energy.dtype)
    steps = jnp.concatenate([steps, -steps])
    trial = jax.lax.map(lambda t: p.energy_of_orbitals(rotate(s.mo_coeff, t * mode * scale)), steps)
    best = jnp.argmin(trial)
    lower = trial[best] < s.energy - jnp.maximum(opt.conv_tol, 1e-12 * jnp.abs(s.energy))
    unstable = check & state.converged & (curvature < -opt.stability_threshold) & lower
    mo_coeff = rotate(s.mo_coeff, steps[best] * mode * scale)
    new = p.evaluate(eps, mo_coeff, s.mo_occ)
    new = eqx.tree_at(lambda t: t.mo_energy, new, _diag_fock(mo_coeff, p.hcore + new.vhf))
    limit = jnp.minimum(state.cycle + opt.fallback_max_cycle, p.history_length - 2)
    start_state = eqx.tree_at(lambda t: (t.cycle, t.step, t.converged, t.radius), state,
                              (state.cycle + 1, new, jnp.zeros((), bool),
                               jnp.asarray(opt.trust_radius, s.energy.dtype)))

    def cond(st):
        return unstable & (st.cycle < limit) & ~st.converged

    out = jax.lax.while_loop(cond, lambda st: _newton_cycle(p, st), start_state)
    keep_new = unstable & out.converged & (out.step.energy < s.energy)
    return _where(keep_new, out, state)


def canonicalize(problem: SCFProblem, step: _Step) -> _Step:
    """Orbitals rotated to diagonalise the Fock matrix within the occupied and within
    the virtual space (occupations unchanged), as PySCF's ``canonicalize``; occupied
    orbitals come first, each space in ascending energy."""
    p = problem
    fock = p.hcore + step.vhf
    f_mo = jnp.swapaxes(step.mo_coeff, -1, -2) @ fock @ step.mo_coeff
    occ = step.mo_occ > 0
    real = jnp.any(step.mo_coeff != 0, axis=-2)
    same = (occ[..., :, None] == occ[..., None, :]) & real[..., :, None] & real[..., None, :]
    shift = 2.0 * REMOVED_ORBITAL_ENERGY
    # occupied block shifted down, removed directions up, so eigh sorts occ < vir < removed
    diag = jnp.where(occ, -shift, jnp.where(real, 0.0, REMOVED_ORBITAL_ENERGY))
    e, u = eigh_safe(jnp.where(same, f_mo, 0.0) + jax.vmap(jnp.diag)(diag))
    nocc = jnp.sum(occ, axis=-1, keepdims=True)
    first = jnp.arange(e.shape[-1]) < nocc
    mo_energy = jnp.where(first, e + shift, e)
    mo_coeff = step.mo_coeff @ u
    mo_occ = jnp.where(first, p.occ_value, 0.0).astype(step.mo_occ.dtype)
    return eqx.tree_at(lambda t: (t.mo_energy, t.mo_coeff, t.mo_occ), step, (mo_energy, mo_coeff, mo_occ))


def finalize(problem: SCFProblem, state: SCFState) -> SCFResult:
    """The result of a state: its last evaluated density (for a converged plain
    iteration, PySCF's conv-check diagonalisation), with canonical orbitals for one
    converged by second-order steps."""
    p = problem
    out = _where(state.second_order, canonicalize(p, state.step), state.step)
    homo, lumo = frontier_energies(out.mo_energy, out.mo_occ, jnp.sum(p.keep))
    return SCFResult(
        energy=out.energy,
        e_nuc=p.e_nuc,
        e_one=out.e_one,
        e_two=out.e_two,
        parts=out.parts,
        mo_energy=p.to_user(out.mo_energy),
        mo_coeff=p.to_user(out.mo_coeff),
        mo_occ=p.to_user(out.mo_occ),
        density=p.to_user(out.dm),
        converged=state.converged,
        iterations=state.cycle,
        energy_history=state.history,
        grad_history=state.grad_history,
        grad_norm=out.grad_norm,
        homo=homo,
        lumo=lumo,
    )


def scf(
    overlap: Float[Array, "n n"],
    hcore: Float[Array, "n n"],
    e_nuc: Float[Array, ""] | float,
    nelec: tuple[int, int] | Int[Array, "2"],
    veff_fn: VeffFn,
    dm0: Float[Array, "n n"] | Float[Array, "2 n n"],
    *,
    restricted: bool,
    options: SCFOptions = SCFOptions(),
) -> SCFResult:
    """Self-consistent field iterations (restricted or unrestricted), jit-compatible.

    Args:
        overlap: AO overlap matrix S.
        hcore: core Hamiltonian h = T + V_nuc, Hartree.
        e_nuc: nuclear repulsion energy, Hartree.
        nelec: ``(n_alpha, n_beta)``: Python ints (static, validated) or an integer
            array (traced: molecules with the same number of AOs share one compiled
            kernel; occupations are masks).
        veff_fn: ``dm -> (veff, e_two, parts)`` (see :mod:`mess.scf.veff`); dm is the
            total density ``[n, n]`` when restricted, ``[2, n, n]`` otherwise.
        dm0: initial density (e.g. :func:`mess.scf.minao_guess`); for unrestricted
            a ``[n, n]`` total density is split evenly between the spins.
        restricted: closed-shell RHF/RKS (True) or UHF/UKS (False) (static).
        options: :class:`SCFOptions` (static).

    Returns:
        An :class:`SCFResult`; non-convergence is reported by ``converged``.
    """
    problem = make_problem(overlap, hcore, e_nuc, nelec, veff_fn, restricted=restricted, options=options)
    state = fallback_phase(problem, diis_phase(problem, initial_state(problem, dm0)))
    if not restricted and options.stability:
        occupied = jnp.sum(problem.occ > 0, axis=-1)
        state = stability_phase(problem, state, occupied[0] != occupied[1])
    return finalize(problem, state)
