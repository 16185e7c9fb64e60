"""The documentation runs as written, from an empty directory: the README's Python in
the default suite; every other code block (Python and shell) of the README and of
every page of the site under slow (minutes of compiling each); and the site builds
with ``mkdocs build --strict`` (broken links, missing pages or API entries fail it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md"))


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The fenced blocks of ``language`` in a Markdown file (indented ones dedented)."""
    text = path.read_text()
    pattern = rf"^( *)```{language}\n(.*?)^\1```"
    return [textwrap.dedent(m.group(2)) for m in re.finditer(pattern, text, re.M | re.S)]


def ordered_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, block)`` of every Python and shell block, in page order (a Python
    block may read what a shell block above it wrote)."""
    text = path.read_text()
    pattern = r"^( *)```(python|bash)\n(.*?)^\1```"
    return [(m.group(2), textwrap.dedent(m.group(3))) for m in re.finditer(pattern, text, re.M | re.S)]


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block, without installation and test-suite steps (the
    test environment is that installation) and without comments."""
    out = []
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("&&")]
        parts = [p for p in parts if not p.startswith(("pip ", "python -m pytest", "mkdocs serve"))]
        if parts:
            out.append(" && ".join(parts))
    return out


def _run_python(path: Path, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for k, block in enumerate(fenced_blocks(path, "python")):
        exec(compile(block, f"{path.name}[block {k}]", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def _shell_block(path: Path, block: str, tmp_path) -> None:
    env = dict(os.environ, MESS_CACHE_DIR=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in shell_commands(block):
        proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{path.name}: `{cmd}` exited {proc.returncode}: {proc.stderr[-2000:]}"


def _run_shell(path: Path, tmp_path) -> None:
    for block in fenced_blocks(path, "bash"):
        _shell_block(path, block, tmp_path)


def test_readme_python_runs(tmp_path, monkeypatch):
    ns = _run_python(ROOT / "README.md", tmp_path, monkeypatch)
    assert bool(ns["res"].converged) and len(ns["results"]) == 4
    assert ns["forces"].shape == (3, 3)


def test_site_builds_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in PAGES:
        built = tmp_path / "site" / (page.stem if page.stem != "index" else "") / "index.html"
        assert built.exists(), f"{page.name} was not built"
    assert "mess.run_batch" in (tmp_path / "site" / "api" / "index.html").read_text()


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p.name for p in PAGES if p.name not in nav] == []


def test_shell_commands_are_parsed():
    cmds = shell_commands('pip install . && mess energy\n# note\nmess xyz O -o w.xyz   # comment\n'
                          'pip install ".[test]" && python -m pytest -q -n 2\n')
    assert cmds == ["mess energy", "mess xyz O -o w.xyz"]


@pytest.mark.slow
def test_readme_shell_runs(tmp_path):
    _run_shell(ROOT / "README.md", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p.name for p in PAGES if fenced_blocks(p, "python") or fenced_blocks(p, "bash")])
def test_page_runs(page, tmp_path, monkeypatch):
    path = ROOT / "docs" / page
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for k, (language, block) in enumerate(ordered_blocks(path)):
        if language == "python":
            exec(compile(block, f"{path.name}[block {k}]", "exec"), namespace)  # noqa: S102 - our own docs
        else:
            _shell_block(path, block, tmp_path)
