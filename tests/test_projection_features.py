"""The feature networks of the projection loss (facegan.projection.FeatureNet): the run's critic,
the FID Inception's early blocks and the attribute classifier, behind one interface."""

from __future__ import annotations

import pytest
import torch

from facegan import projection as P
from facegan.config import ModelConfig
from facegan.errors import UserError
from facegan.metrics.classifier import AttributeNet
from facegan.models import NetSpec, build_networks


@pytest.fixture(scope="module")
def inception_net():
    from facegan.metrics import load_inception

    try:
        return load_inception(None, device="cpu", engine="eager", streams=1).module
    except UserError as e:  # the FID weights are an extra; without them there is nothing to test
        pytest.skip(f"no FID Inception weights: {e}")


def _images(n: int, r: int, seed: int) -> torch.Tensor:
    """Smooth random images float (n, 3, r, r) in [-1, 1] (a blurred noise field, so that a
    little added noise is a small change)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, r // 4, r // 4, generator=g)
    return torch.tanh(torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", align_corners=False))


def _nets(inception_net=None) -> dict[str, P.FeatureNet]:
    torch.manual_seed(0)
    _, critic = build_networks(ModelConfig(latent_dim=8, g_width=4, d_width=4, d_norm="layer"), NetSpec(16))
    clf = AttributeNet(5, resolution=16, width=4).eval()
    nets = {"critic": P.CriticFeatures(critic), "classifier": P.ClassifierFeatures(clf, 16)}
    if inception_net is not None:
        nets["inception"] = P.InceptionFeatures(inception_net)
    return nets


@pytest.mark.parametrize("name", ["critic", "classifier", "inception"])
def test_every_feature_net_is_a_differentiable_distance(name, request):
    nets = _nets(request.getfixturevalue("inception_net") if name == "inception" else None)
    net = nets[name]
    assert net.name == name
    x, other = _images(2, 16, 0), _images(2, 16, 1)
    c = torch.zeros(2, 0)
    near = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    fx = net(x, c)
    assert len(fx) >= 2 and all(f.ndim == 4 and f.shape[0] == 2 for f in fx)
    assert torch.allclose(net.distance(fx, fx), torch.zeros(2))
    d_near, d_far = net.distance(net(near, c), fx), net.distance(net(other, c), fx)
    assert d_near.shape == (2,) and bool((d_near > 0).all()) and bool((d_near < d_far).all()), (d_near, d_far)
    # the loss reaches the image, and only the image: the network's weights stay frozen
    y = other.clone().requires_grad_(True)
    net.distance(net(y, c), [f.detach() for f in fx]).sum().backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all()) and float(y.grad.abs().sum()) > 0
    module = {"critic": "critic", "classifier": "net", "inception": "net"}[name]
    assert not any(p.requires_grad for p in getattr(net, module).parameters())


def test_classifier_features_are_its_stage_outputs_and_leave_it_intact():
    clf = AttributeNet(5, resolution=16, width=4).eval()
    feats = P.ClassifierFeatures(clf, 16)
    x = _images(3, 16, 3)
    before = clf(x)
    got = feats(x, torch.zeros(3, 0))
    # by hand: each stage is conv, bn, relu, conv, bn, relu; its output is the second relu's
    want, h = [], x
    for i, layer in enumerate(clf.features):
        h = layer(h.clone())
        if i % 6 == 5:
            want.append(h)
    assert [tuple(f.shape) for f in got] == [(3, 4, 8, 8), (3, 8, 4, 4)]
    assert all(torch.allclose(a, b) for a, b in zip(got, want))
    assert torch.equal(clf(x), before)
    # images of another size are resized to the classifier's
    big = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    assert [f.shape for f in feats(big, torch.zeros(3, 0))] == [f.shape for f in got]


def test_inception_features_take_any_image_size(inception_net):
    net = P.InceptionFeatures(inception_net)
    shapes = [tuple(f.shape[1:]) for f in net(_images(1, 16, 0), torch.zeros(1, 0))]
    assert shapes == [tuple(f.shape[1:]) for f in net(_images(1, 64, 0), torch.zeros(1, 0))]
    assert [s[0] for s in shapes] == [64, 192, 288] and net.size == P.INCEPTION_SIZE
    with pytest.raises(ValueError, match="at least 75 px"):
        P.InceptionFeatures(inception_net, size=64)


@pytest.mark.parametrize("name", ["critic", "classifier"])
def test_a_feature_loss_optimises_toward_the_target(name):
    """From a wrong latent, optimisation with pixels + features + prior gets nearer a face the
    generator draws (an untrained generator is a fixed map, which is all this needs)."""
    torch.manual_seed(0)
    g, _ = build_networks(ModelConfig(latent_dim=8, g_width=8, d_width=4, d_norm="layer"), NetSpec(16))
    g.eval().requires_grad_(False)
    c = torch.zeros(2, 0)
    z_true, z0 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        target = g(z_true, c)
    net = _nets()[name]
    z = P.optimise_latent(g, target, z0, c, steps=60, lr=0.05, features=net)
    with torch.no_grad():
        before = (g(z0, c) - target).square().flatten(1).mean(1)
        after = (g(z, c) - target).square().flatten(1).mean(1)
        f_before = net.distance(net(g(z0, c), c), net(target, c))
        f_after = net.distance(net(g(z, c), c), net(target, c))
    assert bool((after < 0.5 * before).all()) and bool((f_after < f_before).all()), (before, after)
