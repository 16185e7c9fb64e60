"""Host-side, position-independent grid tables (numpy), matching PySCF's defaults.

Everything here depends only on atomic numbers and the grid level, never on nuclear
positions, so it is computed once on the host outside ``jit``. The raw tables come
from PySCF (a dependency, see DESIGN.md):

* radial quadrature: Treutler-Ahlrichs M4 mapping with the element-specific radius
  parameter xi, ``pyscf.dft.radi.treutler_ahlrichs``
  [O. Treutler and R. Ahlrichs, J. Chem. Phys. 102, 346 (1995)];
* angular quadrature: Lebedev-Laikov spherical grids, ``pyscf.dft.LebedevGrid``
  [V. I. Lebedev and D. N. Laikov, Doklady Mathematics 59, 477 (1999)];
* pruning: NWChem scheme, ``pyscf.dft.gen_grid.nwchem_prune``;
* radial / angular sizes per grid level and period: ``gen_grid.RAD_GRIDS`` and
  ``gen_grid.ANG_ORDER``;
* Bragg-Slater radii (Bohr) for the Treutler size adjustment of the Becke partition.

All lengths are in Bohr.
"""

from __future__ import annotations

import numpy as np
from pyscf.dft import gen_grid as _gen_grid
from pyscf.dft import radi as _radi
from pyscf.dft.LebedevGrid import LEBEDEV_ORDER, MakeAngularGrid

from mess.errors import InputError

#: Grid levels accepted (rows of PySCF's ``RAD_GRIDS`` / ``ANG_ORDER`` tables).
LEVELS = tuple(range(_gen_grid.RAD_GRIDS.shape[0]))
#: Largest atomic number with a Treutler-Ahlrichs radius parameter in PySCF.
MAX_Z = len(_radi._treutler_ahlrichs_xi) - 1
#: PySCF groups radial points into chunks of this many when it lays out an atomic grid.
_RADIAL_CHUNK = 12
#: Last atomic number of each period 1..6 (period 7 beyond); used to pick table columns.
_PERIOD_ENDS = np.array((2, 10, 18, 36, 54, 86, 118))


def check_element(z: int) -> None:
    """Raise ``ValueError`` unless ``z`` is an atomic number with grid tables (1..MAX_Z)."""
    if not (isinstance(z, (int, np.integer)) and 1 <= int(z) <= MAX_Z):
        raise InputError(f"no grid tables for atomic number {z!r} (supported: 1..{MAX_Z})")


def check_level(level: int) -> None:
    """Raise ``ValueError`` unless ``level`` is one of PySCF's grid levels 0..9."""
    if level not in LEVELS:
        raise InputError(f"grid level must be one of {LEVELS}, got {level!r}")


def period(z: int) -> int:
    """Zero-based period (row) of the periodic table used to index the level tables."""
    return int((z > _PERIOD_ENDS).sum())


def grid_sizes(z: int, level: int = 3) -> tuple[int, int]:
    """Default ``(n_radial, n_angular)`` for element ``z`` at ``level``, as in PySCF.

    ``n_angular`` is the number of Lebedev points of the largest (unpruned) shell.
    """
    check_element(z)
    check_level(level)
    p = period(z)
    n_rad = int(_gen_grid.RAD_GRIDS[level, p])
    n_ang = int(LEBEDEV_ORDER[int(_gen_grid.ANG_ORDER[level, p])])
    return n_rad, n_ang


def radial_grid(z: int, n_rad: int) -> tuple[np.ndarray, np.ndarray]:
    """Treutler-Ahlrichs M4 radial nodes ``r`` (Bohr) and weights ``dr`` (Bohr), ``[n_rad]``.

    Nodes are in increasing order; the weights integrate ``int_0^inf f(r) dr`` (the
    ``r^2`` Jacobian is *not* included). Treutler & Ahlrichs, JCP 102, 346 (1995), eq. 19
    with the element-specific xi of their Table 1.
    """
    r, dr = _radi.treutler_ahlrichs(n_rad, z)
    return np.asarray(r, dtype=np.float64), np.asarray(dr, dtype=np.float64)


def angular_grid(n_ang: int) -> np.ndarray:
    """Lebedev-Laikov grid with ``n_ang`` points: ``[n_ang, 4]`` = unit vectors, weight.

    The weights sum to 1 (the 4 pi is carried by the radial weight).
    Lebedev & Laikov, Doklady Mathematics 59, 477 (1999).
    """
    return np.asarray(MakeAngularGrid(n_ang), dtype=np.float64)


def pruned_angular_sizes(z: int, r: np.ndarray, n_ang: int) -> np.ndarray:
    """Lebedev size for each radial shell after NWChem pruning (PySCF's default), ``[n_rad]``."""
    return np.asarray(_gen_grid.nwchem_prune(z, r, n_ang), dtype=np.int64)


def atomic_grid(z: int, level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Atom-centred quadrature for element ``z`` at ``level``, in PySCF's point order.

    Returns:
        offsets: ``[n, 3]`` points relative to the nucleus (Bohr).
        weights: ``[n]`` quadrature weights ``4 pi r^2 dr * w_ang`` (Bohr^3), i.e. the
            atomic integration weight before Becke partitioning.

    Point order (equal to ``pyscf.dft.gen_grid.gen_atomic_grids``): pruned shells are
    grouped by Lebedev size in increasing size; within one size the radial shells are
    taken in chunks of 12 (increasing r), and inside a chunk the angular index is the
    slow index and the radial index the fast one.
    """
    n_rad, n_ang = grid_sizes(z, level)
    r, dr = radial_grid(z, n_rad)
    # Same floating-point expression as PySCF so the products agree bit for bit.
    rad_weight = 4 * np.pi * r**2 * dr
    angs = pruned_angular_sizes(z, r, n_ang)
    offsets, weights = [], []
    for n in sorted(set(angs.tolist())):
        leb = angular_grid(n)
        shells = np.flatnonzero(angs == n)
        for i0 in range(0, len(shells), _RADIAL_CHUNK):
            chunk = shells[i0 : i0 + _RADIAL_CHUNK]
            offsets.append((r[chunk][None, :, None] * leb[:, None, :3]).reshape(-1, 3))
            weights.append((rad_weight[chunk][None, :] * leb[:, None, 3]).ravel())
    return np.vstack(offsets), np.concatenate(weights)


def treutler_radii_adjust(numbers: tuple[int, ...]) -> np.ndarray:
    """Becke size-adjustment coefficients ``a_ij`` with Treutler's radii, ``[natom, natom]``.

    Becke, JCP 88, 2547 (1988), Appendix: the cell function is evaluated at
    ``nu_ij = mu_ij + a_ij (1 - mu_ij^2)`` instead of ``mu_ij``, with ``|a_ij| <= 1/2``.
    Treutler & Ahlrichs, JCP 102, 346 (1995) take the size ratio from the square roots
    of the Bragg-Slater radii; as PySCF (``radi.treutler_atomic_radii_adjust``):
    ``chi_i = sqrt(R_i)``, ``a_ij = (chi_j/chi_i - chi_i/chi_j) / 4`` clipped to
    ``[-1/2, 1/2]``. The matrix is antisymmetric.
    Rows/columns of padding atoms (``z == 0``) are zero.
    """
    z = np.asarray(numbers, dtype=np.int64)
    real = z > 0
    rad = np.sqrt(_radi.BRAGG_RADII[np.where(real, z, 1)]) + 1e-200
    rr = rad[:, None] * (1.0 / rad)  # rr[i, j] = chi_i / chi_j
    a = 0.25 * (rr.T - rr)
    a = np.clip(a, -0.5, 0.5)
    a[~real, :] = 0.0
    a[:, ~real] = 0.0
    return a
