"""Using a trained generator: load from a checkpoint, sample, save grids, interpolate ('morph').

Every generator runs through :func:`generate`, ``G(z, c)`` in batches, with labels c float
(N, K), K = 0 for a model without labels; what c means is the generator's
:class:`~facegan.labels.LabelSpec` (``LoadedGenerator.labels``), which draws, one-hots and
lays out labels (``draw``, ``one_hot``, ``grid_rows``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .checkpoint import load_checkpoint, run_dir_of
from .config import Config
from .errors import UserError
from .files import atomic_write, reporting_write_errors
from .labels import UNCONDITIONAL, LabelSpec, parse_condition
from .models import NetSpec, build_networks
from .runtime import resolve_device


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, and what its inputs mean.

    generator: eval mode; ``forward(z float (N, latent_dim), c float (N, K))`` -> float
        (N, 3, R, R) in [-1, 1].
    labels: what the K columns of ``c`` mean (:data:`facegan.labels.UNCONDITIONAL`, K = 0,
        for a model trained without labels).
    """

    generator: nn.Module
    config: Config
    step: int
    run_dir: Path | None
    checkpoint: Path
    has_ema: bool
    labels: LabelSpec = UNCONDITIONAL


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = True) -> LoadedGenerator:
    """Rebuild the generator from a run folder or checkpoint alone (the config travels inside).

    ``device``: 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device (UserError for one this
    machine lacks). With ``ema`` the exponential-moving-average weights are used when the run
    kept them.
    """
    device = resolve_device(device)
    ckpt = load_checkpoint(path)
    cfg: Config = ckpt["config"]
    spec = LabelSpec.from_dict(ckpt.get("labels"))
    g, _ = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, int(ckpt.get("label_dim", 0))))
    state = ckpt.get("G_ema") if ema and ckpt.get("G_ema") is not None else ckpt.get("G")
    if state is None:
        raise UserError(f"'{ckpt['path']}' holds no generator weights; the file is damaged")
    try:
        g.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"'{ckpt['path']}': weights do not match its config ({str(e).splitlines()[0][:120]})") from None
    g.to(device).eval()
    return LoadedGenerator(g, cfg, int(ckpt.get("step", 0)), run_dir_of(ckpt["path"]), ckpt["path"],
                           ckpt.get("G_ema") is not None, spec)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in 0..255, rounded exactly as saving to PNG does."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


TRUNCATION_ERROR = "--truncation must be > 0, e.g. 0.7; omit it for no truncation"


def check_truncation(truncation: float | None) -> float | None:
    """``truncation`` as a float, or None (no truncation); UserError unless it is a finite
    number > 0."""
    if truncation is None:
        return None
    try:
        t = float(truncation)
    except (TypeError, ValueError):
        raise UserError(f"{TRUNCATION_ERROR} (got {truncation!r})") from None
    if not (math.isfinite(t) and t > 0):
        raise UserError(f"{TRUNCATION_ERROR} (got {t:g})")
    return t


def latents(n: int, dim: int, seed: int, device: str | torch.device = "cpu",
            truncation: float | None = None) -> torch.Tensor:
    """Latents float (n, dim), the same for a seed whatever the device.

    ``truncation=None``: standard normal. ``truncation=T`` (> 0): the truncation trick (Brock
    et al. 2019): each coordinate drawn from N(0, 1) restricted to [-T, T]
    (``torch.nn.init.trunc_normal_`` with the same seeded generator: inverse-CDF sampling of the
    restricted normal); less variety, more typical images (T = 1.0 mild, 0.5 strong). Labels are
    drawn separately and do not change.
    """
    t = check_truncation(truncation)
    g = torch.Generator().manual_seed(seed)
    if t is None:
        return torch.randn(n, dim, generator=g).to(device)
    z = torch.empty(n, dim)
    torch.nn.init.trunc_normal_(z, mean=0.0, std=1.0, a=-t, b=t, generator=g)
    return z.to(device)


@torch.inference_mode()
def generate(generator: nn.Module, z: torch.Tensor, c: torch.Tensor, *, batch_size: int = 256,
             uint8: bool = True) -> torch.Tensor:
    """Run ``generator`` on latents ``z`` float (N, latent_dim) and labels ``c`` float (N, K)
    (K = 0 without labels), ``batch_size`` rows per pass, on the generator's device.

    Returns, on the CPU, uint8 (N, 3, R, R) in 0..255 rounded as saving to PNG does, or with
    ``uint8=False`` float (N, 3, R, R) in [-1, 1]. The one loop every sampler uses: grids,
    directions, evaluation, the web page and the trainer's progress images.
    """
    if z.shape[0] != c.shape[0]:
        raise ValueError(f"generate: {z.shape[0]} latents but {c.shape[0]} label rows")
    device = next(generator.parameters()).device
    out = []
    for i in range(0, z.shape[0], batch_size):
        img = generator(z[i:i + batch_size].to(device), c[i:i + batch_size].to(device))
        out.append(to_uint8(img).cpu() if uint8 else img.float().cpu())
    if out:
        return torch.cat(out)
    r = generator.resolution
    return torch.empty(0, 3, r, r, dtype=torch.uint8 if uint8 else torch.float32)


@torch.no_grad()
def standing_stats(generator: nn.Module, z: torch.Tensor, c: torch.Tensor) -> None:
    """Recompute ``generator``'s batch-norm running statistics from its own batches: BigGAN's
    standing statistics (Brock et al. 2019), for an EMA generator, whose averaged weights make
    other activations than the live generator it would otherwise take its statistics from.

    z: float (B, N, latent_dim), c: float (B, N, K): B batches of N, each run in train mode;
    the statistics become the plain mean over the B batches (momentum None), and the
    generator returns to its mode. Nothing happens without batch norm.
    """
    bns = [m for m in generator.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    was_training = generator.training
    momenta = [m.momentum for m in bns]
    device = next(generator.parameters()).device
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: every batch counts the same
        generator.train()
        for zb, cb in zip(z, c):
            generator(zb.to(device), cb.to(device))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        generator.train(was_training)


STANDING_SEED = 4  # the standing statistics' latents: their own stream (a run adds its seed)


def standing_latents(n: int, batch_size: int, dim: int, seed: int = STANDING_SEED) -> torch.Tensor:
    """The latents of standing statistics over ``n`` samples: float (B, batch_size, dim), B =
    ceil(n / batch_size) batches, from their own seeded stream (a training run draws them with
    ``STANDING_SEED + train.seed``, so ``facegan evaluate --standing-stats`` at seed 0 draws
    what a run of seed 0 did)."""
    draw = torch.Generator().manual_seed(seed)
    return torch.randn(-(-n // batch_size), batch_size, dim, generator=draw)


def recompute_standing_stats(generator: nn.Module, n: int, *, batch_size: int,
                             labels: LabelSpec = UNCONDITIONAL, seed: int = STANDING_SEED) -> None:
    """:func:`standing_stats` over ``n`` samples in batches of ``batch_size`` (a run's batch:
    batch statistics depend on it), labels drawn from ``labels`` (``labels.draw``)."""
    z = standing_latents(n, batch_size, generator.latent_dim, seed)
    c = labels.draw(z.shape[0] * batch_size, seed).view(z.shape[0], batch_size, labels.dim)
    standing_stats(generator, z, c)


def generate_images(generator: nn.Module, n: int, *, seed: int = 0, batch_size: int = 256,
                    labels: LabelSpec | torch.Tensor = UNCONDITIONAL,
                    truncation: float | None = None) -> torch.Tensor:
    """Sample ``n`` images: uint8 (n, 3, R, R) on the CPU. Deterministic for a seed.

    The latents are ``latents(n, latent_dim, seed, truncation=truncation)``. ``labels``: a
    :class:`LabelSpec` (the labels are then ``labels.draw(n, seed)``, from its training data's
    frequencies; width 0 for :data:`~facegan.labels.UNCONDITIONAL`), or the labels
    themselves, float (n, K).
    """
    z = latents(n, generator.latent_dim, seed, truncation=truncation)
    c = labels.draw(n, seed) if isinstance(labels, LabelSpec) else labels
    return generate(generator, z, c, batch_size=batch_size)


def generate_by_label_rows(generator: nn.Module, rows: torch.Tensor, n: int, *, seed: int = 0,
                           batch_size: int = 256, truncation: float | None = None) -> torch.Tensor:
    """A by-label grid: rows float (L, K) labels (e.g. ``LabelSpec.grid_rows()``) -> uint8
    (L * n, 3, R, R), row after row.

    Column j uses the same latent in every row, the j-th of ``latents(n, ..., seed)``, so row
    l equals ``generate_images(generator, n, seed=seed, labels=rows[l] repeated)`` (with the
    same ``truncation``): the rows differ only through their label.
    """
    z = latents(n, generator.latent_dim, seed, truncation=truncation)
    # One call per row, batched within the row: each row is exactly what generate_images
    # draws for that label.
    out = [generate(generator, z, row[None].expand(n, -1), batch_size=batch_size) for row in rows]
    if out:
        return torch.cat(out)
    return generate(generator, z[:0], rows[:0], batch_size=batch_size)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """uint8 (N, 3, H, W) -> one PIL image, ``nrow`` images per row (default: a near square)."""
    from torchvision.utils import make_grid as tv_grid

    n = images.shape[0]
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    grid = tv_grid(images, nrow=nrow, padding=padding, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).contiguous().numpy())


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def image_format(path: str | os.PathLike) -> str:
    """The Pillow format for an output file name ('PNG' or 'JPEG'); UserError for other names."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise UserError(f"cannot write '{path}': facegan writes .png and .jpg images; "
                        "name the file e.g. grid.png or grid.jpg")
    return IMAGE_FORMATS[suffix]


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save atomically as PNG; a failed write (a full disk) is a one-line
    :class:`~facegan.files.WriteFailed`, and a file already at ``path`` is kept."""
    with reporting_write_errors(path):
        return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_image(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save atomically as PNG or JPEG (quality 95), chosen by the file name's extension."""
    fmt = image_format(path)
    options = {"quality": 95} if fmt == "JPEG" else {}
    with reporting_write_errors(path):
        return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **options))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save uint8 (N, 3, H, W) images as one grid image (atomically): PNG, or JPEG for .jpg."""
    return save_image(make_grid(images, nrow), path)


def save_individual(images: torch.Tensor, folder: str | os.PathLike, prefix: str = "sample",
                    seed: int | None = None) -> list[Path]:
    """Save uint8 (N, 3, H, W) images as one PNG each in ``folder``: ``seed{SEED}_{i:05d}.png``
    with ``seed`` (the seed that drew them), so calls with different seeds into one folder never
    overwrite each other's images and a call with the same seed rewrites the same images;
    without it, ``{prefix}_{i:05d}.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"seed{seed}" if seed is not None else prefix
    paths = []
    for i, im in enumerate(images):
        paths.append(save_png(Image.fromarray(im.permute(1, 2, 0).numpy()), folder / f"{stem}_{i:05d}.png"))
    return paths


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (N, D) at fractions t (T,) -> (N, T, D).

    Gaussian latents concentrate on a sphere, so slerp keeps interpolants at a typical norm
    where linear interpolation passes through the low-norm middle.
    """
    a_n = a / a.norm(dim=-1, keepdim=True)
    b_n = b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None]  # (N, 1)
    so = torch.sin(omega)
    t = t[None, :]
    wa = torch.sin((1 - t) * omega) / so
    wb = torch.sin(t * omega) / so
    return wa[..., None] * a[:, None] + wb[..., None] * b[:, None]


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation (N, D), (N, D), (T,) -> (N, T, D)."""
    t = t[None, :, None]
    return (1 - t) * a[:, None] + t * b[:, None]


def morph(generator: nn.Module, *, labels: LabelSpec = UNCONDITIONAL, rows: int = 4,
          steps: int = 10, seed: int = 0, spherical: bool = False, chain: int = 1,
          truncation: float | None = None) -> torch.Tensor:
    """Interpolate between random latent points: uint8 (rows, chain * steps, 3, R, R).

    Each row walks through ``chain + 1`` random latents, ``steps`` frames per leg (the end
    point of one leg is the start of the next, so an animation loops smoothly when chained).
    A conditional generator keeps one label per row, ``labels.draw(rows, seed)``. With
    ``truncation`` the random latents are truncated (:func:`latents`); the frames between them
    stay inside [-T, T] with linear interpolation.
    """
    if steps < 2:
        raise UserError("--steps must be at least 2")
    keys = latents(rows * (chain + 1), generator.latent_dim, seed,
                   truncation=truncation).view(rows, chain + 1, -1)
    t = torch.linspace(0, 1, steps)
    interp = slerp if spherical else lerp
    legs = []
    for i in range(chain):
        leg = interp(keys[:, i], keys[:, i + 1], t)
        legs.append(leg if i == 0 else leg[:, 1:])  # a leg starts where the last one ended
    z = torch.cat(legs, dim=1)  # (rows, T, D)
    r, T, d = z.shape
    c = labels.draw(r, seed).repeat_interleave(T, dim=0)  # (r * T, K)
    imgs = generate(generator, z.reshape(r * T, d), c)
    return imgs.view(r, T, *imgs.shape[1:])


def morph_classes(generator: nn.Module, labels: LabelSpec, a: str, b: str, *, rows: int = 4,
                  steps: int = 10, seed: int = 0, truncation: float | None = None) -> torch.Tensor:
    """From class ``a`` to class ``b`` at fixed noise: uint8 (rows, steps, 3, R, R).

    Row r keeps one latent (``latents(rows, D, seed, truncation=truncation)``); its labels go
    linearly from one-hot(a) to one-hot(b). Every conditioning path (label embedding,
    conditional batch norm) is linear in c, so the in-between labels are a blend of the two
    classes' embeddings. UserError when ``labels`` has no class ``a`` or ``b`` (named as
    ``--from-class`` / ``--to-class``).
    """
    if steps < 2:
        raise UserError("--steps must be at least 2")
    ca = parse_condition(labels, a, class_opt="--from-class").labels(labels, 1)
    cb = parse_condition(labels, b, class_opt="--to-class").labels(labels, 1)
    z = latents(rows, generator.latent_dim, seed, truncation=truncation).repeat_interleave(steps, dim=0)
    t = torch.linspace(0, 1, steps).repeat(rows)[:, None]
    c = (1 - t) * ca + t * cb
    imgs = generate(generator, z, c)
    return imgs.view(rows, steps, *imgs.shape[1:])


def morph_latent_images(generator: nn.Module, a: torch.Tensor, b: torch.Tensor, *, steps: int = 10,
                        ca: torch.Tensor | None = None, cb: torch.Tensor | None = None,
                        spherical: bool = False, photo_a: torch.Tensor | None = None,
                        photo_b: torch.Tensor | None = None) -> torch.Tensor:
    """From latent ``a`` to latent ``b`` (each float (D,), e.g. two projected photos) in
    ``steps`` frames: uint8 (steps, 3, R, R). Labels ``ca`` / ``cb`` float (K,) (default: none,
    K = 0) blend linearly along; ``spherical``: slerp the latents (as ``morph --slerp``).

    ``photo_a`` / ``photo_b``: uint8 (3, R, R), the photos the latents were projected from
    (their aligned crops): each end's detail (:func:`photo_detail`) is kept, fading out
    towards the other end (weights (1 - t)^2 and t^2: a quarter of each in the middle frame,
    where a linear blend would show both photos' detail as a double exposure), so the first
    frame is photo a and the last photo b exactly. Either may be None (that end's projection
    as it is)."""
    if steps < 2:
        raise UserError("--steps must be at least 2")
    t = torch.linspace(0, 1, steps)
    z = (slerp if spherical else lerp)(a.float()[None], b.float()[None], t)[0]  # (steps, D)
    ca = torch.zeros(0) if ca is None else ca.float()
    cb = ca if cb is None else cb.float()
    c = (1 - t[:, None]) * ca[None] + t[:, None] * cb[None]
    frames = generate(generator, z, c, batch_size=steps)
    if photo_a is None and photo_b is None:
        return frames
    # The first and last frames are the two projections: each photo's detail is measured there.
    da, db = (torch.zeros(frames.shape[1:]) if p is None else photo_detail(p, e)
              for p, e in ((photo_a, frames[0]), (photo_b, frames[-1])))
    w = t.view(-1, 1, 1, 1)
    return keep_detail(frames, (1 - w).square() * da + w.square() * db)


def photo_detail(photo: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """What a projection misses of its photo: ``photo - projection`` as float (..., 3, R, R)
    in grey levels (-255..255), from uint8 images of one shape (the aligned crop and
    ``G(z, c)`` of its projected latent)."""
    if photo.shape != projection.shape:
        raise ValueError(f"photo_detail: photo {tuple(photo.shape)} and projection "
                         f"{tuple(projection.shape)} differ in shape")
    return photo.float() - projection.float()


def keep_detail(images: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """Edits of a projected photo with the photo's own detail kept: uint8 ``images`` (..., 3,
    R, R) (the generator's images of edited latents) plus ``detail`` float, broadcastable
    (:func:`photo_detail`), rounded and clipped to uint8.

    The generator cannot draw a real photo exactly (a projection is typically 20-25 dB PSNR
    from it: the person's fine features, the exact hair and background), so an edit drawn by
    the generator alone changes more than the edit. Adding back what the projection missed
    applies the edit's change ``G(z') - G(z)`` to the photo itself: strength 0 gives the photo
    exactly. Where the edit redraws much (an open mouth), the photo's detail of the old
    content can show faintly over the new."""
    return (images.float() + detail).round().clamp(0, 255).to(torch.uint8)


def save_gif(frames: torch.Tensor, path: str | os.PathLike, fps: int = 10) -> Path:
    """Frames uint8 (T, 3, H, W) -> an animated, looping GIF (forth and back)."""
    seq = list(frames) + list(frames.flip(0))[1:-1]
    pil = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in seq]
    with reporting_write_errors(path):
        return atomic_write(path, lambda tmp: pil[0].save(tmp, format="GIF", save_all=True,
                                                          append_images=pil[1:],
                                                          duration=int(1000 / fps), loop=0))
