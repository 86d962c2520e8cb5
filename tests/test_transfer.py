"""Transfer: --init-from RUN (another run's weights, fresh optimizers) and --freeze-d K."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from facegan.checkpoint import load_checkpoint
from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.models import build_networks, critic_stages
from facegan.train import build_trainer

TINY = ["data.path=builtin", "data.max_images=64", "data.resolution=16", "model.latent_dim=8", "model.g_width=4",
        "model.d_width=4", "train.batch_size=8", "train.device=cpu", "train.sample_every=100",
        "train.checkpoint_every=100"]


def _cfg(*extra, preset="wgangp-ln-celeba64"):
    return apply_overrides(get_preset(preset), [*TINY, *extra])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("src") / "run"
    cfg = _cfg()
    build_trainer(cfg, load_dataset(cfg.data, progress=False), run, progress=False).train(3)
    return run


@pytest.mark.parametrize("arch", ["dcgan", "resnet", "nfresnet"])
def test_critic_stages_run_from_the_image_side(arch):
    extra = {"nfresnet": ["model.g_norm=none", "model.d_norm=none"], "resnet": ["model.d_norm=none"]}.get(arch, [])
    m = _cfg(f"model.arch={arch}", *extra).model
    _, d = build_networks(m, 32)
    stages = critic_stages(d)
    # One a halving (32 -> 16 -> 8 -> 4), plus the normalisation-free critic's 4x4 stage.
    assert len(stages) == (4 if arch == "nfresnet" else 3)
    first = [p for p in stages[0].parameters()]
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    # The first stage reads the image: its first parameter's gradient exists for any input.
    d(x, torch.zeros(2, 0))[0].sum().backward()
    assert first and first[0].grad is not None
    all_params = {id(p) for p in d.parameters()}
    assert {id(p) for s in stages for p in s.parameters()} <= all_params


def test_init_from_copies_the_weights_with_fresh_optimizers(tmp_path, source):
    cfg = _cfg(f"train.init_from={source}")
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    ck = load_checkpoint(source)
    for key, net in (("G", tr.G), ("D", tr.D), ("G_ema", tr.G_ema)):
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, ck[key][k], rtol=0, atol=0, msg=f"{key}.{k}")
    assert tr.step == 0 and not tr.opt_g.state and not tr.opt_d.state


def test_freeze_d_keeps_the_first_stages_fixed(tmp_path, source):
    cfg = _cfg(f"train.init_from={source}", "train.freeze_d=1")
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    stages = critic_stages(tr.D)
    frozen = [p.detach().clone() for s in stages[:1] for p in s.parameters()]
    rest = [p.detach().clone() for s in stages[1:] for p in s.parameters()]
    tr.train(3)
    assert all(torch.equal(a, b) for a, b in zip(frozen, (p for s in stages[:1] for p in s.parameters())))
    assert any(not torch.equal(a, b) for a, b in zip(rest, (p for s in stages[1:] for p in s.parameters())))
    # The generator steps do not unfreeze them.
    assert not any(p.requires_grad for s in stages[:1] for p in s.parameters())


def _facegan(*args):
    return subprocess.run([sys.executable, "-m", "facegan", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_init_from_errors_are_one_line(tmp_path, source):
    base = ["train", "--data", "builtin", "--preset", "wgangp-ln-celeba64", "--steps", 1, "--no-progress",
            *[t for t in TINY if not t.startswith("data.path")]]
    r = _facegan(*base, "--out", tmp_path / "a", "--init-from", source, "model.g_width=8")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot initialise from" in r.stderr and "model.g_width 4 -> 8" in r.stderr
    assert not (tmp_path / "a").exists()
    r = _facegan(*base, "--out", tmp_path / "b", "--init-from", tmp_path / "nowhere")
    assert r.returncode != 0 and "Traceback" not in r.stderr and not (tmp_path / "b").exists()
    r = _facegan(*base, "--out", tmp_path / "c", "--init-from", source, "--freeze-d", 2)
    assert r.returncode != 0 and "freeze the whole critic" in r.stderr and not (tmp_path / "c").exists()
    r = _facegan(*base, "--out", tmp_path / "d", "--init-from", source, "--freeze-d", 1)
    assert r.returncode == 0, r.stderr
    cfg = load_checkpoint(tmp_path / "d").get("config")
    assert cfg.train.init_from == str(source) and cfg.train.freeze_d == 1
    # A resumed run goes on from its checkpoint: other first weights are refused, by name.
    before = (tmp_path / "d" / "checkpoints" / "latest.pt").read_bytes()
    r = _facegan("train", "--resume", tmp_path / "d", "--steps", 2, "--init-from", tmp_path / "a")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "cannot change train.init_from" in r.stderr and "resumed run goes on from its checkpoint" in r.stderr
    assert (tmp_path / "d" / "checkpoints" / "latest.pt").read_bytes() == before
