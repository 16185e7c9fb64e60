"""The documentation's Python examples run as written, from an empty directory: the
README's in the default suite, the user guide's (minutes of compiling) under slow."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown file (indented ones dedented)."""
    text = path.read_text()
    return [textwrap.dedent(m.group(2)) for m in re.finditer(r"^( *)```python\n(.*?)^\1```", text, re.M | re.S)]


def _run_blocks(path: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(path)
    assert blocks, f"no python blocks in {path.name}"
    namespace: dict = {}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{path.name}[block {k}]", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_readme_examples_run(tmp_path, monkeypatch):
    ns = _run_blocks(ROOT / "README.md", tmp_path, monkeypatch)
    assert bool(ns["res"].converged) and len(ns["results"]) == 4
    assert ns["forces"].shape == (3, 3)


@pytest.mark.slow
def test_user_guide_examples_run(tmp_path, monkeypatch):
    _run_blocks(ROOT / "docs" / "index.md", tmp_path, monkeypatch)
