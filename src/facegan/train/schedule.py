"""Hyperparameters that change along a run: cosine annealing, the cool-down at the end of a
run, the EMA half-life ramp and the level of detail of progressive growing.

Everything is a function of the number of real images shown so far (generator steps times
the global batch), so a run is the same on a fast and a slow machine and a resumed run
continues exactly where it stopped. The one exception is the cool-down of a run that a time
budget ends: its end is known only by the clock, so the cool-down follows the training time
spent (which checkpoints keep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..models.grow import growth_levels


def cosine(progress: float, start: float, end: float) -> float:
    """start at progress 0, end at progress >= 1, a half cosine between."""
    p = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class Settings:
    """The values for one step: learning rates, Adam's beta2, the multiplier of the R1/R2
    weights, the EMA decay (None: no EMA) and the level of detail (:func:`lod_at`)."""

    g_lr: float
    d_lr: float
    beta2: float
    gamma_scale: float
    ema_decay: float | None
    lod: float = 0.0


def lod_at(cfg: Config, step: int) -> float:
    """Progressive growing's level of detail before generator step ``step``: how many halvings
    below ``data.resolution`` the networks work at. ``log2(resolution / model.grow_from)`` at
    the start, then per level ``train.grow_kimg`` thousand images at that resolution, and
    the next one faded in linearly over ``train.fade_kimg`` thousand (ProGAN's schedule);
    0 when growing is off or done."""
    if cfg.model.grow_from <= 0:
        return 0.0
    levels = growth_levels(cfg.data.resolution, cfg.model.grow_from)
    t = step * cfg.train.batch_size / 1000.0
    lod = float(levels)
    while lod > 0:
        t -= cfg.train.grow_kimg
        if t <= 0:
            break
        fade = cfg.train.fade_kimg
        if fade > 0 and t < fade:
            return lod - t / fade
        t -= fade
        lod -= 1.0
    return max(lod, 0.0)


def cooldown_scale(cfg: Config, progress: float) -> float:
    """The learning-rate multiplier of the cool-down (``train.cooldown``) at ``progress``, the
    fraction of the run done (0 to 1): 1 until the last ``cooldown`` of the run, then linearly
    down to 0 at its end."""
    c = cfg.train.cooldown
    if c <= 0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - progress) / c))


def run_progress(cfg: Config, step: int, elapsed: float) -> float:
    """The fraction of a run done before generator step ``step``, after ``elapsed`` seconds
    of training: the larger of the step and the time fractions (whichever limit,
    ``train.steps`` or ``train.time_budget``, will end the run)."""
    steps = cfg.train.steps
    done = step / steps if steps > 0 else 0.0
    if cfg.train.time_budget > 0:
        done = max(done, elapsed / cfg.train.time_budget)
    return min(max(done, 0.0), 1.0)


def settings_at(cfg: Config, step: int, progress: float = 0.0) -> Settings:
    """The settings for generator step ``step`` (0-based) of a run of ``cfg``, ``progress``
    (:func:`run_progress`) of the way through it.

    Annealing (``train.anneal_kimg`` > 0): learning rates from their value to ``lr_anneal``
    times it, beta2 from ``beta2`` to ``beta2_end`` (when > 0), the R1/R2 weights from 1 to
    ``loss.gamma_anneal`` times theirs. EMA: with ``train.ema_kimg`` > 0 a half-life of
    ``ema_kimg`` thousand images, ramped up from 0 over the annealing horizon (R3GAN's
    schedule), so the EMA starts by following the generator; otherwise ``ema_decay`` with a
    warm-up ((1 + step) / (10 + step)), since early on the EMA would average mostly the
    random initialisation. Cool-down (``train.cooldown`` > 0): the learning rates times
    :func:`cooldown_scale` at ``progress``.
    """
    t, loss = cfg.train, cfg.loss
    shown = step * t.batch_size
    annealed = shown / (1000.0 * t.anneal_kimg) if t.anneal_kimg > 0 else 0.0
    lr_scale = cosine(annealed, 1.0, t.lr_anneal) * cooldown_scale(cfg, progress)
    beta2 = cosine(annealed, t.beta2, t.beta2_end) if t.beta2_end > 0 else t.beta2
    gamma_scale = cosine(annealed, 1.0, loss.gamma_anneal)
    if t.ema_kimg > 0:
        half_life = 1000.0 * (cosine(annealed, 0.0, t.ema_kimg) if t.anneal_kimg > 0 else t.ema_kimg)
        ema: float | None = 0.5 ** (t.batch_size / half_life) if half_life > 0 else 0.0
    elif t.ema_decay > 0:
        ema = min(t.ema_decay, (1 + step) / (10 + step))
    else:
        ema = None
    return Settings(t.g_lr * lr_scale, t.d_lr * lr_scale, beta2, gamma_scale, ema, lod_at(cfg, step))


def is_constant(cfg: Config) -> bool:
    """True when no setting changes along the run (the classic recipes)."""
    return cfg.train.anneal_kimg <= 0 and cfg.train.cooldown <= 0
