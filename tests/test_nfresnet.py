"""The normalisation-free residual nets (models/nfresnet.py): shapes, the fix-up start, the
resampling filters, conditioning, and the double backward R1/R2 need."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facegan.config import ModelConfig
from facegan.errors import UserError
from facegan.losses import r1_penalty
from facegan.models import NetSpec, build_networks
from facegan.models.nfresnet import Downsample, NFBlock, groups_for

Z = 8


def _cfg(**kw) -> ModelConfig:
    base = dict(arch="nfresnet", latent_dim=Z, g_width=4, d_width=4, g_norm="none", d_norm="none",
                blocks=1, group_size=4)
    base.update(kw)
    return ModelConfig(**base)


def _c0(n: int) -> torch.Tensor:
    return torch.zeros(n, 0)


@pytest.mark.parametrize("res", [16, 32, 64, 128])
@pytest.mark.parametrize("blocks", [1, 2])
def test_shapes_and_ranges(res, blocks):
    torch.manual_seed(0)
    g, d = build_networks(_cfg(blocks=blocks, max_width=32), res)
    x = g(torch.randn(3, Z), _c0(3))
    assert x.shape == (3, 3, res, res) and x.abs().max() <= 1.0
    scores, aux = d(x, _c0(3))
    assert scores.shape == (3,) and aux is None and torch.isfinite(scores).all()
    # Stages: 4x4 up to full size in G; full size down to 4x4 in D, each with its blocks.
    stages = len(range(2, res.bit_length()))
    assert len(g.stages) == len(d.stages) == stages
    n_blocks = sum(isinstance(m, NFBlock) for m in g.modules())
    assert n_blocks == blocks * stages == sum(isinstance(m, NFBlock) for m in d.modules())


def test_blocks_start_as_identity_and_are_scaled_by_depth():
    torch.manual_seed(0)
    block = NFBlock(8, expansion=2, group_size=4, total_blocks=16)
    assert not block.conv3.weight.any()  # the branch's last layer starts at zero
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)
    # Fix-up scaling: the branch's inner layers have gain L^(-1/4) (L = 16 blocks: half of He's).
    shallow = NFBlock(8, expansion=2, group_size=4, total_blocks=1)
    ratio = block.conv1.weight.std() / shallow.conv1.weight.std()
    assert 0.4 < float(ratio.detach()) < 0.6
    # Groups: hidden 16 channels, 4 a group.
    assert block.conv2.groups == 4 and groups_for(12, 5) == 2 and groups_for(3, 16) == 1


def test_downsample_is_the_binomial_filter():
    x = torch.randn(2, 3, 8, 8)
    y = Downsample()(x)
    assert y.shape == (2, 3, 4, 4)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    manual = F.conv2d(x.reshape(6, 1, 8, 8), torch.outer(k, k)[None, None], stride=2, padding=1).reshape(2, 3, 4, 4)
    torch.testing.assert_close(y, manual)
    # A constant image stays constant inside (the filter sums to 1).
    ones = Downsample()(torch.ones(1, 1, 8, 8))
    torch.testing.assert_close(ones[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


def test_critic_is_per_sample_and_double_backward_matches_gradcheck():
    torch.manual_seed(0)
    _, d = build_networks(_cfg(), 8)
    x = torch.randn(3, 3, 8, 8)
    s_all, _ = d(x, _c0(3))
    torch.testing.assert_close(d(x[:1], _c0(1))[0], s_all[:1])
    # The penalty reaches every critic weight (the branches' inner layers only through their
    # last layer, which starts at zero, so their first gradient is zero).
    r1_penalty(lambda t: d(t, _c0(3))[0], x).backward()
    assert all(p.grad is not None for p in d.parameters())
    assert all(b.conv3.weight.grad.abs().sum() > 0 for b in d.modules() if isinstance(b, NFBlock))
    # R1 differentiates the critic's input gradient: second derivatives through every layer
    # (grouped convs, the fixed-filter resampling, biased LeakyReLU) against finite differences.
    d = d.double()
    for p in d.parameters():  # the branches' last layers start at zero: make them count
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: d(t, _c0(1).double())[0], (x,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("d_cond", ["projection", "ac"])
def test_conditional(d_cond):
    torch.manual_seed(0)
    g, d = build_networks(_cfg(d_cond=d_cond), NetSpec(16, label_dim=3))
    c = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    z = torch.randn(3, Z)
    x = g(z, c)
    assert (g(z, c.roll(1, 1)) - x).flatten(1).abs().amax(1).min() > 1e-5  # c moves the image
    scores, aux = d(x, c)
    if d_cond == "ac":
        assert aux.shape == (3, 3) and not aux.any()  # the AC head starts at chance
    else:
        assert aux is None
        assert (d(x, c.roll(1, 1))[0] - scores).abs().min() > 1e-6  # the projection reads c


def test_refuses_what_it_is_not():
    for bad in ({"g_norm": "batch"}, {"d_norm": "layer"}, {"d_sn": True}, {"d_dropout": 0.1}):
        with pytest.raises(UserError, match="normalisation-free"):
            build_networks(_cfg(**bad), 16)
    with pytest.raises(UserError, match="g_cond=concat"):
        build_networks(_cfg(g_cond="cbn"), NetSpec(16, label_dim=2))
    with pytest.raises(UserError, match="d_cond=projection"):
        build_networks(_cfg(d_cond="concat"), NetSpec(16, label_dim=2))
    # Without labels the conditioning options are not used, so they cannot be wrong.
    g, _ = build_networks(_cfg(g_cond="cbn"), 16)
    assert g.cond is None


def test_channels_last_and_bf16_match():
    torch.manual_seed(0)
    g, d = build_networks(_cfg(), 32)
    z = torch.randn(2, Z)
    x = g(z, _c0(2))
    g_cl = g.to(memory_format=torch.channels_last)
    torch.testing.assert_close(g_cl(z, _c0(2)), x, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s16 = d(x, _c0(2))[0].float()
    torch.testing.assert_close(s16, d(x, _c0(2))[0], rtol=0.1, atol=0.05)
