"""How close a projection came to its photo: PSNR and SSIM of two uint8 images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
