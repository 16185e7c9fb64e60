"""Density fitting: three- and two-centre Coulomb integrals and the fitted J and K.

Resolution of the identity in the Coulomb metric (Whitten, J. Chem. Phys. 58, 4496
(1973); Dunlap, Connolly & Sabin, J. Chem. Phys. 71, 3396 (1979); Weigend,
Phys. Chem. Chem. Phys. 4, 4285 (2002)): with auxiliary functions P,

    (ij|kl) ~ sum_PQ (ij|P) [V^-1]_PQ (Q|kl),   V_PQ = (P|Q),

and with the Cholesky factor V = L L^T the fitted integrals factorise as
(ij|kl) ~ sum_P B_Pij B_Pkl, B = L^-1 (P|ij) (PySCF's ``cderi``). Then

    J_ij = sum_P B_Pij sum_kl B_Pkl D_kl,   K_ij = sum_P sum_kl B_Pik D_kl B_Plj,

memory naux nao^2 instead of nao^4 / 8.

The integrals reuse the McMurchie-Davidson quartet kernel of
:mod:`mess.integrals.two_electron`, with the fourth (and, for the metric, second)
shell a unit s function (exponent 0, coefficient 1): (ij|P) = (ij|P 1), (P|Q) =
(P 1|Q 1). Every function here is a JAX function of the shell data, so energies and
forces differentiate through the fit, the auxiliary basis moving with the atoms.

Padding is inert: a ghost auxiliary shell (zero coefficients) gives zero rows of
(P|ij) and a zero row and column of V, where a unit diagonal keeps V positive
definite without changing any fitted integral.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import BasisShape
from mess.integrals.pairs import chunk_size, chunked_map
from mess.integrals.two_electron import _quartet_kernel, ao_indices

ShellData = tuple[tuple[Array, Array, Array], ...]


def _unit_shell(n: int, centre: Array, dtype) -> tuple[Array, Array, Array]:
    """``n`` copies of the unit s function 1 (exponent 0, coefficient 1) at ``centre``."""
    return jnp.zeros((n, 1), dtype), jnp.ones((n, 1), dtype), jnp.broadcast_to(centre, (n, 3))


def _gather(data, rows):
    e, c, r = data
    return e[rows], c[rows], r[rows]


def _triple_rows(na: int, nb: int, nP: int, same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group rows (a, b, P) of every unique triple (a >= b within one group)."""
    ia, ib = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    if same:
        keep = ia >= ib
        ia, ib = ia[keep], ib[keep]
    npair = ia.size
    ia, ip = np.repeat(ia, nP), np.tile(np.arange(nP), npair)
    ib = np.repeat(ib, nP)
    return ia, ib, ip


def three_center(shape: BasisShape, data: ShellData, aux: BasisShape, aux_data: ShellData
                 ) -> Float[Array, "naux nao nao"]:
    """Three-centre Coulomb integrals (P|ij) (Hartree; engine AO orders of both bases).

    ``data`` and ``aux_data`` are :func:`~mess.basis.shells.shell_data` of the orbital
    and auxiliary bases (exponents Bohr^-2, normalised coefficients, centres Bohr)."""
    dtype = data[0][0].dtype
    out = jnp.zeros((aux.nao, shape.nao, shape.nao), dtype)
    origin = jnp.zeros(3, dtype)
    for ga, (gsa, da) in enumerate(zip(shape.groups, data)):
        for gb, (gsb, db) in enumerate(zip(shape.groups, data)):
            if gb > ga:
                continue
            for gP, (gsP, dP) in enumerate(zip(aux.groups, aux_data)):
                ls = (gsa.l, gsb.l, gsP.l, 0)
                ia, ib, ip = _triple_rows(gsa.nshell, gsb.nshell, gsP.nshell, ga == gb)
                kab = gsa.nprim * gsb.nprim * gsP.nprim
                chunk = chunk_size(kab * (gsa.l + gsb.l + gsP.l + 1) ** 3 * 8)

                def kernel(ra, rb, rp, ls=ls, da=da, db=db, dP=dP):
                    unit = _unit_shell(ra.shape[0], origin, dtype)
                    return _quartet_kernel(ls, shape.cart, False, *_gather(da, ra), *_gather(db, rb), *_gather(dP, rp),
                                           *unit)[..., 0]

                rows = (jnp.asarray(ia), jnp.asarray(ib), jnp.asarray(ip))
                blocks = chunked_map(kernel, rows, chunk)  # [n, da, db, dP]
                xa = ao_indices(shape, gsa.l, rows[0])
                xb = ao_indices(shape, gsb.l, rows[1])
                xp = ao_indices(aux, gsP.l, rows[2])
                vals = jnp.transpose(blocks, (0, 3, 1, 2))
                out = out.at[xp[:, :, None, None], xa[:, None, :, None], xb[:, None, None, :]].set(vals)
                out = out.at[xp[:, :, None, None], xb[:, None, None, :], xa[:, None, :, None]].set(vals)
    return out


def two_center(aux: BasisShape, aux_data: ShellData) -> Float[Array, "naux naux"]:
    """The Coulomb metric V_PQ = (P|Q) (Hartree), with a unit diagonal for padding
    functions (see the module docstring)."""
    dtype = aux_data[0][0].dtype
    out = jnp.zeros((aux.nao, aux.nao), dtype)
    origin = jnp.zeros(3, dtype)
    for gP, (gsP, dP) in enumerate(zip(aux.groups, aux_data)):
        for gQ, (gsQ, dQ) in enumerate(zip(aux.groups, aux_data)):
            if gQ > gP:
                continue
            ip, iq = np.meshgrid(np.arange(gsP.nshell), np.arange(gsQ.nshell), indexing="ij")
            ip, iq = ip.ravel(), iq.ravel()
            ls = (gsP.l, 0, gsQ.l, 0)
            chunk = chunk_size(gsP.nprim * gsQ.nprim * (gsP.l + gsQ.l + 1) ** 3 * 8)

            def kernel(rp, rq, ls=ls, dP=dP, dQ=dQ):
                unit = _unit_shell(rp.shape[0], origin, dtype)
                blk = _quartet_kernel(ls, aux.cart, False, *_gather(dP, rp), *unit, *_gather(dQ, rq), *unit)
                return blk[:, :, 0, :, 0]

            rows = (jnp.asarray(ip), jnp.asarray(iq))
            blocks = chunked_map(kernel, rows, chunk)  # [n, dP, dQ]
            xp = ao_indices(aux, gsP.l, rows[0])
            xq = ao_indices(aux, gsQ.l, rows[1])
            out = out.at[xp[:, :, None], xq[:, None, :]].set(blocks)
            out = out.at[xq[:, None, :], xp[:, :, None]].set(blocks)
    d = jnp.diagonal(out)
    return out + jnp.diag(jnp.where(d > 0, 0.0, 1.0).astype(dtype))


def cholesky_cderi(int3c: Float[Array, "naux nao nao"], metric: Float[Array, "naux naux"]
                   ) -> Float[Array, "naux nao nao"]:
    """B = L^-1 (P|ij) with V = L L^T (Cholesky), so (ij|kl) ~ sum_P B_Pij B_Pkl."""
    lower = jnp.linalg.cholesky(metric)
    naux, n, _ = int3c.shape
    b = jax.scipy.linalg.solve_triangular(lower, int3c.reshape(naux, n * n), lower=True)
    return b.reshape(naux, n, n)


def df_jk(cderi: Float[Array, "naux nao nao"], dm: Float[Array, "... nao nao"], with_k: bool = True,
          right: Float[Array, "naux nao nao"] | None = None) -> tuple[Array, Array]:
    """Fitted J and K (Hartree) of symmetric densities ``dm`` [..., n, n]; see the
    module docstring. K is zero when ``with_k`` is False.

    With ``right`` = B' the integrals are the mixed ones sum_P B_Pij B'_Pkl (J_ij =
    sum_P B_Pij sum_kl B'_Pkl D_kl, K_ij = sum_P (B_P D B'_P)_ij): the energy
    evaluated with them is the bilinear form whose diagonal is the fitted energy, so
    its derivative along B' is twice that of the mixed build."""
    right = cderi if right is None else right
    rho = jnp.einsum("Pkl,...kl->...P", right, dm)
    j = jnp.einsum("...P,Pij->...ij", rho, cderi)
    if not with_k:
        return j, jnp.zeros_like(dm)
    half = jnp.einsum("Pik,...kl->...Pil", cderi, dm)
    k = jnp.einsum("...Pil,Plj->...ij", half, right)
    return j, k
