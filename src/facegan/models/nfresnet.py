"""Normalisation-free residual generator and critic in the style of R3GAN (Huang et al. 2024).

No normalisation layers and no spectral norm: the regularised relativistic loss (R1 + R2,
``facegan.losses``) keeps training stable, and a fix-up style initialisation keeps the
residual stacks well scaled instead. Every residual block is 1x1 conv (C -> e*C), biased
LeakyReLU 0.2, grouped 3x3 conv (``group_size`` channels a group), biased LeakyReLU 0.2,
1x1 conv (e*C -> C) whose weights start at zero, so every block starts as the identity and
the network as its stem. The other convolutions are He-initialised with their gain divided
by L^(1/4), L the number of blocks in the network (R3GAN's variance scaling for 3-layer
branches: L^(-1/(2m-2)), m = 3), so adding blocks does not grow the output's variance.

Resampling is linear: bilinear up-sampling in the generator, a [1, 3, 3, 1] low-pass filter
with stride 2 in the critic (a depthwise convolution with a fixed kernel, which has the
double backward that R1/R2 need), each after / before a 1x1 conv where the width changes.

Widths follow :func:`.dcgan.stage_widths` (``g_width``/``d_width``/``max_width`` mean what
they mean for the other architectures): at 64 px, width 32 -> 256 channels at 4x4 down to 32
at 32x32; the full-resolution stage keeps the last width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import ACHead, LabelEmbedding, check_labels, network_cond
from .dcgan import stage_widths
from .spec import check_resolution

LRELU_SLOPE = 0.2
# He gain for LeakyReLU(0.2): keeps the activations' second moment through a layer.
LRELU_GAIN = math.sqrt(2.0 / (1.0 + LRELU_SLOPE ** 2))


def _he_init(layer: nn.Module, gain: float) -> nn.Module:
    """weights ~ N(0, gain^2 / fan_in); gain 0 zeroes them (a block's last layer)."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _conv(c_in: int, c_out: int, k: int, *, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    return _he_init(nn.Conv2d(c_in, c_out, k, padding=(k - 1) // 2, groups=groups, bias=False), gain)


class BiasedLReLU(nn.Module):
    """LeakyReLU(0.2)(x + b), b a learned per-channel bias starting at 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), LRELU_SLOPE)


def groups_for(channels: int, group_size: int) -> int:
    """Groups of the 3x3 conv: ``channels / group_size``, at least 1, dividing ``channels``."""
    g = max(1, channels // max(1, group_size))
    while channels % g:
        g -= 1
    return g


class NFBlock(nn.Module):
    """x + conv1x1(act(gconv3x3(act(conv1x1(x))))), x (N, C, H, W) -> (N, C, H, W).

    total_blocks: L, the number of blocks in the whole network (the fix-up scaling).
    """

    def __init__(self, channels: int, *, expansion: int = 2, group_size: int = 16, total_blocks: int = 1):
        super().__init__()
        hidden = channels * expansion
        gain = LRELU_GAIN * total_blocks ** (-1.0 / 4.0)
        self.conv1 = _conv(channels, hidden, 1, gain=gain)
        self.act1 = BiasedLReLU(hidden)
        self.conv2 = _conv(hidden, hidden, 3, groups=groups_for(hidden, group_size), gain=gain)
        self.act2 = BiasedLReLU(hidden)
        self.conv3 = _conv(hidden, channels, 1, gain=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))


def _lowpass_kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum()


class Downsample(nn.Module):
    """(N, C, H, W) -> (N, C, H/2, W/2): the [1, 3, 3, 1] / 8 filter (per axis), stride 2."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", _lowpass_kernel()[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, 4, 4)
        return F.conv2d(x, k, stride=2, padding=1, groups=c)


class NFGenerator(nn.Module):
    """Latent vector to image.

    forward(z, c): z float (N, latent_dim), labels c float (N, K), K = label_dim (0 without
    labels: c is ``torch.zeros(N, 0)``, not read) -> images float (N, channels, R, R) in
    [-1, 1] (tanh).
    Layout (64 px, width 32, 1 block a stage): the basis, a learned 4x4 map per channel
    scaled per sample by ``Linear(z)`` (R3GAN's generative basis), 4x4x256; a block; then
    per stage a 1x1 conv where the width changes, bilinear 2x up-sampling and the stage's
    blocks: 8x8x128, 16x16x64, 32x32x32, 64x64x32; a 1x1 conv to ``channels`` and tanh.
    Conditional (K > 0, cond "concat"): z is joined by ``embed(c)`` (``embed_dim`` features,
    default latent_dim) before the basis.
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 32,
                 max_width: int = 1024, blocks: int = 1, expansion: int = 2, group_size: int = 16,
                 channels: int = 3, label_dim: int = 0, cond: str = "concat",
                 embed_dim: int | None = None):
        super().__init__()
        check_resolution(resolution)
        self.latent_dim, self.resolution, self.label_dim = latent_dim, resolution, label_dim
        self.cond = network_cond(label_dim, cond, ("concat",), "normalisation-free generator")
        self.embed_dim = (embed_dim or latent_dim) if self.cond else 0
        widths = stage_widths(resolution, width, max_width)
        outs = widths + widths[-1:]  # the full-resolution stage keeps the last width
        total = blocks * len(outs)
        self.basis = nn.Parameter(torch.randn(outs[0], 4, 4))
        self.fc = _he_init(nn.Linear(latent_dim + self.embed_dim, outs[0], bias=False), 1.0)
        self.stages = nn.ModuleList()
        for i, c_out in enumerate(outs):
            c_in = outs[i - 1] if i else c_out
            layers: list[nn.Module] = []
            if i:
                if c_in != c_out:
                    layers.append(_conv(c_in, c_out, 1))
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers += [NFBlock(c_out, expansion=expansion, group_size=group_size, total_blocks=total)
                       for _ in range(blocks)]
            self.stages.append(nn.Sequential(*layers))
        self.to_rgb = _conv(outs[-1], channels, 1)
        self.embed = LabelEmbedding(label_dim, self.embed_dim) if self.cond else None

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        z = z.reshape(n, self.latent_dim)
        c = check_labels(c, n, self.label_dim, "NFGenerator").to(z.dtype)
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)
        x = self.basis.to(z.dtype)[None] * self.fc(z)[:, :, None, None]  # [N, C, 4, 4]
        for stage in self.stages:
            x = stage(x)
        return torch.tanh(self.to_rgb(x))


class NFCritic(nn.Module):
    """Image to one unbounded score per image.

    forward(x, c): x float (N, channels, R, R) in [-1, 1], c float (N, K) (K = label_dim, 0
    without labels) -> (scores float (N,), aux (N, K) logits for cond "ac", else None).
    Layout (64 px, width 32): a 1x1 conv to 32 channels; per stage the blocks, then
    [1, 3, 3, 1] down-sampling and a 1x1 conv where the width changes: 32x32x32,
    16x16x64, 8x8x128, 4x4x256; at 4x4 the blocks and the basis, a 4x4 depthwise conv to
    features h (N, F) (R3GAN's discriminative basis), then a Linear to one score.
    Conditional (K > 0): cond "projection": ``scores = fc(h) + <embed(c), h>`` (Miyato &
    Koyama; R3GAN conditions this way); cond "ac": aux = ``ac(h)`` (c not read).
    """

    def __init__(self, resolution: int = 64, width: int = 32, max_width: int = 1024, blocks: int = 1,
                 expansion: int = 2, group_size: int = 16, channels: int = 3, label_dim: int = 0,
                 cond: str = "projection"):
        super().__init__()
        check_resolution(resolution)
        self.resolution, self.label_dim = resolution, label_dim
        self.cond = network_cond(label_dim, cond, ("projection", "ac"), "normalisation-free critic")
        widths = stage_widths(resolution, width, max_width)[::-1]  # 32x32 ... 4x4
        ins = widths[:1] + widths  # the full-resolution stage has the first width
        total = blocks * len(ins)
        self.from_rgb = _conv(channels, ins[0], 1)
        self.stages = nn.ModuleList()
        for i, c_in in enumerate(ins):
            layers: list[nn.Module] = [NFBlock(c_in, expansion=expansion, group_size=group_size, total_blocks=total)
                                       for _ in range(blocks)]
            if i < len(ins) - 1:
                layers.append(Downsample())
                if ins[i + 1] != c_in:
                    layers.append(_conv(c_in, ins[i + 1], 1))
            self.stages.append(nn.Sequential(*layers))
        features = ins[-1]
        self.basis = _he_init(nn.Conv2d(features, features, 4, groups=features, bias=False), 1.0)
        self.fc = _he_init(nn.Linear(features, 1, bias=False), 1.0)
        self.proj = None
        if self.cond == "projection":
            # Embedding entries of variance 1/F: at init the projection term is as large as fc(h).
            self.proj = _he_init(nn.Linear(label_dim, features, bias=False), 1.0 / math.sqrt(features))
        self.ac = ACHead(features, label_dim) if self.cond == "ac" else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = x.shape[0]
        c = check_labels(c, n, self.label_dim, "NFCritic").to(x.dtype)
        h = self.from_rgb(x)
        for stage in self.stages:
            h = stage(h)
        h = self.basis(h).reshape(n, -1)  # [N, F]
        scores = self.fc(h).reshape(n)
        if self.proj is not None:
            scores = scores + (self.proj(c) * h).sum(dim=1)
        return scores, (self.ac(h) if self.ac is not None else None)


__all__ = ["NFBlock", "NFCritic", "NFGenerator"]
