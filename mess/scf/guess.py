"""Initial densities for the SCF.

* :func:`hcore_guess` (JAX, jit-able): diagonalise the core Hamiltonian and fill by
  aufbau (PySCF ``init_guess='1e'``). Cheap but poor for anything beyond small
  molecules.
* :func:`minao_guess` (host, NumPy): PySCF's default ``init_guess='minao'`` density
  (superposition of atomic densities projected from the ANO-based MINAO basis,
  Almlöf, Faegri & Korsell, J. Comput. Chem. 3, 385 (1982)). Starting from it the
  kernel follows PySCF's iterations and lands on the same state.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Array, Float

from mess.scf.eig import eig, orthogonalizer
from mess.scf.occupation import aufbau, channel_occupancy, make_rdm1


def hcore_guess(
    overlap: Float[Array, "n n"], hcore: Float[Array, "n n"], nelec: tuple[int, int],
    restricted: bool, lindep_threshold: float = 1e-6,
) -> Float[Array, "n n"] | Float[Array, "2 n n"]:
    """Core-Hamiltonian guess: aufbau density of the eigenvectors of h (H C = S C e).

    Returns the total density ``[n, n]`` (restricted) or spin densities ``[2, n, n]``.
    """
    nocc, occ_value = channel_occupancy(nelec, restricted)
    x, keep = orthogonalizer(overlap, lindep_threshold)
    _, c = eig(hcore, x, keep)
    occ = aufbau(hcore.shape[-1], nocc, occ_value, hcore.dtype)
    dm = make_rdm1(c[None], occ)
    return dm[0] if restricted else dm


def minao_guess(pyscf_mol, restricted: bool | None = None) -> np.ndarray:
    """PySCF's default (MINAO) initial density for ``pyscf_mol`` (host NumPy).

    Restricted: ``scf.hf.init_guess_by_minao`` total density ``[n, n]``.
    Unrestricted: ``scf.uhf.UHF.init_guess_by_minao``, i.e. the same density split in
    half between alpha and beta ``[2, n, n]``; for ``spin == 0`` PySCF additionally
    breaks the spin symmetry by zeroing the inter-atomic blocks of the beta density
    (``init_guess_breaksym=1``), reproduced here since it is the same call.

    Args:
        pyscf_mol: a built ``pyscf.gto.Mole``.
        restricted: default ``pyscf_mol.spin == 0``.
    """
    from pyscf import scf as pyscf_scf

    if restricted is None:
        restricted = pyscf_mol.spin == 0
    if restricted:
        return np.asarray(pyscf_scf.hf.init_guess_by_minao(pyscf_mol))
    return np.asarray(pyscf_scf.uhf.UHF(pyscf_mol).init_guess_by_minao())
