"""Feature extraction: uint8 images -> clean bicubic resize to 299 -> Inception features.

The resize is CPU work in PIL (which releases the GIL), so a thread pool resizes the next
batch while the network runs on the current one. Images come from a uint8 tensor
(N, 3, H, W) or any :class:`ImageSource` (``len()`` and ``[i]`` -> uint8 (H, W, 3)), e.g. the
files of a folder, read one batch at a time so a large folder never sits in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ..data.sources import IMAGE_EXTENSIONS, os_error_words, readable, scan_folder
from ..data.transforms import open_image, read_rgb
from ..errors import UserError
from ..progress import Progress, format_duration
from .resize import resize_clean

__all__ = ["IMAGE_EXTENSIONS", "FileImages", "ImageSource", "Progress", "TensorImages",
           "check_images_readable", "default_workers", "extract_features", "format_duration",
           "list_image_files"]

class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...  # uint8 (H, W, 3) RGB


class TensorImages:
    """A uint8 (N, 3, H, W) tensor or array seen as an :class:`ImageSource`."""

    def __init__(self, images: torch.Tensor | np.ndarray):
        t = torch.as_tensor(images)
        if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {t.dtype} {tuple(t.shape)}")
        self.images = t.cpu()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i].permute(1, 2, 0).numpy()


class FileImages:
    """Image files decoded as training decodes them (EXIF rotation applied, transparency on
    white, 16-bit PNGs scaled to 8 bits, not clipped), at their own size (no crop, no resize)."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        p = self.paths[i]
        try:
            # Training's decoder: the statistics of a folder then match those of the same
            # files read as training data.
            return read_rgb(p)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot read image {p} ({_reason(e, p)}); FID needs every image of "
                            f"its folder: remove or replace {p}, then run again") from None


# Why an image file cannot be read, without the path Pillow repeats in its messages.
def _reason(e: Exception, path: Path) -> str:
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image Pillow can read: empty, cut short, or another kind of file"
    if isinstance(e, OSError) and e.filename is not None:  # the file itself: a broken link, say
        return os_error_words(e)
    text = str(e).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return text or type(e).__name__


def check_images_readable(paths: Sequence[str | os.PathLike], folder: str | os.PathLike) -> None:
    """Open each file's header (cheap: no pixels decoded) before any feature is computed;
    UserError naming the unreadable files of ``folder``. A score over part of a folder would
    mislead, so nothing is skipped; a file whose header reads but whose pixels do not still
    fails later, in :class:`FileImages`."""
    bad: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        try:
            with open_image(p):
                pass
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad.append((p, _reason(e, p)))
    if not bad:
        return
    (first, why), more = bad[0], len(bad) - 1
    if not more:
        raise UserError(f"cannot read image {first} ({why}); FID needs every image of {folder}: "
                        f"remove or replace {first}, then run again")
    named = ", ".join(str(p) for p, _ in bad[:3]) + (f" and {len(bad) - 3:,} more" if len(bad) > 3
                                                     else "")
    raise UserError(f"{len(bad):,} files in {folder} are not readable images ({named}; {first}: "
                    f"{why}); FID needs every image of the folder: remove or replace them, then "
                    "run again")


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (sorted), found as training finds them
    (:func:`facegan.data.sources.scan_folder`: recursive, links followed, hidden files and run
    folders inside left out); UserError when none, no folder, the folder is a run, or a
    sub-folder cannot be read (FID needs every image). A broken link named as an image is
    listed, for :func:`check_images_readable` to name."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    scan = scan_folder(folder)
    if scan.run:
        raise UserError(f"{folder} is a facegan run folder: its samples/ and loss.png are not a set "
                        f"of images to measure; write the run's images with 'facegan sample "
                        f"{folder} --n 10000 --png-dir DIR' and give DIR, or measure the run with "
                        f"'facegan evaluate {folder} --data DATA'")
    if scan.unreadable:
        first, why = scan.unreadable[0]
        raise UserError(f"cannot read {scan.unreadable_count()} of "
                        f"{folder} ({readable(first)}: {why}); FID needs every image of the folder: "
                        f"make them readable (chmod -R u+rX) or remove them, then run again")
    files = sorted(folder / name for name, _ in scan.files + scan.broken)
    if not files:
        raise UserError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in {folder}"
                        f"{scan.other_files()}")
    return files


def _as_source(images) -> ImageSource:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return TensorImages(images)
    return images


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def extract_features(net, images, *, batch_size: int = 64, probs: bool = False,
                     progress: bool = False, desc: str = "features", workers: int | None = None):
    """Features of every image.

    progress: a tqdm bar when stderr is a terminal, else a one-line report on stderr at every
        10% and at least every 30 s (see :class:`Progress`).

    net: an :class:`~facegan.metrics.inception.InceptionNet` (or any callable with the same
        contract: float (B, 3, 299, 299) in [0, 255] -> float (B, 2048), and with
        ``probs=True`` -> (features, probs)).
    images: uint8 (N, 3, H, W) tensor/array, or an :class:`ImageSource`.
    Returns float32 (N, 2048) numpy, or (features, probs float64 (N, 1008)) when ``probs``.
    """
    src = _as_source(images)
    n = len(src)
    if batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    batches = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    feats_out: list[torch.Tensor] = []
    probs_out: list[torch.Tensor] = []
    bar = Progress(n, desc) if progress and n else None

    def _prep(i: int) -> np.ndarray:
        return resize_clean(src[i])

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        def submit(b: range):
            return [pool.submit(_prep, i) for i in b]

        pending = submit(batches[0]) if batches else None
        try:
            for k in range(len(batches)):
                futures = pending
                # Queue the next batch's resizes before running the network on this one.
                pending = submit(batches[k + 1]) if k + 1 < len(batches) else None
                x = torch.from_numpy(np.stack([f.result() for f in futures]))  # [B, 3, 299, 299]
                if probs:
                    f, p = net(x, probs=True)
                    probs_out.append(p)
                else:
                    f = net(x)
                feats_out.append(f.float())
                if bar is not None:
                    bar.update(x.shape[0])
        finally:
            if pending is not None:
                for f in pending:
                    f.cancel()
            if bar is not None:
                bar.close()
    feats = torch.cat(feats_out).numpy() if feats_out else np.zeros((0, 2048), np.float32)
    if probs:
        pr = torch.cat(probs_out).numpy() if probs_out else np.zeros((0, 1008))
        return feats, pr
    return feats
