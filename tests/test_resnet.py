import copy
import io

import pytest
import torch
from torch import nn

from facegan.config import ModelConfig
from facegan.errors import UserError
from facegan.losses import gradient_penalty
from facegan.models import ARCHS, NetSpec, ResNetCritic, ResNetGenerator, build_networks
from facegan.models.layers import norm2d, sn


def _cfg(**kw) -> ModelConfig:
    base = dict(arch="resnet", latent_dim=16, g_width=4, d_width=4, d_norm="none")
    base.update(kw)
    return ModelConfig(**base)


def _c0(n: int) -> torch.Tensor:
    """The labels of an unconditional batch: float (n, 0)."""
    return torch.zeros(n, 0)


def _score(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An unconditional critic's scores (N,); its aux output is None."""
    scores, aux = d(x, _c0(x.shape[0]))
    assert aux is None
    return scores


def _sn_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _sigmas(module: nn.Module) -> torch.Tensor:
    """Largest singular value of each conv / linear weight reshaped to (out, in * kh * kw)."""
    with torch.no_grad():
        return torch.stack([torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
                            for m in _sn_modules(module)])


@pytest.mark.parametrize("res", [16, 32])
@pytest.mark.parametrize("d_norm", ["batch", "instance", "layer", "none"])
@pytest.mark.parametrize("use_sn", [False, True])
def test_shapes_and_ranges(res, d_norm, use_sn):
    g_norm = "batch" if d_norm in ("batch", "layer") else "none"  # both G norms, half each
    torch.manual_seed(0)
    g, d = build_networks(_cfg(g_width=8, d_width=8, g_norm=g_norm, d_norm=d_norm, g_sn=use_sn,
                               d_sn=use_sn), res)
    assert isinstance(g, ResNetGenerator) and isinstance(d, ResNetCritic)
    assert g.latent_dim == 16 and g.resolution == res
    x = g(torch.randn(8, 16), _c0(8))
    assert x.shape == (8, 3, res, res)
    assert torch.isfinite(x).all()
    assert (x.abs() < 0.99).float().mean() > 0.5  # init does not saturate the tanh
    # Nor are the images flat, except that spectral norm without a norm layer shrinks every
    # layer's output (sigma 1 and ReLU), so that generator starts near 0 (std ~0.03).
    assert x.std().item() > (0.01 if use_sn and g_norm == "none" else 0.1)
    scores = _score(d, x)
    assert scores.shape == (8,)
    assert torch.isfinite(scores).all() and scores.std() > 0


def test_widths_follow_stage_widths():
    g = ResNetGenerator(latent_dim=128, resolution=64, width=64)
    assert g.fc.out_features == 16 * 512
    ups = [m.conv.out_channels for m in g.blocks if hasattr(m, "conv")]
    assert ups == [256, 128, 64, 64]
    d = ResNetCritic(resolution=64, width=64)
    assert [b.conv2.out_channels for b in d.blocks] == [64, 128, 256, 512]
    assert d.fc.in_features == 512
    # The optimised first block has no norm before its first conv.
    assert isinstance(d.blocks[0].norm0, nn.Identity)
    assert isinstance(ResNetCritic(16, 4, norm="layer").blocks[1].norm0, nn.GroupNorm)


@pytest.mark.parametrize("use_sn", [False, True])
def test_spectral_norm_constrains_every_weight(use_sn):
    torch.manual_seed(0)
    g, d = build_networks(_cfg(g_sn=use_sn, d_sn=use_sn), 16)
    for net in (g, d):
        assert all(hasattr(m, "parametrizations") == use_sn for m in _sn_modules(net))
    x = torch.randn(8, 3, 16, 16)
    for _ in range(30):  # power iterations (one per forward in train mode)
        d(x, _c0(8))
        g(torch.randn(8, 16), _c0(8))
    for net in (g, d):
        sigmas = _sigmas(net)
        if use_sn:
            torch.testing.assert_close(sigmas, torch.ones_like(sigmas), atol=0.05, rtol=0)
        else:
            # Xavier init with gain sqrt(2) gives sigma well above 1: nothing rescales it.
            assert (sigmas - 1).abs().max() > 0.2


def test_sn_helper_only_when_enabled():
    lin = nn.Linear(4, 4)
    assert sn(lin, False) is lin and not hasattr(lin, "parametrizations")
    assert hasattr(sn(nn.Linear(4, 4), True), "parametrizations")
    assert isinstance(norm2d("layer", 4), nn.GroupNorm)
    with pytest.raises(ValueError, match="unknown norm"):
        norm2d("group", 4)


@pytest.mark.parametrize("d_norm", ["instance", "layer", "none"])
def test_critic_is_per_sample(d_norm):
    torch.manual_seed(0)
    _, d = build_networks(_cfg(d_norm=d_norm, d_sn=True), 16)
    d.eval()  # eval: spectral norm does not advance its power iteration between the calls
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(_score(d, x)[:2], _score(d, x[:2]))


def test_batch_norm_critic_mixes_samples_in_train_mode():
    # The check above would catch a critic that mixes samples.
    torch.manual_seed(0)
    _, d = build_networks(_cfg(d_norm="batch"), 16)
    x = torch.randn(4, 3, 16, 16)
    assert not torch.allclose(_score(d, x)[:2], _score(d, x[:2]))


@pytest.mark.parametrize("d_norm", ["layer", "none"])
def test_gradient_penalty_double_backward_through_sn_critic(d_norm):
    torch.manual_seed(0)
    g, d = build_networks(_cfg(d_norm=d_norm, d_sn=True, g_sn=True), 16)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    fake = g(torch.randn(4, 16), _c0(4))
    score_fn = lambda x: _score(d, x)
    loss = (score_fn(fake.detach()).mean() - score_fn(real).mean()
            + 10.0 * gradient_penalty(score_fn, real, fake))
    loss.backward()
    grads = [p.grad for p in d.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    # The penalty's own graph reaches the raw weights behind the spectral norm.
    d.zero_grad()
    x = real.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(_score(d, x).sum(), x, create_graph=True)
    gx.square().sum().backward()
    raw = d.blocks[0].conv1.parametrizations.weight.original
    assert raw.grad is not None and raw.grad.abs().sum() > 0


def test_critic_double_backward_matches_finite_differences():
    torch.manual_seed(0)
    d = ResNetCritic(resolution=8, width=2, norm="layer", use_sn=True).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: _score(d, x), (x,), fast_mode=True)


@pytest.mark.parametrize("use_sn", [False, True])
def test_state_dict_round_trip(use_sn):
    cfg = _cfg(g_sn=use_sn, d_sn=use_sn, d_norm="instance")
    torch.manual_seed(0)
    g, d = build_networks(cfg, NetSpec(16))
    x = torch.randn(4, 3, 16, 16)
    d(x, _c0(4)), g(torch.randn(4, 16), _c0(4))  # move the BN statistics and the SN vectors off their init
    buf = io.BytesIO()
    torch.save({"G": g.state_dict(), "D": d.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(1)
    g2, d2 = build_networks(cfg, 16)
    g2.load_state_dict(state["G"])
    d2.load_state_dict(state["D"])
    z = torch.randn(4, 16)
    for a, b in ((g, g2), (d, d2)):
        a.eval(), b.eval()
    torch.testing.assert_close(g2(z, _c0(4)), g(z, _c0(4)), rtol=0, atol=0)
    torch.testing.assert_close(_score(d2, x), _score(d, x), rtol=0, atol=0)


@pytest.mark.parametrize("use_sn", [False, True])
def test_channels_last_matches_contiguous(use_sn):
    torch.manual_seed(0)
    g, d = build_networks(_cfg(g_width=8, d_width=8, d_norm="instance", g_sn=use_sn,
                               d_sn=use_sn), 32)
    g_cl = copy.deepcopy(g).to(memory_format=torch.channels_last)
    d_cl = copy.deepcopy(d).to(memory_format=torch.channels_last)
    z = torch.randn(4, 16)
    x, x_cl = g(z, _c0(4)), g_cl(z, _c0(4))  # train mode: batch norm and one power iteration each
    torch.testing.assert_close(x_cl, x, atol=1e-5, rtol=1e-4)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_score(d_cl, x_cl), _score(d, x.detach()), atol=1e-5, rtol=1e-4)


def test_spec_forms_and_errors():
    torch.manual_seed(0)
    g1, _ = build_networks(_cfg(), 32)
    torch.manual_seed(0)
    g2, _ = build_networks(_cfg(), NetSpec(resolution=32, channels=3, label_dim=0))
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values()):
        torch.testing.assert_close(a, b)
    g, d = ARCHS["resnet"](_cfg(), NetSpec(16, channels=1))
    assert g(torch.randn(2, 16), _c0(2)).shape == (2, 1, 16, 16)
    assert _score(d, torch.randn(2, 1, 16, 16)).shape == (2,)
    for arch in ARCHS:
        norms = {"g_norm": "none", "d_norm": "none"} if arch == "nfresnet" else {}
        g, _ = build_networks(_cfg(arch=arch, **norms), NetSpec(16, label_dim=10))
        with pytest.raises(ValueError, match=r"label_dim=10\) expects labels c of shape \(2, 10\)"):
            g(torch.randn(2, 16), _c0(2))  # conditional: labels of width 0
    for bad in (24, 4, 0):
        with pytest.raises(ValueError, match="power of two"):
            NetSpec(bad)
    with pytest.raises(UserError, match="d_dropout"):
        build_networks(_cfg(d_dropout=0.2), 16)
