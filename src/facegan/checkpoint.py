"""Checkpoints: one file that rebuilds the run (config, networks, optimizers, step, RNG, data order).

Files are written atomically (temporary file, then rename) and read with
``torch.load(..., weights_only=True)``: a checkpoint is untrusted input, so it holds only
tensors, numbers, strings, lists and dicts, and the config travels as JSON text.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .errors import UserError
from .files import atomic_write, reporting_write_errors

FORMAT = "facegan-checkpoint-v2"
# v1 (before labels) files load as unconditional: no 'labels', label_dim 0.
OLD_FORMATS = ("facegan-checkpoint-v1",)
LATEST = "latest.pt"
BEST = "best.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (must hold 'config' as a Config) atomically to ``path``.

    A failed write (a full disk) raises :class:`~facegan.files.WriteFailed`, a one-line user
    error naming the file and the free space; the file already at ``path`` is left as it was.
    """
    state = dict(state)
    cfg = state.pop("config")
    payload = {"format": FORMAT, "config": cfg.to_json(), **state}

    def write(tmp: str) -> None:
        # Through a Python file, so a failed write surfaces as its OSError (ENOSPC, EDQUOT)
        # in the chain; torch.save given a file name reports only "iostream error".
        with open(tmp, "wb") as f:
            torch.save(payload, f)

    with reporting_write_errors(path):
        return atomic_write(path, write)


def resolve_checkpoint(path: str | os.PathLike, *, prefer: str = LATEST) -> Path:
    """A run folder, its checkpoints/ folder or a checkpoint file -> the checkpoint file
    ('~' expanded: from Python no shell does it)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"'{p}' does not exist; give a run folder or a checkpoint file (.pt)")
    if p.is_dir():
        for cand in (p / "checkpoints" / prefer, p / prefer, p / "checkpoints" / LATEST, p / LATEST):
            if cand.is_file():
                return cand
        raise UserError(f"no checkpoint in '{p}' (looked for checkpoints/{prefer}); "
                        "train first with 'facegan train', or give a .pt file")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a facegan checkpoint; returns the dict with 'config' rebuilt as a Config.

    Format v2 adds 'labels' (a ``LabelSpec.to_dict()``, None when unconditional) and
    'label_dim' (K); v1 files get labels None and label_dim 0.
    """
    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # untrusted bytes: any failure to parse means 'not a checkpoint'
        raise UserError(f"'{p}' is not a readable facegan checkpoint ({_why_unreadable(p, e)}); "
                        "point to a .pt file written by 'facegan train'") from None
    if (not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, *OLD_FORMATS)
            or "config" not in ckpt):
        raise UserError(f"'{p}' is not a facegan checkpoint (no '{FORMAT}' header); "
                        "point to a .pt file written by 'facegan train'")
    try:
        ckpt["config"] = Config.from_json(ckpt["config"])
    except (ValueError, TypeError) as e:
        raise UserError(f"'{p}' holds an unreadable config ({e}); the file is damaged") from None
    ckpt.setdefault("labels", None)  # v1: unconditional
    ckpt.setdefault("label_dim", 0)
    ckpt["path"] = p
    return ckpt


def _why_unreadable(path: Path, e: Exception) -> str:
    """A short reason for a failed torch.load, without PyTorch's advice to retry with
    weights_only=False: that would run whatever code the file carries."""
    # torch.save writes a zip archive (legacy files: a pickle, protocol byte 0x80). Anything
    # else fails inside the weights-only unpickler too, whose message would blame Python objects.
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        return "not a PyTorch file"
    text = str(e).strip()
    low = text.lower()
    if "weights_only" in low or "weights only" in low:
        return "it holds Python objects, not only tensors and plain values"
    first = text.splitlines()[0] if text else ""
    # A bare KeyError('105') from a non-zip file says nothing useful.
    if isinstance(e, (KeyError, pickle.UnpicklingError)) or len(first) < 8:
        return "not a PyTorch file, or a damaged one"
    return first.split(". ")[0][:120]  # the first sentence; PyTorch's next ones are advice


def run_dir_of(checkpoint: Path) -> Path | None:
    """RUN for RUN/checkpoints/x.pt (when RUN has a config.json), else None."""
    parent = checkpoint.resolve().parent
    if parent.name == "checkpoints" and (parent.parent / "config.json").exists():
        return parent.parent
    return None


def checkpoint_home(path: Path) -> Path | None:
    """RUN for a checkpoint RUN/checkpoints/NAME.pt (the path as given first, then through a
    link), whether or not RUN holds its config yet (:func:`run_dir_of` asks that it does); else
    None."""
    if path.parent.name == "checkpoints":
        return path.parent.parent
    if path.resolve().parent.name == "checkpoints":
        return path.resolve().parent.parent
    return None
