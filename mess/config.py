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
