"""Optimising a latent so that the generator draws a given image: pixel + feature loss and a
prior that keeps the latent where the generator was trained."""

from __future__ import annotations

import math
from collections.abc import Generator

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import Progress, run_steps
from .features import FeatureNet

DEFAULT_STEPS = 300
DEFAULT_LR = 0.05
DEFAULT_FEATURE_WEIGHT = 0.1
# The latent prior (prior_penalty): zero within 2 standard deviations of the N(0, I) shell, and
# a wall outside it (weight 1, so the wall holds against the pixel loss). A band of 3 at weight
# 0.05 let the optimiser spread the latents' norms half again as widely as N(0, I) does. With
# the start scaled into the band (into_band) the band of 2 projects closer (own samples 45.0
# against 42.7 dB) and edits as the loose band did (docs/projection.md, "What it reaches").
DEFAULT_PRIOR_WEIGHT = 1.0
DEFAULT_PRIOR_WIDTH = 2.0


def prior_penalty(z: torch.Tensor, width: float = DEFAULT_PRIOR_WIDTH) -> torch.Tensor:
    """Per row of z (N, D): ``relu(| |z|^2 / D - 1 | - width * sqrt(2 / D))^2``.

    Latents z ~ N(0, I_D) lie on a thin shell: ``|z|^2 / D`` has mean 1 and standard deviation
    ``sqrt(2 / D)`` (0.125 for D = 128). The generator was trained only there; an unconstrained
    optimisation can leave the shell and find a latent that matches the photo's pixels with an
    image the generator never learnt (over-fitting the photo), which then edits and morphs
    badly. The penalty is zero within ``width`` standard deviations of the shell (default 2:
    where 95% of the training latents were), so it does not pull a plausible latent anywhere,
    and grows quadratically outside; the direction of ``z`` is free."""
    d = z.shape[1]
    off = (z.square().mean(1) - 1.0).abs() - width * math.sqrt(2.0 / d)
    return F.relu(off).square()


def into_band(z: torch.Tensor, width: float = DEFAULT_PRIOR_WIDTH) -> torch.Tensor:
    """Latents z float (N, D) with each row outside :func:`prior_penalty`'s band (``|z|^2 / D``
    more than ``width`` standard deviations ``sqrt(2 / D)`` from 1) scaled along itself onto
    the band's nearer edge; rows inside it are returned as they are. The direction of every
    row is kept."""
    d = z.shape[1]
    half = width * math.sqrt(2.0 / d)
    r = z.square().mean(1, keepdim=True)
    want = r.clamp(max(1.0 - half, 1e-6), 1.0 + half)
    return z * torch.sqrt(want / r.clamp_min(1e-12))


def optimise_latent(generator: nn.Module, target: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, *,
                    steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                    features: FeatureNet | None = None,
                    feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                    prior_width: float = DEFAULT_PRIOR_WIDTH,
                    progress: Progress | None = None) -> torch.Tensor:
    """Optimise latents from ``z0`` float (N, D) so that ``G(z, c)`` matches ``target`` float
    (N, 3, R, R) in [-1, 1]; c float (N, K). Returns float (N, D) on the CPU: per image, the
    latent of the lowest loss seen.

    With a prior, each row of ``z0`` outside its band is first scaled onto it (:func:`into_band`).
    Loss per image: pixel MSE + ``feature_weight`` * :meth:`FeatureNet.distance` (when
    ``features``) + ``prior_weight`` * :func:`prior_penalty` (zero within ``prior_width``
    standard deviations of the N(0, I) shell). Adam, the learning rate ramped
    up over the first 5% of the steps and down (cosine) over the last 25%, as StyleGAN2's
    projector does. Rows are independent (each image's loss depends only on its own latent),
    so a batch gives what one image at a time gives. Only z gets gradients. ``progress``: a
    :class:`~facegan.progress.Progress`, counted on by one per step. :func:`latent_optimisation`
    is the same one step at a time.
    """
    return run_steps(latent_optimisation(generator, target, z0, c, steps=steps, lr=lr, features=features,
                                         feature_weight=feature_weight, prior_weight=prior_weight,
                                         prior_width=prior_width), progress)


@torch.enable_grad()  # per step (a generator function): within a caller's no_grad() as well
def latent_optimisation(generator: nn.Module, target: torch.Tensor, z0: torch.Tensor, c: torch.Tensor, *,
                        steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                        features: FeatureNet | None = None,
                        feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                        prior_width: float = DEFAULT_PRIOR_WIDTH) -> Generator[float, None, torch.Tensor]:
    """:func:`optimise_latent` as a Python generator: each ``next()`` does one Adam step and
    yields the mean loss; the return value is the best latents float (N, D) on the CPU."""
    device = next(generator.parameters()).device
    target, c = target.to(device).float(), c.to(device)
    z = z0.detach().clone().float().to(device)
    if prior_weight > 0:
        # Start inside the prior's band: the encoder's guess, a regression to the mean, has
        # |z|^2 / D near 0.4, and a start outside the wall would spend Adam's first steps
        # (which normalise the step size) climbing back over it instead of fitting the photo.
        z = into_band(z, prior_width)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
    tfeat = None
    if features is not None and feature_weight > 0:
        with torch.no_grad():
            tfeat = [t.detach() for t in features(target, c)]
    best = z.detach().clone()
    best_loss = torch.full((z.shape[0],), math.inf, device=device)
    for i in range(steps + 1):  # the last pass only scores the final latent
        x = generator(z, c)
        loss = (x - target).square().flatten(1).mean(1)
        if tfeat is not None:
            loss = loss + feature_weight * features.distance(features(x, c), tfeat)
        if prior_weight > 0:
            loss = loss + prior_weight * prior_penalty(z, prior_width)
        with torch.no_grad():
            better = loss.detach() < best_loss
            best[better] = z.detach()[better]
            best_loss = torch.where(better, loss.detach(), best_loss)
        if i == steps:
            break
        t = i / steps
        ramp = min(1.0, (1.0 - t) / 0.25)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        for group in opt.param_groups:
            group["lr"] = lr * ramp * min(1.0, (i + 1) / max(1.0, 0.05 * steps))
        (grad,) = torch.autograd.grad(loss.sum(), z)
        z.grad = grad
        opt.step()
        yield float(loss.detach().mean())
    return best.cpu()
