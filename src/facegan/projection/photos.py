"""A user's photo, untrusted: read and checked (size, type, pixel count), decoded, and
preprocessed exactly as the run's training images were (its crop, its size)."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..align import NoFaceFound
from ..config import DataConfig
from ..data.sources import CELEBA_IMAGES
from ..data.transforms import CELEBA_SIZE, CROPS, crop_box, decode_image, pil_to_rgb, to_float
from ..errors import UserError

# Untrusted photos: refused before decoding when larger than this (bytes on disk, pixels in
# the header), well below Pillow's own decompression-bomb limit, which only warns first.
MAX_PHOTO_BYTES = 64 * 1024 * 1024
MAX_PHOTO_PIXELS = 40_000_000


# ---- photos -----------------------------------------------------------------------------------

class PhotoError(UserError):
    """A photo that cannot be used, as a one-line message for the user; ``reason`` says what is
    wrong with the file in a few words ("not a PNG image", "damaged or truncated (...)"), for
    a caller that words the message its own way (:func:`facegan.projection.latent_photo`)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def read_photo(path: str | os.PathLike, *, label: str | None = None,
               formats: Sequence[str] | None = None) -> tuple[Image.Image, bytes]:
    """Open an untrusted photo (``~`` in ``path``: the home folder): (the image decoded, EXIF
    rotation applied, RGB; its bytes).

    UserError (one line, starting with ``label``, default "photo 'PATH'") for a missing file, a
    folder, a file over :data:`MAX_PHOTO_BYTES` or :data:`MAX_PHOTO_PIXELS`, a file that is not
    an image (of ``formats``, as :func:`decode_photo`), or a damaged / truncated one. The whole
    file is decoded here, so nothing later meets a bad one.
    """
    p = Path(path).expanduser()
    label = label or f"photo '{p}'"
    if not p.exists():
        raise PhotoError(f"{label} does not exist", "it does not exist")
    if not p.is_file():
        raise PhotoError(f"{label} is not a file; give image files (.jpg, .png)", "not a file")
    try:
        size = p.stat().st_size
        if size > MAX_PHOTO_BYTES:
            big = f"{size / 2**20:.0f} MB, more than the {MAX_PHOTO_BYTES // 2**20} MB facegan reads"
            raise PhotoError(f"{label} is {big}; give a smaller image", big)
        data = p.read_bytes()
    except OSError as e:
        raise PhotoError(f"cannot read {label} ({e.strerror or e})",
                         f"cannot be read: {e.strerror or e}") from None
    return decode_photo(data, label, formats=formats), data


# Pillow's names of the formats a caller may restrict a photo to, as people write them.
FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}


@contextlib.contextmanager
def _opened_photo(data: bytes, label: str, formats: Sequence[str] | None) -> Iterator[Image.Image]:
    """``data`` opened by Pillow (only its header read) after the format and the pixel count
    are checked; every decoding error inside the ``with`` becomes a one-line UserError that
    starts with ``label`` (such as "photo 'me.jpg'")."""
    large = f"more than the {MAX_PHOTO_PIXELS / 1e6:.0f} megapixels facegan decodes"
    too_large = f"{label} has {large}; give a smaller image"
    if formats:
        names = [FORMAT_NAMES.get(f, f) for f in formats]
        kinds = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        what = f"not a {kinds} image"
        not_image = (f"{label} is {what} (judged by its content, not its name); "
                     f"send a photo in one of those formats")
    else:
        what = "not an image Pillow can read"
        not_image = f"{label} is {what}; give a .jpg or .png"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats) if formats else None) as im:
                w, h = im.size  # from the header: nothing is decoded yet
                if w * h > MAX_PHOTO_PIXELS:
                    raise PhotoError(f"{too_large} ({w}x{h})", f"{large} ({w}x{h})")
                yield im
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoError(too_large, large) from None
    except Image.UnidentifiedImageError:
        raise PhotoError(not_image, what) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise PhotoError(f"{label} is damaged or truncated ({why}); give a complete image",
                         f"damaged or truncated: {why}") from None


def sniff_photo(data: bytes, label: str, *,
                formats: Sequence[str] | None = None) -> tuple[str, tuple[int, int]]:
    """(Pillow's format name, (width, height)) of an untrusted photo's bytes, read from its
    header alone (cheap: nothing is decoded). UserError as :func:`decode_photo` for a file that
    is not an image (of ``formats``, Pillow names such as 'JPEG', when given) or has more than
    :data:`MAX_PHOTO_PIXELS`; a damaged body is only found by decoding."""
    with _opened_photo(data, label, formats) as im:
        return str(im.format), im.size


def decode_photo(data: bytes, label: str, *, formats: Sequence[str] | None = None) -> Image.Image:
    """An untrusted photo's bytes decoded in memory: EXIF rotation applied, RGB.

    The format (``formats``, Pillow names such as 'JPEG': only those decoders are tried) and
    the pixel count (:data:`MAX_PHOTO_PIXELS`, from the header, before anything is decoded:
    a small file can declare a huge image) are checked first. UserError (one line, starting
    with ``label``) for a file that is not such an image, too many pixels, or a damaged /
    truncated one."""
    with _opened_photo(data, label, formats) as im:
        im.load()
        photo = pil_to_rgb(ImageOps.exif_transpose(im))
        photo.load()
    if min(photo.size) < 1:
        raise PhotoError(f"{label} has no pixels", "it has no pixels")
    return photo


def _celeba_layout(data_path: str) -> bool | None:
    """True / False: the run's data folder has (not) the CelebA layout; None: not on this
    machine (or built-in data), so unknown."""
    if data_path.strip() in ("", "builtin"):
        return False
    p = Path(data_path).expanduser()
    if not p.exists():
        return None
    return (p / CELEBA_IMAGES).is_dir() or p.name == CELEBA_IMAGES


def photo_crop(data_cfg: DataConfig, size: tuple[int, int], crop: str | None = None) -> str:
    """The crop for a photo of ``size`` (width, height): ``crop`` if given, else the run's
    ``data.crop``. 'auto' means, as in training, the CelebA face box for CelebA images: here,
    for a photo framed like CelebA's aligned images (178x218 proportions) from a run trained on
    CelebA (or whose data is not on this machine); else the centre square."""
    crop = crop or data_cfg.crop
    if crop != "auto":
        if crop not in CROPS:
            raise UserError(f"unknown crop '{crop}'; use auto, {', '.join(CROPS)}")
        return crop
    w, h = size
    celeba_framed = abs(w / h - CELEBA_SIZE[0] / CELEBA_SIZE[1]) < 0.01
    return "celeba" if celeba_framed and _celeba_layout(data_cfg.path) is not False else "center"


def preprocess(photo: Image.Image, data_cfg: DataConfig,
               crop: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A PIL photo as the run's training data was preprocessed: EXIF rotation, RGB, the crop
    (:func:`photo_crop`), a bicubic resize to ``data_cfg.resolution`` R.

    Returns (uint8 (3, R, R) in 0..255, float32 (3, R, R) in [-1, 1]). For a file,
    :func:`load_photo` goes through the training decoder itself (which also lets libjpeg
    decode a large JPEG at a reduced scale, as training did).
    """
    r = int(data_cfg.resolution)
    im = pil_to_rgb(ImageOps.exif_transpose(photo))
    im = im.crop(crop_box(photo_crop(data_cfg, im.size, crop), *im.size))
    arr = np.asarray(im.resize((r, r), Image.BICUBIC), dtype=np.uint8)
    u8 = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    return u8, to_float(u8)


@dataclass
class Photo:
    """A photo ready to project: ``name`` (the file's stem), the full photo (RGB PIL, after
    ``align``), the crop used, and ``target`` uint8 (3, R, R), the preprocessed image."""

    name: str
    image: Image.Image
    crop: str
    target: torch.Tensor
    source: str = ""


def load_photo(photo: str | os.PathLike | Image.Image, data_cfg: DataConfig, *,
               crop: str | None = None, align: Callable[[Image.Image], Image.Image] | None = None,
               name: str | None = None) -> Photo:
    """A file (read with :func:`read_photo`'s limits) or a PIL image -> :class:`Photo`.

    ``align``: PIL -> PIL, a face aligner (such as :mod:`facegan.align`) that returns the face
    framed as the run's training crop frames faces (its :class:`~facegan.align.NoFaceFound`
    is raised again naming the file); its output is then only cut to its centred
    square (the whole of a square image) and resized, unless ``crop`` says otherwise. None
    keeps the photo as it is and applies the run's crop. A file with no ``align`` is decoded by
    the training decoder
    (:func:`facegan.data.transforms.decode_image`), so its pixels are exactly what a training
    image in that file would have been.
    """
    if isinstance(photo, Image.Image):
        im, data, source = pil_to_rgb(ImageOps.exif_transpose(photo)), None, ""
    else:
        im, data = read_photo(photo)
        source = str(photo)
    name = name or output_names([photo])[0]
    if align is not None:
        try:
            im = align(im)
        except NoFaceFound:
            if not source:
                raise
            raise NoFaceFound(f"photo '{photo}'") from None  # the user's file, by its path
        if not isinstance(im, Image.Image):
            raise TypeError(f"align must return a PIL image, got {type(im).__name__}")
        im = pil_to_rgb(im)
        data = None
        crop = crop or "center"  # framed already: the training crop must not be cut out again
    c = photo_crop(data_cfg, im.size, crop)
    if data is not None:
        u8 = torch.from_numpy(decode_image(data, c, int(data_cfg.resolution)).copy()).permute(2, 0, 1)
        u8 = u8.contiguous()
    else:
        u8, _ = preprocess(im, data_cfg, c)
    return Photo(name, im, c, u8, source)


def fit_photo(photo: Image.Image, resolution: int) -> torch.Tensor:
    """The whole photo fitted into R x R (proportions kept, white bars): uint8 (3, R, R)."""
    im = ImageOps.pad(photo.convert("RGB"), (resolution, resolution), Image.BICUBIC,
                      color=(255, 255, 255))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def output_names(photos: Sequence[str | os.PathLike | Image.Image]) -> list[str]:
    """The NAME of each photo's outputs: a file's name up to its first dot, ``photo_I`` for
    the I-th photo given as a PIL image. UserError when two photos would write the same files."""
    names = [f"photo_{i}" if isinstance(p, Image.Image) else (Path(p).name.split(".")[0] or f"photo_{i}")
             for i, p in enumerate(photos)]
    seen: dict[str, str] = {}
    for i, (p, n) in enumerate(zip(photos, names)):
        shown = f"photo {i}" if isinstance(p, Image.Image) else f"'{p}'"
        if n in seen:
            raise UserError(f"photos {seen[n]} and {shown} would both write {n}.png; rename one")
        seen[n] = shown
    return names
