"""One-electron properties from a converged density: dipole moment, Mulliken charges,
and the spin contamination <S^2> of an unrestricted determinant.

All functions are pure JAX (differentiable in the density and the integrals).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

#: Atomic unit of electric dipole (e a0) in Debye, PySCF's ``nist.AU2DEBYE``
#: (e = 1.6021766208e-19 C, a0 = 0.52917721092 A, 1 D = 3.335641e-30 C m).
AU2DEBYE = 1.6021766208e-19 * 0.52917721092e-10 / 3.335641e-30


def dipole_au(
    density_total: Float[Array, "n n"],
    dipole_integrals: Float[Array, "3 n n"],
    numbers,
    positions: Float[Array, "natom 3"],
) -> Float[Array, "3"]:
    """Electric dipole moment in atomic units (e Bohr), about the origin (0, 0, 0).

    ``mu = sum_A Z_A R_A - sum_{mu nu} D_{mu nu} <nu| r |mu>``, as PySCF's
    ``dip_moment`` (origin 0; for charged systems the value depends on the origin).

    Args:
        density_total: total (alpha + beta) AO density matrix.
        dipole_integrals: AO matrices of x, y, z about the origin, Bohr (PySCF
            ``mol.intor('int1e_r')``).
        numbers: nuclear charges ``[natom]`` (atomic numbers, 0 for ghost atoms).
        positions: nuclear positions, Bohr.
    """
    charges = jnp.asarray(numbers, dtype=density_total.dtype)
    electronic = jnp.einsum("xij,ji->x", dipole_integrals, density_total)
    nuclear = jnp.einsum("a,ax->x", charges, positions)
    return nuclear - electronic


def dipole_moment(
    density_total: Float[Array, "n n"],
    dipole_integrals: Float[Array, "3 n n"],
    numbers,
    positions: Float[Array, "natom 3"],
) -> Float[Array, "3"]:
    """Electric dipole moment in Debye: :func:`dipole_au` times :data:`AU2DEBYE`."""
    return dipole_au(density_total, dipole_integrals, numbers, positions) * AU2DEBYE


def mulliken_charges(
    density_total: Float[Array, "n n"],
    overlap: Float[Array, "n n"],
    ao_atom,
    numbers,
) -> Float[Array, " natom"]:
    """Mulliken atomic charges, units of e (Mulliken, J. Chem. Phys. 23, 1833 (1955)).

    ``q_A = Z_A - sum_{mu in A} (D S)_{mu mu}``, as PySCF's ``mulliken_pop``.

    Args:
        density_total: total AO density matrix.
        overlap: AO overlap matrix.
        ao_atom: integer array ``[n]``: the atom index of each AO (host or traced).
        numbers: nuclear charges ``[natom]``.
    """
    charges = jnp.asarray(numbers, dtype=density_total.dtype)
    pop = jnp.einsum("ij,ji->i", density_total, overlap)
    atom_pop = jnp.zeros(charges.shape[0], pop.dtype).at[jnp.asarray(ao_atom)].add(pop)
    return charges - atom_pop


def spin_square(
    mo_coeff: Float[Array, "2 n n"], mo_occ: Float[Array, "2 n"], overlap: Float[Array, "n n"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """<S^2> and multiplicity 2S+1 of an unrestricted determinant (as PySCF's
    ``uhf.spin_square``; Szabo & Ostlund, Modern Quantum Chemistry, eq. 2.271):

    ``<S^2> = S_z (S_z + 1) + N_beta - sum_{i in alpha, j in beta} |<i|j>|^2``.
    """
    occ_a = (mo_occ[0] > 0).astype(mo_coeff.dtype)
    occ_b = (mo_occ[1] > 0).astype(mo_coeff.dtype)
    na, nb = jnp.sum(occ_a), jnp.sum(occ_b)
    ovlp = mo_coeff[0].T @ overlap @ mo_coeff[1]
    ovlp = ovlp * occ_a[:, None] * occ_b[None, :]
    sz = 0.5 * (na - nb)
    ss = sz * (sz + 1) + nb - jnp.sum(ovlp * ovlp)
    multiplicity = jnp.sqrt(ss + 0.25) * 2
    return ss, multiplicity
