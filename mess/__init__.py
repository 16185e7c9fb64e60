"""mess: differentiable quantum chemistry in JAX.

Units: Bohr and Hartree internally; Angstrom in xyz files; Debye for dipoles.
Energies need float64: enable it with ``jax.config.update("jax_enable_x64", True)``
(or the environment variable ``JAX_ENABLE_X64=1``). mess never changes that flag.
"""

from mess.driver import Result, run, run_batch, size_estimate
from mess.engine import Engine, default_engine
from mess.engine.calculation import SCFParams
from mess.errors import InputError
from mess.gradients import batch_energy_function, energy_and_gradient, energy_function, gradient
from mess.implicit import SCFState, polarizability, scf_function
from mess.optimize import frequencies, optimize
from mess.structure import BOHR, Molecule
from mess.unrolled import UnrolledState, unrolled_scf_function

__all__ = ["BOHR", "Engine", "InputError", "Molecule", "Result", "SCFParams", "SCFState", "UnrolledState", "batch_energy_function",
           "default_engine", "energy_and_gradient", "energy_function", "frequencies", "gradient", "optimize", "polarizability", "run",
           "run_batch", "scf_function", "size_estimate", "unrolled_scf_function"]
__version__ = "0.1.0"
