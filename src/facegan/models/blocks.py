"""Residual blocks shared by the ResNet generator and critic (SNGAN-style, Miyato et al. 2018).

Every block takes ``norm`` (see :func:`.layers.norm2d`) and ``use_sn`` (spectral norm on its
convolutions). Convolutions directly followed by a normalisation have no bias (the norm's shift
replaces it) unless ``norm == "none"``. The generator's blocks take ``forward(x, c)``, labels c
(N, K); with ``label_dim`` K > 0 (and ``norm == "batch"``) their batch norms are
:class:`.conditioning.ConditionalBatchNorm2d` of c, else c is not read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import ConditionalBatchNorm2d, norm_forward
from .layers import RELU_GAIN, conv2d, norm2d


def gen_norm(norm: str, channels: int, label_dim: int) -> nn.Module:
    """A generator norm: conditional batch norm when labels are given, else :func:`norm2d`."""
    if label_dim > 0:
        if norm != "batch":
            raise ValueError(f"conditional batch norm replaces batch norm; got norm '{norm}'")
        return ConditionalBatchNorm2d(channels, label_dim)
    return norm2d(norm, channels)


class UpBlock(nn.Module):
    """Nearest 2x up-sample, 3x3 conv, norm, ReLU.

    forward(x, c): (N, c_in, H, W), labels c (N, K) (read only by conditional batch norms)
    -> (N, c_out, 2H, 2W), >= 0.
    """

    def __init__(self, c_in: int, c_out: int, norm: str = "batch", use_sn: bool = False,
                 label_dim: int = 0):
        super().__init__()
        self.conv = conv2d(c_in, c_out, 3, bias=norm == "none", use_sn=use_sn, gain=RELU_GAIN)
        self.norm = gen_norm(norm, c_out, label_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # Nearest up-sampling then a 3x3 conv instead of a stride-2 transposed conv: no
        # checkerboard artefacts (Odena et al. 2016).
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(norm_forward(self.norm, self.conv(x), c))


class ResBlock(nn.Module):
    """Same-size residual block, identity shortcut: relu(x + norm(conv(relu(norm(conv(x)))))).

    forward(x, c): (N, C, H, W), labels c (N, K) (read only by conditional batch norms)
    -> (N, C, H, W), >= 0.
    """

    def __init__(self, channels: int, norm: str = "batch", use_sn: bool = False,
                 label_dim: int = 0):
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv2d(channels, channels, 3, bias=bias, use_sn=use_sn, gain=RELU_GAIN)
        self.norm1 = gen_norm(norm, channels, label_dim)
        # Gain 1: this branch is added to the shortcut, so it starts no larger than the input.
        self.conv2 = conv2d(channels, channels, 3, bias=bias, use_sn=use_sn, gain=1.0)
        self.norm2 = gen_norm(norm, channels, label_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.relu(norm_forward(self.norm1, self.conv1(x), c))
        return F.relu(x + norm_forward(self.norm2, self.conv2(h), c))


class DownBlock(nn.Module):
    """Pre-activation residual down-sampling block of the critic.

    main: [norm, LeakyReLU 0.2,] conv 3x3, norm, LeakyReLU 0.2, conv 3x3, avg-pool 2x;
    shortcut: avg-pool 2x, conv 1x1. ``first=True`` is SNGAN's optimised first block: no
    norm / activation before its first conv, which sees the image itself.

    forward(x): (N, c_in, H, W) -> (N, c_out, H/2, W/2), unbounded.
    """

    def __init__(self, c_in: int, c_out: int, norm: str = "none", use_sn: bool = False,
                 first: bool = False):
        super().__init__()
        self.first = first
        self.norm0 = nn.Identity() if first else norm2d(norm, c_in)
        self.conv1 = conv2d(c_in, c_out, 3, bias=norm == "none", use_sn=use_sn, gain=RELU_GAIN)
        self.norm1 = norm2d(norm, c_out)
        self.conv2 = conv2d(c_out, c_out, 3, use_sn=use_sn, gain=RELU_GAIN)
        # Pooling before the 1x1 conv gives the same result as after it (both are linear and
        # act on different axes) for a quarter of the work.
        self.shortcut = conv2d(c_in, c_out, 1, use_sn=use_sn, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(self.norm0(x), 0.2)
        h = F.leaky_relu(self.norm1(self.conv1(h)), 0.2)
        h = F.avg_pool2d(self.conv2(h), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


__all__ = ["DownBlock", "ResBlock", "UpBlock", "gen_norm"]
