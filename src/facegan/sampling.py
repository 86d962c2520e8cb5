"""Using a trained generator: load from a checkpoint, sample, save grids, interpolate ('morph')."""

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
from .data.labels import ATTR, CLASS, LabelSpec
from .models import NetSpec, build_networks
from .utils import atomic_write


@dataclass
class LoadedGenerator:
    generator: nn.Module  # eval mode; forward(z (N, latent_dim)) -> (N, 3, R, R) in [-1, 1]
    config: Config
    step: int
    run_dir: Path | None
    checkpoint: Path
    has_ema: bool
    label_spec: LabelSpec | None = None  # what G's labels mean (None: unconditional)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu or cuda") from None


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = True) -> LoadedGenerator:
    """Rebuild the generator from a run folder or checkpoint alone (the config travels inside).

    With ``ema`` the exponential-moving-average weights are used when the run kept them.
    """
    device = pick_device(device) if isinstance(device, str) else device
    ckpt = load_checkpoint(path)
    cfg: Config = ckpt["config"]
    spec = LabelSpec.from_dict(ckpt.get("labels"))
    g, _ = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, int(ckpt.get("label_dim", 0))))
    g.label_spec = spec  # generate_images draws labels from it when none are given
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


def latents(n: int, dim: int, seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal latents (n, dim), the same for a seed whatever the device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g).to(device)


@torch.inference_mode()
def generate_images(generator: nn.Module, n: int, *, seed: int = 0, batch_size: int = 256,
                    device: str | torch.device | None = None,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sample ``n`` images: uint8 (n, 3, R, R) on the CPU. Deterministic for a seed.

    A conditional generator (``label_dim`` K > 0) gets ``labels`` float (n, K), or, when None,
    labels drawn from its training data's label frequencies (``generator.label_spec``, see
    :func:`draw_labels`), with a stream derived from ``seed``.
    """
    if device is None:
        device = next(generator.parameters()).device
    z = latents(n, generator.latent_dim, seed)
    k = int(getattr(generator, "label_dim", 0))
    if k and labels is None:
        spec = getattr(generator, "label_spec", None)
        if spec is None:
            raise ValueError("a conditional generator needs labels (or a .label_spec to draw them)")
        labels = draw_labels(spec, n, seed=seed)
    out = []
    for i in range(0, n, batch_size):
        zi = z[i:i + batch_size].to(device)
        img = generator(zi) if not k else generator(zi, labels[i:i + batch_size].to(device))
        out.append(to_uint8(img).cpu())
    return torch.cat(out) if out else torch.empty(0, 3, generator.resolution, generator.resolution,
                                                   dtype=torch.uint8)


# ---- labels for conditional generators ----------------------------------------------------

def _label_generator(seed: int) -> torch.Generator:
    # A stream apart from the latents' (seed) so labels and noise do not share draws.
    return torch.Generator().manual_seed(seed + 7919)


def draw_labels(spec: LabelSpec, n: int, seed: int = 0) -> torch.Tensor:
    """float (n, K) labels drawn from the training data's frequencies (``spec.counts``):
    classes in their data proportions; attributes each on with its data rate, independently
    (the checkpoint keeps the rates, not the correlations between attributes)."""
    g = _label_generator(seed)
    freq = spec.frequencies()
    if spec.kind == CLASS:
        y = torch.multinomial(freq.double().clamp_min(0) + 1e-12, n, replacement=True, generator=g)
        return torch.nn.functional.one_hot(y, spec.dim).float()
    return (torch.rand(n, spec.dim, generator=g) < freq).float()


def class_labels(spec: LabelSpec | None, name: str, n: int) -> torch.Tensor:
    """float (n, K): every row the one-hot of class ``name``. UserError for an unknown class,
    naming the classes that exist, and for a model without class labels."""
    if spec is None:
        raise UserError("this model is unconditional (trained without labels); drop --class")
    if spec.kind != CLASS:
        raise UserError(f"this model has attribute labels ({', '.join(spec.names)}), not classes; "
                        "use --attr NAME=0|1,...")
    if name not in spec.names:
        raise UserError(f"unknown class '{name}'; this model has: {', '.join(spec.names)}")
    c = torch.zeros(n, spec.dim)
    c[:, spec.names.index(name)] = 1.0
    return c


def parse_attr_setting(spec: LabelSpec | None, text: str) -> dict[str, float]:
    """'Male=0,Smiling=1' -> {'Male': 0.0, 'Smiling': 1.0}, checked against the model's
    attributes (UserError naming those that exist)."""
    if spec is None:
        raise UserError("this model is unconditional (trained without labels); drop --attr")
    if spec.kind != ATTR:
        raise UserError(f"this model has class labels ({', '.join(spec.names)}), not attributes; "
                        "use --class NAME")
    setting: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if name not in spec.names:
            raise UserError(f"unknown attribute '{name}' in --attr; this model has: "
                            f"{', '.join(spec.names)}")
        if not eq or value not in ("0", "1"):
            raise UserError(f"--attr '{part}': write NAME=0 or NAME=1, e.g. --attr "
                            f"{spec.names[0]}=1")
        setting[name] = float(value)
    if not setting:
        raise UserError(f"--attr is empty; write e.g. --attr {spec.names[0]}=1")
    return setting


def attr_labels(spec: LabelSpec, setting: dict[str, float], n: int, seed: int = 0) -> torch.Tensor:
    """float (n, K): the attributes in ``setting`` fixed; the others drawn, per image, from
    their training-data rates (as :func:`draw_labels`)."""
    c = draw_labels(spec, n, seed)
    for name, v in setting.items():
        c[:, spec.names.index(name)] = v
    return c


GRID_ALL_COMBINATIONS_UP_TO = 4  # attributes; above, one row per attribute alone


def grid_rows(spec: LabelSpec) -> tuple[torch.Tensor, list[str]]:
    """The rows of a by-class grid: (labels float (rows, K), row names).

    Classes: one row per class. Attributes: every 0/1 combination (first attribute slowest) for
    up to four attributes (16 rows), else all off plus one row per attribute on alone.
    """
    k = spec.dim
    if spec.kind == CLASS:
        return torch.eye(k), list(spec.names)
    if k <= GRID_ALL_COMBINATIONS_UP_TO:
        rows = torch.tensor([[(v >> (k - 1 - j)) & 1 for j in range(k)] for v in range(2 ** k)],
                            dtype=torch.float32)
    else:
        rows = torch.cat([torch.zeros(1, k), torch.eye(k)])
    names = [",".join(f"{a}={int(b)}" for a, b in zip(spec.names, r.tolist())) for r in rows]
    return rows, names


def grid_labels(spec: LabelSpec, data_labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Labels for the training progress grid (n, K): for classes, row r of the near-square grid
    shows class r mod K; for attributes, the labels of n random data images (a fixed draw)."""
    if spec.kind == CLASS:
        nrow = max(1, int(math.ceil(math.sqrt(n))))
        y = (torch.arange(n) // nrow) % spec.dim
        return torch.nn.functional.one_hot(y, spec.dim).float()
    idx = torch.randint(data_labels.shape[0], (n,), generator=_label_generator(seed))
    return data_labels[idx.to(data_labels.device)].float().cpu()


def generate_by_label_rows(generator: nn.Module, rows: torch.Tensor, n: int, *, seed: int = 0,
                           batch_size: int = 256) -> torch.Tensor:
    """A by-label grid: rows float (L, K) labels -> uint8 (L * n, 3, R, R), row after row.

    Column j uses the same latent in every row, the j-th of ``latents(n, ..., seed)``, so row
    l equals ``generate_images(generator, n, seed=seed, labels=rows[l] repeated)``: the rows
    differ only through their label.
    """
    out = [generate_images(generator, n, seed=seed, batch_size=batch_size,
                           labels=row[None].expand(n, -1)) for row in rows]
    return torch.cat(out)


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
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_image(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save atomically as PNG or JPEG (quality 95), chosen by the file name's extension."""
    fmt = image_format(path)
    options = {"quality": 95} if fmt == "JPEG" else {}
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **options))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save uint8 (N, 3, H, W) images as one grid image (atomically): PNG, or JPEG for .jpg."""
    return save_image(make_grid(images, nrow), path)


def save_individual(images: torch.Tensor, folder: str | os.PathLike, prefix: str = "sample") -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(save_png(Image.fromarray(im.permute(1, 2, 0).numpy()), folder / f"{prefix}_{i:05d}.png"))
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


@torch.inference_mode()
def morph(generator: nn.Module, *, rows: int = 4, steps: int = 10, seed: int = 0,
          spherical: bool = False, chain: int = 1) -> torch.Tensor:
    """Interpolate between random latent points: uint8 (rows, chain * steps, 3, R, R).

    Each row walks through ``chain + 1`` random latents, ``steps`` frames per leg (the end
    point of one leg is the start of the next, so an animation loops smoothly when chained).
    A conditional generator keeps one label per row, drawn as :func:`draw_labels` does.
    """
    if steps < 2:
        raise UserError("--steps must be at least 2")
    device = next(generator.parameters()).device
    keys = latents(rows * (chain + 1), generator.latent_dim, seed).view(rows, chain + 1, -1)
    t = torch.linspace(0, 1, steps)
    interp = slerp if spherical else lerp
    legs = []
    for i in range(chain):
        leg = interp(keys[:, i], keys[:, i + 1], t)
        legs.append(leg if i == 0 else leg[:, 1:])  # a leg starts where the last one ended
    z = torch.cat(legs, dim=1)  # (rows, T, D)
    r, T, d = z.shape
    if int(getattr(generator, "label_dim", 0)):
        # A conditional generator: each row keeps one label, drawn from the data's frequencies.
        c = draw_labels(generator.label_spec, r, seed=seed).repeat_interleave(T, dim=0)
        imgs = to_uint8(generator(z.reshape(r * T, d).to(device), c.to(device))).cpu()
    else:
        imgs = to_uint8(generator(z.reshape(r * T, d).to(device))).cpu()
    return imgs.view(r, T, *imgs.shape[1:])


@torch.inference_mode()
def morph_classes(generator: nn.Module, spec: LabelSpec | None, a: str, b: str, *, rows: int = 4,
                  steps: int = 10, seed: int = 0) -> torch.Tensor:
    """From class ``a`` to class ``b`` at fixed noise: uint8 (rows, steps, 3, R, R).

    Row r keeps one latent; its labels go linearly from one-hot(a) to one-hot(b). Every
    conditioning path (label embedding, conditional batch norm) is linear in c, so the
    in-between labels are a blend of the two classes' embeddings.
    """
    if steps < 2:
        raise UserError("--steps must be at least 2")
    ca, cb = class_labels(spec, a, 1), class_labels(spec, b, 1)
    device = next(generator.parameters()).device
    z = latents(rows, generator.latent_dim, seed).repeat_interleave(steps, dim=0)
    t = torch.linspace(0, 1, steps).repeat(rows)[:, None]
    c = (1 - t) * ca + t * cb
    imgs = to_uint8(generator(z.to(device), c.to(device))).cpu()
    return imgs.view(rows, steps, *imgs.shape[1:])


def save_gif(frames: torch.Tensor, path: str | os.PathLike, fps: int = 10) -> Path:
    """Frames uint8 (T, 3, H, W) -> an animated, looping GIF (forth and back)."""
    seq = list(frames) + list(frames.flip(0))[1:-1]
    pil = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in seq]
    return atomic_write(path, lambda tmp: pil[0].save(tmp, format="GIF", save_all=True,
                                                      append_images=pil[1:], duration=int(1000 / fps),
                                                      loop=0))
