"""Runtime configuration helpers."""

import jax

from mess.config import enable_compilation_cache


def test_enable_compilation_cache(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        path = enable_compilation_cache(tmp_path / "cache")
        assert path.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
