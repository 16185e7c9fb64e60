"""The batched engine: one compiled program per padding bucket.

The unit of work is a batch; a single molecule is a batch of one. A
:class:`Signature` (ints and strings, hashed by value) fixes every shape; a
:class:`System` (arrays only) is one molecule padded to it; :class:`Params` are the
continuous inputs; the :class:`Engine` owns compiled programs per signature and runs
batches (:meth:`Engine.run_batch`). See ``docs/batches.md`` and ``docs/architecture.md``.
"""

from mess.engine.engine import Engine, Result, default_engine, fixed_orbital_energy
from mess.engine.functional import FunctionalVeff, Hamiltonian, energy, fock, two_electron_energy
from mess.engine.planner import Bucket, Plan, plan_buckets
from mess.engine.signature import Method, Prepared, Signature, fits, prepare, signature_for
from mess.engine.stages import hamiltonian
from mess.engine.system import Params, System, build, default_params, stack, take

__all__ = ["Bucket", "Engine", "FunctionalVeff", "Hamiltonian", "Method", "Params", "Plan", "Prepared", "Result",
           "Signature", "System", "build", "default_engine", "default_params", "energy", "fits",
           "fixed_orbital_energy", "fock", "hamiltonian", "plan_buckets", "prepare", "signature_for", "stack",
           "take", "two_electron_energy"]
