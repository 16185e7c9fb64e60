"""Runtime configuration helpers."""

import pytest

from mess.config import memory_map_count, memory_map_limit, release_compiled_programs_if_needed


def test_memory_map_guard():
    if memory_map_count() is None or memory_map_limit() is None:
        pytest.skip("no /proc memory-map information on this platform")
    assert memory_map_count() < memory_map_limit()
    assert not release_compiled_programs_if_needed(fraction=10.0)
    assert release_compiled_programs_if_needed(fraction=0.0)
