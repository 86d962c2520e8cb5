"""DCGAN generator and discriminator / critic (Radford et al. 2015), any power-of-two size.

Resolution, width, latent size and the critic's normalisation are parameters, so one file
serves 32, 64 and 128 px and every recipe (DCGAN with BCE, WGAN, WGAN-GP).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import norm2d, sn


def stage_widths(resolution: int, width: int, max_width: int) -> list[int]:
    """Channel counts at 4x4, 8x8, ..., resolution/2 (generator order; the critic reverses it).

    64 px, width 64 -> [512, 256, 128, 64].
    """
    n = int(math.log2(resolution)) - 2
    return [min(width * 2 ** (n - 1 - i), max_width) for i in range(n)]


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _add_spectral_norm(module: nn.Module) -> None:
    """Spectral norm on every (transposed) convolution, after the DCGAN init (the
    parametrization keeps the initialised weight as its raw weight)."""
    for name, child in list(module.net.named_children()):
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            module.net.register_module(name, sn(child))


class DCGANGenerator(nn.Module):
    """Latent vector to image.

    forward(z): z float (N, latent_dim) -> images float (N, 3, R, R) in [-1, 1] (tanh).
    Layout: 4x4 transposed conv from the latent, then stride-2 4x4 transposed convs with
    norm + ReLU, each doubling the size, and a last transposed conv to 3 channels.
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 64,
                 max_width: int = 1024, norm: str = "batch", channels: int = 3, use_sn: bool = False):
        super().__init__()
        self.latent_dim = latent_dim
        self.resolution = resolution
        widths = stage_widths(resolution, width, max_width)
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=bias),
            norm2d(norm, widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), norm2d(norm, c_out),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        if use_sn:
            _add_spectral_norm(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class DCGANCritic(nn.Module):
    """Image to one unbounded score per image (a logit for BCE, a critic value for WGAN).

    forward(x): x float (N, 3, R, R) in [-1, 1] -> scores float (N,).
    Layout: stride-2 4x4 convs with LeakyReLU 0.2 (no norm on the first, as in DCGAN), halving
    the size down to 4x4, then a 4x4 conv to one score.
    """

    def __init__(self, resolution: int = 64, width: int = 64, max_width: int = 1024,
                 norm: str = "instance", dropout: float = 0.0, channels: int = 3,
                 use_sn: bool = False):
        super().__init__()
        self.resolution = resolution
        self.norm = norm
        widths = stage_widths(resolution, width, max_width)[::-1]
        layers: list[nn.Module] = []
        c_prev = channels
        for i, c in enumerate(widths):
            use_norm = i > 0 and norm != "none"
            layers.append(nn.Conv2d(c_prev, c, 4, 2, 1, bias=not use_norm))
            if use_norm:
                layers.append(norm2d(norm, c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
            c_prev = c
        layers.append(nn.Conv2d(c_prev, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        if use_sn:
            _add_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])
