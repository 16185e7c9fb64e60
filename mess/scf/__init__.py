"""Self-consistent field: the kernel, DIIS, initial guesses, two-electron potentials.

The kernel is independent of how integrals are computed: it takes the overlap,
core Hamiltonian, nuclear repulsion and a two-electron callable
``veff_fn(dm) -> (veff, e_two, parts)`` (see :func:`hf_veff`).

Example (restricted Hartree-Fock from dense ERIs)::

    import equinox as eqx
    veff_fn = hf_veff(eri_get_jk(eri), restricted=True)
    res = eqx.filter_jit(scf)(S, h, e_nuc, (5, 5), veff_fn, dm0, restricted=True)
    res.energy, res.converged, res.homo

``eqx.filter_jit`` traces every array (also those inside ``veff_fn``) and keeps the
rest static, so new integrals of the same shapes reuse the compiled kernel.
"""

from mess.scf.diis import DIISState, commutator_error, diis_init, diis_update
from mess.scf.eig import eig, orthogonalizer
from mess.scf.guess import hcore_guess, minao_guess
from mess.scf.kernel import scf
from mess.scf.options import SCFOptions
from mess.scf.result import SCFResult
from mess.scf.veff import EriJK, GetJK, HFVeff, SumVeff, VeffFn, eri_get_jk, hf_veff, sum_veff

__all__ = [
    "DIISState",
    "EriJK",
    "HFVeff",
    "SumVeff",
    "GetJK",
    "SCFOptions",
    "SCFResult",
    "VeffFn",
    "commutator_error",
    "diis_init",
    "diis_update",
    "eig",
    "eri_get_jk",
    "hcore_guess",
    "hf_veff",
    "minao_guess",
    "orthogonalizer",
    "scf",
    "sum_veff",
]
