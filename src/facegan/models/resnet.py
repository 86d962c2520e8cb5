"""ResNet generator and critic (SNGAN-style, Miyato et al. 2018), any power-of-two size >= 8.

Widths follow :func:`.dcgan.stage_widths`, so ``g_width`` / ``d_width`` / ``max_width`` mean
the same as for DCGAN: 64 px, width 64 -> 512 channels at 4x4 down to 64 at 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock, ResBlock, UpBlock
from .dcgan import stage_widths
from .layers import RELU_GAIN, conv2d, linear, norm2d


def _check_resolution(resolution: int) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")


class ResNetGenerator(nn.Module):
    """Latent vector to image.

    forward(z): z float (N, latent_dim) -> images float (N, channels, R, R) in [-1, 1] (tanh).
    Layout (64 px, width 64): Linear z -> 4x4x512 seed, norm, ReLU; then per stage an
    :class:`.blocks.UpBlock` (2x nearest, 3x3 conv, norm, ReLU) and a :class:`.blocks.ResBlock`:
    8x8x256, 16x16x128, 32x32x64, 64x64x64; then a 3x3 conv to ``channels`` and tanh.
    norm: batch | none; use_sn: spectral norm on every conv and the linear layer.
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 64,
                 max_width: int = 1024, norm: str = "batch", use_sn: bool = False,
                 channels: int = 3):
        super().__init__()
        _check_resolution(resolution)
        self.latent_dim = latent_dim
        self.resolution = resolution
        widths = stage_widths(resolution, width, max_width)
        self.seed_channels = widths[0]
        self.fc = linear(latent_dim, 16 * widths[0], bias=norm == "none", use_sn=use_sn,
                         gain=RELU_GAIN)
        self.seed_norm = norm2d(norm, widths[0])
        # The last stage works at full resolution with the last stage width.
        outs = widths[1:] + widths[-1:]
        self.blocks = nn.Sequential(*[
            m for c_in, c_out in zip(widths, outs)
            for m in (UpBlock(c_in, c_out, norm, use_sn), ResBlock(c_out, norm, use_sn))
        ])
        self.to_rgb = conv2d(widths[-1], channels, 3, use_sn=use_sn, gain=1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z.reshape(z.shape[0], self.latent_dim))
        x = x.reshape(z.shape[0], self.seed_channels, 4, 4)  # [N, C, 4, 4]
        x = F.relu(self.seed_norm(x))
        return torch.tanh(self.to_rgb(self.blocks(x)))


class ResNetCritic(nn.Module):
    """Image to one unbounded score per image (a logit for BCE, a critic value for WGAN).

    forward(x): x float (N, channels, R, R) -> scores float (N,).
    Layout (64 px, width 64): :class:`.blocks.DownBlock` s 64 -> 32x32x64 (the optimised
    first block, no norm before its first conv) -> 16x16x128 -> 8x8x256 -> 4x4x512, then
    LeakyReLU 0.2, a sum over the 4x4 positions (as SNGAN) and a Linear to one score.
    norm: none | instance | layer | batch (batch mixes samples: not with a gradient penalty);
    use_sn: spectral norm on every conv and the linear layer.
    """

    def __init__(self, resolution: int = 64, width: int = 64, max_width: int = 1024,
                 norm: str = "none", use_sn: bool = False, channels: int = 3):
        super().__init__()
        _check_resolution(resolution)
        self.resolution = resolution
        self.norm = norm
        widths = stage_widths(resolution, width, max_width)[::-1]
        ins = [channels] + widths[:-1]
        self.blocks = nn.Sequential(*[
            DownBlock(c_in, c_out, norm, use_sn, first=i == 0)
            for i, (c_in, c_out) in enumerate(zip(ins, widths))
        ])
        self.fc = linear(widths[-1], 1, use_sn=use_sn, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.blocks(x), 0.2)  # [N, C, 4, 4]
        return self.fc(h.sum(dim=(2, 3))).reshape(x.shape[0])


__all__ = ["ResNetGenerator", "ResNetCritic"]
