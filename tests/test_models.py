import pytest
import torch
from torch import nn

from facegan.config import ModelConfig
from facegan.errors import UserError
from facegan.models import NetSpec, build_networks
from facegan.models.dcgan import DCGANCritic, DCGANGenerator, stage_widths


def _c0(n: int) -> torch.Tensor:
    """The labels of an unconditional batch: float (n, 0)."""
    return torch.zeros(n, 0)


@pytest.mark.parametrize("res", [16, 32, 64, 128])
@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "none"])
def test_shapes_every_resolution_and_norm(res, norm):
    g = DCGANGenerator(latent_dim=8, resolution=res, width=4, norm="batch")
    d = DCGANCritic(resolution=res, width=4, norm=norm, dropout=0.1)
    c = torch.zeros(3, 0)  # unconditional: labels of width 0
    x = g(torch.randn(3, 8), c)
    assert x.shape == (3, 3, res, res)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    scores, aux = d(x, c)
    assert scores.shape == (3,) and aux is None


def test_paper_widths_for_64px():
    assert stage_widths(64, 64, 1024) == [512, 256, 128, 64]
    assert stage_widths(128, 64, 512) == [512, 512, 256, 128, 64]
    g = DCGANGenerator(latent_dim=128, resolution=64, width=64)
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    d = DCGANCritic(resolution=64, width=64, norm="instance")
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    # No norm after the first conv; instance norms (affine) after the others.
    norms = [m for m in d.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 and all(n.affine for n in norms)


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=128, resolution=64, width=64)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.mean().item()) < 1e-3
    assert w.std().item() == pytest.approx(0.02, rel=0.05)
    bn = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    torch.testing.assert_close(torch.cat([b.bias for b in bn]), torch.zeros(sum(b.num_features for b in bn)))


def test_layer_and_instance_norm_are_per_sample():
    # A critic that normalises per sample must score a sample the same whatever its batch mates.
    for norm in ("instance", "layer", "none"):
        d = DCGANCritic(resolution=16, width=4, norm=norm).eval()
        x = torch.randn(4, 3, 16, 16)
        torch.testing.assert_close(d(x, _c0(4))[0][:2], d(x[:2], _c0(2))[0])


def test_build_networks_from_config():
    g, d = build_networks(ModelConfig(latent_dim=16, g_width=4, d_width=4), 32)
    assert g.latent_dim == 16 and g.resolution == 32
    assert d(g(torch.randn(2, 16), _c0(2)), _c0(2))[0].shape == (2,)


def test_build_networks_takes_a_spec_or_a_resolution():
    cfg = ModelConfig(latent_dim=16, g_width=4, d_width=4)
    g, d = build_networks(cfg, NetSpec(resolution=16, channels=1))
    assert g(torch.randn(2, 16), _c0(2)).shape == (2, 1, 16, 16)
    assert d(torch.randn(2, 1, 16, 16), _c0(2))[0].shape == (2,)
    g, d = build_networks(cfg, NetSpec(16, label_dim=4))  # conditional (test_conditional_models)
    with pytest.raises(ValueError, match="label_dim=4"):
        g(torch.randn(2, 16), _c0(2))  # labels of the wrong width
    with pytest.raises(UserError, match="unknown model.arch"):
        build_networks(ModelConfig(arch="stylegan"), 16)


def test_dcgan_outputs_for_a_seed_are_unchanged():
    # Values recorded before the shared layers moved to models/layers.py: a refactor that
    # changes the order of construction (so the initial weights) or the layout shows here.
    torch.manual_seed(0)
    g, d = build_networks(ModelConfig(latent_dim=16, g_width=4, d_width=4, d_norm="layer"), 16)
    torch.manual_seed(1)
    x = g(torch.randn(2, 16), _c0(2))
    torch.testing.assert_close(x[0, :, 0, 0],
                               torch.tensor([0.008458978, -0.001092050, 0.001794890]))
    torch.testing.assert_close(d(x, _c0(2))[0], torch.tensor([-0.014736561, 0.042056616]))


def test_dcgan_spectral_norm_on_every_conv_including_transposed():
    torch.manual_seed(0)
    g, d = build_networks(ModelConfig(latent_dim=16, g_width=4, d_width=4, d_norm="none", g_sn=True,
                                      d_sn=True), 16)
    convs = [m for net in (g, d) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for _ in range(30):  # one power iteration per train-mode forward
        d(g(torch.randn(8, 16), _c0(8)), _c0(8))
    for m in convs:
        w = m.weight.detach()
        # spectral norm's matrix: (out, in*kh*kw); a transposed conv stores (in, out, kh, kw)
        mat = (w.transpose(0, 1) if isinstance(m, nn.ConvTranspose2d) else w).flatten(1)
        assert abs(torch.linalg.matrix_norm(mat, ord=2).item() - 1) < 0.05
    ref, _ = build_networks(ModelConfig(latent_dim=16, g_width=4, d_width=4), 16)
    assert not any(hasattr(m, "parametrizations") for m in ref.modules())
