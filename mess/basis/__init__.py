"""Gaussian basis sets (data from PySCF's basis library), laid out for padded batches."""

from mess.basis.ao_values import ao_values
from mess.basis.shells import (
    BasisLayout,
    BasisShape,
    GroupShape,
    ShellGroup,
    basis_layout,
    cart_to_sph,
    cartesian_powers,
    element_shells,
    ncart,
    normalized_coefficients,
    nsph,
    shell_data,
    shell_size,
)

__all__ = ["BasisLayout", "BasisShape", "GroupShape", "ShellGroup", "ao_values", "basis_layout", "cart_to_sph",
           "cartesian_powers", "element_shells", "ncart", "normalized_coefficients", "nsph", "shell_data",
           "shell_size"]
