"""Functional registry: names -> weighted sums of JAX components + exact exchange.

A functional is data, not code: ``Functional(name, hyb, family, components)``
where ``components`` is a tuple of ``(component_name, coefficient)`` pairs
naming entries of :data:`COMPONENTS`, and ``hyb`` is the fraction of exact
(Hartree-Fock) exchange that the SCF adds on top.

Names mean exactly what PySCF >= 2.3 means by them. :func:`parse_xc` asks
``pyscf.dft.libxc.parse_xc`` on the host for ``(hyb, [(libxc_id, coeff), ...])``
and ``pyscf.dft.libxc.hybrid_coeff`` for the exact-exchange fraction; libxc ids
of built-in mixtures (``B3LYP`` = 402, ``B3LYP5`` = 475, ``PBE0`` = 406) are
expanded into their components with libxc's mixing coefficients
(``src/hyb_gga_xc_b3lyp.c``, ``src/hyb_gga_xc_pbeh.c``). In PySCF >= 2.3
``b3lyp`` is libxc's B3LYP with VWN-RPA correlation, ``b3lyp5`` uses VWN5,
``lda`` is Slater exchange only and ``lda,vwn`` / ``svwn`` is Slater + VWN5.

Range-separated hybrids, non-local (VV10) and meta-GGA functionals, and any
libxc component not implemented here, raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from mess.errors import InputError
from mess.xc.b88 import eps_b88
from mess.xc.lyp import eps_lyp
from mess.xc.pbe import eps_pbe_c, eps_pbe_x
from mess.xc.pw92 import eps_pw, eps_pw_mod
from mess.xc.screening import (
    DensityVariables,
    energy_density,
    polarized_variables,
    restricted_variables,
)
from mess.xc.slater import eps_lda_x
from mess.xc.vwn import eps_vwn5, eps_vwn_rpa

Points = Float[Array, " npts"]


@dataclass(frozen=True)
class Component:
    """One libxc functional reimplemented in JAX.

    Attributes:
        name: our name (libxc's lower-case name, e.g. ``"gga_x_b88"``).
        libxc_id: libxc's integer id.
        family: ``"lda"`` or ``"gga"``.
        dens_threshold: libxc 7's default density threshold for it (Bohr^-3).
        eps: energy per particle (Hartree) of the screened variables.
    """

    name: str
    libxc_id: int
    family: str
    dens_threshold: float
    eps: Callable[[DensityVariables], Points]

    def exc_restricted(self, rho: Points, sigma: Points | None) -> Points:
        """Energy density ``rho * eps`` (Hartree/Bohr^3), ``[npts]``."""
        mask, v = restricted_variables(rho, sigma, self.dens_threshold)
        return jnp.where(mask, energy_density(v, self.eps(v)), 0.0)

    def exc_polarized(
        self,
        rho_a: Points,
        rho_b: Points,
        sigma_aa: Points | None,
        sigma_ab: Points | None,
        sigma_bb: Points | None,
    ) -> Points:
        """Energy density ``rho * eps`` (Hartree/Bohr^3), ``[npts]``."""
        mask, v = polarized_variables(rho_a, rho_b, sigma_aa, sigma_ab, sigma_bb, self.dens_threshold)
        return jnp.where(mask, energy_density(v, self.eps(v)), 0.0)


# Thresholds: libxc 7.0 defaults (func_info dens_threshold), checked against
# pyscf.dft.libxc.eval_xc in tests/test_xc.py.
_COMPONENT_LIST = (
    Component("lda_x", 1, "lda", 1e-15, eps_lda_x),
    Component("lda_c_vwn", 7, "lda", 1e-15, eps_vwn5),
    Component("lda_c_vwn_rpa", 8, "lda", 1e-15, eps_vwn_rpa),
    Component("lda_c_pw", 12, "lda", 1e-15, eps_pw),
    Component("lda_c_pw_mod", 13, "lda", 1e-15, eps_pw_mod),
    Component("gga_x_pbe", 101, "gga", 1e-15, eps_pbe_x),
    Component("gga_x_b88", 106, "gga", 1e-15, eps_b88),
    Component("gga_c_pbe", 130, "gga", 1e-12, eps_pbe_c),
    Component("gga_c_lyp", 131, "gga", 1e-14, eps_lyp),
)

COMPONENTS: dict[str, Component] = {c.name: c for c in _COMPONENT_LIST}
"""Implemented components by name."""

_BY_ID: dict[int, Component] = {c.libxc_id: c for c in _COMPONENT_LIST}

# libxc built-in mixtures: id -> ((component id, coefficient), ...), with the
# coefficients computed exactly as libxc does (a0 = 0.20, ax = 0.72, ac = 0.81).
MIXTURES: dict[int, tuple[tuple[int, float], ...]] = {
    402: ((1, 1.0 - 0.20 - 0.72), (106, 0.72), (8, 1.0 - 0.81), (131, 0.81)),  # B3LYP
    475: ((1, 1.0 - 0.20 - 0.72), (106, 0.72), (7, 1.0 - 0.81), (131, 0.81)),  # B3LYP5
    406: ((101, 1.0 - 0.25), (130, 1.0)),  # PBE0 (PBEH)
}


class Functional(eqx.Module):
    """An exchange-correlation functional: weighted JAX components + exact exchange.

    Attributes:
        name: the name it was parsed from.
        hyb: fraction of exact exchange (1 for HF, 0.2 for B3LYP, 0 for PBE).
        family: ``"hf"`` (no semi-local part), ``"lda"`` or ``"gga"``.
        components: ``((component_name, coefficient), ...)``, names in
            :data:`COMPONENTS`.
        weights: optional traced multipliers ``[ncomp]`` of the coefficients
            (None: all 1); they make the mixing parameters differentiable.
    """

    name: str = eqx.field(static=True)
    hyb: float = eqx.field(static=True)
    family: str = eqx.field(static=True)
    components: tuple[tuple[str, float], ...] = eqx.field(static=True)
    weights: Float[Array, " ncomp"] | None = None

    def coefficients(self) -> list:
        """Component coefficients, each times its traced weight when ``weights`` is
        set (functional parameters to differentiate; see :mod:`mess.parametric`)."""
        if self.weights is None:
            return [c for _, c in self.components]
        return [c * self.weights[i] for i, (_, c) in enumerate(self.components)]

    def exc_restricted(self, rho: Points, sigma: Points | None = None) -> Points:
        """Semi-local XC energy density ``e(r) = rho eps_xc`` (Hartree/Bohr^3).

        Args:
            rho: total density ``[npts]`` (Bohr^-3); zero on padded points is fine.
            sigma: ``|grad rho|^2`` ``[npts]`` (Bohr^-8); ignored (may be None)
                for LDA and HF.

        Returns:
            ``[npts]``; ``jax.grad`` of its sum gives libxc's ``vrho`` and ``vsigma``.
        """
        rho = jnp.asarray(rho)
        out = jnp.zeros_like(rho)
        sigma = sigma if self.family == "gga" else None
        for (name, _), coeff in zip(self.components, self.coefficients()):
            out = out + coeff * COMPONENTS[name].exc_restricted(rho, sigma)
        return out

    def exc_polarized(
        self,
        rho_a: Points,
        rho_b: Points,
        sigma_aa: Points | None = None,
        sigma_ab: Points | None = None,
        sigma_bb: Points | None = None,
    ) -> Points:
        """Spin-polarised semi-local XC energy density (Hartree/Bohr^3), ``[npts]``.

        Args:
            rho_a, rho_b: spin densities ``[npts]`` (Bohr^-3).
            sigma_aa, sigma_ab, sigma_bb: ``grad rho_s . grad rho_t`` ``[npts]``
                (Bohr^-8); ignored for LDA and HF.
        """
        rho_a = jnp.asarray(rho_a)
        out = jnp.zeros_like(rho_a)
        if self.family != "gga":
            sigma_aa = sigma_ab = sigma_bb = None
        for (name, _), coeff in zip(self.components, self.coefficients()):
            out = out + coeff * COMPONENTS[name].exc_polarized(rho_a, rho_b, sigma_aa, sigma_ab, sigma_bb)
        return out


def _expand(libxc_terms) -> tuple[tuple[str, float], ...]:
    """libxc ``[(id, coeff), ...]`` -> merged ``((component_name, coeff), ...)``."""
    merged: dict[str, float] = {}
    for xid, coeff in libxc_terms:
        xid, coeff = int(xid), float(coeff)
        parts = MIXTURES.get(xid, ((xid, 1.0),))
        for pid, pcoeff in parts:
            if pid not in _BY_ID:
                raise InputError(_unsupported_message(pid))
            name = _BY_ID[pid].name
            merged[name] = merged.get(name, 0.0) + coeff * pcoeff
    return tuple((n, c) for n, c in merged.items() if c != 0.0)


def _unsupported_message(xid: int) -> str:
    from pyscf.dft import libxc

    label = next((k for k, v in libxc.XC_CODES.items() if int(v) == xid), str(xid))
    supported = ", ".join(sorted(COMPONENTS))
    return (
        f"XC component {label} (libxc id {xid}) is not implemented in mess.xc; "
        f"supported components: {supported} and the mixtures B3LYP, B3LYP5, PBE0"
    )


def parse_xc(name: str) -> Functional:
    """Parse a PySCF functional name into a :class:`Functional` (host-side, not jittable).

    Examples: ``"lda"`` (Slater only), ``"lda,vwn"`` = ``"svwn"`` (Slater + VWN5),
    ``"pbe"``, ``"blyp"``, ``"b3lyp"`` (VWN-RPA), ``"b3lyp5"`` (VWN5),
    ``"pbe0"``, ``"hf"``, ``"b88,lyp"``, ``"slater,vwn5"``, ``"pbe,pbe"``.

    Raises:
        ValueError: for range-separated hybrids, non-local (VV10) or meta-GGA
            functionals, unknown names, or components not implemented here.
    """
    from pyscf.dft import libxc

    try:
        hyb_tuple, terms = libxc.parse_xc(name)
    except (KeyError, ValueError) as err:
        raise InputError(f"unknown XC functional {name!r}: {err}") from err
    omega, alpha, beta = libxc.rsh_coeff(name)
    if omega != 0 or hyb_tuple[2] != 0 or beta != 0:
        raise InputError(f"range-separated hybrid {name!r} is not supported by mess.xc")
    if libxc.is_nlc(name):
        raise InputError(f"non-local (VV10) functional {name!r} is not supported by mess.xc")
    components = _expand(terms)
    if not components:
        family = "hf"
    elif any(COMPONENTS[n].family == "gga" for n, _ in components):
        family = "gga"
    else:
        family = "lda"
    hyb = float(libxc.hybrid_coeff(name))
    return Functional(name=name, hyb=hyb, family=family, components=components)
