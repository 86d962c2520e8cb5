"""Conditional generators and critics (models/conditioning.py, dcgan.py, resnet.py)."""

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facegan.config import Config, ModelConfig, validate
from facegan.errors import UserError
from facegan.labels import LabelSpec
from facegan.losses import gradient_penalty
from facegan.models import ARCHS, NetSpec, build_networks
from facegan.models.conditioning import (
    D_CONDS,
    G_CONDS,
    ConditionalBatchNorm2d,
    concat_label_maps,
)

N, Z, RES = 4, 8, 16
# The architectures with norms, spectral norm and every conditioning; the normalisation-free
# one (concat / projection / ac only) is tested in tests/test_nfresnet.py.
CLASSIC = [a for a in ARCHS if a != "nfresnet"]


def _labels(kind: str) -> torch.Tensor:
    """One-hot rows for 3 classes, or 2 independent binary attributes (all four patterns)."""
    if kind == "onehot3":
        return F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    return torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])


def _cfg(arch: str, **kw) -> ModelConfig:
    base = dict(arch=arch, latent_dim=Z, g_width=4, d_width=4, g_norm="batch", d_norm="none")
    base.update(kw)
    return ModelConfig(**base)


def _build(arch: str, k: int, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_networks(_cfg(arch, **kw), NetSpec(RES, label_dim=k))


def _perturb(module: nn.Module, std: float = 0.5) -> None:
    """Give the label maps that start at zero (conditional batch norm) non-zero weights."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                for lin in (m.to_gain, m.to_bias):
                    lin.weight.normal_(0.0, std)


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("g_cond", G_CONDS)
@pytest.mark.parametrize("d_cond", D_CONDS)
@pytest.mark.parametrize("labels", ["onehot3", "attrs2"])
def test_shapes_and_label_plumbing(arch, g_cond, d_cond, labels):
    c = _labels(labels)
    k = c.shape[1]
    g, d = _build(arch, k, g_cond=g_cond, d_cond=d_cond, d_norm="layer")
    assert (g.label_dim, g.cond, d.label_dim, d.cond) == (k, g_cond, k, d_cond)
    x = g(torch.randn(N, Z), c)
    assert x.shape == (N, 3, RES, RES) and torch.isfinite(x).all()
    out = d(x, c)
    assert isinstance(out, tuple) and len(out) == 2
    scores, aux = out
    assert scores.shape == (N,) and torch.isfinite(scores).all()
    if d_cond == "ac":
        assert aux.shape == (N, k)
    else:
        assert aux is None
    # Each sample is scored with its own label, whatever its batch mates (per-sample norm).
    d.eval()
    s_all, a_all = d(x, c)
    s_two, a_two = d(x[:2], c[:2])
    torch.testing.assert_close(s_two, s_all[:2])
    if aux is not None:
        torch.testing.assert_close(a_two, a_all[:2])


@pytest.mark.parametrize("arch", CLASSIC)
def test_cbn_replaces_every_generator_batch_norm(arch):
    g_plain, _ = _build(arch, 0)
    g, _ = _build(arch, 3, g_cond="cbn")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in g_plain.modules())
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert n_bn > 0 and len(cbns) == n_bn
    # The only batch norms left are the CBNs' own, without affine parameters.
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == n_bn and not any(m.affine for m in bns)
    # cbn does not touch the input: the first layer reads z alone.
    assert g.embed is None


@pytest.mark.parametrize("labels", ["onehot3", "attrs2"])
def test_cbn_starts_as_plain_batch_norm_then_depends_on_c(labels):
    c = _labels(labels)
    torch.manual_seed(0)
    cbn, bn = ConditionalBatchNorm2d(5, c.shape[1]), nn.BatchNorm2d(5)
    x = torch.randn(N, 5, 3, 3)
    torch.testing.assert_close(cbn(x, c), bn(x))  # gain 1, bias 0 for every label
    torch.testing.assert_close(cbn.bn.running_mean, bn.running_mean)
    for lin in (cbn.to_gain, cbn.to_bias):
        assert not lin.weight.any() and not lin.bias.any()
    other = 1.0 - c  # a different label for every sample
    torch.testing.assert_close(cbn(x, other), cbn(x, c))
    _perturb(cbn)
    cbn.eval()
    y, y_other = cbn(x, c), cbn(x, other)
    assert (y - y_other).flatten(1).abs().amax(1).min() > 1e-3
    # The formula, by hand, from the module's weights.
    gain = 1 + c @ cbn.to_gain.weight.T + cbn.to_gain.bias
    bias = c @ cbn.to_bias.weight.T + cbn.to_bias.bias
    torch.testing.assert_close(y, cbn.bn(x) * gain[:, :, None, None] + bias[:, :, None, None])


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("g_cond", G_CONDS)
def test_generator_output_changes_with_c_at_fixed_z(arch, g_cond):
    c = _labels("onehot3")
    other = c.roll(1, dims=1)  # every sample gets another class
    g, _ = _build(arch, 3, g_cond=g_cond)
    g.eval()  # batch norm from running statistics: a sample's image depends on its label only
    z = torch.randn(N, Z)
    if g_cond == "cbn":  # zero-initialised label maps: no effect of c until they learn
        torch.testing.assert_close(g(z, other), g(z, c))
        _perturb(g)
    else:
        assert g.embed.weight.shape == (Z, 3)  # embedding width: latent_dim
    diff = (g(z, c) - g(z, other)).flatten(1).abs().amax(1)
    assert diff.min() > 1e-4
    torch.testing.assert_close(g(z[:1], c[:1]), g(z, c)[:1])  # same label, same image


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("use_sn", [False, True])
def test_projection_critic_matches_its_formula(arch, use_sn):
    c = _labels("attrs2")
    _, d = _build(arch, 2, d_cond="projection", d_norm="layer", d_sn=use_sn)
    for _ in range(3):  # move the spectral-norm vectors off their init
        d(torch.randn(N, 3, RES, RES), c)
    d.eval()  # eval: spectral norm keeps its weights fixed between the calls below
    x = torch.randn(N, 3, RES, RES)
    scores, aux = d(x, c)
    assert aux is None
    w = d.proj.embed.weight  # [F, K], spectrally normalised when use_sn
    if arch == "resnet":
        h = F.leaky_relu(d.blocks(x), 0.2).sum(dim=(2, 3))  # [N, F]
        uncond = d.fc(h).reshape(N)
    else:
        feats = d.net[:-1](x)  # [N, F, 4, 4]
        h = feats.sum(dim=(2, 3))
        uncond = d.net[-1](feats).reshape(N)
    expected = uncond + ((c @ w.T) * h).sum(1)
    torch.testing.assert_close(scores, expected)
    # The label term is really there: another label, another score.
    assert (d(x, 1 - c)[0] - scores).abs().min() > 1e-5


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("labels", ["onehot3", "attrs2"])
def test_ac_critic_logits_do_not_depend_on_c(arch, labels):
    c = _labels(labels)
    k = c.shape[1]
    _, d = _build(arch, k, d_cond="ac", d_norm="layer")
    d.eval()
    with torch.no_grad():  # the head starts at zero; give it weights so logits can differ
        d.ac.fc.weight.normal_()
    x = torch.randn(N, 3, RES, RES)
    scores, logits = d(x, c)
    assert logits.abs().max() > 0
    assert logits.shape == (N, k)
    for other in (1 - c, torch.zeros_like(c)):  # c is not read: another label changes nothing
        s2, l2 = d(x, other)
        torch.testing.assert_close(s2, scores, rtol=0, atol=0)
        torch.testing.assert_close(l2, logits, rtol=0, atol=0)
    # And the score is the unconditional head alone.
    h = (F.leaky_relu(d.blocks(x), 0.2) if arch == "resnet" else d.net[:-1](x)).sum(dim=(2, 3))
    torch.testing.assert_close(logits, d.ac.fc(h))


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("g_cond", G_CONDS)
@pytest.mark.parametrize("d_cond", D_CONDS)
@pytest.mark.parametrize("k", [0, 3])
def test_every_net_is_g_of_z_c_and_every_critic_returns_a_pair(arch, g_cond, d_cond, k):
    # The one contract: G(z, c) and D(x, c) -> (scores, aux or None), c (N, K) always, K = 0
    # without labels, whatever the conditioning options say.
    c = _labels("onehot3") if k else torch.zeros(N, 0)
    g, d = _build(arch, k, g_cond=g_cond, d_cond=d_cond, d_norm="layer")
    x = g(torch.randn(N, Z), c)
    assert x.shape == (N, 3, RES, RES)
    out = d(x, c)
    assert isinstance(out, tuple) and len(out) == 2
    scores, aux = out
    assert scores.shape == (N,)
    if k and d_cond == "ac":
        assert aux.shape == (N, k)
    else:
        assert aux is None
    if not k:  # the conditioning options are not used without labels
        assert g.cond is None and d.cond is None


@pytest.mark.parametrize("arch", CLASSIC)
def test_unconditional_outputs_for_a_seed_are_unchanged(arch):
    # Values recorded before c became a required argument: an unconditional net ignores its
    # width-0 labels, so its weights and outputs stay those of earlier versions.
    recorded = {
        "dcgan": ([0.047523212, -0.006129638, 0.010094889], [-0.365418881, -0.055449292]),
        "resnet": ([-0.079811245, -0.006961532, 0.308157146], [-3.622138977, -3.416744709]),
    }
    torch.manual_seed(0)
    g, d = build_networks(ModelConfig(arch=arch, latent_dim=16, g_width=4, d_width=4,
                                      d_norm="layer", g_sn=True, d_sn=True), 16)
    torch.manual_seed(1)
    c = torch.zeros(2, 0)
    x = g(torch.randn(2, 16), c)
    pixel, scores = recorded[arch]
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor(pixel))
    s, aux = d(x, c)
    torch.testing.assert_close(s, torch.tensor(scores))
    assert aux is None


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("d_cond", D_CONDS)
def test_missing_or_wrong_labels_raise(arch, d_cond):
    c = _labels("onehot3")
    z, x = torch.randn(N, Z), torch.randn(N, 3, RES, RES)
    g, d = _build(arch, 3, d_cond=d_cond)
    for net, inp in ((g, z), (d, x)):
        with pytest.raises(ValueError, match=r"label_dim=3\) expects labels c of shape \(4, 3\)"):
            net(inp, torch.zeros(N, 0))  # an unconditional batch's labels
        with pytest.raises(ValueError, match=r"\(4, 3\).*got \(4, 2\)"):
            net(inp, c[:, :2])  # wrong width
        with pytest.raises(ValueError, match=r"\(4, 3\).*got \(2, 3\)"):
            net(inp, c[:2])  # wrong batch
        with pytest.raises(ValueError, match="got NoneType"):
            net(inp, None)  # c is required, even where the AC critic's score does not read it
    # Unconditional nets: labels of width 0, and nothing else.
    g, d = _build(arch, 0)
    for net, inp in ((g, z), (d, x)):
        with pytest.raises(ValueError, match="unconditional net takes torch.zeros"):
            net(inp, c)


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("d_cond", D_CONDS)
@pytest.mark.parametrize("use_sn", [False, True])
def test_penalty_double_backward_through_conditional_critic(arch, d_cond, use_sn):
    c = _labels("onehot3")
    g, d = _build(arch, 3, d_cond=d_cond, d_norm="layer", d_sn=use_sn)
    real = torch.rand(N, 3, RES, RES) * 2 - 1
    fake = g(torch.randn(N, Z), c)
    score_fn = lambda x: d(x, c)[0]
    (real_s, real_aux), (fake_s, _) = d(real, c), d(fake.detach(), c)
    loss = fake_s.mean() - real_s.mean() + 10.0 * gradient_penalty(score_fn, real, fake)
    if real_aux is not None:
        loss = loss + F.cross_entropy(real_aux, c.argmax(1))
    loss.backward()
    grads = {name: p.grad for name, p in d.named_parameters()}
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads.values()), \
        [name for name, gr in grads.items() if gr is None]
    # The penalty alone: its graph reaches the label-dependent weights.
    d.zero_grad(set_to_none=True)
    x = real.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(score_fn(x).sum(), x, create_graph=True)
    gx.square().sum().backward()
    if d_cond == "projection":
        emb = d.proj.embed
        w = emb.parametrizations.weight.original if use_sn else emb.weight
        assert w.grad is not None and w.grad.abs().sum() > 0
    first = d.blocks[0].conv1 if arch == "resnet" else d.net[0]
    w = first.parametrizations.weight.original if use_sn else first.weight
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    if d_cond == "concat":  # the label maps' input channels get second-order gradients too
        assert w.grad[:, 3:].abs().sum() > 0


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("d_cond", D_CONDS)
def test_conditional_critic_double_backward_matches_finite_differences(arch, d_cond):
    torch.manual_seed(0)
    cfg = _cfg(arch, d_width=2, d_norm="layer", d_sn=True, d_cond=d_cond)
    _, d = build_networks(cfg, NetSpec(8, label_dim=2))
    d = d.double().eval()
    c = _labels("attrs2")[:2].double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: d(x, c)[0], (x,), fast_mode=True)


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("use_sn", [False, True])
def test_spectral_norm_on_critic_heads(arch, use_sn):
    _, d = _build(arch, 3, d_cond="projection", d_sn=use_sn)
    _, d_ac = _build(arch, 3, d_cond="ac", d_sn=use_sn)
    heads = (d.proj.embed, d_ac.ac.fc)
    assert all(hasattr(m, "parametrizations") == use_sn for m in heads)
    if use_sn:
        x, c = torch.randn(8, 3, RES, RES), _labels("onehot3").repeat(2, 1)
        for _ in range(30):  # one power iteration per train-mode forward
            d(x, c), d_ac(x, c)
        with torch.no_grad():
            sigmas = torch.stack([torch.linalg.matrix_norm(m.weight, ord=2) for m in heads])
        torch.testing.assert_close(sigmas, torch.ones(2), atol=0.05, rtol=0)


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("g_cond,d_cond", [("concat", "concat"), ("cbn", "projection"),
                                           ("concat", "ac")])
def test_state_dict_round_trip(arch, g_cond, d_cond):
    c = _labels("onehot3")
    kw = dict(g_cond=g_cond, d_cond=d_cond, d_norm="instance", g_sn=True, d_sn=True)
    g, d = _build(arch, 3, **kw)
    _perturb(g)
    x, z = torch.randn(N, 3, RES, RES), torch.randn(N, Z)
    d(x, c), g(z, c)  # move the BN statistics and the SN vectors off their init
    buf = io.BytesIO()
    torch.save({"G": g.state_dict(), "D": d.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    g2, d2 = _build(arch, 3, seed=1, **kw)
    g2.load_state_dict(state["G"])
    d2.load_state_dict(state["D"])
    for net in (g, d, g2, d2):
        net.eval()
    torch.testing.assert_close(g2(z, c), g(z, c), rtol=0, atol=0)
    for a, b in zip(d2(x, c), d(x, c)):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_label_maps_and_channels_last():
    x = torch.randn(N, 3, 8, 8)
    c = _labels("attrs2")
    y = concat_label_maps(x, c)
    assert y.shape == (N, 5, 8, 8)
    torch.testing.assert_close(y[:, :3], x)
    torch.testing.assert_close(y[:, 3:], c[:, :, None, None].expand(N, 2, 8, 8))
    _, d = _build("resnet", 2, d_cond="concat", d_norm="instance")
    x = torch.randn(N, 3, RES, RES)
    ref = d(x, c)[0]
    d = d.to(memory_format=torch.channels_last)
    torch.testing.assert_close(d(x.contiguous(memory_format=torch.channels_last), c)[0], ref,
                               atol=1e-5, rtol=1e-4)


def test_config_choices_and_errors():
    assert (ModelConfig().g_cond, ModelConfig().d_cond) == ("concat", "projection")
    for bad, name in ((ModelConfig(g_cond="film"), "g_cond"),
                      (ModelConfig(d_cond="acgan"), "d_cond")):
        with pytest.raises(UserError, match=f"model.{name}") as err:
            validate(Config(model=bad))
        assert "\n" not in str(err.value) and "concat" in str(err.value)
    validate(Config(model=ModelConfig(g_cond="cbn", d_cond="ac")))
    # Built directly (no config validation), a net refuses what it cannot be.
    with pytest.raises(ValueError, match="generator conditioning 'film'"):
        build_networks(_cfg("dcgan", g_cond="film"), NetSpec(RES, label_dim=3))
    with pytest.raises(ValueError, match="critic conditioning 'acgan'"):
        build_networks(_cfg("resnet", d_cond="acgan"), NetSpec(RES, label_dim=3))
    for arch in CLASSIC:
        with pytest.raises(ValueError, match="conditional batch norm replaces batch norm"):
            build_networks(_cfg(arch, g_cond="cbn", g_norm="none"), NetSpec(RES, label_dim=3))
    # Without labels the conditioning options are not used, so they cannot be wrong.
    g, _ = build_networks(_cfg("resnet", g_cond="cbn", g_norm="none"), NetSpec(RES))
    assert g.cond is None and g(torch.randn(2, Z), torch.zeros(2, 0)).shape == (2, 3, RES, RES)


@pytest.mark.parametrize("arch", CLASSIC)
@pytest.mark.parametrize("labels", ["onehot3", "attrs2"])
def test_ac_loss_of_a_new_critic_is_chance(arch, labels):
    # The AC head starts at zero (without spectral norm), so a new critic's AC loss is log K
    # for K classes and log 2 for attributes, whatever the images; it then learns.
    from facegan.losses import ac_loss
    c = _labels(labels)
    k = c.shape[1]
    kind = "class" if labels.startswith("onehot") else "attr"
    spec = LabelSpec(kind, tuple(f"l{i}" for i in range(k)), (1,) * k, N)
    _, d = _build(arch, k, d_cond="ac", d_norm="layer")
    x = torch.randn(N, 3, RES, RES) * 3
    _, logits = d(x, c)
    chance = math.log(k) if kind == "class" else math.log(2)
    assert ac_loss(logits, c, spec).item() == pytest.approx(chance, abs=1e-6)
    opt = torch.optim.SGD(d.ac.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        ac_loss(d(x, c)[1], c, spec).backward()
        opt.step()
    assert ac_loss(d(x, c)[1], c, spec).item() < chance - 1e-3


NETWORKS = [
    ("facegan.models.dcgan", "DCGANGenerator", G_CONDS, "generator"),
    ("facegan.models.dcgan", "DCGANCritic", D_CONDS, "critic"),
    ("facegan.models.resnet", "ResNetGenerator", G_CONDS, "generator"),
    ("facegan.models.resnet", "ResNetCritic", D_CONDS, "critic"),
    ("facegan.models.nfresnet", "NFGenerator", ("concat",), "normalisation-free generator"),
    ("facegan.models.nfresnet", "NFCritic", ("projection", "ac"), "normalisation-free critic"),
]


@pytest.mark.parametrize("module,name,allowed,net", NETWORKS, ids=[n[1] for n in NETWORKS])
def test_every_network_names_its_conditioning_choices_and_ignores_them_without_labels(module, name, allowed, net):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    kw = {"latent_dim": Z} if "Generator" in name else {}
    with pytest.raises(ValueError, match=f"unknown {net} conditioning 'bogus'; use one of: {', '.join(allowed)}$"):
        cls(resolution=RES, width=8, label_dim=3, cond="bogus", **kw)
    assert cls(resolution=RES, width=8, label_dim=0, cond="bogus", **kw).cond is None
    assert cls(resolution=RES, width=8, label_dim=3, cond=allowed[0], **kw).cond == allowed[0]
    for bad in (12, 4, 0):
        with pytest.raises(ValueError, match=f"resolution must be a power of two >= 8, got {bad}"):
            cls(resolution=bad, width=8, **kw)
