"""Schedules along a run (train/schedule.py): cosine annealing, the cool-down and the EMA
half-life ramp."""

from __future__ import annotations

import math

import pytest
import torch

from facegan.config import apply_overrides, get_preset
from facegan.errors import UserError
from facegan.train.schedule import cooldown_scale, cosine, is_constant, run_progress, settings_at


def _cfg(*extra):
    return apply_overrides(get_preset("wgangp-ln-celeba64"), ["train.batch_size=100", *extra])


def test_cosine_endpoints_and_midpoint():
    assert cosine(0.0, 2.0, 0.2) == 2.0
    assert cosine(1.0, 2.0, 0.2) == pytest.approx(0.2)
    assert cosine(0.5, 2.0, 0.2) == pytest.approx(1.1)
    assert cosine(7.0, 2.0, 0.2) == pytest.approx(0.2)  # held after the horizon
    assert cosine(0.25, 1.0, 0.0) > cosine(0.5, 1.0, 0.0) > cosine(0.75, 1.0, 0.0)


def test_a_classic_recipe_is_constant():
    cfg = _cfg()
    for step in (0, 10, 10 ** 6):
        s = settings_at(cfg, step)
        assert (s.g_lr, s.d_lr, s.beta2, s.gamma_scale) == (2e-4, 2e-4, 0.9, 1.0)
    # The EMA decay warms up to train.ema_decay, as before schedules existed.
    assert settings_at(cfg, 0).ema_decay == pytest.approx(0.1)
    assert settings_at(cfg, 10 ** 6).ema_decay == cfg.train.ema_decay


def test_annealing_over_images_shown():
    # 100 images a step, 10 kimg horizon: 100 steps.
    cfg = _cfg("train.anneal_kimg=10", "train.lr_anneal=0.25", "train.beta2_end=0.99", "loss.gamma_anneal=0.1")
    start, mid, end, after = (settings_at(cfg, s) for s in (0, 50, 100, 400))
    assert start.g_lr == 2e-4 and start.beta2 == 0.9 and start.gamma_scale == 1.0
    assert mid.g_lr == pytest.approx(2e-4 * 0.625) and mid.beta2 == pytest.approx(0.945)
    assert mid.gamma_scale == pytest.approx(0.55)
    for s in (end, after):
        assert s.g_lr == pytest.approx(5e-5) and s.d_lr == pytest.approx(5e-5)
        assert s.beta2 == pytest.approx(0.99) and s.gamma_scale == pytest.approx(0.1)


def test_ema_half_life_ramps_up():
    cfg = _cfg("train.anneal_kimg=10", "train.ema_kimg=2")
    assert settings_at(cfg, 0).ema_decay == 0.0  # half-life 0: the EMA follows G
    end = settings_at(cfg, 100).ema_decay
    # Half-life of 2,000 images at 100 a step: the weight of a step halves every 20 steps.
    assert end ** 20 == pytest.approx(0.5)
    decays = [settings_at(cfg, s).ema_decay for s in range(0, 101, 10)]
    assert decays == sorted(decays)
    # Without annealing the half-life is constant from the start.
    assert settings_at(_cfg("train.ema_kimg=2"), 0).ema_decay == pytest.approx(end)


def test_cooldown_falls_linearly_to_zero_over_the_last_fraction():
    cfg = _cfg("train.cooldown=0.2")
    assert not is_constant(cfg) and is_constant(_cfg())
    assert [cooldown_scale(cfg, p) for p in (0.0, 0.8)] == [1.0, pytest.approx(1.0)]
    assert cooldown_scale(cfg, 0.9) == pytest.approx(0.5)
    assert cooldown_scale(cfg, 1.0) == 0.0 and cooldown_scale(cfg, 1.5) == 0.0
    assert cooldown_scale(_cfg(), 0.99) == 1.0  # off by default
    s = settings_at(cfg, 10, progress=0.95)
    assert (s.g_lr, s.d_lr) == (pytest.approx(5e-5), pytest.approx(5e-5))
    assert s.beta2 == 0.9 and s.gamma_scale == 1.0  # only the learning rates cool down
    # With annealing too, the two multiply.
    both = _cfg("train.cooldown=0.2", "train.anneal_kimg=10", "train.lr_anneal=0.5")
    assert settings_at(both, 100, progress=0.9).g_lr == pytest.approx(2e-4 * 0.5 * 0.5)


def test_run_progress_is_the_step_or_time_fraction_that_ends_the_run_first():
    cfg = _cfg("train.steps=100")
    assert run_progress(cfg, 25, elapsed=1e6) == 0.25  # no time budget: steps only
    timed = _cfg("train.steps=100", "train.time_budget=600")
    assert run_progress(timed, 25, elapsed=300.0) == 0.5
    assert run_progress(timed, 75, elapsed=300.0) == 0.75
    assert run_progress(_cfg("train.steps=100000000", "train.time_budget=600"), 10, elapsed=900.0) == 1.0


def _tiny_trainer(tmp_path, *extra):
    """A demo-preset trainer small enough for a few steps in a test, with ``extra`` overrides."""
    from facegan.data import load_dataset
    from facegan.train import build_trainer

    cfg = apply_overrides(get_preset("demo"), [
        "data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4", "train.batch_size=8",
        "train.device=cpu", "data.max_images=16", *extra])
    return build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)


def test_trainer_cools_down_towards_its_last_step(tmp_path):
    tr = _tiny_trainer(tmp_path, "train.steps=8", "train.cooldown=0.5", "train.checkpoint_every=100",
                       "train.sample_every=100", "train.n_samples=4")
    tr.train(8)
    # The last step (step 7 of 8) ran at (1 - 7/8) / 0.5 of the learning rates.
    for opt, lr in ((tr.opt_g, tr.cfg.train.g_lr), (tr.opt_d, tr.cfg.train.d_lr)):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.25 * lr)


def test_trainer_applies_the_schedule_to_its_optimizers(tmp_path):
    tr = _tiny_trainer(tmp_path, "train.anneal_kimg=0.016", "train.lr_anneal=0.5", "train.beta2_end=0.99")
    for _ in range(3):  # 8 images a step, 16-image horizon: annealed after 2 steps
        tr.train_step()
    for opt, lr in ((tr.opt_g, tr.cfg.train.g_lr), (tr.opt_d, tr.cfg.train.d_lr)):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * lr)
        assert opt.param_groups[0]["betas"] == (tr.cfg.train.beta1, pytest.approx(0.99))


def test_bad_schedule_values_are_refused():
    for bad in ("train.lr_anneal=1.5", "loss.gamma_anneal=-0.1", "train.anneal_kimg=-1", "train.ema_kimg=-2",
                "train.beta2_end=1.0", "loss.r2_weight=-1", "train.cooldown=1", "train.cooldown=-0.1"):
        with pytest.raises(UserError) as e:
            _cfg(bad).validate()
        assert "\n" not in str(e.value)
    assert math.isfinite(settings_at(_cfg("train.anneal_kimg=1"), 10 ** 9).g_lr)
    assert torch.tensor(settings_at(_cfg(), 0).g_lr).item() > 0
