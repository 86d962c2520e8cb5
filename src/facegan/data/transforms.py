"""Pixel preprocessing: crop boxes, decoding one file to a square uint8 array, scaling to [-1, 1].

Everything here works on one image (or one batch) and knows nothing about folders or caches.
"""

from __future__ import annotations

import io
import math
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from ..config import DataConfig
from ..errors import UserError

CROPS = ("center", "celeba", "none")

# CelebA's aligned images are 178x218 with the face at a fixed place; this box (left, top,
# right, bottom) is the 120x120 face crop used by most CelebA GAN recipes.
CELEBA_SIZE = (178, 218)
CELEBA_BOX = (30, 55, 150, 175)


def resolve_crop(cfg: DataConfig, source: str) -> str:
    """Turn ``cfg.crop`` into a concrete crop: 'auto' -> 'celeba' for the CelebA layout, else 'center'.

    ``source`` is the source kind ('folder', 'zip', 'celeba' or 'builtin').
    """
    if cfg.crop == "auto":
        return "celeba" if source == "celeba" else "center"
    if cfg.crop not in CROPS:
        raise UserError(f"unknown crop '{cfg.crop}'; use auto, center, celeba or none")
    return cfg.crop


def _round_half_up(v: float) -> int:
    # Python's round() rounds halves to even, which could move the two edges of the CelebA box
    # in different directions (27.5 -> 28 but 26.5 -> 26); half-up keeps the box width stable.
    return int(math.floor(v + 0.5))


def crop_box(crop: str, width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) pixel box that ``crop`` keeps from a width x height image.

    'center': the largest centred square. 'celeba': CELEBA_BOX scaled from 178x218 to the actual
    size (x by width/178, y by height/218). 'none': the whole image (later squashed to a square).
    """
    if crop == "center":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side
    if crop == "celeba":
        sx, sy = width / CELEBA_SIZE[0], height / CELEBA_SIZE[1]
        l, t, r, b = CELEBA_BOX
        return (_round_half_up(l * sx), _round_half_up(t * sy),
                _round_half_up(r * sx), _round_half_up(b * sy))
    if crop == "none":
        return 0, 0, width, height
    raise ValueError(f"unknown crop {crop!r}")


def pil_to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        # Going through RGBA avoids Pillow's per-image warning about palette transparency.
        im = im.convert("RGBA")
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # 16-bit PNGs: convert('RGB') would clip everything above 255 to white.
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        im = Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def decode_image(data: bytes | BinaryIO, crop: str, resolution: int) -> np.ndarray:
    """Decode one encoded image and return it cropped and resized: uint8, R x R x 3 (HWC), RGB.

    Resizing is bicubic, which Pillow antialiases when shrinking. Raises whatever Pillow raises
    for a file that is not a readable image (the caller records it as skipped).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(data)
    with Image.open(data) as im:
        if im.format == "JPEG":
            _draft(im, crop, resolution)
        im = ImageOps.exif_transpose(im)  # phone photos carry their rotation in EXIF
        im = pil_to_rgb(im)
        # Crop first, then resize: resize(box=...) would let the filter reach past the box
        # and blend a rim of outside pixels into the edges.
        im = im.crop(crop_box(crop, *im.size))
        out = im.resize((resolution, resolution), Image.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def _draft(im: Image.Image, crop: str, resolution: int) -> None:
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the crop stays at least 2R wide, which
    # makes large photos several times faster to load; the bicubic resize then does the rest.
    w, h = im.size
    l, t, r, b = crop_box(crop, w, h)
    if r <= l or b <= t:
        return
    need_w = math.ceil(2 * resolution * w / (r - l))
    need_h = math.ceil(2 * resolution * h / (b - t))
    if need_w < w and need_h < h:
        im.draft("RGB", (need_w, need_h))


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images (N x 3 x R x R, 0..255) -> float32 in [-1, 1] (x / 127.5 - 1), same device.

    0 maps to exactly -1 and 255 to exactly 1, matching a generator's tanh output range.
    """
    return batch.to(torch.float32) / 127.5 - 1.0
