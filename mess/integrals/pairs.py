"""Fixed-size chunks for vectorised integral kernels.

An integral *class* (a pair of shell groups for one-electron integrals, a quartet
class for ERIs) evaluates one vectorised kernel over many shell pairs or quartets.
Work is cut into chunks of a fixed length run sequentially by ``lax.map``, so memory
is bounded by one chunk's intermediates and the compiled body's shape depends only
on the class and the chunk length, not on the molecule.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array

from mess.errors import InputError


def chunk_size(work_per_item: int, budget: int = 1 << 21, lo: int = 8, hi: int = 2048) -> int:
    """A power-of-two chunk length with chunk * work_per_item near ``budget``."""
    c = max(lo, min(hi, budget // max(1, work_per_item)))
    return 1 << (c.bit_length() - 1)


def chunked_map(kernel: Callable[..., Array], index_arrays: tuple[Array, ...], chunk: int,
                checkpoint: bool = False) -> Array:
    """``kernel(*[a[chunk] for a in index_arrays])`` over items in chunks of ``chunk``.

    Args:
        kernel: function of chunk arrays (each ``[chunk, ...]``), returning
            ``[chunk, ...]``; close over the data it gathers from.
        index_arrays: arrays with a leading item axis ``[n, ...]`` (usually integer
            indices into the data), cut into chunks; the last chunk is padded with
            copies of item 0 and the padded results are dropped.
        chunk: chunk length (static).
        checkpoint: rematerialise each chunk under differentiation (a pullback then
            keeps only the chunk inputs).

    Returns the results for the n items, ``[n, ...]``.
    """
    n = index_arrays[0].shape[0]
    if n == 0:
        raise InputError("chunked_map needs at least one item")
    chunk = min(chunk, n)
    nchunk = -(-n // chunk)
    pad = nchunk * chunk - n

    def cut(a):
        if pad:
            a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad,) + a.shape[1:])])
        return a.reshape((nchunk, chunk) + a.shape[1:])

    body = (lambda args: kernel(*args))
    if checkpoint:
        body = jax.checkpoint(body)
    if nchunk == 1:
        out = body(tuple(a.reshape((chunk,) + a.shape[1:]) if not pad else cut(a)[0] for a in index_arrays))
        return out[:n]
    out = jax.lax.map(body, tuple(cut(a) for a in index_arrays))
    out = out.reshape((nchunk * chunk,) + out.shape[2:])
    return out[:n] if pad else out
