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
from .models import build_networks
from .utils import atomic_write


@dataclass
class LoadedGenerator:
    generator: nn.Module  # eval mode; forward(z (N, latent_dim)) -> (N, 3, R, R) in [-1, 1]
    config: Config
    step: int
    run_dir: Path | None
    checkpoint: Path
    has_ema: bool


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
    g, _ = build_networks(cfg.model, cfg.data.resolution)
    state = ckpt.get("G_ema") if ema and ckpt.get("G_ema") is not None else ckpt.get("G")
    if state is None:
        raise UserError(f"'{ckpt['path']}' holds no generator weights; the file is damaged")
    try:
        g.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"'{ckpt['path']}': weights do not match its config ({str(e).splitlines()[0][:120]})") from None
    g.to(device).eval()
    return LoadedGenerator(g, cfg, int(ckpt.get("step", 0)), run_dir_of(ckpt["path"]), ckpt["path"],
                           ckpt.get("G_ema") is not None)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in 0..255, rounded exactly as saving to PNG does."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def latents(n: int, dim: int, seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal latents (n, dim), the same for a seed whatever the device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g).to(device)


@torch.inference_mode()
def generate_images(generator: nn.Module, n: int, *, seed: int = 0, batch_size: int = 256,
                    device: str | torch.device | None = None) -> torch.Tensor:
    """Sample ``n`` images: uint8 (n, 3, R, R) on the CPU. Deterministic for a seed."""
    if device is None:
        device = next(generator.parameters()).device
    z = latents(n, generator.latent_dim, seed)
    out = []
    for i in range(0, n, batch_size):
        out.append(to_uint8(generator(z[i:i + batch_size].to(device))).cpu())
    return torch.cat(out) if out else torch.empty(0, 3, generator.resolution, generator.resolution,
                                                   dtype=torch.uint8)


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
    imgs = to_uint8(generator(z.reshape(r * T, d).to(device))).cpu()
    return imgs.view(r, T, *imgs.shape[1:])


def save_gif(frames: torch.Tensor, path: str | os.PathLike, fps: int = 10) -> Path:
    """Frames uint8 (T, 3, H, W) -> an animated, looping GIF (forth and back)."""
    seq = list(frames) + list(frames.flip(0))[1:-1]
    pil = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in seq]
    return atomic_write(path, lambda tmp: pil[0].save(tmp, format="GIF", save_all=True,
                                                      append_images=pil[1:], duration=int(1000 / fps),
                                                      loop=0))
