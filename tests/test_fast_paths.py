"""The GPU switches (fused Adam, torch.compile, fp16 with a gradient scaler, cuDNN autotuning)
give the plain path's results within floating-point tolerance. They run here on the CPU where
the path exists there; the same tests run on CUDA when a GPU is present."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.checkpoint import load_checkpoint
from facegan.config import apply_overrides, get_preset, parse_overrides, validate
from facegan.data import load_dataset
from facegan.errors import UserError
from facegan.losses import gradient_penalty, r1_penalty
from facegan.runtime import resolve_precision
from facegan.train import build_trainer, resume_trainer

TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.log_every=1", "train.sample_every=100", "train.checkpoint_every=2",
        "train.n_samples=4", "train.n_critic=2", "train.ema_decay=0.9"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    f = tmp_path_factory.mktemp("fast") / "imgs"
    f.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(f / f"{i:02d}.png")
    return f


def trained(folder, tmp_path, name, preset="wgangp-celeba64", steps=3, *extra):
    cfg = apply_overrides(get_preset(preset), [*TINY, f"data.path={folder}", *extra])
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / name, progress=False)
    losses = [tr.train_step() for _ in range(steps)]
    return tr, losses


def assert_close_params(a, b, atol=1e-5, rtol=1e-4):
    for (name, p), q in zip(a.G.state_dict().items(), b.G.state_dict().values()):
        if p.is_floating_point():
            torch.testing.assert_close(p, q, atol=atol, rtol=rtol, msg=lambda m, name=name: f"G.{name}: {m}")
    for (name, p), q in zip(a.D.state_dict().items(), b.D.state_dict().values()):
        if p.is_floating_point():
            torch.testing.assert_close(p, q, atol=atol, rtol=rtol, msg=lambda m, name=name: f"D.{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adam_matches_the_plain_optimizer(folder, tmp_path, device):
    plain, _ = trained(folder, tmp_path, "plain", "wgangp-celeba64", 3, "train.precision=fp32",
                       f"train.device={device}", "train.fused_optimizer=off")
    fused, _ = trained(folder, tmp_path, "fused", "wgangp-celeba64", 3, "train.precision=fp32",
                       f"train.device={device}", "train.fused_optimizer=on")
    assert fused.opt_d.defaults["fused"] and not plain.opt_d.defaults.get("fused")
    assert_close_params(plain, fused)
    # The two did train: the parameters moved from the same start.
    start, _ = trained(folder, tmp_path, "start", "wgangp-celeba64", 0, "train.precision=fp32")
    assert not torch.allclose(next(iter(start.D.parameters())), next(iter(fused.D.parameters())).cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_fused_setting_follows_the_config_on_resume(folder, tmp_path, device):
    tr, _ = trained(folder, tmp_path, "run", "wgangp-celeba64", 2, "train.precision=fp32",
                    f"train.device={device}", "train.fused_optimizer=off")
    tr.save()
    cfg = apply_overrides(tr.cfg, ["train.fused_optimizer=on"])
    again = resume_trainer(tmp_path / "run", load_dataset(cfg.data, progress=False), cfg, progress=False)
    assert all(g["fused"] for g in again.opt_d.param_groups)
    # Each step count where a fused Adam reads it: on the parameter's device, float32.
    for opt in (again.opt_d, again.opt_g):
        for p, st in opt.state.items():
            assert st["step"].device == p.device and st["step"].dtype == torch.float32
    again.train_step()


def test_compiled_generator_matches_eager(folder, tmp_path):
    # aot_eager: the real torch.compile path (Dynamo graphs, AOTAutograd) without needing a C++
    # compiler; inductor's kernels are the GPU-speed part, measured by benchmarks/bench_gpu.py.
    eager, le = trained(folder, tmp_path, "eager", "wgangp-celeba64", 2, "train.precision=fp32")
    comp, lc = trained(folder, tmp_path, "comp", "wgangp-celeba64", 2, "train.precision=fp32",
                       "train.compile=generator", "train.compile_backend=aot_eager")
    assert comp._G_fwd is not comp.G and comp._D_fwd is comp.D
    torch.testing.assert_close(lc[-1]["g_loss"], le[-1]["g_loss"], atol=1e-5, rtol=1e-4)
    assert_close_params(eager, comp)
    # The checkpoint holds the plain modules' state, loadable without compiling.
    assert set(comp.state_dict()["G"]) == set(eager.state_dict()["G"])


def test_compiling_the_critic_with_a_penalty_is_refused():
    cfg = apply_overrides(get_preset("wgangp-celeba64"), ["train.compile=all"])
    with pytest.raises(UserError, match="double backward"):
        validate(cfg)
    validate(apply_overrides(get_preset("dcgan-celeba64"), ["train.compile=all"]))  # no penalty: fine


def test_compile_all_without_penalty_matches_eager(folder, tmp_path):
    extra = ["train.precision=fp32", "loss.label_noise=0", "loss.label_flip=0"]
    eager, _ = trained(folder, tmp_path, "eager", "dcgan-celeba64", 2, *extra)
    comp, _ = trained(folder, tmp_path, "comp", "dcgan-celeba64", 2, *extra, "train.compile=all",
                      "train.compile_backend=aot_eager")
    assert comp._D_fwd is not comp.D
    assert_close_params(eager, comp)


# ---- fp16 with a gradient scaler ----------------------------------------------------------------

def test_scaled_penalty_equals_the_unscaled_one():
    """AMP's recipe: scores scaled into autograd.grad, gradient unscaled before the norm; the
    penalty is the same number (here exactly: a power-of-two scale in fp32)."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake, eps = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4), torch.rand(4)
    score = lambda x: critic(x).flatten()
    plain = gradient_penalty(score, real, fake, eps=eps)
    scaled = gradient_penalty(score, real, fake, eps=eps, out_scale=65536.0)
    torch.testing.assert_close(scaled, plain, rtol=1e-6, atol=0)
    torch.testing.assert_close(r1_penalty(score, real, out_scale=1024.0), r1_penalty(score, real), rtol=1e-6, atol=0)
    # ... and it trains the critic the same way (its gradient wrt the weights).
    weights = list(critic.parameters())[:3]  # the last bias does not change input gradients
    g1 = torch.autograd.grad(plain, weights)
    g2 = torch.autograd.grad(gradient_penalty(score, real, fake, eps=eps, out_scale=65536.0), weights)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_trains_with_a_gradient_scaler_and_resumes(folder, tmp_path, device):
    tr, _ = trained(folder, tmp_path, "run", "wgangp-celeba64", 0, "train.precision=fp16",
                    f"train.device={device}")
    assert tr.precision == "fp16" and tr.scaler_d.is_enabled() and tr.scaler_g.is_enabled()
    # The first steps overflow (scale 65536) and are skipped while the scaler halves its scale:
    # that is not a divergence.
    last = tr.train(8)
    assert tr.step == 8 and np.isfinite(last["d_loss"]) and np.isfinite(last["g_loss"])
    scale = tr.scaler_d.get_scale()
    assert 1.0 < scale < 65536.0 and last["loss_scale_d"] == scale
    path = tr.save()
    ck = load_checkpoint(path)
    assert ck["scalers"]["d"]["scale"] == scale
    again = resume_trainer(tmp_path / "run", load_dataset(tr.cfg.data, progress=False), progress=False)
    assert again.scaler_d.get_scale() == scale
    # fp32 and bf16 runs carry no scaler state.
    plain, _ = trained(folder, tmp_path, "plain", "wgangp-celeba64", 1, "train.precision=fp32")
    assert not plain.scaler_d.is_enabled() and plain.state_dict()["scalers"] is None


def test_fp16_still_stops_on_a_real_divergence(folder, tmp_path):
    from facegan.train import TrainingDiverged

    tr, _ = trained(folder, tmp_path, "run", "wgangp-celeba64", 0, "train.precision=fp16")
    tr.save()
    step = tr.generator_step

    def poisoned():
        out = step()
        out["g_loss"] = out["g_loss"] * float("nan")
        return out

    tr.generator_step = poisoned
    with pytest.raises(TrainingDiverged, match="g_loss=nan"):
        tr.train(4)


def test_fp16_losses_match_fp32_closely(folder, tmp_path):
    """Same start, same batch: fp16 autocast computes the losses and the penalty as fp32 does,
    up to half precision's rounding."""
    a, la = trained(folder, tmp_path, "a", "wgangp-celeba64", 1, "train.precision=fp32", "train.n_critic=1")
    b, _ = trained(folder, tmp_path, "b", "wgangp-celeba64", 0, "train.precision=fp16", "train.n_critic=1")
    # A calibrated scale, as after the first steps: at the initial 65536 the penalty's scaled
    # inner gradient overflows and the scaler skips the step (tested above).
    b.scaler_d = torch.amp.GradScaler("cpu", init_scale=256.0)
    lb = [b.train_step()]
    torch.testing.assert_close(lb[0]["gp"], la[0]["gp"], rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(lb[0]["d_loss"], la[0]["d_loss"], rtol=2e-2, atol=1e-3)


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp16", cpu) == "fp16" and resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(UserError, match="fp32, bf16 or fp16"):
        validate(apply_overrides(get_preset("demo"), ["train.precision=half"]))


# ---- --profile ----------------------------------------------------------------------------------

def test_profile_prints_where_the_time_goes_and_writes_nothing(folder, tmp_path):
    r = subprocess.run([sys.executable, "-m", "facegan", "train", "--data", str(folder), "--profile", "2",
                        *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "profile of 2 generator step(s) (2 critic step(s) each, global batch 8" in r.stdout
    assert "wall time:" in r.stdout and "ms per generator step" in r.stdout
    assert "convolution" in r.stdout and "Self CPU" in r.stdout  # the operator table
    assert list(tmp_path.iterdir()) == []
    # A lazy penalty (every 4th critic step, one critic step per generator step) is profiled
    # over whole cycles, so the time per step holds its average share.
    lazy = subprocess.run([sys.executable, "-m", "facegan", "train", "--data", str(folder), "--profile", "6",
                           *TINY, "train.n_critic=1", "loss.reg_every=4"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert lazy.returncode == 0, lazy.stderr
    assert "profile of 8 generator step(s) (1 critic step(s) each" in lazy.stdout
    assert "rounded up from 6: whole cycles of the lazy penalty, every 4th critic step" in lazy.stdout
    # A penalty too rare to average over (a cycle of a million steps) does not stretch the profile.
    rare = subprocess.run([sys.executable, "-m", "facegan", "train", "--data", str(folder), "--profile", "2",
                           *TINY, "train.n_critic=1", "loss.reg_every=1000000"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rare.returncode == 0, rare.stderr
    assert "profile of 2 generator step(s)" in rare.stdout and "too rare to profile" in rare.stdout
    bad = subprocess.run([sys.executable, "-m", "facegan", "train", "--data", str(folder), "--profile", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--profile takes a number of steps >= 1" in bad.stderr


def test_profile_of_preset_auto_profiles_the_recipe_auto_trains(folder, tmp_path):
    # The default preset is the placeholder 'auto': a profile must resolve it as a new run
    # does (the hardware's recipe, then DiffAugment for a small folder), not profile the
    # placeholder's defaults (5 critic steps, batch 64).
    from facegan.train.start import new_run_config

    tiny = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4"]
    r = subprocess.run([sys.executable, "-m", "facegan", "train", "--data", str(folder), "--device", "cpu",
                        "--profile", "1", *tiny], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    cfg, why = new_run_config(get_preset("auto"), {"train.device": "cpu", **parse_overrides(tiny)})
    assert cfg.preset != "auto" and why
    assert f"preset auto chose {why}" in r.stderr and "DiffAugment" in r.stderr  # 16 images
    assert f"profiling {cfg.preset} on 16 images (16px)" in r.stderr
    batch = min(cfg.train.batch_size, 16)  # a batch never exceeds the data
    assert f"({cfg.train.n_critic} critic step(s) each, global batch {batch}," in r.stdout
    assert cfg.train.n_critic != get_preset("auto").train.n_critic  # the placeholder's would show
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_r1_and_r2_overflows_are_skipped_not_a_divergence(folder, tmp_path, device):
    """While the scaler finds its scale, R1's and R2's scaled inner gradients overflow in fp16
    (R3GAN's pair, as the WGAN-GP penalty's do): those steps are skipped, not read as a
    divergence, and once the scale has come down both penalties are finite."""
    tr, _ = trained(folder, tmp_path, "rp", "rpgan-ln-celeba64", 0, "train.precision=fp16",
                    f"train.device={device}", "loss.reg_every=1")
    tr.train(12)  # through the loop's divergence check
    assert tr.step == 12 and tr.scaler_d.get_scale() < 65536.0
    late = [tr.train_step() for _ in range(3)]
    assert all(np.isfinite(float(out[k])) for out in late for k in ("r1", "r2")), late


@pytest.mark.parametrize("device", DEVICES)
def test_progressive_growing_logs_its_level_on_the_device(folder, tmp_path, device):
    """The growth level is logged beside the losses, which are read in one transfer from the
    device: it must live where they do."""
    tr, _ = trained(folder, tmp_path, "grow", "wgangp-celeba64", 0, f"train.device={device}",
                    "model.grow_from=8", "train.grow_kimg=0.016", "train.fade_kimg=0.016")
    out = tr.train_step()
    assert out["lod"].device == out["d_loss"].device == tr.device
    last = tr.train(4)  # log_every=1: every step goes through the loop's one read of the losses
    assert tr.step == 4 and "lod" in last and np.isfinite(last["d_loss"])
