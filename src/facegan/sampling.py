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
from .errors import UserError, check_whole
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
    kept them. The global random state is left as it was.
    """
    device = resolve_device(device)
    ckpt = load_checkpoint(path)
    cfg: Config = ckpt["config"]
    spec = LabelSpec.from_dict(ckpt.get("labels"))
    # The network's random initialisation is overwritten by the weights at once; it must not
    # use up the caller's random stream (a seeded notebook would draw differently after a load).
    with torch.random.fork_rng(devices=[]):
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


def network_of(generator: nn.Module | LoadedGenerator) -> nn.Module:
    """The generator network itself: a :class:`LoadedGenerator`'s ``.generator``, or
    ``generator`` when it is a network; TypeError for anything else (a run folder's path)."""
    if isinstance(generator, LoadedGenerator):
        return generator.generator
    if not isinstance(generator, nn.Module):
        raise TypeError(f"expected a generator network or a LoadedGenerator, got "
                        f"{type(generator).__name__}; load a run with lg = facegan.load_generator(RUN)")
    return generator


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
    """Latents float32 (n, dim), the same for a seed (an int) whatever the device.

    ``truncation=None``: standard normal. ``truncation=T`` (> 0): the truncation trick (Brock
    et al. 2019): each coordinate drawn from N(0, 1) restricted to [-T, T]
    (``torch.nn.init.trunc_normal_`` with the same seeded generator: inverse-CDF sampling of the
    restricted normal); less variety, more typical images (T = 1.0 mild, 0.5 strong). Labels are
    drawn separately and do not change.
    """
    n, dim = check_whole(n, "n"), check_whole(dim, "dim (the generator's latent_dim)", 1)
    t = check_truncation(truncation)
    g = torch.Generator().manual_seed(check_whole(seed, "seed", None))
    if t is None:
        return torch.randn(n, dim, generator=g).to(device)
    z = torch.empty(n, dim)
    torch.nn.init.trunc_normal_(z, mean=0.0, std=1.0, a=-t, b=t, generator=g)
    return z.to(device)


@torch.inference_mode()
def generate(generator: nn.Module | LoadedGenerator, z: torch.Tensor, c: torch.Tensor | None = None, *,
             batch_size: int = 256, uint8: bool = True) -> torch.Tensor:
    """Run ``generator`` (a network or a :class:`LoadedGenerator`) on latents ``z`` floating
    point (N, latent_dim) and labels ``c`` float (N, K) (K = 0 without labels; None: no labels,
    for an unconditional generator only), ``batch_size`` rows per pass, on the generator's
    device and in its dtype (z and c are cast to them).

    A generator in train mode runs in eval mode for the call and is put back in train mode
    after: in train mode its batch norms would normalise by each batch's own statistics (the
    images depending on ``batch_size``) and overwrite their running statistics. What needs
    train mode (standing statistics) calls the generator itself.

    Returns, on the CPU, uint8 (N, 3, R, R) in 0..255 rounded as saving to PNG does, or with
    ``uint8=False`` float (N, 3, R, R) in [-1, 1]. The one loop every sampler uses: grids,
    directions, evaluation, the web page and the trainer's progress images. UserError for a
    ``z`` or ``c`` of another shape, a ``z`` not floating point, a ``batch_size`` below 1.
    """
    generator = network_of(generator)
    batch_size = check_whole(batch_size, "batch_size (images per forward pass)", 1)
    # facegan's networks say their label width; another network is taken at its c's width
    d, k = int(generator.latent_dim), getattr(generator, "label_dim", None)
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch tensor, float (N, {d}), got {type(z).__name__}; "
                        f"e.g. facegan.latents(N, {d}, seed=0)")
    if z.dim() != 2 or z.shape[1] != d or not z.is_floating_point():
        raise UserError(f"z must be float (N, {d}) latents (e.g. facegan.latents(N, {d}, seed=0); "
                        f"one latent: z[None]), got {tuple(z.shape)} {z.dtype}")
    if c is None and not k:
        c = torch.zeros(z.shape[0], 0)
    if not isinstance(c, torch.Tensor) or c.dim() != 2 or (k is not None and c.shape[1] != k):
        got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        if k:
            want = f"this generator is conditional: c must be its labels, float (N, {k}), e.g. lg.labels.draw(N, seed=0)"
        elif k == 0:
            want = "this generator is unconditional: c must be None or float (N, 0)"
        else:
            want = "c must be labels, float (N, K)"
        raise UserError(f"{want}; got {got}")
    if z.shape[0] != c.shape[0]:
        raise UserError(f"generate: {z.shape[0]} latents but {c.shape[0]} label rows")
    p = next(generator.parameters())
    training = generator.training
    if training:
        generator.eval()
    out = []
    try:
        for i in range(0, z.shape[0], batch_size):
            img = generator(z[i:i + batch_size].to(p.device, p.dtype), c[i:i + batch_size].to(p.device, p.dtype))
            out.append(to_uint8(img).cpu() if uint8 else img.float().cpu())
    finally:
        if training:
            generator.train()
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


def generate_images(generator: nn.Module | LoadedGenerator, n: int, *, seed: int = 0, batch_size: int = 256,
                    labels: LabelSpec | torch.Tensor | None = None,
                    truncation: float | None = None) -> torch.Tensor:
    """Sample ``n`` images: uint8 (n, 3, R, R) in 0..255 on the CPU, through :func:`generate`
    (a generator in train mode samples in eval mode). Deterministic for a seed.

    The latents are ``latents(n, latent_dim, seed, truncation=truncation)``. ``labels``: a
    :class:`LabelSpec` (the labels are then ``labels.draw(n, seed)``, from its training data's
    frequencies; width 0 for :data:`~facegan.labels.UNCONDITIONAL`), or the labels
    themselves, float (n, K). None: a :class:`LoadedGenerator`'s own ``labels``, else
    unconditional (UserError for a conditional network: pass ``labels=lg.labels``).
    """
    if labels is None:
        labels = generator.labels if isinstance(generator, LoadedGenerator) else UNCONDITIONAL
    generator = network_of(generator)
    k = int(getattr(generator, "label_dim", 0))
    if isinstance(labels, LabelSpec) and k and not labels.conditional:
        raise UserError(f"this generator is conditional ({k} label columns): pass its labels, e.g. "
                        "labels=lg.labels (drawn at the training data's rates) or float (n, "
                        f"{k}) labels such as lg.labels.one_hot(NAME, n)")
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
    """Save images uint8 (N, 3, H, W) in 0..255, N >= 1 (what :func:`generate` returns), as
    one grid image (atomically): PNG, or JPEG for .jpg; ``~`` in ``path`` is the home folder.
    ``nrow``: images per row (default: a near square). Returns the path written.

    UserError for other images: float ones (``generate(..., uint8=False)``, in [-1, 1]) are
    refused rather than guessed at, since [0, 1] images are floats too."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"save_grid takes a torch tensor of images, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise UserError("save_grid takes images uint8 (N, 3, H, W) in 0..255, as generate(..., "
                        f"uint8=True) returns (to_uint8(x) for floats in [-1, 1]); got "
                        f"{tuple(images.shape)} {images.dtype}")
    if images.shape[0] == 0:
        raise UserError("save_grid was given no images (N = 0); a grid needs at least one")
    if nrow is not None:
        check_whole(nrow, "nrow (images per grid row)", 1)
    return save_image(make_grid(images, nrow), os.path.expanduser(path))


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
    ca = parse_condition(labels, a, class_opt="--from-class", attr_opt="--from-attr").labels(labels, rows)
    cb = parse_condition(labels, b, class_opt="--to-class", attr_opt="--to-attr").labels(labels, rows)
    return morph_labels(generator, ca, cb, steps=steps, seed=seed, truncation=truncation)


def morph_labels(generator: nn.Module, ca: torch.Tensor, cb: torch.Tensor, *, steps: int = 10,
                 seed: int = 0, truncation: float | None = None) -> torch.Tensor:
    """From labels ``ca`` to ``cb`` (float (rows, K) each, row r's ends) at fixed noise: uint8
    (rows, steps, 3, R, R). Row r keeps one latent (``latents(rows, D, seed, truncation=...)``)
    while its labels go linearly from ``ca[r]`` to ``cb[r]``: a class morph (one-hot ends) or
    an attribute morph (``Condition.labels`` of each end, drawn with one seed, so that the
    attributes neither end sets are the same at both)."""
    if steps < 2:
        raise UserError("--steps must be at least 2")
    rows = ca.shape[0]
    z = latents(rows, generator.latent_dim, seed, truncation=truncation).repeat_interleave(steps, dim=0)
    t = torch.linspace(0, 1, steps).repeat(rows)[:, None]
    c = (1 - t) * ca.repeat_interleave(steps, dim=0) + t * cb.repeat_interleave(steps, dim=0)
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
