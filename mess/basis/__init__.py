"""Gaussian basis sets (data from PySCF's basis library)."""

from mess.basis.ao_values import ao_values
from mess.basis.shells import (
    Basis,
    cart_to_sph,
    cartesian_powers,
    make_basis,
    ncart,
    normalized_coefficients,
    nsph,
)

__all__ = ["Basis", "ao_values", "cart_to_sph", "cartesian_powers", "make_basis", "ncart",
           "normalized_coefficients", "nsph"]
