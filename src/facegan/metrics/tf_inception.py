"""An eager, CPU-friendly module of the FID Inception-v3 (the TF 2015-12-05 graph).

The same weights as the TorchScript ``default_1.pt`` (or pytorch-fid's ``.pth``), run as a
plain ``nn.Module`` in fp32:

* **Batch norm folded into the convolutions.** Every convolution of the graph is followed
  by a batch norm (TF: no scale, ``eps = 0.001``) and a ReLU; ``w * s`` and
  ``beta - mean * s`` with ``s = 1 / sqrt(var + eps)`` (folded in float64) give one
  convolution with a bias.
* **channels_last throughout.** The TorchScript file makes every branch ``.contiguous()``
  before its concatenation, which turns channels_last activations back into NCHW in every
  block; here nothing leaves channels_last, which is what oneDNN's CPU convolutions prefer.
* **Sibling 1x1 convolutions as one.** The 1x1 convolutions that read a block's input are
  stacked into one convolution (a wider GEMM, one pass over the input) and split after.

The TF graph's peculiarities, which torchvision's Inception-v3 does not have and this module
keeps: the 3x3 average pools of the blocks ignore the zero padding
(``count_include_pad=False``), the last block (Mixed_7c / ``mixed_10``) pools its fourth
branch with a 3x3 *max* pool, and the final pool is a plain mean over the 8x8 grid.

Input: float (N, 3, 299, 299) already scaled ``(x - 128) / 128``; output float32 (N, 2048).
Features agree with the TorchScript file to float rounding (about 1e-5 absolute).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

TF_BN_EPS = 1e-3
NUM_CONVS = 94

Folded = tuple[torch.Tensor, torch.Tensor]  # (weight (O, I, kh, kw), bias (O,)) float32


def fold_bn(weight: torch.Tensor, beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
            gamma: torch.Tensor | None = None, eps: float = TF_BN_EPS) -> Folded:
    """conv (no bias) -> batch norm (eval) as one convolution: (weight, bias), float32."""
    s = torch.rsqrt(var.double() + eps)
    if gamma is not None:
        s = s * gamma.double()
    w = weight.double() * s[:, None, None, None]
    b = beta.double() - mean.double() * s
    return w.float().contiguous(), b.float().contiguous()


def convs_from_torchscript_state_dict(sd: dict[str, torch.Tensor]) -> list[Folded]:
    """The 94 folded convolutions of ``default_1.pt`` (keys ``...weight/.beta/.mean/.var``),
    in the file's order, which is the graph's order."""
    prefixes = [k[: -len(".weight")] for k in sd if k.endswith(".weight")]
    convs = []
    for p in prefixes:
        missing = [f"{p}.{s}" for s in ("beta", "mean", "var") if f"{p}.{s}" not in sd]
        if missing:
            raise ValueError(f"not the FID Inception layout: {missing[0]} missing")
        convs.append(fold_bn(sd[p + ".weight"], sd[p + ".beta"], sd[p + ".mean"], sd[p + ".var"]))
    return convs


def convs_from_pytorch_fid(net: nn.Module) -> list[Folded]:
    """The 94 folded convolutions of pytorch-fid's network (torchvision BasicConv2d modules,
    conv + batch norm with its own eps and scale), in registration order."""
    convs = []
    for m in net.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            convs.append(fold_bn(conv.weight.detach(), bn.bias.detach(), bn.running_mean,
                                 bn.running_var, gamma=bn.weight.detach(), eps=bn.eps))
    return convs


class _Conv(nn.Module):
    """A folded convolution + ReLU."""

    def __init__(self, wb: Folded, stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        self.register_buffer("weight", wb[0])
        self.register_buffer("bias", wb[1])
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))


class _Stacked1x1(nn.Module):
    """Several 1x1 convolutions (+ ReLU) of the same input as one; returns the parts."""

    def __init__(self, wbs: Sequence[Folded]):
        super().__init__()
        for w, _ in wbs:
            if w.shape[2:] != (1, 1):
                raise ValueError(f"expected a 1x1 convolution, got {tuple(w.shape)}")
        self.sizes = [w.shape[0] for w, _ in wbs]
        self.register_buffer("weight", torch.cat([w for w, _ in wbs]))
        self.register_buffer("bias", torch.cat([b for _, b in wbs]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(F.relu_(F.conv2d(x, self.weight, self.bias)), self.sizes, 1)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real (non-padding) inputs.
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class _BlockA(nn.Module):  # Mixed_5b/5c/5d (mixed, mixed_1, mixed_2): 35 x 35
    def __init__(self, it: Iterator[Folded]):
        super().__init__()
        b1, b5_1, b5_2, d1, d2, d3, pool = (next(it) for _ in range(7))
        self.stack = _Stacked1x1([b1, b5_1, d1])
        self.b5_2 = _Conv(b5_2, padding=2)
        self.d2 = _Conv(d2, padding=1)
        self.d3 = _Conv(d3, padding=1)
        self.pool = _Conv(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1, b5, d = self.stack(x)
        return torch.cat([b1, self.b5_2(b5), self.d3(self.d2(d)), self.pool(_avg3(x))], 1)


class _BlockB(nn.Module):  # Mixed_6a (mixed_3): 35 -> 17
    def __init__(self, it: Iterator[Folded]):
        super().__init__()
        b3, d1, d2, d3 = (next(it) for _ in range(4))
        self.b3 = _Conv(b3, stride=2)
        self.d1 = _Conv(d1)
        self.d2 = _Conv(d2, padding=1)
        self.d3 = _Conv(d3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.d3(self.d2(self.d1(x))), F.max_pool2d(x, 3, 2)], 1)


class _BlockC(nn.Module):  # Mixed_6b..6e (mixed_4..mixed_7): 17 x 17, factorised 7x7
    def __init__(self, it: Iterator[Folded]):
        super().__init__()
        b1 = next(it)
        t1, t2, t3 = (next(it) for _ in range(3))
        d1, d2, d3, d4, d5 = (next(it) for _ in range(5))
        pool = next(it)
        self.stack = _Stacked1x1([b1, t1, d1])
        self.t2 = _Conv(t2, padding=(0, 3))
        self.t3 = _Conv(t3, padding=(3, 0))
        self.d2 = _Conv(d2, padding=(3, 0))
        self.d3 = _Conv(d3, padding=(0, 3))
        self.d4 = _Conv(d4, padding=(3, 0))
        self.d5 = _Conv(d5, padding=(0, 3))
        self.pool = _Conv(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1, t, d = self.stack(x)
        t = self.t3(self.t2(t))
        d = self.d5(self.d4(self.d3(self.d2(d))))
        return torch.cat([b1, t, d, self.pool(_avg3(x))], 1)


class _BlockD(nn.Module):  # Mixed_7a (mixed_8): 17 -> 8
    def __init__(self, it: Iterator[Folded]):
        super().__init__()
        t1, t2, d1, d2, d3, d4 = (next(it) for _ in range(6))
        self.stack = _Stacked1x1([t1, d1])
        self.t2 = _Conv(t2, stride=2)
        self.d2 = _Conv(d2, padding=(0, 3))
        self.d3 = _Conv(d3, padding=(3, 0))
        self.d4 = _Conv(d4, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = self.stack(x)
        return torch.cat([self.t2(t), self.d4(self.d3(self.d2(d))), F.max_pool2d(x, 3, 2)], 1)


class _BlockE(nn.Module):  # Mixed_7b (mixed_9, avg pool), Mixed_7c (mixed_10, max pool): 8 x 8
    def __init__(self, it: Iterator[Folded], max_pool: bool):
        super().__init__()
        b1, a1, a2a, a2b, d1, d2, d3a, d3b, pool = (next(it) for _ in range(9))
        self.stack = _Stacked1x1([b1, a1, d1])
        self.a2a = _Conv(a2a, padding=(0, 1))
        self.a2b = _Conv(a2b, padding=(1, 0))
        self.d2 = _Conv(d2, padding=1)
        self.d3a = _Conv(d3a, padding=(0, 1))
        self.d3b = _Conv(d3b, padding=(1, 0))
        self.pool = _Conv(pool)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1, a, d = self.stack(x)
        d = self.d2(d)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        return torch.cat([b1, self.a2a(a), self.a2b(a), self.d3a(d), self.d3b(d),
                          self.pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """forward(x): float (N, 3, 299, 299) scaled ``(x - 128) / 128`` -> float32 (N, 2048).

    ``convs``: the graph's 94 convolutions with batch norm folded in, in graph order (see
    :func:`convs_from_torchscript_state_dict`, :func:`convs_from_pytorch_fid`). Call
    ``.to(memory_format=torch.channels_last)`` and feed channels_last input for speed.
    """

    def __init__(self, convs: Sequence[Folded]):
        super().__init__()
        if len(convs) != NUM_CONVS:
            raise ValueError(f"the FID Inception has {NUM_CONVS} convolutions, got {len(convs)}")
        it = iter(convs)
        self.conv1 = _Conv(next(it), stride=2)  # 299 -> 149
        self.conv2 = _Conv(next(it))  # -> 147
        self.conv3 = _Conv(next(it), padding=1)
        self.conv4 = _Conv(next(it))  # after max pool: 73, 1x1
        self.conv5 = _Conv(next(it))  # -> 71, then max pool -> 35
        self.blocks = nn.Sequential(
            _BlockA(it), _BlockA(it), _BlockA(it), _BlockB(it),
            _BlockC(it), _BlockC(it), _BlockC(it), _BlockC(it), _BlockD(it),
            _BlockE(it, max_pool=False), _BlockE(it, max_pool=True),
        )
        # Every weight shape must line up with its place in the graph; a wrong file fails here.
        expected = [(32, 3, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (80, 64, 1, 1), (192, 80, 3, 3)]
        got = [tuple(c.weight.shape) for c in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)]
        if got != expected or tuple(self.blocks[-1].pool.weight.shape) != (192, 2048, 1, 1):
            raise ValueError("convolution shapes do not match the FID Inception-v3")
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.conv5(self.conv4(x))
        x = F.max_pool2d(x, 3, 2)
        x = self.blocks(x)
        return x.mean(dim=(2, 3))  # the graph's 8x8 average pool: (N, 2048)
