"""The critic's minibatch standard deviation (model.d_mbstd): values, groups, gradients, config."""

import pytest
import torch
from torch import nn

from facegan.config import ModelConfig, apply_overrides, get_preset
from facegan.errors import UserError
from facegan.losses import gradient_penalty
from facegan.models import build_networks, critic_stages
from facegan.models.dcgan import DCGANCritic
from facegan.models.layers import MinibatchStd
from facegan.models.resnet import ResNetCritic

CRITICS = {
    "dcgan": lambda **kw: DCGANCritic(resolution=16, width=4, norm="layer", **kw),
    "resnet": lambda **kw: ResNetCritic(resolution=16, width=4, norm="layer", **kw),
}


def _reference(x: torch.Tensor, group: int) -> torch.Tensor:
    """The extra map written the slow, obvious way: one group of consecutive samples at a time."""
    maps = []
    for start in range(0, x.shape[0], group):
        chunk = x[start:start + group].double()
        std = (chunk.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        maps.append(std.expand(chunk.shape[0], 1, *x.shape[2:]))
    return torch.cat(maps).float()


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_extra_map_is_each_groups_standard_deviation(channels_last):
    torch.manual_seed(0)
    x = torch.randn(8, 5, 4, 4) * torch.arange(1, 9).reshape(8, 1, 1, 1)  # groups differ in spread
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 6, 4, 4)
    torch.testing.assert_close(y[:, :5], x)
    torch.testing.assert_close(y[:, 5:], _reference(x, 4), rtol=1e-5, atol=1e-6)
    assert y[0, 5, 0, 0] < y[4, 5, 0, 0]  # the second group is the more varied one


@pytest.mark.parametrize("n,group", [(6, 3), (10, 2), (7, 1), (3, 3), (1, 1)])
def test_a_batch_not_a_multiple_of_the_group_takes_the_largest_group_that_divides_it(n, group):
    x = torch.randn(n, 3, 2, 2)
    torch.testing.assert_close(MinibatchStd(4)(x)[:, 3:], _reference(x, group), rtol=1e-5, atol=1e-6)


def test_a_group_below_one_is_refused():
    with pytest.raises(ValueError, match=">= 1"):
        MinibatchStd(0)


@pytest.mark.parametrize("arch", sorted(CRITICS))
def test_a_critic_scores_each_group_apart_and_sees_its_group(arch):
    # The trainer scores cat([real, fake]) in one call: no group may span the two halves.
    torch.manual_seed(0)
    d = CRITICS[arch](mbstd=4)
    c = torch.zeros(8, 0)
    x = torch.randn(8, 3, 16, 16)
    moved = x.clone()
    moved[4:] += 1.0
    torch.testing.assert_close(d(moved, c)[0][:4], d(x, c)[0][:4])
    # Within a group a sample's score depends on its group mates; without the layer it does not.
    mate = x.clone()
    mate[1] = torch.randn(3, 16, 16)
    assert not torch.allclose(d(mate, c)[0][0], d(x, c)[0][0])
    torch.manual_seed(0)
    plain = CRITICS[arch]()
    torch.testing.assert_close(plain(mate, c)[0][0], plain(x, c)[0][0])


@pytest.mark.parametrize("arch", sorted(CRITICS))
def test_penalty_double_backward_through_the_groups_matches_gradcheck(arch):
    torch.manual_seed(0)
    d = CRITICS[arch](mbstd=2).double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(4, 0, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda t: d(t, c)[0], (x,), eps=1e-6, atol=1e-4, fast_mode=True)
    d = d.float()
    real = torch.randn(4, 3, 16, 16)
    gradient_penalty(lambda t: d(t, torch.zeros(4, 0))[0], real, real.flip(0)).backward()
    score = d.net[-1][1] if arch == "dcgan" else d.fc
    # The penalty reaches the weight that reads the extra map (the last input channel / feature).
    grad = score.weight.grad
    assert (grad[:, -1].abs().sum() if arch == "dcgan" else grad[:, -1].abs()) > 0


def test_config_builds_the_layer_for_dcgan_and_resnet_and_refuses_nfresnet():
    for arch in ("dcgan", "resnet"):
        _, d = build_networks(ModelConfig(arch=arch, d_width=4, g_width=4, d_norm="layer", d_mbstd=4), 16)
        assert sum(isinstance(m, MinibatchStd) for m in d.modules()) == 1
        _, plain = build_networks(ModelConfig(arch=arch, d_width=4, g_width=4, d_norm="layer"), 16)
        assert not any(isinstance(m, MinibatchStd) for m in plain.modules())
        # The stages FreezeD counts are the same with and without the layer.
        assert len(critic_stages(d)) == len(critic_stages(plain))
    with pytest.raises(UserError, match="model.d_mbstd=0"):
        build_networks(ModelConfig(arch="nfresnet", g_norm="none", d_norm="none", d_mbstd=4), 16)
    with pytest.raises(UserError, match="model.d_mbstd must be >= 0"):
        apply_overrides(get_preset("wgangp-ln-wide-b32-celeba64"), ["model.d_mbstd=-1"]).validate()


def test_spectral_norm_covers_the_score_conv_that_reads_the_extra_map():
    _, d = build_networks(ModelConfig(d_width=4, g_width=4, d_norm="none", d_sn=True, d_mbstd=4), 16)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs[-1].in_channels == 2 * 4 + 1  # 16 px, width 4: 8 channels at 4x4, and the map
    assert all(hasattr(m, "parametrizations") for m in convs)
