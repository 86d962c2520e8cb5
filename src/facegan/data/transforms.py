"""Pixel preprocessing: crop boxes, decoding one file to a square uint8 array, scaling to [-1, 1].

Everything here works on one image (or one batch) and knows nothing about folders or caches.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from ..config import DataConfig
from ..errors import UserError

CROPS = ("center", "celeba", "none")

# A data set is the user's own photos, and cameras reach 200 MP: Pillow's own limit (a warning
# from 89 MP, an error from 179 MP) guards untrusted files and stays as it is for them.
MAX_PIXELS = 300_000_000
# What a transparent pixel shows: white, the usual ground of a cut-out face.
BACKGROUND = (255, 255, 255)

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
    """Any mode -> RGB: transparent pixels (RGBA, LA, a palette or a PNG with a transparent
    colour) composited onto BACKGROUND (white), 16-bit grey scaled to 8 bits."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # 16-bit PNGs: convert('RGB') would clip everything above 255 to white.
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        return Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        # Dropping alpha would show whatever colour the transparent pixels happen to hold.
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, BACKGROUND)
        out.paste(rgba, mask=rgba)
        return out
    return im if im.mode == "RGB" else im.convert("RGB")


class ImageTooLarge(ValueError):
    """An image over MAX_PIXELS; its message says so in words."""


def _open(fp: BinaryIO) -> Image.Image:
    # Image.open would hold the file to Pillow's process-wide MAX_IMAGE_PIXELS, which facegan
    # serve relies on for uploads and which must not change under it. So the data's files are
    # opened by the same plugins, tried in Pillow's order, and held to MAX_PIXELS by the caller.
    Image.init()
    prefix = fp.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            ok = not accept or accept(prefix)
            if ok and not isinstance(ok, str):  # a str: a format Pillow lacks the library for
                fp.seek(0)
                return factory(fp, "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all (Image.open goes on too)
    raise Image.UnidentifiedImageError("cannot identify image file")


@contextlib.contextmanager
def open_image(source: bytes | BinaryIO | str | os.PathLike) -> Iterator[Image.Image]:
    """An image file of a data set opened (its header read, nothing decoded), any format
    Pillow reads (a TIFF or GIF at its first frame); ImageTooLarge over MAX_PIXELS, else
    whatever Pillow raises for a file it cannot read."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, (bytes, bytearray, memoryview)):
            fp: BinaryIO = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            fp = stack.enter_context(open(source, "rb"))
        else:
            fp = source
        im = stack.enter_context(_open(fp))
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageTooLarge(f"{w}x{h} pixels ({w * h / 1e6:.0f} MP), more than the "
                                f"{MAX_PIXELS / 1e6:.0f} MP facegan reads; shrink it")
        yield im


def read_rgb(source: bytes | BinaryIO | str | os.PathLike) -> np.ndarray:
    """One image file decoded as training decodes it, at its own size (no crop, no resize):
    uint8 H x W x 3 (HWC), RGB, EXIF rotation applied, transparency on white."""
    with open_image(source) as im:
        return np.asarray(pil_to_rgb(ImageOps.exif_transpose(im)), dtype=np.uint8)


def decode_image(data: bytes | BinaryIO, crop: str, resolution: int) -> np.ndarray:
    """Decode one encoded image and return it cropped and resized: uint8, R x R x 3 (HWC), RGB.

    EXIF rotation is applied and transparent pixels are composited onto white (BACKGROUND).
    Resizing is bicubic, which Pillow antialiases when shrinking. Files up to MAX_PIXELS are
    read; a JPEG is decoded at a reduced scale (draft) to about twice the crop's target size.
    Raises whatever Pillow raises for a file that is not a readable image, and ImageTooLarge
    (the caller records it as skipped).
    """
    with open_image(data) as im:
        if im.format in ("JPEG", "MPO"):
            _draft(im, crop, resolution)
        im = ImageOps.exif_transpose(im)  # phone photos carry their rotation in EXIF
        im = pil_to_rgb(im)
        # Crop first, then resize: resize(box=...) would let the filter reach past the box
        # and blend a rim of outside pixels into the edges.
        im = _cut(im, crop_box(crop, *im.size), resolution)
        out = im.resize((resolution, resolution), Image.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def _cut(im: Image.Image, box: tuple[int, int, int, int], resolution: int) -> Image.Image:
    # Image.crop holds the box to Pillow's MAX_IMAGE_PIXELS too. A box that large (a huge image
    # that has no draft, a PNG say) is averaged down by whole factors, to at least 2R a side,
    # by reduce(), which reads the box alone.
    l, t, r, b = box
    if Image.MAX_IMAGE_PIXELS and (r - l) * (b - t) > Image.MAX_IMAGE_PIXELS:
        return im.reduce((max(1, (r - l) // (2 * resolution)), max(1, (b - t) // (2 * resolution))),
                         box)
    return im.crop(box)


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
