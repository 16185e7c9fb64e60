"""Systems: one molecule's arrays, padded to a signature; and its continuous inputs.

A :class:`System` is a pytree of arrays only (allocate/update in the style of jax-md:
the :class:`~mess.engine.signature.Signature` fixes the shapes on the host, the system
carries the data). Padding is inert:

* ghost atoms: charge 0, no basis functions, no grid points, no partition weight, no
  nuclear repulsion (their positions sit at the origin);
* ghost shells: zero contraction coefficients (zero AOs, removed by the SCF's
  canonical orthogonalisation as linearly dependent directions);
* padding quartets: weight 0 in J and K;
* ghost auxiliary shells (density fitting): zero coefficients, zero fitted
  integrals (:mod:`mess.integrals.three_center`);
* padding grid points: weight 0;
* electrons: counts are arrays, occupations are masks.

A batch of systems is the same pytree with a leading batch axis on every leaf
(:func:`stack`). :class:`Params` holds the continuous inputs one may differentiate
(positions, a uniform electric field, basis exponents and coefficients, the weights of
the functional's components, the exact-exchange fraction); :func:`default_params`
takes them from a system.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from mess.basis.shells import ShellGroup
from mess.engine.guess import ao_occupations
from mess.engine.signature import Prepared, Signature
from mess.errors import InputError
from mess.grid import GridPlan, make_grid_plan
from mess.integrals.two_electron import QuartetList, quartet_lists


class System(eqx.Module):
    """One molecule padded to a signature (arrays only; see the module docstring).

    Attributes:
        positions: ``[natom, 3]`` nuclear positions, Bohr (ghost atoms at 0).
        charges: ``[natom]`` nuclear charges, e (0 for ghost atoms).
        atom_mask: ``[natom]`` True for real atoms.
        nelec: ``[2]`` (alpha, beta) electron counts.
        shells: per angular-momentum group, the basis shells.
        quartets: per ERI class, the quartet list (rows and weights).
        grid: the grid plan (None for Hartree-Fock).
        guess_shells: per group, the MINAO basis shells.
        guess_occupation: ``[nao_minao]`` MINAO occupations, electrons per AO.
        ao_atom: ``[nao]`` atom of each AO (0 for padding AOs).
        ao_mask: ``[nao]`` True for real AOs.
        break_spin: unrestricted with spin 0 (the guess breaks the spin symmetry).
        aux_shells: per group, the auxiliary basis shells of density fitting (empty
            without it).
    """

    positions: Float[Array, "natom 3"]
    charges: Float[Array, " natom"]
    atom_mask: Bool[Array, " natom"]
    nelec: Int[Array, "2"]
    shells: tuple[ShellGroup, ...]
    quartets: tuple[QuartetList, ...]
    grid: GridPlan | None
    guess_shells: tuple[ShellGroup, ...]
    guess_occupation: Float[Array, " nao_guess"]
    ao_atom: Int[Array, " nao"]
    ao_mask: Bool[Array, " nao"]
    break_spin: Bool[Array, ""]
    aux_shells: tuple[ShellGroup, ...] = ()


class Params(eqx.Module):
    """Continuous inputs of one molecule's calculation (every leaf a float array).

    Attributes:
        positions: nuclear positions, Bohr ``[natom, 3]``.
        field: uniform electric field, atomic units (Hartree / (e Bohr)) ``[3]``.
        exponents, coefficients: per shell group ``[nshell, nprim]``: primitive
            exponents (Bohr^-2) and raw contraction coefficients.
        xc_weights: multipliers of the functional's component coefficients
            ``[ncomp]`` (1 reproduces the named functional; empty for HF).
        hyb: exact-exchange fraction (1 for HF, 0.2 for B3LYP).
    """

    positions: Float[Array, "natom 3"]
    field: Float[Array, "3"]
    exponents: tuple[Float[Array, "nshell nprim"], ...]
    coefficients: tuple[Float[Array, "nshell nprim"], ...]
    xc_weights: Float[Array, " ncomp"]
    hyb: Float[Array, ""]


def build(p: Prepared, sig: Signature) -> System:
    """The :class:`System` of prepared molecule ``p`` padded to ``sig`` (numpy leaves).
    Raises ``ValueError`` if it does not fit."""
    mol = p.molecule
    if p.natom > sig.natom:
        raise InputError(f"molecule has {p.natom} atoms, signature holds {sig.natom}")
    natom = sig.natom
    positions = np.zeros((natom, 3))
    positions[:p.natom] = np.asarray(mol.positions, dtype=np.float64)
    numbers = np.zeros(natom, dtype=np.int64)
    numbers[:p.natom] = mol.numbers
    grid = None
    if sig.method.dft:
        if p.npts > sig.npts:
            raise InputError(f"molecule has {p.npts} grid points, signature holds {sig.npts}")
        grid = make_grid_plan(tuple(int(z) for z in numbers), sig.method.grid_level, pad_to=sig.npts,
                              block_size=sig.grid_block)
    na, nb = mol.nelec
    shape = sig.basis
    return System(
        positions=positions,
        charges=numbers.astype(np.float64),
        atom_mask=numbers > 0,
        nelec=np.asarray([na, nb], dtype=np.int32),
        shells=p.layout.groups(shape),
        quartets=quartet_lists(p.population, sig.classes),
        grid=grid,
        guess_shells=p.guess_layout.groups(sig.guess),
        guess_occupation=ao_occupations(p.guess_layout, p.guess_occupation, sig.guess),
        ao_atom=p.layout.ao_atom(shape),
        ao_mask=p.layout.ao_mask(shape),
        break_spin=np.asarray((not p.restricted) and mol.spin == 0),
        aux_shells=p.aux_layout.groups(sig.aux) if sig.density_fit else (),
    )


def stack(systems: list) -> System:
    """A batch: the systems' leaves stacked along a new leading axis (numpy)."""
    return jax.tree.map(lambda *xs: np.stack(xs), *systems)


def take(batch, index) -> System:
    """Items ``index`` (an int or an index array) of a batch pytree."""
    return jax.tree.map(lambda x: x[index], batch)


def default_params(sig: Signature, system: System) -> Params:
    """The continuous inputs of ``system`` as given: its geometry, zero field, its basis
    exponents and coefficients, unit functional weights and the functional's
    exact-exchange fraction (1 for HF). Works on one system or a batch."""
    f = sig.method.functional
    batch = jnp.shape(system.positions)[:-2]
    hyb = 1.0 if f.family == "hf" else float(f.hyb)
    dtype = jnp.asarray(system.positions).dtype
    return Params(
        positions=jnp.asarray(system.positions),
        field=jnp.zeros(batch + (3,), dtype),
        exponents=tuple(jnp.asarray(g.exponents) for g in system.shells),
        coefficients=tuple(jnp.asarray(g.coefficients) for g in system.shells),
        xc_weights=jnp.ones(batch + (len(f.components),), dtype),
        hyb=jnp.full(batch, hyb, dtype),
    )


def with_params(system: System, params: Params) -> tuple[ShellGroup, ...]:
    """The system's shell groups with the exponents and coefficients of ``params``."""
    return tuple(ShellGroup(e, c, g.atom) for g, e, c in zip(system.shells, params.exponents, params.coefficients))
