"""The Boys function F_m(T) = \\int_0^1 t^{2m} exp(-T t^2) dt.

The Boys function is the radial kernel of every Coulomb-type Gaussian integral
(Boys 1950, Proc. R. Soc. A 200, 542; Helgaker, Jorgensen & Olsen, *Molecular
Electronic-Structure Theory*, 2000, section 9.8).

Evaluation (all orders 0..m_max at once):

* ``T < T_SWITCH``: the highest order F_{m_max} comes from a seven-term Taylor
  expansion about the nearest node of a table (spacing 0.05), using
  dF_m/dT = -F_{m+1}; lower orders follow by the stable downward recursion
  F_m = (2T F_{m+1} + e^{-T}) / (2m + 1).
* ``T >= T_SWITCH``: F_0 = sqrt(pi / T) / 2 (erf(sqrt T) = 1 to double precision) and
  the upward recursion F_{m+1} = ((2m+1) F_m - e^{-T}) / (2T), which is stable
  for m < T.

The table is computed once on the host from the convergent series
F_m(T) = e^{-T} sum_k (2T)^k / [(2m+1)(2m+3)...(2m+2k+1)], whose terms are all
positive, so it is accurate to a few ulp. The derivative is supplied exactly as
dF_m/dT = -F_{m+1} (a custom JVP), so ``jax.grad`` and higher derivatives are as
accurate as the values.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.errors import InputError

T_SWITCH = 45.0
_STEP = 0.05
_TAYLOR_TERMS = 7
#: Highest order supported (ERIs of g functions with second derivatives need 4*4+2).
M_MAX = 32


@functools.cache
def _table() -> np.ndarray:
    """F_m(T_i) for T_i = i * 0.05 on [0, T_SWITCH + 1], m = 0..M_MAX + 7 (host, float64)."""
    t = np.arange(0.0, T_SWITCH + 1.0 + _STEP / 2, _STEP)
    ms = np.arange(M_MAX + _TAYLOR_TERMS + 1)
    nterms = 400
    out = np.empty((t.size, ms.size))
    for m in ms:
        term = np.full_like(t, 1.0 / (2 * m + 1))
        total = term.copy()
        for k in range(1, nterms):
            term = term * (2.0 * t) / (2 * m + 2 * k + 1)
            total += term
        out[:, m] = np.exp(-t) * total
    return out


def _boys_small(m_max: int, t: Array) -> Array:
    # only the seven columns the Taylor expansion needs are gathered
    # in the precision of t: a float32 argument gets a float32 evaluation
    table = jnp.asarray(_table()[:, m_max: m_max + _TAYLOR_TERMS], dtype=t.dtype)
    idx = jnp.clip(jnp.round(t / _STEP).astype(jnp.int32), 0, table.shape[0] - 1)
    dt = t - idx.astype(t.dtype) * _STEP
    rows = table[idx]  # [..., 7]
    # Taylor: F_m(T_i + dt) = sum_k F_{m+k}(T_i) (-dt)^k / k!, by Horner's rule (a
    # vector power dt ** k would cost a transcendental per term)
    f_top = rows[..., _TAYLOR_TERMS - 1] * ((-1.0) ** (_TAYLOR_TERMS - 1) / _factorial(_TAYLOR_TERMS - 1))
    for k in range(_TAYLOR_TERMS - 2, -1, -1):
        f_top = f_top * dt + rows[..., k] * ((-1.0) ** k / _factorial(k))
    exp_t = jnp.exp(-t)
    values = [f_top]
    for m in range(m_max - 1, -1, -1):
        values.append((2.0 * t * values[-1] + exp_t) / (2 * m + 1))
    return jnp.stack(values[::-1], axis=-1)


def _boys_large(m_max: int, t: Array) -> Array:
    exp_t = jnp.exp(-t)
    values = [0.5 * jnp.sqrt(jnp.pi / t)]
    for m in range(m_max):
        values.append(((2 * m + 1) * values[-1] - exp_t) / (2.0 * t))
    return jnp.stack(values, axis=-1)


def _factorial(k: int) -> float:
    out = 1.0
    for i in range(2, k + 1):
        out *= i
    return out


def boys_orders(m_max: int, t: Float[Array, "..."]) -> list[Array]:
    """:func:`boys` as a list ``[F_0(T), ..., F_{m_max}(T)]`` of arrays shaped like
    ``t`` (the layout the Hermite recursions consume without strided slicing)."""
    f = boys(m_max, t)
    return [f[..., m] for m in range(m_max + 1)]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def boys(m_max: int, t: Float[Array, "..."]) -> Float[Array, "... m"]:
    """Boys function values F_0(T), ..., F_{m_max}(T), shape ``t.shape + (m_max + 1,)``.

    Accurate to ~1e-15 relative in float64 for all T >= 0; ``m_max <= 32``.
    """
    if m_max > M_MAX:
        raise InputError(f"Boys function order {m_max} exceeds the supported maximum {M_MAX}")
    t = jnp.asarray(t)
    small = t < T_SWITCH
    t_small = jnp.where(small, t, 0.0)
    t_large = jnp.where(small, T_SWITCH, t)
    return jnp.where(small[..., None], _boys_small(m_max, t_small), _boys_large(m_max, t_large))


@boys.defjvp
def _boys_jvp(m_max, primals, tangents):
    (t,), (dt,) = primals, tangents
    values = boys(m_max + 1, t)
    return values[..., :-1], -values[..., 1:] * jnp.asarray(dt)[..., None]
