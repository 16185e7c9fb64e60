"""One molecule on the engine: a batch of one, with its parameters in PySCF's layout.

A :class:`Calculation` prepares one molecule for one method, picks its signature (one
the engine has already compiled when the molecule fits it, else its own), and builds
its system. It offers the two ways of running the engine:

* eagerly, through the engine's compiled programs (:meth:`Calculation.solve`): what
  :func:`mess.run`, the gradient and the optimiser use;
* inline, as one JAX function of the parameters (:meth:`Calculation.hamiltonian`,
  :meth:`Calculation.scf`): what runs under a caller's ``jit``, ``vmap`` or ``grad``
  (:func:`mess.energy_function`, the implicit and unrolled SCF).

:class:`SCFParams` are the continuous inputs of one molecule in the layout users see:
positions of its atoms, the field, and the basis exponents and coefficients per shell
in PySCF's shell order (:attr:`mess.basis.BasisLayout`); :meth:`Calculation.params`
maps them to the engine's padded :class:`~mess.engine.system.Params` (a gather, so
derivatives flow back).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.engine import stages
from mess.engine.engine import Engine, Result, _result, default_engine, require_float64, split_options
from mess.engine.signature import method_from_options, prepare
from mess.engine.system import Params, build, default_params, take
from mess.errors import InputError
from mess.integrals.two_electron import SCHWARZ_THRESHOLD
from mess.scf.kernel import diis_phase, fallback_phase, finalize, initial_state, stability_phase
from mess.structure import Molecule, require_molecule


class SCFParams(eqx.Module):
    """Continuous inputs of one molecule's SCF (a pytree; every leaf is traced).

    Attributes:
        positions: nuclear positions, Bohr ``[natom, 3]``.
        field: uniform electric field, atomic units ``[3]``.
        exponents: primitive exponents, Bohr^-2 ``[nshell, kmax]``, shells in PySCF's
            order (``Calculation.layout``; padded entries are unused).
        coefficients: raw contraction coefficients ``[nshell, kmax]``.
        xc_weights: multipliers of the functional's component coefficients
            ``[ncomp]`` (1 reproduces the named functional; empty for HF).
        hyb: exact-exchange fraction (1 for HF, 0.2 for B3LYP).
    """

    positions: Float[Array, "natom 3"]
    field: Float[Array, "3"]
    exponents: Float[Array, "nshell kmax"]
    coefficients: Float[Array, "nshell kmax"]
    xc_weights: Float[Array, " ncomp"]
    hyb: Float[Array, ""]


class Calculation:
    """One molecule, one method, on an engine (see the module docstring).

    Args:
        molecule, basis, xc, cart: as :func:`mess.run`.
        options: :func:`mess.run`'s options (SCF options, ``grid_level``,
            ``restricted``, ``schwarz_threshold``, ``init_guess``).
        engine: the engine (default :func:`mess.engine.default_engine`).
        any_geometry: screen no ERI quartets by default, so the quartet list holds for
            every geometry (for functions of traced positions); an explicit
            ``schwarz_threshold`` still wins.
    """

    def __init__(self, molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
                 options: dict | None = None, engine: Engine | None = None, any_geometry: bool = False):
        require_float64()
        require_molecule(molecule)
        options = dict(options or {})
        self.scf_options, rest = split_options(options)
        self.init_guess = rest.get("init_guess", "minao")
        if self.init_guess not in ("minao", "core", "hcore", "1e"):
            raise InputError(f"unknown initial guess {self.init_guess!r} (use 'minao' or 'core')")
        threshold = rest.get("schwarz_threshold", 0.0 if any_geometry else SCHWARZ_THRESHOLD)
        self.method = method_from_options(basis, xc, cart, rest.get("grid_level", 3), rest, threshold)
        self.engine = engine or default_engine()
        self.molecule = molecule
        self.prepared = prepare(molecule, self.method, rest.get("restricted"), self.engine.memory_limit)
        self.signature = self.engine.plan([self.prepared]).buckets[0].signature
        self.system = build(self.prepared, self.signature)
        self._maps = _param_maps(self)

    # ---------------------------------------------------------------- layout

    @property
    def layout(self):
        return self.prepared.layout

    @property
    def restricted(self) -> bool:
        return self.signature.restricted

    @property
    def natom(self) -> int:
        return self.molecule.natom

    @property
    def nao(self) -> int:
        return self.layout.nao

    @property
    def ao_index(self) -> np.ndarray:
        """Engine AO index of each PySCF AO."""
        return self.layout.engine_index(self.signature.basis)

    def to_pyscf(self, a: Array) -> Array:
        """A matrix (or stack ``[..., n, n]``) from engine to PySCF AO order."""
        ix = jnp.asarray(self.ao_index)
        return a[..., ix, :][..., ix]

    def from_pyscf(self, a: Array) -> Array:
        """A matrix (or stack) from PySCF to engine AO order (zeros on padding AOs)."""
        ix = jnp.asarray(self.ao_index)
        n = self.signature.nao
        out = jnp.zeros(a.shape[:-2] + (n, n), a.dtype)
        return out.at[..., ix[:, None], ix[None, :]].set(a)

    # ---------------------------------------------------------------- parameters

    def params0(self) -> SCFParams:
        """The molecule's parameters as given (zero field, unit functional weights)."""
        f = self.method.functional
        lay = self.layout
        kmax = int(lay.nprim.max())
        exps = np.ones((lay.nshell, kmax))
        coefs = np.zeros((lay.nshell, kmax))
        for i in range(lay.nshell):
            exps[i, :lay.nprim[i]] = lay.exponents[i]
            coefs[i, :lay.nprim[i]] = lay.coefficients[i]
        hyb = 1.0 if f.family == "hf" else float(f.hyb)
        return SCFParams(positions=jnp.asarray(self.molecule.positions), field=jnp.zeros(3),
                         exponents=jnp.asarray(exps), coefficients=jnp.asarray(coefs),
                         xc_weights=jnp.ones(len(f.components)), hyb=jnp.asarray(hyb, jnp.float64))

    def params(self, p: SCFParams) -> Params:
        """The engine's padded parameters of ``p`` (differentiable gather)."""
        pos = jnp.zeros((self.signature.natom, 3), p.positions.dtype).at[:self.natom].set(p.positions)
        exps, coefs = [], []
        for (src, real), g in zip(self._maps, self.system.shells):
            k = g.exponents.shape[1]
            e = p.exponents[src][:, :k]
            c = p.coefficients[src][:, :k]
            exps.append(jnp.where(real[:, None], e, jnp.asarray(g.exponents)))
            coefs.append(jnp.where(real[:, None], c, 0.0))
        return Params(positions=pos, field=p.field, exponents=tuple(exps), coefficients=tuple(coefs),
                      xc_weights=p.xc_weights, hyb=p.hyb)

    def default_params(self) -> Params:
        return default_params(self.signature, self.system)

    # ---------------------------------------------------------------- eager (compiled) path

    def solve(self, params: Params | None = None, dm0: Array | None = None, gradient: bool = False):
        """Run through the engine's compiled programs; returns ``(Result, raw)`` where
        ``raw`` holds the batched engine outputs (``res``, ``props``, ``ints``,
        ``params``) for further stages."""
        sig = self.signature
        batch = jax.tree.map(lambda x: np.asarray(x)[None], self.system)
        prm = None if params is None else jax.tree.map(lambda x: jnp.asarray(x)[None], params)
        d0 = None if dm0 is None else jnp.asarray(dm0)[None]
        if d0 is None and self.init_guess != "minao":
            d0 = self._core_guess(prm)
        res, props, std, ints, prm = self.engine.solve(sig, batch, self.scf_options, params=prm, dm0=d0)
        grads = None
        if gradient:
            grads = self.engine.gradient(sig, batch, prm, ints, res.mo_coeff, res.mo_occ)
        return _result(self.prepared, sig, res, props, std, grads, 0), {"res": res, "props": props, "ints": ints,
                                                                         "params": prm}

    def _core_guess(self, prm):
        from mess.scf.guess import hcore_guess

        sig = self.signature
        p = self.default_params() if prm is None else take(prm, 0)
        one = stages.one_electron_part(sig, self.system, p)
        return hcore_guess(one["overlap"], one["hcore"], self.molecule.nelec, sig.restricted)[None]

    # ---------------------------------------------------------------- inline (traced) path

    def program(self, name: str, fn, *static):
        """The engine's compiled program ``jax.jit(partial(fn, signature, *static))``,
        called with this system (and other arrays) as arguments: compiled once per
        signature and shared by every molecule of it; inlined under an outer trace."""
        key = ("inline", name, self.signature) + tuple(static)  # never equal to a batched program's key
        return self.engine.program(key, lambda: jax.jit(functools.partial(fn, self.signature, *static)))

    def hamiltonian(self, params: Params):
        """The Hamiltonian at ``params``, every stage in one program (differentiable)."""
        return self.program("hamiltonian", stages.hamiltonian)(self.system, params)

    def guess(self, ham, params: Params) -> Array:
        if self.init_guess == "minao":
            return self.program("guess", stages.guess_part)(self.system, params, ham.overlap)
        from mess.scf.guess import hcore_guess

        return hcore_guess(ham.overlap, ham.hcore, self.molecule.nelec, self.restricted)

    def scf(self, params: Params, dm0: Array | None = None, fallback: bool = True):
        """The SCF at ``params`` in one program (DIIS, then the fallback phase for a
        state that did not converge and the stability phase for an open shell):
        ``(SCFResult, overlap)``, engine AO order."""
        guess = self.init_guess == "minao"
        if dm0 is None and not guess:
            dm0 = self.guess(self.hamiltonian(params), params)
        return self.program("scf", inline_scf, self.scf_options, bool(fallback))(self.system, params, dm0)


def inline_scf(sig, options, fallback: bool, system, params: Params, dm0=None):
    """SCF of one system with every stage inline: ``(SCFResult, overlap)``."""
    ham = stages.hamiltonian(sig, system, params)
    p = stages.problem(ham, system, options)
    d0 = stages.guess_part(sig, system, params, ham.overlap) if dm0 is None else dm0
    state = diis_phase(p, initial_state(p, d0))
    if fallback:
        state = fallback_phase(p, state)
        if stages.checks_stability(sig, options):
            state = stability_phase(p, state, stages.open_shell(system))
    return finalize(p, state), ham.overlap


def _param_maps(calc: Calculation) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per shell group: the PySCF-order shell index of each row, and which rows are real."""
    lay, shape = calc.layout, calc.signature.basis
    out = []
    for g in shape.groups:
        src = np.zeros(g.nshell, dtype=np.int64)
        real = np.zeros(g.nshell, dtype=bool)
        sel = np.nonzero(lay.l == g.l)[0]
        src[lay.row[sel]] = sel
        real[lay.row[sel]] = True
        out.append((src, real))
    return out


def run(molecule: Molecule, basis: str = "sto-3g", xc: str = "hf", cart: bool = False,
        engine: Engine | None = None, **options) -> Result:
    """See :func:`mess.run`."""
    return Calculation(molecule, basis, xc, cart, options, engine).solve()[0]
