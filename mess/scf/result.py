"""The outcome of an SCF run."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class SCFResult(eqx.Module):
    """Result of :func:`mess.scf.scf` (a pytree of arrays; all energies in Hartree).

    Shapes use ``n`` = number of AOs; the restricted case drops the spin axis.

    Attributes:
        energy: total energy ``e_nuc + e_one + e_two``.
        e_nuc: nuclear repulsion energy (as given).
        e_one: one-electron energy ``tr(h D_total)``.
        e_two: two-electron energy from the veff function.
        parts: named two-electron components, e.g. ``{"coulomb", "exchange"}``.
        mo_energy: orbital energies ``[n]`` or ``[2, n]``, ascending per spin.
        mo_coeff: MO coefficients (columns) ``[n, n]`` or ``[2, n, n]``.
        mo_occ: occupation numbers ``[n]`` (0 or 2) or ``[2, n]`` (0 or 1).
        density: density matrix, total ``[n, n]`` or spin ``[2, n, n]``.
        converged: whether the energy and orbital-gradient tests passed (PySCF's
            criteria, including its final check after the extra diagonalisation).
        iterations: number of SCF cycles run.
        energy_history: ``[max_cycle + 1]`` total energy of the initial density and
            after each cycle, padded with nan.
        grad_history: orbital-gradient norm after each cycle (nan for the initial
            density and padding).
        grad_norm: 2-norm of the orbital gradient at the returned orbitals.
        homo: highest occupied orbital energy (over both spins), nan if no electrons.
        lumo: lowest unoccupied orbital energy (over both spins), nan if none.
    """

    energy: Float[Array, ""]
    e_nuc: Float[Array, ""]
    e_one: Float[Array, ""]
    e_two: Float[Array, ""]
    parts: dict[str, Float[Array, ""]]
    mo_energy: Float[Array, "... n"]
    mo_coeff: Float[Array, "... n n"]
    mo_occ: Float[Array, "... n"]
    density: Float[Array, "... n n"]
    converged: Bool[Array, ""]
    iterations: Int[Array, ""]
    energy_history: Float[Array, " max_cycle_plus_1"]
    grad_history: Float[Array, " max_cycle_plus_1"]
    grad_norm: Float[Array, ""]
    homo: Float[Array, ""]
    lumo: Float[Array, ""]

    @property
    def density_total(self) -> Float[Array, "n n"]:
        """Total (alpha + beta) density matrix."""
        return self.density if self.density.ndim == 2 else self.density[0] + self.density[1]
