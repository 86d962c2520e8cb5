"""Progressive growing (Karras et al. 2018, ProGAN), the pieces the networks share.

A growing network is built at its full resolution R with extra output (generator) or input
(critic) layers at each coarser resolution from ``grow_from`` up, and a buffer ``lod`` (level of
detail, a float): how many halvings below R it works at. At lod m the generator stops m stages
early and draws an R / 2^m image that is scaled up to R (nearest), and the critic averages its
R x R input down to R / 2^m and skips its first m stages, so a coarse step costs a fraction of a
full one and both networks learn the coarse structure first. Between two levels the finer one
fades in linearly (ProGAN's fade). Data, augmentation and penalties stay at R throughout.

The trainer sets ``lod`` each step from the schedule (:func:`facegan.train.schedule.lod_at`);
a checkpoint keeps it, so a generator saved while growing draws what it drew then.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def growth_levels(resolution: int, grow_from: int) -> int:
    """How many resolutions below ``resolution`` a network grows through (0: ``grow_from`` 0,
    no growing). ValueError unless grow_from is a power of two, >= 8 and < resolution."""
    if grow_from == 0:
        return 0
    if grow_from < 8 or grow_from & (grow_from - 1) or grow_from >= resolution:
        raise ValueError(f"grow_from must be 0 or a power of two from 8 below the resolution "
                         f"{resolution}, got {grow_from}")
    return int(math.log2(resolution // grow_from))


def split_lod(lod: float) -> tuple[int, float]:
    """lod > 0 -> (coarse, a): the coarse level ``ceil(lod)`` and the weight ``a`` in [0, 1) of
    the next finer level ``coarse - 1`` faded in over it (0: the coarse level alone)."""
    coarse = math.ceil(lod)
    return coarse, coarse - lod


def upscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H * factor, W * factor), nearest neighbour (ProGAN's)."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H / factor, W / factor), box average."""
    return x if factor == 1 else F.avg_pool2d(x, factor)


def set_lod(module: nn.Module, lod: float) -> None:
    """Set the level of detail of every growing network inside ``module`` (a network, or one
    wrapped by ``torch.compile``), clamped to what each can grow through."""
    with torch.no_grad():
        for m in module.modules():
            levels = getattr(m, "grow_levels", 0)
            if levels:
                m.lod.fill_(min(max(float(lod), 0.0), float(levels)))


def current_lod(module: nn.Module) -> float:
    """The level of detail of the first growing network inside ``module``; 0 when none grows."""
    for m in module.modules():
        if getattr(m, "grow_levels", 0):
            return float(m.lod)
    return 0.0
