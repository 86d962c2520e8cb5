"""DCGAN generator and discriminator / critic (Radford et al. 2015), any power-of-two size.

Resolution, width, latent size and the critic's normalisation are parameters, so one file
serves 32, 64 and 128 px and every recipe (DCGAN with BCE, WGAN, WGAN-GP).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conditioning import (
    D_CONDS,
    G_CONDS,
    ACHead,
    ConditionalBatchNorm2d,
    LabelEmbedding,
    ProjectionHead,
    check_labels,
    concat_label_maps,
    sequential_forward,
)
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

    forward(z, c): z float (N, latent_dim), labels c float (N, K), K = label_dim (0 without
    labels: c is ``torch.zeros(N, 0)`` and is not read) -> images float (N, channels, R, R)
    in [-1, 1] (tanh).
    Layout: 4x4 transposed conv from the latent, then stride-2 4x4 transposed convs with
    norm + ReLU, each doubling the size, and a last transposed conv to ``channels``.

    Conditional (label_dim K > 0): cond="concat": the first transposed conv reads
    [z, embed(c)], embed a :class:`.conditioning.LabelEmbedding` to ``embed_dim`` (default
    latent_dim) features;
    cond="cbn": every batch norm is a :class:`.conditioning.ConditionalBatchNorm2d` of c
    (needs norm="batch").
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 64,
                 max_width: int = 1024, norm: str = "batch", channels: int = 3, use_sn: bool = False,
                 label_dim: int = 0, cond: str = "concat", embed_dim: int | None = None):
        super().__init__()
        if label_dim and cond not in G_CONDS:
            raise ValueError(f"unknown generator conditioning '{cond}'; "
                             f"use one of: {', '.join(G_CONDS)}")
        self.latent_dim = latent_dim
        self.resolution = resolution
        self.label_dim = label_dim
        self.cond = cond if label_dim > 0 else None
        self.embed_dim = (embed_dim or latent_dim) if self.cond == "concat" else 0
        if self.cond == "cbn" and norm != "batch":
            raise ValueError(f"conditional batch norm replaces batch norm; got norm '{norm}'")

        def make_norm(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, label_dim) if self.cond == "cbn" else norm2d(norm, c)

        widths = stage_widths(resolution, width, max_width)
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + self.embed_dim, widths[0], 4, 1, 0, bias=bias),
            make_norm(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), make_norm(c_out),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        if use_sn:
            _add_spectral_norm(self)
        # After the DCGAN init, which would draw the conditional norms' zero maps from
        # N(0, 0.02); built last, so an unconditional generator's weights are as before.
        for m in self.net:
            if isinstance(m, ConditionalBatchNorm2d):
                m.reset_parameters()
        self.embed = LabelEmbedding(label_dim, self.embed_dim) if self.cond == "concat" else None

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        check_labels(c, n, self.label_dim, "DCGANGenerator")
        if self.cond is None:
            return self.net(z.reshape(n, self.latent_dim, 1, 1))
        z = z.reshape(n, self.latent_dim)
        c = c.to(z.dtype)  # a .double() net gets double labels
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)
        return sequential_forward(self.net, z.reshape(n, -1, 1, 1), c)


class DCGANCritic(nn.Module):
    """Image to one unbounded score per image (a logit for BCE, a critic value for WGAN).

    forward(x, c): x float (N, channels, R, R) in [-1, 1], labels c float (N, K), K = label_dim
    (0 without labels) -> (scores float (N,), aux float (N, K) or None); aux is None except
    for cond="ac", and an unconditional critic (K = 0) returns (scores, None).
    Layout: stride-2 4x4 convs with LeakyReLU 0.2 (no norm on the first, as in DCGAN), halving
    the size down to 4x4, then a 4x4 conv to one score.

    Conditional (label_dim K > 0): the heads read h, the 4x4 features (after LeakyReLU and
    dropout) summed over the 16 positions (N, F) as in the ResNet critic, so the embeddings
    are F wide whatever the resolution; the unconditional score stays the 4x4 conv over the
    unpooled features (``net[-1]``).
    cond="concat": c as K constant maps appended to the image's channels; aux None.
    cond="projection": ``scores = net[-1](features) + <proj.embed(c), h>`` (Miyato & Koyama
    2018), proj a :class:`.conditioning.ProjectionHead`; aux None.
    cond="ac": the unconditional score (c not read); aux = ``ac(h)``, label logits of a
    :class:`.conditioning.ACHead`.
    The heads are Xavier-initialised (not DCGAN's N(0, 0.02)) and spectrally normalised when
    use_sn.
    """

    def __init__(self, resolution: int = 64, width: int = 64, max_width: int = 1024,
                 norm: str = "instance", dropout: float = 0.0, channels: int = 3,
                 use_sn: bool = False, label_dim: int = 0, cond: str = "projection"):
        super().__init__()
        if label_dim and cond not in D_CONDS:
            raise ValueError(f"unknown critic conditioning '{cond}'; "
                             f"use one of: {', '.join(D_CONDS)}")
        self.resolution = resolution
        self.norm = norm
        self.label_dim = label_dim
        self.cond = cond if label_dim > 0 else None
        widths = stage_widths(resolution, width, max_width)[::-1]
        layers: list[nn.Module] = []
        c_prev = channels + (label_dim if self.cond == "concat" else 0)
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
        features = c_prev
        self.proj = (ProjectionHead(features, label_dim, use_sn) if self.cond == "projection"
                     else None)
        self.ac = ACHead(features, label_dim, use_sn) if self.cond == "ac" else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = x.shape[0]
        check_labels(c, n, self.label_dim, "DCGANCritic")
        if self.cond is None:
            return self.net(x).reshape(n), None
        c = c.to(x.dtype)
        if self.cond == "concat":
            return self.net(concat_label_maps(x, c)).reshape(n), None
        feats = self.net[:-1](x)  # [N, F, 4, 4]
        scores = self.net[-1](feats).reshape(n)
        h = feats.sum(dim=(2, 3))  # [N, F]
        if self.proj is not None:
            return scores + self.proj(h, c), None
        return scores, self.ac(h)
