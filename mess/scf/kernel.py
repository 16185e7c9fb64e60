"""The SCF kernel: Roothaan-Hall / Pople-Nesbet iterations with CDIIS, under jit.

The iteration follows PySCF's ``scf.hf.kernel`` step by step so that, from the same
initial density, it converges to the same state:

1. ``F = h + veff[D]``; damping (cycles before DIIS), CDIIS extrapolation
   (cycles ``>= diis_start_cycle``), level shift;
2. diagonalise, fill orbitals by aufbau, build the new density and potential;
3. converged when ``|dE| < conv_tol`` and ``|g| < conv_tol_grad``;
4. after convergence one extra diagonalisation of the unshifted, unextrapolated
   Fock matrix, accepted with the looser tolerances ``10 conv_tol`` or
   ``3 conv_tol_grad`` (PySCF's ``conv_check``).

Beyond PySCF, a fallback phase (see :class:`SCFOptions`) takes over when the plain
iteration has not converged after ``fallback_cycle`` cycles: trust-region Newton
steps on the orbital rotations (:mod:`mess.scf.newton`, default) or DIIS restarted
with a level shift. It converges open-shell cases (e.g. NO/STO-3G) where PySCF's
DIIS oscillates.

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

from mess.scf.diis import DIISState, commutator_error, diis_init, diis_reset, diis_update
from mess.scf.eig import eig, orthogonalizer
from mess.scf.newton import newton_step, rotation_mask
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


class _LoopState(eqx.Module):
    cycle: Int[Array, ""]
    step: _Step
    fock_last: Float[Array, "c n n"]
    diis: DIISState
    converged: Bool[Array, ""]
    history: Float[Array, " h"]
    radius: Float[Array, ""]


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
    Orbitals beyond the ``n_kept`` linearly independent ones are ignored."""
    real = jnp.arange(mo_energy.shape[-1]) < n_kept
    homo = jnp.max(jnp.where(mo_occ > 0, mo_energy, -jnp.inf))
    lumo = jnp.min(jnp.where((mo_occ == 0) & real, mo_energy, jnp.inf))
    return (jnp.where(jnp.isfinite(homo), homo, jnp.nan),
            jnp.where(jnp.isfinite(lumo), lumo, jnp.nan))


def _diag_fock(mo_coeff: Float[Array, "c n n"], fock: Float[Array, "c n n"]) -> Float[Array, "c n"]:
    """Diagonal of ``C^T F C``: orbital energies of non-canonical orbitals, Hartree."""
    return jnp.einsum("...pi,...pq,...qi->...i", mo_coeff, fock, mo_coeff)


def _channels_dm0(dm0: Array, restricted: bool, n: int) -> Array:
    dm0 = jnp.asarray(dm0)
    if restricted:
        if dm0.shape != (n, n):
            raise ValueError(f"restricted dm0 must have shape ({n}, {n}), got {dm0.shape}")
        return dm0[None]
    if dm0.shape == (n, n):  # a total density: split evenly between the spins
        return jnp.stack([0.5 * dm0, 0.5 * dm0])
    if dm0.shape != (2, n, n):
        raise ValueError(f"unrestricted dm0 must have shape (2, {n}, {n}), got {dm0.shape}")
    return dm0


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
    if not jax.config.read("jax_enable_x64") and getattr(hcore, "dtype", None) == np.float64:
        raise ValueError(
            "float64 integrals would be silently cast to float32: SCF energies need "
            "float64. Enable it with jax.config.update('jax_enable_x64', True) (or "
            "JAX_ENABLE_X64=1), or pass float32 arrays to opt into single precision.")
    hcore = jnp.asarray(hcore)
    overlap = jnp.asarray(overlap)
    n = hcore.shape[-1]
    dtype = hcore.dtype
    nocc, occ_value = channel_occupancy(nelec, restricted)
    opt = options
    tol, tol_grad = opt.conv_tol, opt.tol_grad
    e_nuc = jnp.asarray(e_nuc, dtype)

    x, keep = orthogonalizer(overlap, opt.lindep_threshold)
    n_kept = jnp.sum(keep)
    occ = aufbau(n, nocc, occ_value, dtype)

    def to_user(a):
        return a[0] if restricted else a

    def potential(dm_c):
        veff, e_two, parts = veff_fn(to_user(dm_c))
        veff = veff[None] if restricted else veff
        return veff, e_two, parts

    def energy_of_orbitals(mo_coeff):
        dm = make_rdm1(mo_coeff, occ)
        _, e_two, _ = potential(dm)
        return e_nuc + jnp.sum(hcore * jnp.sum(dm, axis=0)) + e_two

    def evaluate(mo_energy, mo_coeff) -> _Step:
        dm = make_rdm1(mo_coeff, occ)
        vhf, e_two, parts = potential(dm)
        e_one = jnp.sum(hcore * jnp.sum(dm, axis=0))
        gnorm = orbital_gradient_norm(mo_coeff, occ, hcore + vhf, restricted)
        return _Step(mo_energy, mo_coeff, occ, dm, vhf, e_nuc + e_one + e_two, e_one, e_two,
                     parts, gnorm)

    # Initial density: energy and potential; orbitals from one diagonalisation
    # (what PySCF returns when max_cycle <= 0).
    dm_init = _channels_dm0(dm0, restricted, n).astype(dtype)
    vhf0, e_two0, parts0 = potential(dm_init)
    e_one0 = jnp.sum(hcore * jnp.sum(dm_init, axis=0))
    mo_e0, mo_c0 = eig(hcore + vhf0, x, keep)
    step0 = _Step(mo_e0, mo_c0, occ, dm_init, vhf0, e_nuc + e_one0 + e_two0, e_one0, e_two0,
                  parts0, orbital_gradient_norm(mo_c0, occ, hcore + vhf0, restricted))

    nchan = len(nocc)
    history = jnp.full((opt.max_cycle + 1,), jnp.nan, dtype).at[0].set(step0.energy)
    state0 = _LoopState(
        cycle=jnp.zeros((), jnp.int32),
        step=step0,
        fock_last=hcore + vhf0,
        diis=diis_init(opt.diis_space, (nchan, n, n), nchan * n * n, dtype),
        converged=jnp.zeros((), bool),
        history=history,
        radius=jnp.asarray(opt.trust_radius, dtype),
    )

    def cond(st: _LoopState):
        return (st.cycle < opt.max_cycle) & ~st.converged

    level_shift_fallback = opt.fallback == "level_shift"

    def diis_body(st: _LoopState) -> _LoopState:
        cycle = st.cycle
        s = st.step
        fock = hcore + s.vhf
        if level_shift_fallback:
            fallback = cycle >= opt.fallback_cycle
        else:
            fallback = jnp.zeros((), bool)

        damp = jnp.where((cycle > 0) & (cycle < opt.diis_start_cycle - 1), opt.damping, 0.0)
        damp = jnp.where(fallback & (cycle > 0), opt.fallback_damping, damp)
        fock = (1.0 - damp) * fock + damp * st.fock_last

        diis = st.diis
        if level_shift_fallback:
            diis = jax.lax.cond(cycle == opt.fallback_cycle, diis_reset, lambda d: d, diis)
        err = commutator_error(fock, s.dm, overlap, x)
        diis_new, fock_diis = diis_update(diis, fock, err)
        use_diis = cycle >= opt.diis_start_cycle
        diis = jax.tree.map(lambda a, b: jnp.where(use_diis, a, b), diis_new, diis)
        fock = jnp.where(use_diis, fock_diis, fock)

        shift = jnp.where(fallback, opt.fallback_level_shift, opt.level_shift)
        fock = fock + shift * (overlap - overlap @ (s.dm / occ_value) @ overlap)

        mo_energy, mo_coeff = eig(fock, x, keep)
        new = evaluate(mo_energy, mo_coeff)
        converged = (jnp.abs(new.energy - s.energy) < tol) & (new.grad_norm < tol_grad)
        return _LoopState(cycle + 1, new, fock, diis, converged,
                          st.history.at[cycle + 1].set(new.energy), st.radius)

    rot_mask = rotation_mask(occ, n_kept)

    def newton_body(st: _LoopState) -> _LoopState:
        s = st.step
        eps = _diag_fock(s.mo_coeff, hcore + s.vhf)
        mo_coeff, predicted, step_norm = newton_step(
            energy_of_orbitals, s.mo_coeff, rot_mask, eps, st.radius, opt.newton_cg_iter)
        new = evaluate(eps, mo_coeff)
        new = eqx.tree_at(lambda t: t.mo_energy, new, _diag_fock(mo_coeff, hcore + new.vhf))
        actual = new.energy - s.energy
        rho = actual / jnp.where(predicted < 0, predicted, -jnp.finfo(dtype).tiny)
        # accept any decrease, and changes at the level of rounding noise
        accept = actual < jnp.maximum(1e-12 * jnp.abs(s.energy), 0.1 * tol)
        radius = jnp.where(rho < 0.25, 0.25 * step_norm, st.radius)
        grow = (rho > 0.75) & (step_norm > 0.99 * st.radius)
        radius = jnp.where(grow, jnp.minimum(2 * st.radius, opt.max_trust_radius), radius)
        step = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, s)
        converged = accept & (jnp.abs(actual) < tol) & (new.grad_norm < tol_grad)
        return _LoopState(st.cycle + 1, step, st.fock_last, st.diis, converged,
                          st.history.at[st.cycle + 1].set(step.energy), radius)

    def body(st: _LoopState) -> _LoopState:
        if opt.fallback == "newton":
            return jax.lax.cond(st.cycle >= opt.fallback_cycle, newton_body, diis_body, st)
        return diis_body(st)

    final = jax.lax.while_loop(cond, body, state0)
    last = final.step

    # PySCF's conv_check: one more diagonalisation of the plain Fock matrix.
    extra = evaluate(*eig(hcore + last.vhf, x, keep))
    extra_ok = (jnp.abs(extra.energy - last.energy) < 10 * tol) | (extra.grad_norm < 3 * tol_grad)
    out = jax.tree.map(lambda a, b: jnp.where(final.converged, a, b), extra, last)
    converged = final.converged & extra_ok

    homo, lumo = frontier_energies(out.mo_energy, out.mo_occ, n_kept)
    return SCFResult(
        energy=out.energy,
        e_nuc=e_nuc,
        e_one=out.e_one,
        e_two=out.e_two,
        parts=out.parts,
        mo_energy=to_user(out.mo_energy),
        mo_coeff=to_user(out.mo_coeff),
        mo_occ=to_user(out.mo_occ),
        density=to_user(out.dm),
        converged=converged,
        iterations=final.cycle,
        energy_history=final.history,
        grad_norm=out.grad_norm,
        homo=homo,
        lumo=lumo,
    )
