"""Exchange-correlation functionals in JAX, identical to libxc as PySCF uses it.

Public API::

    f = parse_xc("b3lyp")          # host side; names as in PySCF >= 2.3
    f.hyb, f.family, f.components  # 0.2, "gga", (("lda_x", 0.08), ...)
    e = f.exc_restricted(rho, sigma)                       # Hartree / Bohr^3, [npts]
    e = f.exc_polarized(rho_a, rho_b, s_aa, s_ab, s_bb)    # Hartree / Bohr^3, [npts]

``e`` is the energy density ``rho * eps_xc`` (not per particle); the XC energy
is ``sum(weights * e)``, and ``jax.grad`` of ``sum(e)`` with respect to the
inputs gives libxc's ``vrho`` / ``vsigma``. Everything is pure JAX (jit, vmap,
grad), NaN-free at zero density, with libxc 7's density/sigma/zeta thresholds
per component (see :mod:`mess.xc.screening`).

Why hand-written rather than a dependency: the only JAX port of libxc on PyPI,
``jax-xc`` 0.0.11 (2023), does not import with JAX 0.10 (its ``autofd``
dependency uses the removed ``jax.core.raise_to_shaped_mappings``), pulls in
tensorflow-probability, and its functionals take a density *function* rather
than arrays on a grid. The handful of components needed here are short, so we
transcribe libxc's Maple definitions (constants, thresholds and piecewise
branches included) and test them against ``pyscf.dft.libxc.eval_xc``.

Modules: :mod:`~mess.xc.screening` (input variables and thresholds),
:mod:`~mess.xc.slater` (LDA_X and spin-scaled GGA exchange), :mod:`~mess.xc.vwn`,
:mod:`~mess.xc.pw92`, :mod:`~mess.xc.b88`, :mod:`~mess.xc.lyp`,
:mod:`~mess.xc.pbe`, :mod:`~mess.xc.registry` (names -> functionals),
:mod:`~mess.xc.numint` (E_xc and V_xc on a grid from a density matrix).
"""

from mess.xc.numint import XCFunction, build_xc_fn, make_xc_fn, make_xc_fn_direct, xc_energy
from mess.xc.registry import COMPONENTS, MIXTURES, Component, Functional, parse_xc

__all__ = ["COMPONENTS", "MIXTURES", "Component", "Functional", "XCFunction", "build_xc_fn", "make_xc_fn",
           "make_xc_fn_direct", "parse_xc", "xc_energy"]
