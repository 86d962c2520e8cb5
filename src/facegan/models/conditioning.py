"""Conditioning pieces shared by every architecture: the label shape check, label embedding,
conditional batch norm, label maps for input concatenation, and the critic's projection and AC
heads.

Labels ``c`` are a float tensor (N, K), K = ``NetSpec.label_dim``: one-hot rows for K classes,
or {0, 1}^K for K independent binary attributes. The networks do not need to know which: every
piece here is linear in ``c``, so for one-hot ``c`` a ``Linear(K, D, bias=False)`` is a class
embedding (its column k is class k's vector) and for attributes it sums the vectors of the
attributes that are on.

Choices (``ModelConfig.g_cond`` / ``ModelConfig.d_cond``):

- generator ``concat``: ``[z, embed(c)]`` into the first layer (:class:`LabelEmbedding`);
  ``cbn``: every generator batch norm becomes a :class:`ConditionalBatchNorm2d`.
- critic ``concat``: ``c`` broadcast to K constant maps appended to the image's channels
  (:func:`concat_label_maps`); ``projection``: ``score = linear(h) + <embed(c), h>``
  (:class:`ProjectionHead`, Miyato & Koyama 2018); ``ac``: an auxiliary classifier
  (:class:`ACHead`) on the same features, the score itself unconditional.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import (  # the choices, named once (Config.validate checks them)
    D_CONDS,
    G_CONDS,
)
from .layers import linear


def network_cond(label_dim: int, cond: str, allowed: tuple[str, ...], net: str) -> str | None:
    """How a network takes labels: ``cond`` when it has any (``label_dim`` > 0), else None.
    ValueError naming the choices when ``cond`` is not one of ``allowed`` (``net``, such as
    "generator", names the network in the message)."""
    if label_dim <= 0:
        return None
    if cond not in allowed:
        raise ValueError(f"unknown {net} conditioning '{cond}'; use one of: {', '.join(allowed)}")
    return cond


def check_labels(c: torch.Tensor, n: int, label_dim: int, who: str) -> torch.Tensor:
    """Return ``c`` if it is a tensor of shape (n, label_dim), else raise ValueError.

    Every net takes ``c``, float (N, K) with K = ``label_dim``; K = 0 for an unconditional
    net, whose ``c`` is ``torch.zeros(N, 0)``. A wrong width is a model built for other labels,
    so it is refused rather than ignored.
    """
    if isinstance(c, torch.Tensor) and c.dim() == 2 and tuple(c.shape) == (n, label_dim):
        return c
    got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
    hint = " (an unconditional net takes torch.zeros(N, 0))" if label_dim == 0 else ""
    raise ValueError(f"{who} (label_dim={label_dim}) expects labels c of shape ({n}, {label_dim}) "
                     f"for a batch of {n}, got {got}{hint}")


class LabelEmbedding(nn.Module):
    """The generator's label embedding for ``g_cond=concat``: c (N, K) -> (N, E), E = ``dim``.

    A ``Linear(K, E, bias=False)`` with weights ~ N(0, 1), as ``nn.Embedding``: for one-hot c
    it is a class embedding whose entries have the variance of z's, so at init the label moves
    the first layer as much as the noise does (the raw one-hot vector, unit norm against z's
    sqrt(latent_dim), would start almost ignored). It feeds a linear first layer, so it is a
    reparametrisation of concatenating c itself, not extra capacity. No spectral norm: it is
    not a layer of the critic and the first layer that reads it already has one when g_sn.
    """

    def __init__(self, label_dim: int, dim: int):
        super().__init__()
        self.label_dim, self.dim = label_dim, dim
        self.weight = nn.Parameter(torch.empty(dim, label_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, 0.0, 1.0)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(c, self.weight)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without affine, then a per-sample, per-channel gain and bias from the labels
    (BigGAN-PyTorch ``ccbn``, mimicry ``ConditionalBatchNorm2d``).

    forward(x, c): x (N, C, H, W), c (N, K) ->
    ``bn(x) * (1 + to_gain(c))[:, :, None, None] + to_bias(c)[:, :, None, None]``, same shape
    as x. ``to_gain`` and ``to_bias`` are ``Linear(K, C)`` with a bias (the bias is the
    unconditional affine, which an all-zero attribute vector still gets), all zero at init:
    the layer is then exactly a ``BatchNorm2d`` with gain 1 and bias 0. No spectral norm on them:
    the spectral norm of a zero matrix is undefined.
    """

    def __init__(self, num_features: int, label_dim: int, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.num_features, self.label_dim = num_features, label_dim
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.to_gain = nn.Linear(label_dim, num_features)
        self.to_bias = nn.Linear(label_dim, num_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.to_gain, self.to_bias):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.to_gain(c)  # [N, C]
        bias = self.to_bias(c)  # [N, C]
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


def norm_forward(norm: nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Apply a norm layer, passing the labels to a :class:`ConditionalBatchNorm2d`."""
    return norm(x, c) if isinstance(norm, ConditionalBatchNorm2d) else norm(x)


def sequential_forward(seq: nn.Sequential, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Run an ``nn.Sequential`` whose conditional batch norms need the labels."""
    for m in seq:
        x = norm_forward(m, x, c)
    return x


def concat_label_maps(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W), c (N, K) -> (N, C + K, H, W): c[:, k] as a constant map per label.

    The maps are broadcast views until the concatenation, which copies them once.
    """
    n, _, h, w = x.shape
    maps = c.to(x.dtype)[:, :, None, None].expand(n, c.shape[1], h, w)
    return torch.cat([x, maps], dim=1)


class ProjectionHead(nn.Module):
    """The projection term of the projection critic (Miyato & Koyama 2018): ``<embed(c), h>``.

    forward(h, c): pooled features h (N, F), c (N, K) -> (N,), added by the critic to its
    unconditional score ``linear(h)``. ``embed`` is a ``Linear(K, F, bias=False)``,
    Xavier-initialised, spectrally normalised when ``use_sn`` (the sigma of W and of W^T are
    the same, so this is mimicry's SN embedding for one-hot c).
    """

    def __init__(self, features: int, label_dim: int, use_sn: bool = False):
        super().__init__()
        self.embed = linear(label_dim, features, bias=False, use_sn=use_sn, gain=1.0)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (self.embed(c) * h).sum(dim=1)


class ACHead(nn.Module):
    """Auxiliary classifier (AC-GAN, Odena et al. 2017): pooled features h (N, F) -> label
    logits (N, K), a ``Linear(F, K)`` (spectrally normalised when ``use_sn``).

    For one-hot labels the loss applies a softmax cross-entropy to the logits, for binary
    attributes a per-attribute sigmoid BCE; the head is the same.

    Without spectral norm the weights start at zero, so the first logits are 0 and the AC loss
    starts at chance (log K for K classes, log 2 per attribute). Xavier weights on the critic's
    features, which are summed over 4x4 positions and not normalised, gave logits of several
    units and a first AC loss of 3.3 for one attribute; the head's own gradient (features times
    the logit error) does not depend on its weights, so it learns as fast from zero. With
    spectral norm the weights stay Xavier: the spectral norm of a zero matrix is undefined.
    """

    def __init__(self, features: int, label_dim: int, use_sn: bool = False):
        super().__init__()
        self.fc = linear(features, label_dim, use_sn=use_sn, gain=1.0)
        if not use_sn:
            nn.init.zeros_(self.fc.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)


__all__ = [
    "D_CONDS",
    "G_CONDS",
    "ACHead",
    "ConditionalBatchNorm2d",
    "LabelEmbedding",
    "ProjectionHead",
    "check_labels",
    "concat_label_maps",
    "network_cond",
    "norm_forward",
    "sequential_forward",
]
