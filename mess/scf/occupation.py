"""Aufbau occupations and density matrices, with static shapes.

Orbitals are kept in ascending energy order (from ``eigh``), so aufbau filling is a
mask ``arange(nmo) < nocc``; no sorting or dynamic slicing is needed.

Internally the kernel works on *spin channels* ``[c, ...]``: one channel holding
doubly occupied orbitals for restricted (Roothaan 1951) and two channels (alpha, beta)
singly occupied for unrestricted Hartree-Fock (Pople & Nesbet 1954).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.errors import InputError


def channel_occupancy(nelec, restricted: bool) -> tuple[tuple, float]:
    """Occupied-orbital counts per channel and the occupation of each occupied orbital.

    ``nelec`` is ``(n_alpha, n_beta)``: Python ints (checked here; a restricted
    calculation needs ``n_alpha == n_beta``) or integer arrays (traced, e.g. to share
    one compiled kernel between molecules with different electron counts; then the
    caller is responsible for ``n_alpha == n_beta`` in the restricted case).
    """
    na, nb = nelec[0], nelec[1]
    if isinstance(na, (int, np.integer)) and isinstance(nb, (int, np.integer)):
        na, nb = int(na), int(nb)
        if na < 0 or nb < 0:
            raise InputError(f"electron counts must be non-negative, got {nelec}")
        if restricted and na != nb:
            raise InputError(
                f"restricted (closed-shell) SCF needs n_alpha == n_beta, got {nelec}; "
                "use restricted=False for open shells")
    if restricted:
        return (na,), 2.0
    return (na, nb), 1.0


def aufbau(nmo: int, nocc: tuple, occ_value: float, dtype=jnp.float64) -> Float[Array, "c nmo"]:
    """Occupation numbers ``[channels, nmo]``: ``occ_value`` on the lowest ``nocc[c]``."""
    idx = jnp.arange(nmo)
    return jnp.stack([jnp.where(idx < n, occ_value, 0.0).astype(dtype) for n in nocc])


def make_rdm1(
    mo_coeff: Float[Array, "c n n"], mo_occ: Float[Array, "c n"]
) -> Float[Array, "c n n"]:
    """Density matrix per channel, ``D = C diag(occ) C^T``."""
    return jnp.einsum("...pi,...i,...qi->...pq", mo_coeff, mo_occ, mo_coeff)
