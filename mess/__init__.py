"""mess: differentiable quantum chemistry in JAX.

Units: Bohr and Hartree internally; Angstrom in xyz files; Debye for dipoles.
Energies need float64: enable it with ``jax.config.update("jax_enable_x64", True)``
(or the environment variable ``JAX_ENABLE_X64=1``). mess never changes that flag.
"""

from mess.driver import Result, run
from mess.gradients import energy_and_gradient, energy_function, gradient
from mess.implicit import SCFState, polarizability, scf_function
from mess.optimize import frequencies, optimize
from mess.parametric import SCFParams
from mess.structure import BOHR, Molecule
from mess.unrolled import UnrolledState, unrolled_scf_function

__all__ = ["BOHR", "Molecule", "Result", "SCFParams", "SCFState", "UnrolledState", "energy_and_gradient",
           "energy_function", "frequencies", "gradient", "optimize", "polarizability", "run", "scf_function",
           "unrolled_scf_function"]
__version__ = "0.1.0"
