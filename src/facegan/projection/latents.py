"""Reading back a projected latent, its photo and its labels for edits and morphs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError, check_whole
from ..labels import LabelSpec
from ..sampling import LoadedGenerator
from .photos import PhotoError, read_photo


def load_latent(path: str | os.PathLike, latent_dim: int | LoadedGenerator,
                option: str = "--latent") -> torch.Tensor:
    """A latent file (``NAME.latent.npy`` from :func:`save_projection`; ``~``: the home
    folder) -> float32 (latent_dim,). ``latent_dim``: an int, or the
    :class:`~facegan.sampling.LoadedGenerator` that will draw it (its generator's).

    UserError (one line, naming the file and ``option``) for a missing or unreadable file, a
    pickled array, a shape other than (latent_dim,), a dtype other than floating point, or a
    value that is not finite; TypeError for a ``latent_dim`` that is neither."""
    if isinstance(latent_dim, LoadedGenerator):
        latent_dim = latent_dim.generator.latent_dim
    latent_dim = check_whole(latent_dim, "latent_dim", 1)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{option} '{p}' does not exist; give a NAME.latent.npy written by "
                        "facegan project")
    try:
        with open(p, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise UserError(f"{option} '{p}' is not a .npy file; give a NAME.latent.npy written "
                                "by facegan project")
        arr = np.load(p, allow_pickle=False)
    except UserError:
        raise
    except (OSError, ValueError, EOFError) as e:
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise UserError(f"{option} '{p}' is not a readable .npy array ({why})") from None
    if not isinstance(arr, np.ndarray):
        raise UserError(f"{option} '{p}' holds several arrays; give one NAME.latent.npy")
    if arr.shape != (latent_dim,):
        raise UserError(f"{option} '{p}' has shape {tuple(arr.shape)}, but this generator's latent "
                        f"is ({latent_dim},); project the photo with this run")
    if arr.dtype.kind != "f":
        raise UserError(f"{option} '{p}' holds {arr.dtype} values; a latent is floating point "
                        "(float32)")
    if not np.isfinite(arr).all():
        raise UserError(f"{option} '{p}' holds values that are not finite (nan or inf)")
    return torch.from_numpy(arr.astype(np.float32))


def _stem(path: Path) -> str:
    """NAME of ``NAME.latent.npy`` (the file's stem for any other name)."""
    return path.name[:-len(".latent.npy")] if path.name.endswith(".latent.npy") else path.stem


def latent_photo(path: str | os.PathLike, resolution: int, option: str = "--latent") -> torch.Tensor | None:
    """The photo a latent was projected from: ``NAME.crop.png`` beside ``NAME.latent.npy``
    (written by :func:`save_projection`) as uint8 (3, R, R), R = ``resolution``; None when
    there is none (edits then show the projection alone). UserError (one line, naming the
    file and the ways out) for a file there that is not a readable R x R PNG image."""
    p = Path(path).expanduser()
    crop = p.with_name(f"{_stem(p)}.crop.png")
    if not crop.is_file():
        return None
    label = f"'{crop}' (the photo of {option} '{p}')"
    try:
        img, _ = read_photo(crop, label=label, formats=("PNG",))
    except PhotoError as e:
        raise UserError(f"{label} is not a readable image ({e.reason}); give --no-detail to use "
                        "the projection alone, or run facegan project on the photo again to "
                        "write it anew") from None
    if img.size != (resolution, resolution):
        raise UserError(f"{label} is {img.size[0]}x{img.size[1]}, but this generator draws "
                        f"{resolution}x{resolution}; project the photo with this run, or give "
                        "--no-detail")
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def latent_labels(path: str | os.PathLike, spec: LabelSpec, option: str = "--latent") -> torch.Tensor:
    """The labels float (K,) a latent was projected with, read from ``NAME.json`` beside
    ``NAME.latent.npy``; K = 0 (nothing read) for an unconditional model. UserError when a
    conditional model's labels cannot be read there."""
    if not spec.conditional:
        return torch.zeros(0)
    p = Path(path).expanduser()
    js = p.with_name(f"{_stem(p)}.json")
    try:
        doc = json.loads(js.read_text(encoding="utf-8"))
        labels = doc["labels"]
        if (not isinstance(labels, list) or len(labels) != spec.dim
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in labels)):
            raise ValueError(f"needs {spec.dim} label values")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"this model is conditional: the labels of {option} '{p}' are read from "
                        f"'{js}' (written by facegan project beside it), which is missing or "
                        f"unreadable ({str(e).splitlines()[0][:80] if str(e) else type(e).__name__})") from None
    return torch.tensor(labels, dtype=torch.float32)


def latent_source_note(path: str | os.PathLike, lg: Any, option: str = "--latent") -> str | None:
    """A one-line warning when ``NAME.json`` beside a latent says it was projected with another
    generator than ``lg`` (a :class:`~facegan.sampling.LoadedGenerator`: its ``run_dir``,
    ``checkpoint`` and ``step``), which it is about to drive: another run draws another face
    from it, another step of the same run a drifted one. None when they agree or nothing says."""
    p, run_dir, checkpoint, step = Path(path), lg.run_dir, Path(lg.checkpoint), int(lg.step)
    try:
        doc = json.loads(p.with_name(f"{_stem(p)}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    run, ckpt, at = doc.get("run"), doc.get("checkpoint"), doc.get("checkpoint_step")
    here = str(run_dir.resolve()) if run_dir else None
    if isinstance(run, str) and run != here or (run is None and isinstance(ckpt, str)
                                                and ckpt != str(checkpoint.resolve())):
        return (f"facegan: warning: {option} '{p}' was projected with {run or ckpt}, not this "
                f"model: it will draw another face; project the photo with this run")
    if isinstance(at, int) and at != step:
        return (f"facegan: warning: {option} '{p}' was projected at step {at:,} of this run, "
                f"this checkpoint is step {step:,}: its face may have drifted; project it again "
                "for the closest match")
    return None
