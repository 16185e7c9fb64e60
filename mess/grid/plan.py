"""Grid plan: the host-side, position-independent part of a molecular grid.

A :class:`GridPlan` fixes the number and order of grid points (static shape) and holds
every atom-centred quadrature, so that the position-dependent part
(:func:`mess.grid.grid_coords_weights`) is a cheap, jit-able, differentiable map.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Bool, Float, Int

from mess.errors import InputError
from mess.grid import tables

#: Target size (elements) of the ``[natom, natom, block]`` pair arrays of one block of
#: the Becke partition: 2**20 float64 = 8 MiB, small enough to stay in cache-sized
#: chunks on CPU and to keep the backward pass light (see ``default_block_size``).
PAIR_ELEMENTS_PER_BLOCK = 2**20
DEFAULT_BLOCK_SIZE = 8192


def default_block_size(natom: int) -> int:
    """Points per Becke block: ``2**20 / natom^2`` rounded to a power of 2, in [256, 16384]."""
    target = PAIR_ELEMENTS_PER_BLOCK // max(natom, 1) ** 2
    size = 1 << max(int(target).bit_length() - 1, 0)
    return int(min(max(size, 256), 16384))


class GridPlan(eqx.Module):
    """Atom-centred quadratures of a molecule, in PySCF's (unsorted) point order.

    All array fields are numpy arrays (pytree leaves, traced under ``jit``; nothing
    here is static except ``block_size``), so molecules with the same number of atoms
    and of points share one compiled graph.

    Attributes:
        offsets: ``[npts, 3]`` point positions relative to their owning nucleus (Bohr).
        quadrature_weights: ``[npts]`` atomic quadrature weights ``4 pi r^2 dr w_ang``
            (Bohr^3), before Becke partitioning; exactly 0 for padding points.
        atom_index: ``[npts]`` owning atom of each point (padding points: the first
            real atom, with offset 0, i.e. they sit on that nucleus).
        radii_adjust: ``[natom, natom]`` Becke/Treutler size-adjustment coefficients.
        atom_mask: ``[natom]`` ``False`` for padding atoms (atomic number 0).
        block_size: points per block in the Becke partition (static).
    """

    offsets: Float[np.ndarray, "npts 3"]
    quadrature_weights: Float[np.ndarray, " npts"]
    atom_index: Int[np.ndarray, " npts"]
    radii_adjust: Float[np.ndarray, "natom natom"]
    atom_mask: Bool[np.ndarray, " natom"]
    block_size: int = eqx.field(static=True, default=DEFAULT_BLOCK_SIZE)

    @property
    def npts(self) -> int:
        """Number of grid points, padding included."""
        return int(self.quadrature_weights.shape[0])

    @property
    def natom(self) -> int:
        """Number of atoms, padding atoms included."""
        return int(self.atom_mask.shape[0])


def make_grid_plan(
    numbers: tuple[int, ...],
    level: int = 3,
    pad_to: int | None = None,
    block_size: int | None = None,
) -> GridPlan:
    """Build the grid plan of PySCF's default grid (``dft.gen_grid.Grids``) at ``level``.

    Treutler-Ahlrichs M4 radial grid [JCP 102, 346 (1995)], Lebedev-Laikov angular grids
    [Doklady Math. 59, 477 (1999)], NWChem pruning, Becke partition [JCP 88, 2547 (1988)]
    with Treutler's Bragg-radius adjustment; sizes per element from PySCF's level tables.

    Args:
        numbers: atomic numbers, one per atom. ``0`` marks a padding atom: it gets no
            grid points and takes no part in the Becke partition (for batching
            molecules with different atom counts; its position is ignored).
        level: PySCF grid level, 0..9.
        pad_to: if given, append zero-weight points up to this many points.
        block_size: points per block in the Becke partition (static); default
            :func:`default_block_size` of the number of atoms.

    Returns:
        A :class:`GridPlan`; points are ordered atom by atom as PySCF's unsorted grid.
    """
    numbers = tuple(int(z) for z in numbers)
    tables.check_level(level)
    if not numbers or all(z == 0 for z in numbers):
        raise InputError("a grid needs at least one real atom (atomic number > 0)")
    for z in numbers:
        if z != 0:
            tables.check_element(z)
    if block_size is None:
        block_size = default_block_size(len(numbers))
    if block_size < 1:
        raise InputError(f"block_size must be positive, got {block_size}")

    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    offsets, weights, owner = [], [], []
    for ia, z in enumerate(numbers):
        if z == 0:
            continue
        if z not in cache:
            cache[z] = tables.atomic_grid(z, level)
        off, w = cache[z]
        offsets.append(off)
        weights.append(w)
        owner.append(np.full(w.shape[0], ia, dtype=np.int32))
    plan = GridPlan(
        offsets=np.vstack(offsets),
        quadrature_weights=np.concatenate(weights),
        atom_index=np.concatenate(owner),
        radii_adjust=tables.treutler_radii_adjust(numbers),
        atom_mask=np.asarray(numbers) > 0,
        block_size=int(block_size),
    )
    return plan if pad_to is None else pad_plan(plan, pad_to)


def pad_plan(plan: GridPlan, npts: int) -> GridPlan:
    """Append zero-weight points so the plan has exactly ``npts`` points.

    Padding points sit on the nucleus of the first real atom and have weight exactly 0;
    grid values and their gradients stay finite there. Raises ``ValueError`` if the plan
    already has more than ``npts`` points.
    """
    n = npts - plan.npts
    if n < 0:
        raise InputError(f"cannot pad a grid of {plan.npts} points to {npts}")
    first_real = int(np.flatnonzero(plan.atom_mask)[0])
    return GridPlan(
        offsets=np.concatenate([plan.offsets, np.zeros((n, 3))]),
        quadrature_weights=np.concatenate([plan.quadrature_weights, np.zeros(n)]),
        atom_index=np.concatenate(
            [plan.atom_index, np.full(n, first_real, dtype=plan.atom_index.dtype)]
        ),
        radii_adjust=plan.radii_adjust,
        atom_mask=plan.atom_mask,
        block_size=plan.block_size,
    )
