"""Molecular integration grids identical to PySCF's default ``dft.gen_grid.Grids``.

Host side (numpy, outside jit): :func:`make_grid_plan` builds a :class:`GridPlan` with
the atom-centred Treutler-Ahlrichs x Lebedev quadratures (NWChem pruning) of each atom.
JAX side: :func:`grid_coords_weights` places the points on the nuclei and applies the
Becke partition with Treutler's Bragg-radius adjustment; it is jit-able, vmap-able and
differentiable in the nuclear positions (Bohr).

References:
    A. D. Becke, J. Chem. Phys. 88, 2547 (1988).
    O. Treutler and R. Ahlrichs, J. Chem. Phys. 102, 346 (1995).
    V. I. Lebedev and D. N. Laikov, Doklady Mathematics 59, 477 (1999).

Example::

    plan = make_grid_plan(mol.numbers, level=3)
    coords, weights = grid_coords_weights(plan, mol.positions)
"""

from mess.grid.coords import grid_coords_weights
from mess.grid.plan import GridPlan, make_grid_plan, pad_plan

__all__ = ["GridPlan", "grid_coords_weights", "make_grid_plan", "pad_plan"]
