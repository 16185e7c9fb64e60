"""Explicit, opt-in runtime configuration (nothing here runs at import time)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$MESS_CACHE_DIR`` or ``~/.cache/mess/jax``."""
    env = os.environ.get("MESS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mess" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache, so compiled integral kernels and
    SCF programs are reused by later processes. Call it once, before computing.

    Returns the cache directory used."""
    import jax

    cache = Path(path) if path is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache


#: Fraction of the kernel's per-process memory-map limit at which
#: :func:`release_compiled_programs_if_needed` drops JAX's compiled programs.
MAP_FRACTION = 0.5


def memory_map_count() -> int | None:
    """Number of memory mappings of this process (Linux ``/proc/self/maps``), or None
    where that is not available."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def memory_map_limit() -> int | None:
    """The kernel's per-process limit on memory mappings (``vm.max_map_count``,
    65530 by default on Linux), or None where unknown."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def release_compiled_programs_if_needed(fraction: float = MAP_FRACTION) -> bool:
    """Drop JAX's in-memory compiled programs when this process nears the kernel's
    limit on memory mappings.

    XLA's CPU backend maps several memory regions for every compiled program; a
    long process that compiles thousands of programs (many molecules, bases and
    derivatives) passes ``vm.max_map_count`` and the next compilation crashes the
    process (segmentation fault or abort inside XLA). Above ``fraction`` of the limit
    this calls ``jax.clear_caches()`` (programs recompile on demand, or load from the
    persistent cache if enabled). :func:`mess.driver.prepare` calls it for every new
    calculation. Returns whether the caches were dropped."""
    count, limit = memory_map_count(), memory_map_limit()
    if count is None or limit is None or count < fraction * limit:
        return False
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    return True
