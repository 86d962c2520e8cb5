"""Shared fixtures: paths to the real data in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Keep decoded-image and statistics caches out of the user's home during tests.
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path_factory.getbasetemp() / "facegan-cache"))


@pytest.fixture
def celeba_dir() -> Path:
    p = SHARED_DATA / "celeba-10k"
    if not (p / "img_align_celeba").is_dir():
        pytest.skip("../shared/data/celeba-10k is absent (only present in CI and dev machines)")
    return p


@pytest.fixture
def afhq_dir() -> Path:
    p = SHARED_DATA / "afhq-cat-64"
    if not p.is_dir():
        pytest.skip("../shared/data/afhq-cat-64 is absent (only present in CI and dev machines)")
    return p


@pytest.fixture
def cli_error(capsys):
    """Run the CLI in this process (no interpreter start per case) and return its one error
    line, asserting exit status 2, no traceback, and the last stderr line 'facegan: error: ...'."""
    from facegan.commands import main

    def run(*args) -> str:
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and "Traceback" not in err, err
        assert lines and lines[-1].startswith("facegan: error: "), err
        return lines[-1]

    return run
