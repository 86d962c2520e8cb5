"""The run folder's outputs the page may show: enumerated here by known names, never by a path
from a request.

The browser asks for a file by its id (``loss.png``, ``step_000500.png``, ...); the id is looked
up in the table :func:`list_run_files` builds from a fresh listing of the folder, and only a
path from that table is ever opened. Symbolic links are skipped, so a link planted in the run
folder cannot expose a file elsewhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..files import read_jsonl

SAMPLE_GRID = re.compile(r"step_(\d{1,9})\.png")  # samples/step_000500.png, by the trainer
TOP_FILES = {  # written beside the checkpoints by the trainer or `facegan demo`
    "loss.png": "loss and quality curves",
    "samples.png": "final samples (demo)",
    "morph.png": "interpolation (demo)",
}
MAX_CURVE_POINTS = 400  # train records sent to the page (evenly thinned)


@dataclass(frozen=True)
class RunFile:
    id: str  # what the browser asks for
    path: Path
    kind: str  # 'sample' (a grid during training) or 'curve' / 'image'
    step: int | None
    title: str
    mtime: float


def _regular_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def list_run_files(run_dir: Path | None) -> dict[str, RunFile]:
    """id -> RunFile for the run's sample grids (by step) and its top-level images."""
    out: dict[str, RunFile] = {}
    if run_dir is None:
        return out
    try:
        with os.scandir(run_dir) as it:
            for e in it:
                if e.name in TOP_FILES and _regular_file(e):
                    kind = "curve" if e.name == "loss.png" else "image"
                    out[e.name] = RunFile(e.name, Path(e.path), kind, None, TOP_FILES[e.name],
                                          e.stat(follow_symlinks=False).st_mtime)
    except OSError:
        return out
    samples = run_dir / "samples"
    if samples.is_dir() and not samples.is_symlink():
        try:
            with os.scandir(samples) as it:
                for e in it:
                    m = SAMPLE_GRID.fullmatch(e.name)
                    if m and _regular_file(e):
                        step = int(m.group(1))
                        out[e.name] = RunFile(e.name, Path(e.path), "sample", step,
                                              f"samples at step {step}",
                                              e.stat(follow_symlinks=False).st_mtime)
        except OSError:
            pass
    return out


def read_run_file(f: RunFile) -> bytes:
    """The bytes of a file from :func:`list_run_files` (the one place run files are read)."""
    return f.path.read_bytes()


class MetricsCache:
    """metrics.jsonl summarised for the page, re-read only when the file changed."""

    def __init__(self, run_dir: Path | None):
        self.path = None if run_dir is None else run_dir / "metrics.jsonl"
        self._stamp = None
        self._summary: dict = {"train": {}, "evals": [], "last": None}

    def summary(self) -> dict:
        if self.path is None or self.path.is_symlink():
            return self._summary
        try:
            st = self.path.stat()
        except OSError:
            return self._summary
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._summary, self._stamp = summarize(read_jsonl(self.path)), stamp
        return self._summary


def summarize(records: list[dict]) -> dict:
    """{'train': {key: [values]} thinned to MAX_CURVE_POINTS, 'evals': [{step, fid, kid...}],
    'last': the last train record}."""
    train = [r for r in records if r.get("kind", "train") == "train" and "step" in r]
    if len(train) > MAX_CURVE_POINTS:
        stride = len(train) / MAX_CURVE_POINTS
        train = [train[int(i * stride)] for i in range(MAX_CURVE_POINTS)] + [train[-1]]
    keys = ("step", "d_loss", "g_loss", "wasserstein", "gp", "r1")
    curves = {k: [r.get(k) for r in train] for k in keys if any(k in r for r in train)}
    evals = [{k: r.get(k) for k in ("step", "fid", "kid_mean", "kid_std", "n", "time")}
             for r in records if r.get("kind") == "eval"]
    last = train[-1] if train else None
    return {"train": curves, "evals": evals,
            "last": None if last is None else {k: last.get(k) for k in
                                               ("step", "d_loss", "g_loss", "steps_per_s",
                                                "elapsed_s")}}
