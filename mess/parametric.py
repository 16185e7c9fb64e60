"""The SCF energy as an explicit function of every continuous input.

The quantities a user may want to differentiate with respect to are collected in one
pytree, :class:`SCFParams`: nuclear positions, a uniform external electric field,
the basis-set exponents and contraction coefficients, the mixing weights of the
exchange-correlation components and the exact-exchange fraction. Everything else
(atoms, charge, spin, basis structure, ERI screening plan, grid plan) is fixed by
the host-side :class:`mess.driver.Setup`.

For a density matrix ``D`` (total ``[n, n]`` restricted, spin ``[2, n, n]``
unrestricted) the energy functional is

    E[D; p] = E_nuc(R) - F . sum_A Z_A R_A + tr((h(R) + F . r) D_tot)
              + 1/2 tr(J[D_tot] D_tot) - hyb/4 tr(K[D] D)  (- hyb/2 sum_s for spins)
              + sum_k w_k c_k E_xc,k[D],

where ``r`` are the AO dipole integrals (origin 0): the interaction of the electrons
(charge -1) and nuclei with the potential ``-F . r`` of a uniform field ``F``, so that
``dE/dF = -mu`` (dipole, atomic units). The Fock matrix is ``dE/dD`` (for spin
densities ``dE/dD_s``), taken here by automatic differentiation, so one definition
serves the SCF iterations, the implicit derivatives (:mod:`mess.implicit`) and the
unrolled SCF (:mod:`mess.unrolled`).

Units: Bohr, Hartree; the field in atomic units (Hartree / (e Bohr),
1 a.u. = 5.14220675e11 V/m).

References: Pople & Nesbet, J. Chem. Phys. 22, 571 (1954); Kohn & Sham, Phys. Rev.
140, A1133 (1965); finite-field response: Cohen & Roothaan, J. Chem. Phys. 43, S34
(1965).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.driver import Setup, integrals
from mess.integrals.two_electron import BlockJK

__all__ = ["SCFParams", "default_params", "parametric_integrals", "energy_functional", "fock_matrix",
           "EnergyVeff", "dipole_au", "DEBYE_PER_AU"]

#: Debye per atomic unit of dipole moment (e Bohr), CODATA 2018 as in PySCF.
DEBYE_PER_AU = 2.541746473


class SCFParams(eqx.Module):
    """Continuous inputs of an SCF calculation (a pytree; every leaf is traced).

    Attributes:
        positions: nuclear positions, Bohr ``[natom, 3]``.
        field: uniform electric field, atomic units ``[3]``.
        exponents: primitive exponents, Bohr^-2 ``[nshell, kmax]`` (see
            :class:`mess.basis.Basis`; padded entries are unused).
        coefficients: raw contraction coefficients ``[nshell, kmax]``.
        xc_weights: multipliers of the functional's component coefficients
            ``[ncomp]`` (1 reproduces the named functional; empty for HF).
        hyb: exact-exchange fraction (1 for HF, 0.2 for B3LYP); only hybrid
            functionals and HF build exchange, so for pure functionals it is unused.
    """

    positions: Float[Array, "natom 3"]
    field: Float[Array, "3"]
    exponents: Float[Array, "nshell kmax"]
    coefficients: Float[Array, "nshell kmax"]
    xc_weights: Float[Array, " ncomp"]
    hyb: Float[Array, ""]


def default_params(setup: Setup, positions: Array | None = None) -> SCFParams:
    """The parameters of ``setup`` as given: its geometry (or ``positions``, Bohr),
    zero field, the basis set's exponents and coefficients, unit weights and the
    functional's exact-exchange fraction."""
    f = setup.functional
    pos = setup.molecule.positions if positions is None else positions
    hyb = 1.0 if f.family == "hf" else float(f.hyb)
    return SCFParams(positions=jnp.asarray(pos), field=jnp.zeros(3),
                     exponents=jnp.asarray(setup.basis.exponents),
                     coefficients=jnp.asarray(setup.basis.coefficients),
                     xc_weights=jnp.ones(len(f.components)), hyb=jnp.asarray(hyb, jnp.float64))


def _with_params(setup: Setup, params: SCFParams) -> Setup:
    basis = eqx.tree_at(lambda b: (b.exponents, b.coefficients), setup.basis,
                        (params.exponents, params.coefficients))
    functional = eqx.tree_at(lambda f: f.weights, setup.functional, params.xc_weights,
                             is_leaf=lambda x: x is None)
    return dataclasses.replace(setup, basis=basis, functional=functional)


def parametric_integrals(setup: Setup, params: SCFParams) -> dict:
    """Integrals at ``params``: ``overlap``, ``hcore`` (field included), ``e_nuc``
    (with the nuclei's field energy), ``dipole`` (AO, origin 0), ``jk`` and
    ``xc`` (the :class:`mess.xc.numint.XCFunction`, None for HF)."""
    s = _with_params(setup, params)
    ints = dict(integrals(s, params.positions))
    charges = jnp.asarray(setup.molecule.numbers, dtype=params.positions.dtype)
    ints["hcore"] = ints["hcore"] + jnp.einsum("x,xij->ij", params.field, ints["dipole"])
    ints["e_nuc"] = ints["e_nuc"] - params.field @ (charges @ params.positions)
    ints["xc"] = None
    if s.functional.family != "hf":
        from mess.grid import grid_coords_weights
        from mess.xc import build_xc_fn

        coords, weights = grid_coords_weights(s.grid_plan, params.positions)
        ints["xc"] = build_xc_fn(s.functional, s.basis, params.positions, coords, weights, s.restricted)
    return ints


def _two_electron(jk: BlockJK, xc, hyb: Array, restricted: bool, dm: Array) -> tuple[Array, dict]:
    """Two-electron energy (Hartree) and its named parts."""
    j, k = jk(dm)
    if restricted:
        parts = {"coulomb": 0.5 * jnp.sum(j * dm)}
        if k is not None and jk.with_k:
            parts["exchange"] = -0.25 * hyb * jnp.sum(k * dm)
    else:
        dm_tot = dm[0] + dm[1]
        parts = {"coulomb": 0.5 * jnp.sum((j[0] + j[1]) * dm_tot)}
        if k is not None and jk.with_k:
            parts["exchange"] = -0.5 * hyb * jnp.sum(k * dm)
    if xc is not None:
        parts["xc"] = xc.energy(dm)
    return sum(parts.values()), parts


def energy_functional(setup: Setup, params: SCFParams, dm: Array, ints: dict | None = None) -> Float[Array, ""]:
    """``E[D; p]`` (Hartree) of a density matrix (total ``[n, n]`` for a restricted
    setup, spin densities ``[2, n, n]`` otherwise); see the module docstring."""
    if ints is None:
        ints = parametric_integrals(setup, params)
    dm_tot = dm if dm.ndim == 2 else dm[0] + dm[1]
    e_two, _ = _two_electron(ints["jk"], ints["xc"], params.hyb, setup.restricted, dm)
    return ints["e_nuc"] + jnp.sum(ints["hcore"] * dm_tot) + e_two


def _sym(a: Array) -> Array:
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def fock_matrix(setup: Setup, params: SCFParams, dm: Array, ints: dict | None = None) -> Array:
    """Fock matrix ``dE/dD`` (Hartree), same layout as ``dm``."""
    if ints is None:
        ints = parametric_integrals(setup, params)
    return _sym(jax.grad(lambda d: energy_functional(setup, params, d, ints))(dm))


class EnergyVeff(eqx.Module):
    """``dm -> (veff, e_two, parts)`` for :func:`mess.scf.scf`, with ``veff`` the
    derivative of the two-electron energy (so ``h + veff`` is the Fock matrix)."""

    jk: BlockJK
    xc: eqx.Module | None
    hyb: Array
    restricted: bool = eqx.field(static=True)

    def __call__(self, dm):
        def e_two(d):
            return _two_electron(self.jk, self.xc, self.hyb, self.restricted, d)

        (e, parts), veff = jax.value_and_grad(e_two, has_aux=True)(dm)
        return _sym(veff), e, parts


def dipole_au(setup: Setup, params: SCFParams, dm: Array, ints: dict) -> Float[Array, "3"]:
    """Dipole moment (atomic units, e Bohr; origin 0) of a density in the field-free
    sense ``sum_A Z_A R_A - tr(D r)``."""
    charges = jnp.asarray(setup.molecule.numbers, dtype=params.positions.dtype)
    dm_tot = dm if dm.ndim == 2 else dm[0] + dm[1]
    return charges @ params.positions - jnp.einsum("xij,ij->x", ints["dipole"], dm_tot)
