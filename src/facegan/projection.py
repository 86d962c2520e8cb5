"""GAN inversion: put a real photo into a trained generator's latent space, then edit or morph it.

``project(run, photos)`` finds, for each photo, a latent ``z`` (latent_dim,) whose image
``G(z, c)`` looks like the photo as the run's training data would have shown it:

1. **Preprocess** the photo exactly as the training images were (:func:`load_photo`: the
   run's crop and size, bicubic; :func:`preprocess` for a PIL image in hand). Face alignment is
   a hook: ``align``, a callable PIL -> PIL returning the face framed as the training crop
   frames faces (default None: the photo as it is, cut by the run's crop as training images
   were).
2. **Guess** ``z`` with an encoder (:class:`Encoder`, a small strided-conv net image -> z),
   trained once per run on the generator's own samples (:func:`encoder_for`): MSE between
   ``E(G(z, c))`` and ``z`` (optionally plus an image reconstruction loss
   ``|G(E(x), c) - x|^2``, :func:`train_encoder`). It is cached in ``RUN/encoder.pt`` (read
   with ``weights_only``) with the checkpoint step it was trained for, and trained again when
   that step (or the generator's weights, or the training settings) differ.
3. **Optimise** ``z`` from the guess with Adam (:func:`optimise_latent`): pixel MSE at the
   model's resolution + a feature loss (a :class:`FeatureNet`, :func:`load_features`: the
   run's critic, the FID Inception's early blocks, the attribute classifier, or none) + a
   prior term keeping ``z`` in the band of ``|z|^2 / D`` where the generator's training
   latents were (:func:`prior_penalty`; the guess is first scaled into it, :func:`into_band`).

Each :class:`Projection` carries the latent, the images (photo, crop, projection) and PSNR,
SSIM and feature distance; :func:`save_projection` writes ``NAME.latent.npy``,
``NAME.crop.png``, ``NAME.png`` and ``NAME.json``. A projected latent edits and morphs like a
sampled one (:func:`edit_latent_images`, :func:`morph_latent_images`; ``facegan edit
--latent``, ``facegan morph --from A --to B``); given the crop (:func:`latent_photo`), they
keep the photo's own detail, what the projection missed (:func:`keep_detail`), so an edit
at strength 0 is the photo itself.

A conditional run projects with the labels the user gives (``--class`` / ``--attr``,
:func:`facegan.labels.parse_condition`); they are required, and saved in ``NAME.json``.

For a caller that must interleave the work with other work and leave the run folder alone
(``facegan serve``'s page): :func:`encoder_training`, :func:`latent_optimisation` and
:func:`projection_steps` do one step per ``next()`` (:func:`run_steps` runs one to its end);
:func:`cached_encoder` and :func:`read_face_template` only read the run's caches;
:func:`template_images` and :func:`celeba_face_template` give a template's inputs or a
stand-in without writing; :func:`decode_photo` and :func:`sniff_photo` check a photo's bytes
in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

from .checkpoint import load_checkpoint
from .config import DataConfig
from .data.sources import CELEBA_IMAGES
from .data.transforms import CELEBA_SIZE, CROPS, _to_rgb, crop_box, decode_image, to_float
from .directions import edit_latent_images
from .errors import UserError
from .labels import LabelSpec, parse_condition
from .models import NetSpec, build_networks, critic_stages
from .sampling import (
    LoadedGenerator,
    generate,
    keep_detail,
    load_generator,
    make_grid,
    morph_latent_images,
    photo_detail,
    save_png,
)
from .utils import Progress, atomic_write, atomic_write_text, reporting_write_errors

ENCODER_FILE = "encoder.pt"
ENCODER_FORMAT = "facegan-encoder"
ENCODER_VERSION = 1
FEATURES = ("critic", "inception", "classifier", "none")
DEFAULT_FEATURES = "critic"

# Untrusted photos: refused before decoding when larger than this (bytes on disk, pixels in
# the header), well below Pillow's own decompression-bomb limit, which only warns first.
MAX_PHOTO_BYTES = 64 * 1024 * 1024
MAX_PHOTO_PIXELS = 40_000_000

DEFAULT_STEPS = 300
DEFAULT_ENCODER_STEPS = 500
DEFAULT_LR = 0.05
DEFAULT_FEATURE_WEIGHT = 0.1
# The latent prior (prior_penalty): zero within 2 standard deviations of the N(0, I) shell, and
# a wall outside it (weight 1, so the wall holds against the pixel loss). A band of 3 at weight
# 0.05 let the optimiser spread the latents' norms half again as widely as N(0, I) does. With
# the start scaled into the band (into_band) the band of 2 projects closer (own samples 45.0
# against 42.7 dB) and edits as the loose band did (docs/projection.md, "What it reaches").
DEFAULT_PRIOR_WEIGHT = 1.0
DEFAULT_PRIOR_WIDTH = 2.0


# ---- photos -----------------------------------------------------------------------------------

def read_photo(path: str | os.PathLike, *, label: str | None = None,
               formats: Sequence[str] | None = None) -> tuple[Image.Image, bytes]:
    """Open an untrusted photo: (the image decoded, EXIF rotation applied, RGB; its bytes).

    UserError (one line, starting with ``label``, default "photo 'PATH'") for a missing file, a
    folder, a file over :data:`MAX_PHOTO_BYTES` or :data:`MAX_PHOTO_PIXELS`, a file that is not
    an image (of ``formats``, as :func:`decode_photo`), or a damaged / truncated one. The whole
    file is decoded here, so nothing later meets a bad one.
    """
    p = Path(path)
    label = label or f"photo '{p}'"
    if not p.exists():
        raise UserError(f"{label} does not exist")
    if not p.is_file():
        raise UserError(f"{label} is not a file; give image files (.jpg, .png)")
    try:
        size = p.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise UserError(f"{label} is {size / 2**20:.0f} MB, more than the "
                            f"{MAX_PHOTO_BYTES // 2**20} MB facegan reads; give a smaller image")
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {label} ({e.strerror or e})") from None
    return decode_photo(data, label, formats=formats), data


# Pillow's names of the formats a caller may restrict a photo to, as people write them.
FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}


@contextlib.contextmanager
def _opened_photo(data: bytes, label: str, formats: Sequence[str] | None) -> Iterator[Image.Image]:
    """``data`` opened by Pillow (only its header read) after the format and the pixel count
    are checked; every decoding error inside the ``with`` becomes a one-line UserError that
    starts with ``label`` (such as "photo 'me.jpg'")."""
    too_large = (f"{label} has more than the {MAX_PHOTO_PIXELS / 1e6:.0f} megapixels facegan "
                 "decodes; give a smaller image")
    if formats:
        names = [FORMAT_NAMES.get(f, f) for f in formats]
        kinds = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        not_image = (f"{label} is not a {kinds} image (judged by its content, not its name); "
                     f"send a photo in one of those formats")
    else:
        not_image = f"{label} is not an image Pillow can read; give a .jpg or .png"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats) if formats else None) as im:
                w, h = im.size  # from the header: nothing is decoded yet
                if w * h > MAX_PHOTO_PIXELS:
                    raise UserError(f"{too_large} ({w}x{h})")
                yield im
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(too_large) from None
    except Image.UnidentifiedImageError:
        raise UserError(not_image) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise UserError(f"{label} is damaged or truncated ({why}); give a complete image") from None


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
        photo = _to_rgb(ImageOps.exif_transpose(im))
        photo.load()
    if min(photo.size) < 1:
        raise UserError(f"{label} has no pixels")
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
    im = _to_rgb(ImageOps.exif_transpose(photo))
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
    framed as the run's training crop frames faces; its output is then only cut to its centred
    square (the whole of a square image) and resized, unless ``crop`` says otherwise. None
    keeps the photo as it is and applies the run's crop. A file with no ``align`` is decoded by
    the training decoder
    (:func:`facegan.data.transforms.decode_image`), so its pixels are exactly what a training
    image in that file would have been.
    """
    if isinstance(photo, Image.Image):
        im, data, source = _to_rgb(ImageOps.exif_transpose(photo)), None, ""
    else:
        im, data = read_photo(photo)
        source = str(photo)
    name = name or output_names([photo])[0]
    if align is not None:
        im = align(im)
        if not isinstance(im, Image.Image):
            raise TypeError(f"align must return a PIL image, got {type(im).__name__}")
        im = _to_rgb(im)
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


# ---- image metrics ----------------------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (3, H, W) (or any equal shapes) in
    0..255: ``10 log10(255^2 / MSE)``; inf for identical images."""
    mse = float((a.double() - b.double()).square().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5,
         data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004) of two images (C, H, W) in 0..``data_range``
    (uint8 or float): the standard Gaussian window (11 x 11, sigma 1.5; smaller for images
    under 11 px), K1 = 0.01, K2 = 0.03, statistics over the window's valid positions, the map
    averaged over positions and channels. 1 for identical images."""
    x, y = a.double()[None], b.double()[None]
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two images of the same shape (C, H, W), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    ch = x.shape[1]
    win = min(window, x.shape[-1], x.shape[-2])
    t = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(ch, 1, win, win)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, kernel, groups=ch)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# ---- feature networks for the loss ------------------------------------------------------------

class FeatureNet:
    """A frozen network as a feature loss: ``feats(x, c)`` -> a list of activations (each
    float (N, C_i, H_i, W_i)) of images x float (N, 3, R, R) in [-1, 1] with labels c float
    (N, K) (ignored by the networks that take none), differentiable in x; ``distance`` compares
    two such lists. ``name`` is what ``--features`` calls it. Its weights are frozen."""

    name = ""

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def distance(feats: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
        """Per image (N,): the mean squared feature difference of each stage divided by the
        target's mean square there (so every stage counts alike whatever its scale), averaged
        over the stages. 0 for identical features; about 1 or more for unrelated images."""
        terms = [(f - t).square().flatten(1).mean(1) / t.square().flatten(1).mean(1).clamp_min(1e-8)
                 for f, t in zip(feats, target)]
        return torch.stack(terms).mean(0)


class CriticFeatures(FeatureNet):
    """The run's critic as a feature network: ``feats(x, c)`` -> the activations at the end of
    each of its stages (:func:`facegan.models.critic_stages`, image side first), read by
    forward hooks; the score heads are not used. The critic is in eval mode and its weights
    are frozen."""

    name = "critic"

    def __init__(self, critic: nn.Module):
        self.critic = critic.eval().requires_grad_(False)
        self.modules = [s[-1] if isinstance(s, nn.ModuleList) else s for s in critic_stages(critic)]

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o)) for m in self.modules]
        try:
            self.critic(x, c)
        finally:
            for h in hooks:
                h.remove()
        return out


# Inception as a loss: the FID network's stem and its first three mixed blocks, on the image
# upsampled to 96 px (not 299). Early layers carry the local structure (edges, texture, parts)
# a perceptual loss wants. Even so a step costs about 5x the critic's on a CPU (128 px: 7x);
# the later blocks and the 299 px input would cost several times more again, for features that
# mostly say "a face" (every projection is one).
INCEPTION_SIZE = 96


class InceptionFeatures(FeatureNet):
    """The FID Inception-v3 (:class:`facegan.metrics.tf_inception.FIDInceptionV3`, the weights
    facegan ships for FID) as a feature network: images float (N, 3, R, R) in [-1, 1] are
    resized (bilinear) to ``size`` x ``size`` (default :data:`INCEPTION_SIZE`), scaled as the
    TF graph expects (``(x255 - 128) / 128``), and ``feats`` returns three activations: after
    the stem's third convolution (64 channels, ~size/2), after its fifth (192 channels,
    ~size/4) and after the third mixed block Mixed_5d (288 channels, ~size/10). ``c`` is
    ignored."""

    name = "inception"

    def __init__(self, net: nn.Module, size: int = INCEPTION_SIZE):
        if size < 75:  # the stem and two 3x3 stride-2 pools need 75 px to leave a 1 x 1 map
            raise ValueError(f"the Inception feature loss needs images of at least 75 px, got {size}")
        self.net = net.eval().requires_grad_(False)
        self.size = int(size)

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = ((x + 1.0) * 127.5 - 128.0) / 128.0  # [-1, 1] -> the graph's (0..255 - 128) / 128
        x = x.contiguous(memory_format=torch.channels_last)
        s1 = n.conv3(n.conv2(n.conv1(x)))
        s2 = n.conv5(n.conv4(F.max_pool2d(s1, 3, 2)))
        s3 = n.blocks[2](n.blocks[1](n.blocks[0](F.max_pool2d(s2, 3, 2))))
        return [s1, s2, s3]


class ClassifierFeatures(FeatureNet):
    """The attribute classifier (:class:`facegan.metrics.classifier.AttributeNet`, trained on
    the run's labelled data) as a feature network: the activations at the end of each of its
    stages (after the second conv's ReLU; 64 px: 32, 16, 8, 4 px maps). Images float (N, 3,
    R, R) in [-1, 1] are resized (bilinear) to the classifier's resolution when it differs;
    ``c`` is ignored. Batch norm in eval mode, weights frozen."""

    name = "classifier"

    def __init__(self, net: nn.Module, resolution: int):
        self.net = net.eval().requires_grad_(False)
        self.resolution = int(resolution)
        layers = list(net.features)
        self.stage_ends = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)][1::2]

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False)
        out = []
        for i, layer in enumerate(self.net.features):
            # The ReLUs are in-place; the stage's output is kept, so it must not be overwritten.
            x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            if i in self.stage_ends:
                out.append(x)
        return out


def load_critic(lg: LoadedGenerator) -> CriticFeatures:
    """The critic of ``lg``'s checkpoint as a :class:`CriticFeatures`, on the generator's
    device. UserError when the checkpoint holds no critic weights."""
    ckpt = load_checkpoint(lg.checkpoint)
    state = ckpt.get("D")
    if state is None:
        raise UserError(f"'{lg.checkpoint}' holds no critic weights for the feature loss; use "
                        "--features none")
    cfg = ckpt["config"]
    _, d = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, int(ckpt.get("label_dim", 0))))
    try:
        d.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"'{lg.checkpoint}': critic weights do not match its config "
                        f"({str(e).splitlines()[0][:120]}); use --features none") from None
    return CriticFeatures(d.to(next(lg.generator.parameters()).device))


def load_features(lg: LoadedGenerator, features: str, *, data: str | os.PathLike | None = None,
                  progress: bool = True) -> FeatureNet | None:
    """The feature network ``features`` names (one of :data:`FEATURES`) for projecting into
    ``lg``, on the generator's device; None for 'none'.

    'critic': the checkpoint's critic (:func:`load_critic`). 'inception': the FID Inception
    weights (:func:`facegan.metrics.load_inception`; UserError saying how to install them when
    absent). 'classifier': the attribute classifier of the run's labelled training data,
    ``data`` (default the run's ``data.path``), read from facegan's cache or trained there once
    (:func:`facegan.metrics.classifier.classifier_for_data`; minutes on a CPU); UserError when
    that data is not on this machine or has no labels."""
    if features not in FEATURES:
        raise UserError(f"--features must be one of {', '.join(FEATURES)}, got '{features}'")
    device = next(lg.generator.parameters()).device
    if features == "none":
        return None
    if features == "critic":
        return load_critic(lg)
    if features == "inception":
        from .metrics import load_inception

        return InceptionFeatures(load_inception(None, device=device, engine="eager", streams=1).module)
    from dataclasses import replace

    from .metrics.classifier import classifier_for_data

    path = str(data) if data else lg.config.data.path
    if not path or path.strip() == "builtin":
        raise UserError("--features classifier needs the run's labelled training data (CelebA "
                        "attributes or class folders); the built-in faces have no labels; use "
                        "--features critic")
    if not Path(path).expanduser().exists():
        raise UserError(f"--features classifier needs the run's labelled training data, and "
                        f"'{path}' is not on this machine; use --features critic")
    clf = classifier_for_data(replace(lg.config.data, path=path), device=device, progress=progress)
    return ClassifierFeatures(clf.net, clf.resolution)


# ---- the encoder --------------------------------------------------------------------------------

class Encoder(nn.Module):
    """Image -> latent guess: float (N, 3, R, R) in [-1, 1] -> float (N, latent_dim).

    The DCGAN critic's layout: stride-2 4x4 convs with LeakyReLU 0.2 halving the size down to
    4x4, the width doubling from ``width`` up to ``max_width``; no normalisation (one photo
    alone must get the answer it gets in a batch). The 4x4 features are flattened (where
    things are matters for a latent) into a linear layer. About 27 M multiply-adds per 64 px
    image at width 32, a fraction of what the generator costs.
    """

    def __init__(self, latent_dim: int, resolution: int, width: int = 32, max_width: int = 256):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.latent_dim, self.resolution, self.width, self.max_width = latent_dim, resolution, width, max_width
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(int(math.log2(resolution)) - 2):
            c = min(width * 2 ** i, max_width)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))

    def config(self) -> dict[str, int]:
        return {"latent_dim": self.latent_dim, "resolution": self.resolution, "width": self.width,
                "max_width": self.max_width}


def encoder_path(lg: LoadedGenerator) -> Path:
    """RUN/encoder.pt for a run; beside the checkpoint for a checkpoint outside a run."""
    return (lg.run_dir or lg.checkpoint.parent) / ENCODER_FILE


TEMPLATE_FILE = "face_template.json"
TEMPLATE_IMAGES = 64  # training crops whose mean landmarks make the template
# MTCNN's five landmarks (eyes, nose, mouth corners; facegan.align's order) averaged over the
# first 64 of CelebA's aligned images, as fractions of their 178 x 218 frame: where a face sits
# in CelebA's framing, for a run whose own training images are not at hand.
CELEBA_LANDMARKS = ((0.392, 0.514), (0.611, 0.513), (0.501, 0.625), (0.405, 0.707), (0.600, 0.705))


def face_template_path(lg: LoadedGenerator) -> Path:
    """RUN/face_template.json for a run; beside the checkpoint for a checkpoint outside a run."""
    return (lg.run_dir or lg.checkpoint.parent) / TEMPLATE_FILE


def read_face_template(lg: LoadedGenerator) -> np.ndarray | None:
    """The run's kept template, float (5, 2) in pixels of its R x R training crops, or None
    when there is none for this resolution (or the file is damaged). Only reads."""
    path = face_template_path(lg)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("resolution") != lg.config.data.resolution:
            return None
        return np.asarray(saved["landmarks"], dtype=np.float64).reshape(5, 2)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged: computed again by the caller


def template_images(lg: LoadedGenerator) -> Any:
    """The first :data:`TEMPLATE_IMAGES` training crops of the run, uint8 (N, 3, R, R) (unflipped),
    whose mean landmarks make its face template. UserError when the run's training data cannot
    be read on this machine."""
    from dataclasses import replace

    from .data import load_dataset

    cfg = replace(lg.config.data, max_images=TEMPLATE_IMAGES, hflip=False)
    try:
        return load_dataset(cfg, progress=False).images
    except UserError as e:
        raise UserError(f"cannot build the face template from the run's training data ({e}); "
                        "use --no-align to take photos as they are") from None


def celeba_face_template(data_cfg: DataConfig) -> np.ndarray:
    """A stand-in template, float (5, 2) in pixels of the R x R crop: :data:`CELEBA_LANDMARKS`
    cut by the run's crop ('auto' taken as CelebA's face box) and scaled to R, for a run whose
    training images are not at hand (or show no face). Right for a run trained on CelebA; for
    other data the run's own template (:func:`face_aligner`) frames photos better."""
    crop = "celeba" if data_cfg.crop == "auto" else data_cfg.crop
    w, h = CELEBA_SIZE
    left, top, right, bottom = crop_box(crop, w, h)
    r = float(data_cfg.resolution)
    pts = np.asarray(CELEBA_LANDMARKS, dtype=np.float64) * (w, h)
    return (pts - (left, top)) * (r / (right - left), r / (bottom - top))


def face_aligner(lg: LoadedGenerator, *, progress: bool = True) -> Callable[[Image.Image], Image.Image]:
    """A PIL -> PIL aligner for ``align=``: each photo's largest face (MTCNN landmarks,
    :mod:`facegan.align`) warped by a similarity onto the run's template, at the run's
    resolution, so it is framed as the training crops are.

    The template is the mean of the landmarks found in the first :data:`TEMPLATE_IMAGES`
    training crops, computed once and kept in ``RUN/face_template.json`` (beside the checkpoint
    outside a run); computing it needs the training data (``data.path`` of the run).
    """
    from .align import align_faces, template_from_images

    path = face_template_path(lg)
    res = lg.config.data.resolution
    template = read_face_template(lg)
    if template is None:
        if progress:
            print(f"face template: landmarks of {TEMPLATE_IMAGES} training images of "
                  f"{lg.config.data.path}, once (kept in {path})", file=sys.stderr)
        images = template_images(lg)
        template = template_from_images(images)
        with reporting_write_errors(path):
            atomic_write_text(path, json.dumps({"resolution": res, "images": len(images),
                                                "landmarks": np.round(template, 3).tolist()}) + "\n")
    return lambda im: align_faces(im, template, res)[0]


def generator_fingerprint(generator: nn.Module) -> str:
    """A short hash of the generator's weights (which of them the encoder was trained for)."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_encoder(generator: nn.Module, labels: LabelSpec, *, steps: int = DEFAULT_ENCODER_STEPS,
                  batch_size: int = 32, lr: float = 1e-3, image_weight: float = 0.0,
                  width: int = 32, seed: int = 0, progress: bool = True) -> Encoder:
    """Train an :class:`Encoder` on the generator's own samples for ``steps`` steps.

    Each step draws ``batch_size`` latents z ~ N(0, I) and labels ``labels.draw`` (their
    training rates), renders ``x = G(z, c)`` quantised to uint8 as a photo is (through
    :func:`facegan.sampling.generate`), and lowers ``MSE(E(x), z) + image_weight *
    MSE(G(E(x), c), x)``: the first teaches where a face's latent is, the second what matters
    for its image. The image term runs the generator forward and backward once more per step
    (about twice the time on a CPU), so it is off by default: the optimisation that follows
    the guess lowers the image error anyway. Adam with a cosine decay, gradients clipped;
    seeded, and the global random state is left as it was. Only the encoder's weights get
    gradients (the generator's ``.grad`` stay untouched). :func:`encoder_training` is the same
    one step at a time.
    """
    work = encoder_training(generator, labels, steps=steps, batch_size=batch_size, lr=lr,
                            image_weight=image_weight, width=width, seed=seed)
    bar = Progress(steps, "encoder", "steps", count="step {done}/{total}", rate_unit="steps/s",
                   bar_unit="step") if progress else None

    def each(loss: float) -> None:
        if bar is not None:
            bar.set_fields(loss=f"{loss:.4f}")
            bar.update()

    try:
        return run_steps(work, each)
    finally:
        if bar is not None:
            bar.close()


def encoder_training(generator: nn.Module, labels: LabelSpec, *, steps: int = DEFAULT_ENCODER_STEPS,
                     batch_size: int = 32, lr: float = 1e-3, image_weight: float = 0.0,
                     width: int = 32, seed: int = 0) -> Generator[float, None, Encoder]:
    """:func:`train_encoder` as a Python generator: each ``next()`` does one training step and
    yields its loss; the return value (``StopIteration.value``, or ``run_steps``) is the
    trained encoder in eval mode. For a caller that interleaves the training with other work
    (the web page's worker serves images between steps)."""
    if steps < 1:
        raise UserError(f"--encoder-steps must be at least 1, got {steps}")
    device = next(generator.parameters()).device
    d, r = int(generator.latent_dim), int(generator.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = Encoder(d, r, width).to(device)
    params = list(enc.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    gen = torch.Generator().manual_seed(seed)
    enc.train()
    for i in range(steps):
        z = torch.randn(batch_size, d, generator=gen)
        c = labels.draw(batch_size, seed=seed * 1_000_003 + i)
        x = to_float(generate(generator, z, c, batch_size=batch_size).clone()).to(device)
        z, c = z.to(device), c.to(device)
        guess = enc(x)
        loss = F.mse_loss(guess, z)
        if image_weight > 0:
            loss = loss + image_weight * F.mse_loss(generator(guess, c), x)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        nn.utils.clip_grad_norm_(params, 10.0)  # a bad first steps' spike must not blow it up
        opt.step()
        sched.step()
        yield float(loss.detach())
    return enc.eval()


def run_steps(work: Generator[Any, None, Any], each: Callable[[Any], None] | None = None) -> Any:
    """Run a step-at-a-time Python generator (:func:`encoder_training`,
    :func:`latent_optimisation`, :func:`projection_steps`) to its end: its return value;
    ``each`` is called with every value it yields."""
    while True:
        try:
            item = next(work)
        except StopIteration as stop:
            return stop.value
        if each is not None:
            each(item)


def encoder_settings(lg: LoadedGenerator, *, steps: int = DEFAULT_ENCODER_STEPS, batch_size: int = 32,
                     image_weight: float = 0.0, width: int = 32, seed: int = 0) -> dict[str, Any]:
    """What a cached encoder must have been trained for to be used for ``lg``: the encoder's
    config, the training settings, the checkpoint step and the generator's fingerprint."""
    g = lg.generator
    training = {"steps": int(steps), "batch_size": int(batch_size), "image_weight": float(image_weight),
                "seed": int(seed)}
    return {"config": {"latent_dim": int(g.latent_dim), "resolution": int(g.resolution),
                       "width": int(width), "max_width": 256},
            "training": training, "checkpoint_step": int(lg.step), "generator": generator_fingerprint(g)}


def cached_encoder(lg: LoadedGenerator, **settings: Any) -> tuple[Encoder | None, str]:
    """(the encoder cached in :func:`encoder_path` when it was trained for ``lg`` with these
    :func:`encoder_settings`, ''), or (None, why not). Only reads: nothing is trained or written
    (for a caller that must leave the run folder alone, such as ``facegan serve``)."""
    path = encoder_path(lg)
    if not path.is_file():
        return None, "none cached yet"
    return _read_encoder(path, encoder_settings(lg, **settings), next(lg.generator.parameters()).device)


def encoder_for(lg: LoadedGenerator, *, steps: int = DEFAULT_ENCODER_STEPS, batch_size: int = 32,
                image_weight: float = 0.0, width: int = 32, seed: int = 0, retrain: bool = False,
                progress: bool = True) -> tuple[Encoder, bool]:
    """The run's encoder and whether it was trained by this call (else read from the cache).

    The cache, :func:`encoder_path` (``RUN/encoder.pt``), holds only tensors and plain values
    (read with ``torch.load(weights_only=True)``): the state dict, the encoder's config, the
    training settings, the checkpoint step and a fingerprint of the generator's weights (so
    EMA and raw weights, or another checkpoint, count as different). It is trained again (and
    replaced, atomically) when any of those differ or the file is unreadable, saying why; a
    folder that takes no files only loses the cache (a warning). :func:`cached_encoder` only
    reads it.
    """
    path = encoder_path(lg)
    settings = {"steps": steps, "batch_size": batch_size, "image_weight": image_weight,
                "width": width, "seed": seed}
    why = "asked to"
    if not retrain:
        enc, why = cached_encoder(lg, **settings)
        if enc is not None:
            if progress:
                print(f"encoder: read {path} (trained for step {lg.step})", file=sys.stderr, flush=True)
            return enc, False
    if progress:
        print(f"encoder: training it for step {lg.step} on the generator's samples ({steps} steps "
              f"of {batch_size}; {why}); cached in {path}", file=sys.stderr, flush=True)
    enc = train_encoder(lg.generator, lg.labels, steps=steps, batch_size=batch_size,
                        image_weight=image_weight, width=width, seed=seed, progress=progress)
    state = {"format": ENCODER_FORMAT, "version": ENCODER_VERSION, **encoder_settings(lg, **settings),
             "state": {k: v.detach().cpu() for k, v in enc.state_dict().items()}}
    try:
        with reporting_write_errors(path):
            atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (UserError, OSError) as e:
        warnings.warn(f"facegan: could not cache the encoder in {path} ({e}); it is trained again "
                      "next time", stacklevel=2)
    return enc, True


def _read_encoder(path: Path, want: dict[str, Any], device: torch.device) -> tuple[Encoder | None, str]:
    """(the cached encoder, '') when it matches ``want`` exactly, else (None, why not)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if (not isinstance(ckpt, dict) or ckpt.get("format") != ENCODER_FORMAT
                or ckpt.get("version") != ENCODER_VERSION):
            return None, f"{path.name} is not a facegan encoder of this version"
        if ckpt.get("checkpoint_step") != want["checkpoint_step"]:
            return None, f"the cached one is for step {ckpt.get('checkpoint_step')}"
        for key, what in (("generator", "other generator weights"), ("config", "another shape"),
                          ("training", "other training settings")):
            if ckpt.get(key) != want[key]:
                return None, f"the cached one is for {what}"
        cfg = ckpt["config"]
        enc = Encoder(int(cfg["latent_dim"]), int(cfg["resolution"]), int(cfg["width"]),
                      int(cfg["max_width"]))
        enc.load_state_dict(ckpt["state"])
    except Exception:  # untrusted or damaged file: train again and replace it
        return None, f"{path.name} is unreadable"
    return enc.to(device).eval(), ""


# ---- optimising a latent -------------------------------------------------------------------------

def prior_penalty(z: torch.Tensor, width: float = DEFAULT_PRIOR_WIDTH) -> torch.Tensor:
    """Per row of z (N, D): ``relu(| |z|^2 / D - 1 | - width * sqrt(2 / D))^2``.

    Latents z ~ N(0, I_D) lie on a thin shell: ``|z|^2 / D`` has mean 1 and standard deviation
    ``sqrt(2 / D)`` (0.125 for D = 128). The generator was trained only there; an unconstrained
    optimisation can leave the shell and find a latent that matches the photo's pixels with an
    image the generator never learnt (over-fitting the photo), which then edits and morphs
    badly. The penalty is zero within ``width`` standard deviations of the shell (default 2:
    where 95% of the training latents were), so it does not pull a plausible latent anywhere,
    and grows quadratically outside; the direction of ``z`` is free."""
    d = z.shape[1]
    off = (z.square().mean(1) - 1.0).abs() - width * math.sqrt(2.0 / d)
    return F.relu(off).square()


def into_band(z: torch.Tensor, width: float = DEFAULT_PRIOR_WIDTH) -> torch.Tensor:
    """Latents z float (N, D) with each row outside :func:`prior_penalty`'s band (``|z|^2 / D``
    more than ``width`` standard deviations ``sqrt(2 / D)`` from 1) scaled along itself onto
    the band's nearer edge; rows inside it are returned as they are. The direction of every
    row is kept."""
    d = z.shape[1]
    half = width * math.sqrt(2.0 / d)
    r = z.square().mean(1, keepdim=True)
    want = r.clamp(max(1.0 - half, 1e-6), 1.0 + half)
    return z * torch.sqrt(want / r.clamp_min(1e-12))


def optimise_latent(generator: nn.Module, target: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, *,
                    steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                    features: FeatureNet | None = None,
                    feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                    prior_width: float = DEFAULT_PRIOR_WIDTH,
                    progress: Progress | None = None) -> torch.Tensor:
    """Optimise latents from ``z0`` float (N, D) so that ``G(z, c)`` matches ``target`` float
    (N, 3, R, R) in [-1, 1]; c float (N, K). Returns float (N, D) on the CPU: per image, the
    latent of the lowest loss seen.

    With a prior, each row of ``z0`` outside its band is first scaled onto it (:func:`into_band`).
    Loss per image: pixel MSE + ``feature_weight`` * :meth:`FeatureNet.distance` (when
    ``features``) + ``prior_weight`` * :func:`prior_penalty` (zero within ``prior_width``
    standard deviations of the N(0, I) shell). Adam, the learning rate ramped
    up over the first 5% of the steps and down (cosine) over the last 25%, as StyleGAN2's
    projector does. Rows are independent (each image's loss depends only on its own latent),
    so a batch gives what one image at a time gives. Only z gets gradients. ``progress``: a
    :class:`~facegan.utils.Progress`, counted on by one per step. :func:`latent_optimisation`
    is the same one step at a time.
    """
    def each(loss: float) -> None:
        if progress is not None:
            progress.set_fields(loss=f"{loss:.4f}")
            progress.update()

    return run_steps(latent_optimisation(generator, target, z0, c, steps=steps, lr=lr, features=features,
                                         feature_weight=feature_weight, prior_weight=prior_weight,
                                         prior_width=prior_width), each)


def latent_optimisation(generator: nn.Module, target: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, *,
                        steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                        features: FeatureNet | None = None,
                        feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                        prior_width: float = DEFAULT_PRIOR_WIDTH) -> Generator[float, None, torch.Tensor]:
    """:func:`optimise_latent` as a Python generator: each ``next()`` does one Adam step and
    yields the mean loss; the return value is the best latents float (N, D) on the CPU."""
    device = next(generator.parameters()).device
    target, c = target.to(device).float(), c.to(device)
    z = z0.detach().clone().float().to(device)
    if prior_weight > 0:
        # Start inside the prior's band: the encoder's guess, a regression to the mean, has
        # |z|^2 / D near 0.4, and a start outside the wall would spend Adam's first steps
        # (which normalise the step size) climbing back over it instead of fitting the photo.
        z = into_band(z, prior_width)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
    tfeat = None
    if features is not None and feature_weight > 0:
        with torch.no_grad():
            tfeat = [t.detach() for t in features(target, c)]
    best = z.detach().clone()
    best_loss = torch.full((z.shape[0],), math.inf, device=device)
    for i in range(steps + 1):  # the last pass only scores the final latent
        x = generator(z, c)
        loss = (x - target).square().flatten(1).mean(1)
        if tfeat is not None:
            loss = loss + feature_weight * features.distance(features(x, c), tfeat)
        if prior_weight > 0:
            loss = loss + prior_weight * prior_penalty(z, prior_width)
        with torch.no_grad():
            better = loss.detach() < best_loss
            best[better] = z.detach()[better]
            best_loss = torch.where(better, loss.detach(), best_loss)
        if i == steps:
            break
        t = i / steps
        ramp = min(1.0, (1.0 - t) / 0.25)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        for group in opt.param_groups:
            group["lr"] = lr * ramp * min(1.0, (i + 1) / max(1.0, 0.05 * steps))
        (grad,) = torch.autograd.grad(loss.sum(), z)
        z.grad = grad
        opt.step()
        yield float(loss.detach().mean())
    return best.cpu()


# ---- projecting photos ---------------------------------------------------------------------------

@dataclass
class Projection:
    """One projected photo.

    latent: float32 (latent_dim,). labels: float (K,) the labels it was projected with (K = 0
    unconditional). photo: uint8 (3, R, R), the whole photo fitted into R x R; target: uint8
    (3, R, R), the preprocessed crop; image: uint8 (3, R, R), the projection ``G(latent,
    labels)``; guess: uint8 (3, R, R), the encoder's guess before optimisation. psnr (dB) and
    ssim compare image with target; feature_distance: :meth:`FeatureNet.distance` of the
    two (None with ``features='none'``). info: the rest of NAME.json (steps, seconds, crop...).
    """

    name: str
    latent: torch.Tensor
    labels: torch.Tensor
    photo: torch.Tensor
    target: torch.Tensor
    image: torch.Tensor
    guess: torch.Tensor
    psnr: float
    ssim: float
    feature_distance: float | None
    guess_psnr: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """What ``NAME.json`` holds."""
        return {"name": self.name, "psnr": json_number(self.psnr), "ssim": self.ssim,
                "feature_distance": self.feature_distance, "guess_psnr": json_number(self.guess_psnr),
                "labels": [float(v) for v in self.labels.tolist()], **self.info}


def json_number(v: float) -> float | None:
    """``v``, or None for inf / nan (JSON has neither; PSNR of identical images is inf)."""
    return v if math.isfinite(v) else None


def project(generator: LoadedGenerator | str | os.PathLike,
            photos: Sequence[str | os.PathLike | Image.Image], *, cls: str | None = None,
            attr: str | None = None, steps: int = DEFAULT_STEPS, features: str = DEFAULT_FEATURES,
            encoder_steps: int = DEFAULT_ENCODER_STEPS, encoder_image_weight: float = 0.0,
            seed: int = 0, lr: float = DEFAULT_LR,
            feature_weight: float = DEFAULT_FEATURE_WEIGHT, prior_weight: float = DEFAULT_PRIOR_WEIGHT,
            crop: str | None = None, align: Callable[[Image.Image], Image.Image] | None = None,
            device: str | torch.device = "auto", retrain_encoder: bool = False,
            progress: bool = True) -> list[Projection]:
    """Project ``photos`` (image files or PIL images) into the latent space of ``generator`` (a
    :class:`~facegan.sampling.LoadedGenerator`, or a run folder / checkpoint loaded with EMA
    weights on ``device``): one :class:`Projection` per photo, in order.

    cls / attr: a conditional run's labels (``--class`` / ``--attr`` grammar, required for a
    conditional run; attributes not given are drawn with ``seed``). steps: optimisation steps
    per photo (0: the encoder's guess alone). features: the feature loss (:func:`load_features`):
    'critic' (the run's critic's stage activations), 'inception' (the FID Inception's early
    blocks), 'classifier' (the attribute classifier's stages; needs the run's labelled data)
    or 'none'. encoder_steps: training steps of the run's
    encoder when it is not cached (:func:`encoder_for`; ``encoder_image_weight``: its image
    loss, :func:`train_encoder`). crop: override the run's crop (see :func:`photo_crop`).
    align: a PIL -> PIL face aligner applied to each photo first (None: the photo as it is;
    see :func:`load_photo`).
    Every photo is read and checked before any work. progress: lines (or a bar on a terminal)
    on stderr for the encoder's training and the optimisation.
    """
    if features not in FEATURES:
        raise UserError(f"--features must be one of {', '.join(FEATURES)}, got '{features}'")
    if steps < 0:
        raise UserError(f"--steps must be at least 0, got {steps}")
    if not photos:
        raise UserError("no photos to project; give one or more image files")
    lg = generator if isinstance(generator, LoadedGenerator) else load_generator(generator, device=device)
    spec, g = lg.labels, lg.generator
    if spec.conditional and not (cls or attr):
        what, how = (("classes", "--class NAME") if spec.kind == "class" else
                     ("attributes", f"--attr {spec.names[0]}=0|1,..."))
        raise UserError(f"this model is conditional ({what}: {', '.join(spec.names)}); say which "
                        f"labels the photos have with {how}")
    c1 = parse_condition(spec, cls, attr).labels(spec, 1, seed=seed)  # (1, K)
    loaded = [load_photo(p, lg.config.data, crop=crop, align=align, name=n)
              for p, n in zip(photos, output_names(photos))]
    feats = load_features(lg, features, progress=progress)
    t0 = time.perf_counter()
    enc, trained = encoder_for(lg, steps=encoder_steps, image_weight=encoder_image_weight, seed=seed,
                               retrain=retrain_encoder, progress=progress)
    common = {"checkpoint_step": lg.step, "features": features, "steps": steps,
              "encoder": {"steps": encoder_steps, "trained_now": trained,
                          "seconds": round(time.perf_counter() - t0, 2)},
              "seed": seed, "label_names": list(spec.names)}
    bar = Progress(len(loaded) * steps, "projection", "steps", count="step {done}/{total}",
                   rate_unit="steps/s", bar_unit="step") if progress and steps else None
    out = []
    try:
        for ph in loaded:
            out.append(_project_one(ph, g, enc, c1, steps=steps, lr=lr, feats=feats,
                                    feature_weight=feature_weight, prior_weight=prior_weight,
                                    bar=bar, info=common))
    finally:
        if bar is not None:
            bar.close()
    return out


def _project_one(ph: Photo, g: nn.Module, enc: Encoder, c1: torch.Tensor, *, steps: int, lr: float,
                 feats: FeatureNet | None, feature_weight: float, prior_weight: float,
                 bar: Progress | None, info: dict[str, Any]) -> Projection:
    """One photo: the encoder's guess, the optimisation, the images and the scores."""
    def each(loss: float) -> None:
        if bar is not None:
            bar.set_fields(loss=f"{loss:.4f}")
            bar.update()

    return run_steps(projection_steps(ph, g, enc, c1, steps=steps, lr=lr, feats=feats,
                                      feature_weight=feature_weight, prior_weight=prior_weight,
                                      info=info), each)


def projection_steps(ph: Photo, g: nn.Module, enc: Encoder, c1: torch.Tensor, *,
                     steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                     feats: FeatureNet | None = None, feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                     prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                     info: dict[str, Any] | None = None) -> Generator[float, None, Projection]:
    """Project one :class:`Photo` (:func:`load_photo`) with a ready encoder ``enc`` and labels
    ``c1`` float (1, K), one optimisation step per ``next()`` (each yields the loss; the
    encoder's guess comes with the first, the final image and scores with the last); the
    return value is the :class:`Projection`. What :func:`project` does for each photo, for a
    caller that interleaves it with other work (the web page's worker). ``info``: extra
    entries for :attr:`Projection.info`."""
    device = next(g.parameters()).device
    r = int(g.resolution)
    target = to_float(ph.target)[None]
    t1 = time.perf_counter()
    with torch.no_grad():
        z0 = enc(target.to(device)).cpu()
    guess = generate(g, z0, c1)[0]
    t2 = time.perf_counter()
    z = z0
    if steps:
        z = yield from latent_optimisation(g, target, z0, c1, steps=steps, lr=lr, features=feats,
                                           feature_weight=feature_weight, prior_weight=prior_weight)
    t3 = time.perf_counter()
    image = generate(g, z, c1)[0]
    fd = None
    if feats is not None:
        with torch.no_grad():
            c = c1.to(device)
            fd = float(feats.distance(feats(to_float(image)[None].to(device), c),
                                               feats(target.to(device), c))[0])
    info = {"photo": Path(ph.source).name if ph.source else None, "crop": ph.crop, "resolution": r,
            **(info or {}), "seconds": {"encoder_guess": round(t2 - t1, 3),
                                        "optimisation": round(t3 - t2, 3)}}
    return Projection(ph.name, z[0].float(), c1[0].float(), fit_photo(ph.image, r), ph.target, image,
                      guess, psnr(image, ph.target), ssim(image, ph.target), fd,
                      psnr(guess, ph.target), info)


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


def save_projection(p: Projection, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``NAME.latent.npy`` (float32 (latent_dim,)), ``NAME.crop.png`` (the preprocessed
    crop alone, R x R: the photo whose detail edits and morphs keep, :func:`latent_photo`),
    ``NAME.png`` (photo fitted to R, the crop, the projection, side by side) and ``NAME.json``
    (:meth:`Projection.to_json`), each atomically, the json last. Returns the four paths."""
    out = Path(out_dir)
    crop = save_png(Image.fromarray(p.target.permute(1, 2, 0).numpy()), out / f"{p.name}.crop.png")
    lat = out / f"{p.name}.latent.npy"
    arr = p.latent.detach().cpu().numpy().astype(np.float32)

    def write_npy(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    with reporting_write_errors(lat):
        atomic_write(lat, write_npy)
    png = save_png(make_grid(torch.stack([p.photo, p.target, p.image]), nrow=3), out / f"{p.name}.png")
    js = out / f"{p.name}.json"
    with reporting_write_errors(js):
        atomic_write_text(js, json.dumps(p.to_json(), indent=1) + "\n")
    return [lat, crop, png, js]


# ---- using a projected latent ----------------------------------------------------------------------

def load_latent(path: str | os.PathLike, latent_dim: int, option: str = "--latent") -> torch.Tensor:
    """A latent file (``NAME.latent.npy`` from :func:`save_projection`) -> float32 (latent_dim,).

    UserError (one line, naming the file and ``option``) for a missing or unreadable file, a
    pickled array, a shape other than (latent_dim,), a dtype other than floating point, or a
    value that is not finite."""
    p = Path(path)
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
    there is none (edits then show the projection alone). UserError (one line) for a file
    there that is not an R x R image."""
    p = Path(path)
    crop = p.with_name(f"{_stem(p)}.crop.png")
    if not crop.is_file():
        return None
    label = f"'{crop}' (the photo of {option} '{p}')"
    img, _ = read_photo(crop, label=label, formats=("PNG",))
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
    p = Path(path)
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


__all__ = [
    "CELEBA_LANDMARKS",
    "DEFAULT_ENCODER_STEPS",
    "DEFAULT_FEATURES",
    "DEFAULT_PRIOR_WEIGHT",
    "DEFAULT_PRIOR_WIDTH",
    "DEFAULT_STEPS",
    "ENCODER_FILE",
    "FEATURES",
    "MAX_PHOTO_BYTES",
    "MAX_PHOTO_PIXELS",
    "ClassifierFeatures",
    "CriticFeatures",
    "Encoder",
    "FeatureNet",
    "InceptionFeatures",
    "Photo",
    "Projection",
    "cached_encoder",
    "celeba_face_template",
    "decode_photo",
    "edit_latent_images",
    "into_band",
    "keep_detail",
    "encoder_for",
    "encoder_path",
    "encoder_settings",
    "encoder_training",
    "face_aligner",
    "face_template_path",
    "fit_photo",
    "latent_labels",
    "latent_photo",
    "latent_optimisation",
    "load_critic",
    "load_features",
    "load_latent",
    "load_photo",
    "morph_latent_images",
    "optimise_latent",
    "output_names",
    "photo_detail",
    "photo_crop",
    "preprocess",
    "prior_penalty",
    "project",
    "projection_steps",
    "psnr",
    "read_face_template",
    "read_photo",
    "run_steps",
    "save_projection",
    "sniff_photo",
    "ssim",
    "template_images",
    "train_encoder",
]
