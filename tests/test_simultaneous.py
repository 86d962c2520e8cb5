"""train.simultaneous: both nets updated from one critic backward, each with its own loss's gradient."""

import copy

import pytest
import torch
from test_train import TINY, tiny_folder  # noqa: F401  (the fixture)

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.errors import UserError
from facegan.train import build_trainer


def _cfg(folder, *extra):
    return apply_overrides(get_preset("wgangp-ln-wide-b32-celeba64"),
                           TINY + [f"data.path={folder}", "train.simultaneous=true", *extra])


@pytest.mark.parametrize("d_norm", ["layer", "batch"])  # one critic pass, or real and fake apart
def test_each_net_gets_its_own_losss_gradient_from_the_one_backward(tmp_path, tiny_folder, d_norm):
    cfg = _cfg(tiny_folder, f"model.d_norm={d_norm}", "loss.gp_weight=0", "train.precision=fp32")
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    torch.manual_seed(0)
    z = torch.randn(tr.local_batch, tr.G.latent_dim)
    real = torch.rand(tr.local_batch, 3, 16, 16) * 2 - 1
    tr._noise = lambda: z
    tr._real_batch = lambda: (real, tr.label_spec.empty(tr.local_batch))
    g0, d0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    d_before = [p.detach().clone() for p in tr.D.parameters()]
    out = tr.simultaneous_step()

    # What each net's own loss asks, at the weights both had before the step.
    c = torch.zeros(tr.local_batch, 0)
    fake = g0(z, c)
    g_loss = -d0(fake, c)[0].mean()
    want_g = torch.autograd.grad(g_loss, list(g0.parameters()))
    d_loss = d0(fake.detach(), c)[0].mean() - d0(real, c)[0].mean()
    want_d = torch.autograd.grad(d_loss, list(d0.parameters()))
    for got, want in zip([p.grad for p in tr.G.parameters()], want_g):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip([p.grad for p in tr.D.parameters()], want_d):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert out["g_loss"].item() == pytest.approx(g_loss.item(), rel=1e-5)
    assert out["d_loss"].item() == pytest.approx(d_loss.item(), rel=1e-5)
    # both nets stepped
    assert any(not torch.equal(a, b) for a, b in zip(d_before, tr.D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0.parameters(), tr.G.parameters()))


def test_the_penalty_reaches_the_critic_only(tmp_path, tiny_folder):
    """On a penalty step the generator's gradient is the same as without the penalty."""
    grads = {}
    for gp in (0.0, 10.0):
        cfg = _cfg(tiny_folder, f"loss.gp_weight={gp}", "loss.reg_every=1", "train.precision=fp32")
        torch.manual_seed(0)
        tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / f"run{gp}", progress=False)
        torch.manual_seed(1)
        out = tr.simultaneous_step()
        assert ("gp" in out) == (gp > 0)
        grads[gp] = ([p.grad.clone() for p in tr.G.parameters()], [p.grad.clone() for p in tr.D.parameters()])
    for a, b in zip(grads[0.0][0], grads[10.0][0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(grads[0.0][1], grads[10.0][1]))


def test_a_run_trains_and_logs_both_losses(tmp_path, tiny_folder):
    cfg = _cfg(tiny_folder, "loss.reg_every=2")
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    rec = tr.train(4)
    assert tr.step == 4 and tr.d_steps == 4
    assert {"d_loss", "g_loss", "wasserstein", "gp"} <= set(rec)


@pytest.mark.parametrize("extra,named", [
    (["loss.name=hinge", "loss.gp_weight=0"], "loss.name=wasserstein"),
    (["train.n_critic=2"], "train.n_critic=1"),
    (["loss.r1_weight=1"], "loss.r1_weight=0"),
    (["train.precision=fp16"], "fp32 or bf16"),
])
def test_recipes_it_cannot_update_together_are_refused(tiny_folder, extra, named):
    with pytest.raises(UserError, match="train.simultaneous") as e:
        _cfg(tiny_folder, *extra).validate()
    assert named in str(e.value) and "train.simultaneous=false" in str(e.value)


def test_an_ac_critic_is_refused(tmp_path):
    from test_labels import make_celeba_attrs

    make_celeba_attrs(tmp_path / "celeba", n=16)
    cfg = _cfg(tmp_path / "celeba", "data.condition=Male", "model.d_cond=ac", "model.g_cond=cbn")
    with pytest.raises(UserError, match="AC head"):
        cfg.validate()
