"""Progressive growing (models/grow.py, the DCGAN nets' coarse heads, the lod schedule)."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import _final_weights, tiny_cfg, tiny_folder  # noqa: F401  (fixture)

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.errors import UserError
from facegan.losses import gradient_penalty
from facegan.models import DCGANCritic, DCGANGenerator, build_networks, current_lod, set_lod
from facegan.models.grow import downscale, upscale
from facegan.train import build_trainer, resume_trainer
from facegan.train.schedule import lod_at


def _nets(res, grow_from, label_dim=0, g_cond="concat", d_cond="projection", g_norm="batch"):
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=8, resolution=res, width=4, max_width=32, norm=g_norm,
                       label_dim=label_dim, cond=g_cond, grow_from=grow_from)
    d = DCGANCritic(resolution=res, width=4, max_width=32, norm="layer", label_dim=label_dim,
                    cond=d_cond, grow_from=grow_from)
    return g, d


@pytest.mark.parametrize("res,grow_from", [(16, 8), (32, 8), (64, 16), (128, 32)])
@pytest.mark.parametrize("cond", [None, ("cbn", "projection"), ("concat", "ac")])
def test_shapes_and_ranges_at_every_level(res, grow_from, cond):
    k = 3 if cond else 0
    g, d = _nets(res, grow_from, k, *(cond or ("concat", "projection")))
    levels = g.grow_levels
    assert levels == d.grow_levels == {16: 1, 32: 2, 64: 2, 128: 2}[res]
    z, c = torch.randn(4, 8), torch.rand(4, k)
    for lod in sorted({levels, levels - 0.5, levels - 1, 0.25, 0.0}):
        set_lod(g, lod)
        set_lod(d, lod)
        x = g(z, c)
        assert x.shape == (4, 3, res, res)
        assert x.abs().max() <= 1.0
        score, aux = d(x, c)
        assert score.shape == (4,) and torch.isfinite(score).all()
        assert (aux is None) == (cond is None or cond[1] != "ac")
        if aux is not None:
            assert aux.shape == (4, k)


def test_at_lod_zero_a_grown_net_is_the_plain_net():
    g, d = _nets(32, 8)
    plain_g, plain_d = DCGANGenerator(latent_dim=8, resolution=32, width=4, max_width=32), \
        DCGANCritic(resolution=32, width=4, max_width=32, norm="layer")
    set_lod(g, 0)
    set_lod(d, 0)
    plain_g.load_state_dict({k: v for k, v in g.state_dict().items() if k in plain_g.state_dict()})
    plain_d.load_state_dict({k: v for k, v in d.state_dict().items() if k in plain_d.state_dict()})
    g.eval()
    plain_g.eval()
    z, c, x = torch.randn(3, 8), torch.zeros(3, 0), torch.rand(3, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(g(z, c), plain_g(z, c), rtol=0, atol=0)
    torch.testing.assert_close(d(x, c)[0], plain_d(x, c)[0], rtol=0, atol=0)


@pytest.mark.parametrize("lod", [1, 2])
def test_a_coarse_level_draws_and_reads_only_the_coarse_image(lod):
    g, d = _nets(32, 8)
    set_lod(g, lod)
    set_lod(d, lod)
    f = 2 ** lod
    x = g(torch.randn(2, 8), torch.zeros(2, 0))
    # The generator's image is the R / 2^lod one scaled up: constant over f x f blocks.
    torch.testing.assert_close(x, upscale(downscale(x, f), f))
    # The critic sees only the block averages: detail finer than that changes nothing.
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    blurred = upscale(downscale(real, f), f)
    torch.testing.assert_close(d(real, torch.zeros(2, 0))[0], d(blurred, torch.zeros(2, 0))[0])
    # ...and one level finer is what it reads at lod - 1.
    set_lod(d, lod - 1)
    assert not torch.allclose(d(real, torch.zeros(2, 0))[0], d(blurred, torch.zeros(2, 0))[0])


def test_the_fade_is_continuous():
    g, d = _nets(32, 8)
    g.eval()
    z, c, x = torch.randn(2, 8), torch.zeros(2, 0), torch.rand(2, 3, 32, 32) * 2 - 1
    for whole in (1, 2):
        set_lod(g, whole)
        set_lod(d, whole)
        at, d_at = g(z, c), d(x, c)[0]
        set_lod(g, whole - 1e-6)
        set_lod(d, whole - 1e-6)
        torch.testing.assert_close(g(z, c), at, atol=1e-4, rtol=0)
        torch.testing.assert_close(d(x, c)[0], d_at, atol=1e-4, rtol=0)


def test_penalty_double_backward_through_a_fading_critic_matches_gradcheck():
    _, d = _nets(16, 8)
    d = d.double()
    set_lod(d, 0.5)  # both paths (the averaged-down input and the full one) carry gradient
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    c0 = torch.zeros(1, 0, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda t: d(t, c0)[0], (x,), eps=1e-6, atol=1e-4)
    # The penalty (computed in float32) reaches the coarse head and the first stage while fading.
    d = d.float()
    real = torch.randn(4, 3, 16, 16)
    gradient_penalty(lambda t: d(t, torch.zeros(4, 0))[0], real, real.flip(0)).backward()
    assert d.from_rgb[0][0].weight.grad.abs().sum() > 0
    assert d.net[0].weight.grad.abs().sum() > 0


def test_schedule_in_images_shown():
    cfg = apply_overrides(get_preset("wgangp-ln-celeba64"),
                          ["train.batch_size=100", "model.grow_from=16", "train.grow_kimg=1", "train.fade_kimg=2"])
    # 100 images a step: 10 steps at 16 px, 20 fading 32 in, 10 at 32, 20 fading 64 in.
    expect = {0: 2.0, 10: 2.0, 15: 1.75, 20: 1.5, 30: 1.0, 40: 1.0, 50: 0.5, 60: 0.0, 10 ** 6: 0.0}
    for step, lod in expect.items():
        assert lod_at(cfg, step) == pytest.approx(lod), step
    no_fade = apply_overrides(cfg, ["train.fade_kimg=0"])
    assert [lod_at(no_fade, s) for s in (10, 11, 20, 21)] == [2.0, 1.0, 1.0, 0.0]
    assert lod_at(get_preset("wgangp-ln-celeba64"), 0) == 0.0


@pytest.mark.parametrize("overrides,needle", [
    (["model.grow_from=24"], "power of two"),
    (["model.grow_from=64"], "power of two"),
    (["model.grow_from=4"], "power of two"),
    (["model.grow_from=32"], "train.grow_kimg > 0"),
    (["model.grow_from=32", "train.grow_kimg=10", "model.arch=resnet"], "model.arch=dcgan"),
    (["model.grow_from=32", "train.grow_kimg=10", "data.condition=Male", "model.d_cond=concat"],
     "model.d_cond=projection"),
])
def test_bad_growth_settings_are_one_line_errors(overrides, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.").replace("+", r"\+")) as e:
        apply_overrides(get_preset("wgangp-ln-celeba64"), overrides).validate()
    assert "\n" not in str(e.value)


GROW = ["model.grow_from=8", "train.grow_kimg=0.016", "train.fade_kimg=0.016"]  # 2 steps each, batch 8


def test_training_grows_logs_the_level_and_resumes_exactly(tmp_path, tiny_folder):
    cfg = tiny_cfg("wgangp-ln-celeba64", tiny_folder, *GROW)
    data = load_dataset(cfg.data, progress=False)
    a = tmp_path / "a"
    tr = build_trainer(cfg, data, a, progress=False)
    assert current_lod(tr.G) == 1.0
    tr.train(6)
    lods = [json.loads(x)["lod"] for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert lods == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]  # the level each step trained at
    assert current_lod(tr.G) == current_lod(tr.D) == current_lod(tr.G_ema) == 0.0
    # Stopped mid-fade and resumed: the same weights as one run through.
    b = tmp_path / "b"
    build_trainer(cfg, data, b, progress=False).train(3)
    tr = resume_trainer(b, data, progress=False)
    tr.train(6)
    ca, cb = _final_weights(a), _final_weights(b)
    for key in ("G", "D", "G_ema"):
        for k in ca[key]:
            torch.testing.assert_close(ca[key][k], cb[key][k], rtol=0, atol=0, msg=f"{key}.{k}")


def test_a_checkpoint_keeps_its_level(tmp_path, tiny_folder):
    cfg = tiny_cfg("wgangp-ln-celeba64", tiny_folder, *GROW)
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    tr.train(2)
    ck = _final_weights(tmp_path / "run")
    g, _ = build_networks(cfg.model, cfg.data.resolution)
    set_lod(g, 0.0)
    g.load_state_dict(ck["G_ema"])
    assert current_lod(g) == 1.0
