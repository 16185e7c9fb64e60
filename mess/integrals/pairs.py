"""Shell data gathered by angular momentum, and chunked evaluation of kernels.

Shells are grouped by angular momentum; within a group the number of primitives is
padded to the group's maximum (padding primitives have zero coefficient). An
integral *class* (e.g. (la, lb) for one-electron integrals) gathers many shell
pairs or quartets so that one vectorised, separately compiled kernel computes them
all. Work is cut into chunks of a fixed size, so a kernel's compiled shape depends
only on its class and primitive counts, not on the molecule: one compilation serves
every molecule (and JAX's persistent compilation cache serves later processes).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from mess.basis.shells import Basis, normalized_coefficients


@functools.cache
def _kmax_cache(shell_l: tuple[int, ...], shell_nprim: tuple[int, ...]) -> dict[int, int]:
    out: dict[int, int] = {}
    for l, k in zip(shell_l, shell_nprim):
        out[l] = max(out.get(l, 0), k)
    return out


def kmax_by_l(basis: Basis) -> dict[int, int]:
    """Largest primitive count among the shells of each angular momentum (static)."""
    return _kmax_cache(basis.shell_l, basis.shell_nprim)


def shells_by_l(basis: Basis) -> dict[int, np.ndarray]:
    """Shell indices of each angular momentum, in basis order."""
    ls = np.asarray(basis.shell_l)
    return {int(l): np.nonzero(ls == l)[0] for l in np.unique(ls)}


def shell_data(basis: Basis, positions: Float[Array, "natom 3"]) -> dict[int, tuple[Array, Array, Array]]:
    """Per angular momentum l: (exponents [n_l, K_l] in Bohr^-2, normalised contraction
    coefficients [n_l, K_l], centres [n_l, 3] in Bohr), rows in :func:`shells_by_l` order."""
    out = {}
    kmax = kmax_by_l(basis)
    atoms = np.asarray(basis.shell_atom)
    for l, shells in shells_by_l(basis).items():
        k = kmax[l]
        exps = basis.exponents[shells, :k]
        coefs = normalized_coefficients(l, exps, basis.coefficients[shells, :k])
        out[l] = (exps, coefs, positions[atoms[shells]])
    return out


def local_index(basis: Basis) -> np.ndarray:
    """Row of each shell within its angular-momentum group, shape [nshell]."""
    out = np.zeros(basis.nshell, dtype=np.int64)
    for shells in shells_by_l(basis).values():
        out[shells] = np.arange(len(shells))
    return out


def chunk_size(work_per_item: int, budget: int = 1 << 21, lo: int = 8, hi: int = 2048) -> int:
    """A power-of-two chunk length with chunk * work_per_item near ``budget``.

    It depends only on the kernel's class (never on the molecule), so one compiled
    kernel serves every molecule; small molecules pay for a partly padded chunk,
    which costs milliseconds."""
    c = max(lo, min(hi, budget // max(1, work_per_item)))
    return 1 << (c.bit_length() - 1)


def run_chunked(kernel: Callable[..., Array], gathers: Sequence[tuple[Array, np.ndarray]],
                shared: Sequence[Array], n: int, chunk: int) -> Array:
    """Evaluate ``kernel(*gathered, *shared)`` over n items in fixed-size chunks.

    Args:
        kernel: jitted function of chunk arrays; returns [chunk, ...].
        gathers: (source array, item indices [n]) pairs; each chunk receives
            ``source[indices[chunk]]`` (the last chunk is padded with item 0).
        shared: arrays passed unchanged to every chunk.
        n: number of items; chunk: chunk length.

    Returns the concatenated results for the n items.
    """
    nchunk = max(1, -(-n // chunk))
    outs = []
    for c in range(nchunk):
        sl = slice(c * chunk, min(n, (c + 1) * chunk))
        pad = chunk - (sl.stop - sl.start)
        args = []
        for src, idx in gathers:
            ii = idx[sl]
            if pad:
                ii = np.concatenate([ii, np.zeros(pad, dtype=ii.dtype)])
            args.append(src[ii])
        out = kernel(*args, *shared)
        outs.append(out[: chunk - pad] if pad else out)
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=0)
