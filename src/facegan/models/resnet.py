"""ResNet generator and critic (SNGAN-style, Miyato et al. 2018), any power-of-two size >= 8.

Widths follow :func:`.dcgan.stage_widths`, so ``g_width`` / ``d_width`` / ``max_width`` mean
the same as for DCGAN: 64 px, width 64 -> 512 channels at 4x4 down to 64 at 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock, ResBlock, UpBlock, gen_norm
from .conditioning import (
    D_CONDS,
    G_CONDS,
    ACHead,
    LabelEmbedding,
    ProjectionHead,
    check_labels,
    concat_label_maps,
    network_cond,
    norm_forward,
)
from .dcgan import stage_widths
from .layers import RELU_GAIN, MinibatchStd, conv2d, linear
from .spec import check_resolution


class ResNetGenerator(nn.Module):
    """Latent vector to image.

    forward(z, c): z float (N, latent_dim), labels c float (N, K), K = label_dim (0 without
    labels: c is ``torch.zeros(N, 0)`` and is not read) -> images float (N, channels, R, R)
    in [-1, 1] (tanh).
    Layout (64 px, width 64): Linear z -> 4x4x512 seed, norm, ReLU; then per stage an
    :class:`.blocks.UpBlock` (2x nearest, 3x3 conv, norm, ReLU) and a :class:`.blocks.ResBlock`:
    8x8x256, 16x16x128, 32x32x64, 64x64x64; then a 3x3 conv to ``channels`` and tanh.
    norm: batch | none; use_sn: spectral norm on every conv and the linear layer.

    Conditional (label_dim K > 0): cond="concat": the seed Linear reads [z, embed(c)], embed a
    :class:`.conditioning.LabelEmbedding` to ``embed_dim`` (default latent_dim) features;
    cond="cbn": every batch norm (seed and blocks) is a
    :class:`.conditioning.ConditionalBatchNorm2d` of c (needs norm="batch").
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 64,
                 max_width: int = 1024, norm: str = "batch", use_sn: bool = False,
                 channels: int = 3, label_dim: int = 0, cond: str = "concat",
                 embed_dim: int | None = None):
        super().__init__()
        check_resolution(resolution)
        self.latent_dim = latent_dim
        self.resolution = resolution
        self.label_dim = label_dim
        self.cond = network_cond(label_dim, cond, G_CONDS, "generator")
        self.embed_dim = (embed_dim or latent_dim) if self.cond == "concat" else 0
        cbn_dim = label_dim if self.cond == "cbn" else 0
        widths = stage_widths(resolution, width, max_width)
        self.seed_channels = widths[0]
        self.fc = linear(latent_dim + self.embed_dim, 16 * widths[0], bias=norm == "none",
                         use_sn=use_sn, gain=RELU_GAIN)
        self.seed_norm = gen_norm(norm, widths[0], cbn_dim)
        # The last stage works at full resolution with the last stage width.
        outs = widths[1:] + widths[-1:]
        self.blocks = nn.Sequential(*[
            m for c_in, c_out in zip(widths, outs)
            for m in (UpBlock(c_in, c_out, norm, use_sn, cbn_dim),
                      ResBlock(c_out, norm, use_sn, cbn_dim))
        ])
        self.to_rgb = conv2d(widths[-1], channels, 3, use_sn=use_sn, gain=1.0)
        # Built last, so an unconditional generator draws the same initial weights as before.
        self.embed = LabelEmbedding(label_dim, self.embed_dim) if self.cond == "concat" else None

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        z = z.reshape(n, self.latent_dim)
        c = check_labels(c, n, self.label_dim, "ResNetGenerator").to(z.dtype)
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)
        x = self.fc(z).reshape(n, self.seed_channels, 4, 4)  # [N, C, 4, 4]
        x = F.relu(norm_forward(self.seed_norm, x, c))
        for block in self.blocks:
            x = block(x, c)
        return torch.tanh(self.to_rgb(x))


class ResNetCritic(nn.Module):
    """Image to one unbounded score per image (a logit for BCE, a critic value for WGAN).

    forward(x, c): x float (N, channels, R, R) in [-1, 1], labels c float (N, K), K = label_dim
    (0 without labels) -> (scores float (N,), aux float (N, K) or None); aux is None except
    for cond="ac", and an unconditional critic (K = 0) returns (scores, None).
    Layout (64 px, width 64): :class:`.blocks.DownBlock` s 64 -> 32x32x64 (the optimised
    first block, no norm before its first conv) -> 16x16x128 -> 8x8x256 -> 4x4x512, then
    LeakyReLU 0.2, a sum over the 4x4 positions (as SNGAN) and a Linear to one score. With
    ``mbstd`` > 0 that Linear also reads the minibatch standard deviation of the 4x4 features
    over groups of ``mbstd`` consecutive samples (:class:`.layers.MinibatchStd`), summed like them.
    norm: none | instance | layer | batch (batch mixes samples: not with a gradient penalty);
    use_sn: spectral norm on every conv and the linear layers (heads included).

    Conditional (label_dim K > 0), h the summed 4x4 features (N, F):
    cond="concat": c as K constant maps appended to the image's channels; aux None.
    cond="projection": ``scores = fc(h) + <proj.embed(c), h>`` (Miyato & Koyama 2018), proj a
    :class:`.conditioning.ProjectionHead`; aux None.
    cond="ac": ``scores = fc(h)`` (c not read); aux = ``ac(h)``, label logits of a
    :class:`.conditioning.ACHead`.
    """

    def __init__(self, resolution: int = 64, width: int = 64, max_width: int = 1024,
                 norm: str = "none", use_sn: bool = False, channels: int = 3,
                 label_dim: int = 0, cond: str = "projection", mbstd: int = 0):
        super().__init__()
        check_resolution(resolution)
        self.resolution = resolution
        self.norm = norm
        self.label_dim = label_dim
        self.cond = network_cond(label_dim, cond, D_CONDS, "critic")
        widths = stage_widths(resolution, width, max_width)[::-1]
        ins = [channels + (label_dim if self.cond == "concat" else 0)] + widths[:-1]
        self.blocks = nn.Sequential(*[
            DownBlock(c_in, c_out, norm, use_sn, first=i == 0)
            for i, (c_in, c_out) in enumerate(zip(ins, widths))
        ])
        self.mbstd = MinibatchStd(mbstd) if mbstd else None
        self.fc = linear(widths[-1] + (1 if mbstd else 0), 1, use_sn=use_sn, gain=1.0)
        features = widths[-1]
        self.proj = (ProjectionHead(features, label_dim, use_sn) if self.cond == "projection"
                     else None)
        self.ac = ACHead(features, label_dim, use_sn) if self.cond == "ac" else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = x.shape[0]
        c = check_labels(c, n, self.label_dim, "ResNetCritic").to(x.dtype)
        if self.cond == "concat":
            x = concat_label_maps(x, c)
        feats = F.leaky_relu(self.blocks(x), 0.2)  # [N, F, 4, 4]
        h = feats.sum(dim=(2, 3))  # [N, F]
        # With the minibatch-std map the score reads [N, F + 1]; the heads keep reading h.
        fc_in = h if self.mbstd is None else self.mbstd(feats).sum(dim=(2, 3))
        scores = self.fc(fc_in).reshape(n)
        if self.proj is not None:
            scores = scores + self.proj(h, c)
        return scores, (self.ac(h) if self.ac is not None else None)


__all__ = ["ResNetCritic", "ResNetGenerator"]
