"""The layering and the lint rules are tests: an import cycle, an upward import (say metrics
importing train) or a ruff finding fails the suite, in CI as on a laptop.

Both contracts live in pyproject.toml ([tool.importlinter], [tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed; it is in facegan[dev]: pip install -e '.[dev]'")
    return found


def test_import_layers_hold():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "src", "tests", "benchmarks"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_the_layers_contract_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: the same linter on a copy of the package with one upward
    import added (metrics -> train) reports it broken."""
    import shutil as sh

    src = tmp_path / "src"
    sh.copytree(REPO / "src" / "facegan", src / "facegan",
                ignore=sh.ignore_patterns("__pycache__", "static"))
    bad = src / "facegan" / "metrics" / "resize.py"
    bad.write_text(bad.read_text() + "\nfrom ..train import trainer  # noqa: E402,F401\n")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0, r.stdout[-3000:]
    assert "facegan.metrics.resize -> facegan.train" in r.stdout or "BROKEN" in r.stdout
