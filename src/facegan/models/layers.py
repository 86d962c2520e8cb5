"""Layers shared by every architecture: spectral norm, 2-d normalisation, initialised convs.

A new architecture builds its convolutions and linear layers with :func:`conv2d` /
:func:`linear` (initialised, optionally spectrally normalised) and its normalisation with
:func:`norm2d`, so a config's ``*_norm`` and ``*_sn`` mean the same thing everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("batch", "instance", "layer", "none")

# Gain for a layer whose output goes through a ReLU / LeakyReLU(0.2) (He et al.): it keeps the
# activations' variance roughly constant through depth when there is no spectral norm.
RELU_GAIN = math.sqrt(2.0)


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Return ``module`` with spectral norm on its ``weight`` if ``enabled`` (Miyato et al. 2018).

    The weight W becomes W / sigma(W), sigma the largest singular value of W reshaped to
    (out, in * kh * kw), estimated by one power iteration per forward in train mode (15 at
    registration); eval mode reuses the stored estimate. The raw weight lives at
    ``module.parametrizations.weight.original``; the state dict stores it with ``_u``/``_v``.
    """
    return spectral_norm(module) if enabled else module


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` computed in float32 when its input is float16 (fp16 autocast).

    Its second derivative (the gradient penalty's double backward) has terms in 1/sigma^3 that
    overflow half precision's range (65504) even with no loss scale, as measured on a 16 px
    critic; bf16 has float32's range and is left as it is. Same parameters and state dict as
    ``nn.InstanceNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float16:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).half()


def norm2d(kind: str, channels: int) -> nn.Module:
    """Normalisation over (N, C, H, W) activations: batch | instance | layer | none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # affine: the WGAN-GP recipe's critic learns a per-channel scale and shift.
        return InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        # GroupNorm with one group normalises each sample over (C, H, W): layer norm for convs.
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; use one of: {', '.join(NORMS)}")


class MinibatchStd(nn.Module):
    """The minibatch standard deviation as one more feature map (Karras et al. 2018, ProGAN).

    forward(x): x float (N, C, H, W) -> (N, C + 1, H, W). The samples go in groups of
    ``group`` consecutive ones; the extra map of each sample is the standard deviation over
    its group of every feature at every position, averaged over features and positions. A
    critic that sees how varied a batch is can tell a generator that draws few faces from the
    data, which one image at a time it cannot.

    Groups are consecutive samples (not StyleGAN's strided ones) because the trainer scores
    the real batch and the fake batch in one call, ``cat([real, fake])``: with a batch a
    multiple of ``group`` no group mixes the two. A batch that is not a multiple takes the
    largest group size that divides it (1: the map is a constant). Computed in float32, as
    bf16 loses the variance of near-equal values.
    """

    def __init__(self, group: int = 4):
        super().__init__()
        if group < 1:
            raise ValueError(f"minibatch-std group must be >= 1, got {group}")
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)
        # Features last, as channels_last tensors lie in memory, and the variance written out:
        # torch.var over a strided view is many times slower than these element-wise ops.
        y = x.permute(0, 2, 3, 1).reshape(n // g, g, h * w * c).float()
        var = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)  # [N / g, H * W * C]
        std = (var + 1e-8).sqrt().mean(dim=1)  # [N / g]
        y = std.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


def conv2d(c_in: int, c_out: int, kernel_size: int, *, bias: bool = True, use_sn: bool = False,
           gain: float = 1.0) -> nn.Conv2d:
    """A stride-1 'same' conv, Xavier-uniform initialised with ``gain``, biases 0, SN if asked.

    Xavier (as SNGAN / mimicry do) rather than DCGAN's N(0, 0.02): with many stacked 3x3 convs
    a fixed 0.02 shrinks the signal at every layer when there is no norm; under spectral norm
    the forward pass ignores the scale, but a tiny raw weight has a tiny sigma and so
    oversized gradients (d(W/sigma)/dW ~ 1/sigma).
    """
    conv = nn.Conv2d(c_in, c_out, kernel_size, 1, kernel_size // 2, bias=bias)
    nn.init.xavier_uniform_(conv.weight, gain)
    if bias:
        nn.init.zeros_(conv.bias)
    return sn(conv, use_sn)


def linear(d_in: int, d_out: int, *, bias: bool = True, use_sn: bool = False,
           gain: float = 1.0) -> nn.Linear:
    """A Xavier-uniform initialised linear layer (see :func:`conv2d` for why), SN if asked."""
    lin = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(lin.weight, gain)
    if bias:
        nn.init.zeros_(lin.bias)
    return sn(lin, use_sn)


__all__ = ["NORMS", "RELU_GAIN", "MinibatchStd", "conv2d", "linear", "norm2d", "sn"]
