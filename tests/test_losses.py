import pytest
import torch
from torch import nn

from facegan.config import LossConfig
from facegan.errors import UserError
from facegan.losses import (
    LOSSES,
    bce_d_loss,
    bce_g_loss,
    bce_targets,
    build_loss,
    clip_weights,
    gradient_penalty,
    hinge_d_loss,
    wasserstein_d_loss,
    wasserstein_g_loss,
)


def test_wasserstein_signs():
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 0.0])
    # critic minimises E[D(fake)] - E[D(real)]: good critic (real high) -> negative loss
    torch.testing.assert_close(wasserstein_d_loss(real, fake), torch.tensor(-0.5 - 2.0))
    torch.testing.assert_close(wasserstein_g_loss(fake), torch.tensor(0.5))


def test_bce_signs_and_values():
    big = torch.full((4,), 20.0)
    # a discriminator that is right and confident has ~0 loss; wrong and confident, large loss
    assert bce_d_loss(big, -big).item() < 1e-6
    assert bce_d_loss(-big, big).item() > 30
    # non-saturating generator loss: -log sigmoid(s)
    s = torch.tensor([0.0, 2.0])
    torch.testing.assert_close(bce_g_loss(s), -torch.nn.functional.logsigmoid(s).mean())


def test_hinge_values():
    torch.testing.assert_close(hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])),
                               torch.tensor((0 + 1) / 2 + (0 + 1.5) / 2))


def test_label_smoothing_is_one_sided():
    torch.testing.assert_close(bce_targets(5, real=True, smoothing=0.1), torch.full((5,), 0.9))
    torch.testing.assert_close(bce_targets(5, real=False, smoothing=0.1), torch.zeros(5))
    # with smoothing the optimum real logit is finite: loss at logit(0.9) is minimal
    s = torch.tensor([2.1972245])  # logit(0.9)
    l0 = bce_d_loss(s, torch.tensor([-50.0]), smoothing=0.1)
    assert l0 < bce_d_loss(s + 1, torch.tensor([-50.0]), smoothing=0.1)
    assert l0 < bce_d_loss(s - 1, torch.tensor([-50.0]), smoothing=0.1)


def test_label_noise_bounds():
    torch.manual_seed(0)
    t = bce_targets(10000, real=True, noise=0.2)
    assert t.max() <= 1.0 and t.min() >= 0.8 and t.std() > 0.01
    f = bce_targets(10000, real=False, noise=0.2)
    assert f.min() >= 0.0 and f.max() <= 0.2


def test_label_flips_rate():
    torch.manual_seed(0)
    t = bce_targets(20000, real=True, flip=0.1)
    frac = (t == 0).float().mean().item()
    assert frac == pytest.approx(0.1, abs=0.01)
    f = bce_targets(20000, real=False, flip=0.1, smoothing=0.1)
    vals = torch.unique(f)
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1].item() == pytest.approx(0.9)
    assert (f > 0).float().mean().item() == pytest.approx(0.1, abs=0.01)


class Linear(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w for every x, so the penalty is (||w|| - 1)^2."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.b


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_gradient_penalty_linear_critic_analytic(channels):
    torch.manual_seed(0)
    critic = Linear((channels, 6, 7))
    real, fake = torch.randn(8, channels, 6, 7), torch.randn(8, channels, 6, 7)
    gp, norms = gradient_penalty(critic, real, fake, return_norms=True)
    expected = (critic.w.detach().norm() - 1) ** 2
    torch.testing.assert_close(gp.detach(), expected)
    torch.testing.assert_close(norms.detach(), critic.w.detach().norm().expand(8))
    # The penalty is differentiable w.r.t. the critic weights: d/dw (||w|| - 1)^2 = 2(||w||-1) w/||w||
    gp.backward()
    n = critic.w.detach().norm()
    torch.testing.assert_close(critic.w.grad, 2 * (n - 1) * critic.w.detach() / n)


def test_gradient_penalty_interpolates_per_sample():
    # A critic D(x) = 0.5 * ||x||^2 has gradient x_hat: norms reveal eps per sample lies in [0, 1].
    torch.manual_seed(0)
    real, fake = torch.ones(64, 2, 3, 3), torch.zeros(64, 2, 3, 3)
    _, norms = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, return_norms=True)
    eps = norms / real[0].norm()
    assert eps.min() >= 0 and eps.max() <= 1 and eps.std() > 0.2  # different eps per sample


def test_gradient_penalty_labels_held_fixed_in_closure():
    # A conditional critic D(x, y) = y * sum(x): the penalty is taken w.r.t. the image only,
    # labels held fixed by the closure, so ||grad_x D|| = y * sqrt(C*H*W).
    critic = lambda x, y: (x.flatten(1) * y[:, None]).sum(1)
    y = torch.tensor([1.0, 2.0])
    gp, norms = gradient_penalty(lambda x: critic(x, y), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4),
                                 return_norms=True)
    torch.testing.assert_close(norms, y * (3 * 16) ** 0.5)
    torch.testing.assert_close(gp, ((norms - 1) ** 2).mean())


def test_clip_bounds():
    m = nn.Linear(10, 10)
    with torch.no_grad():
        m.weight.mul_(100)
    clip_weights(m, 0.01)
    for p in m.parameters():
        assert p.abs().max() <= 0.01 + 1e-9
    assert (m.weight.abs() == 0.01).any()


def test_registry_and_options():
    assert set(LOSSES) >= {"bce", "wasserstein", "hinge"}
    l = build_loss(LossConfig(name="bce", gp_weight=0.0, label_smoothing=0.2))
    assert l.d_loss.keywords["smoothing"] == 0.2
    with pytest.raises(UserError, match="unknown loss"):
        build_loss(LossConfig(name="nope"))
    with pytest.raises(UserError, match="bce loss only"):
        build_loss(LossConfig(name="wasserstein", label_smoothing=0.1))


def test_r1_penalty_against_hand_computation():
    from facegan.losses import r1_penalty

    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4)
    critic = lambda t: (w * t.pow(2)).flatten(1).sum(1)
    r1 = r1_penalty(critic, x)
    torch.testing.assert_close(r1, (2 * w * x).pow(2).flatten(1).sum(1).mean())
    # It trains the critic: d r1 / d w = mean_i sum 8 w x_i^2
    wq = w.clone().requires_grad_(True)
    r1_penalty(lambda t: (wq * t.pow(2)).flatten(1).sum(1), x).backward()
    torch.testing.assert_close(wq.grad, (8 * w * x.pow(2)).mean(0))


def test_hinge_losses_against_hand_computation():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    # relu(1 - r): 0, 0.5, 2 -> mean 2.5/3; relu(1 + f): 0, 1, 2.5 -> mean 3.5/3
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(2.5 / 3 + 3.5 / 3))
    from facegan.losses import hinge_g_loss

    torch.testing.assert_close(hinge_g_loss(fake), torch.tensor(-(-2.0 + 0.0 + 1.5) / 3))


class _RecordingOptimizer:
    """Adds each step's gradients into .total and never moves the weights, so the critic stays
    fixed and the sum of the gradients over several steps can be compared exactly."""

    def __init__(self, params):
        self.params = list(params)
        self.total = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        for t, p in zip(self.total, self.params):
            if p.grad is not None:
                t += p.grad


class _LinearCritic(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape) * 0.1)

    def forward(self, x, c):
        return (x * self.w).flatten(1).sum(1), None


@pytest.mark.parametrize("kind", ["gp", "r1"])
def test_lazy_regularisation_equals_eager_over_k_steps(tmp_path, kind):
    """Over k critic steps, the penalty every step (weight lambda) and the penalty once (weight
    k * lambda) give the critic the same total gradient. With a linear critic the penalty's
    gradient does not depend on the images or on eps, so the sums match exactly."""
    from PIL import Image

    from facegan.config import apply_overrides, get_preset
    from facegan.data import load_dataset
    from facegan.losses import AdversarialLoss
    from facegan.models import build_networks
    from facegan.train import Trainer

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.new("RGB", (16, 16), (i * 30, 10, 200 - i * 20)).save(folder / f"{i}.png")
    cfg = apply_overrides(get_preset("demo"), [f"data.path={folder}", "data.resolution=8", "train.batch_size=4",
                                               "model.latent_dim=4", "model.g_width=4", "train.device=cpu"])
    data = load_dataset(cfg.data, progress=False)
    k = 4
    totals = []
    for reg_every in (1, k):
        torch.manual_seed(0)
        g, _ = build_networks(cfg.model, 8)
        d = _LinearCritic((3, 8, 8))
        weight = {"gp": 10.0, "r1": 3.0}[kind]
        # The adversarial term is switched off: what remains is the regulariser's gradient.
        loss = AdversarialLoss("zero", lambda r, f: 0.0 * (r.sum() + f.sum()), lambda f: -f.mean(),
                               gp_weight=weight if kind == "gp" else 0.0,
                               r1_weight=weight if kind == "r1" else 0.0, reg_every=reg_every)
        opt_d = _RecordingOptimizer(d.parameters())
        tr = Trainer(cfg, g, d, None, torch.optim.SGD(g.parameters(), lr=0.0), opt_d, loss, data,
                     tmp_path / f"run{reg_every}", torch.device("cpu"))
        for _ in range(k):
            tr.critic_step()
        totals.append(opt_d.total[0])
    w = d.w.detach()
    expect = (k * 10.0 * 2 * (w.norm() - 1) * w / w.norm()) if kind == "gp" else k * 3.0 * w
    torch.testing.assert_close(totals[0], expect, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(totals[1], totals[0], rtol=1e-4, atol=1e-6)


# ---- relativistic pairing, R2, schedules ------------------------------------------------------

def test_relativistic_losses_against_hand_computation():
    from facegan.losses import relativistic_d_loss, relativistic_g_loss

    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    sp = lambda t: torch.log1p(torch.exp(t))
    torch.testing.assert_close(relativistic_d_loss(real, fake), sp(fake - real).mean())
    torch.testing.assert_close(relativistic_g_loss(fake, real), sp(real - fake).mean())
    # Only differences matter: shifting every score leaves both losses as they are.
    torch.testing.assert_close(relativistic_d_loss(real + 7, fake + 7), relativistic_d_loss(real, fake))
    # Pairing: the critic loss is lowest when each real outscores its own fake.
    assert relativistic_d_loss(real, real - 5) < relativistic_d_loss(real, real + 5)
    with pytest.raises(ValueError, match="real batch"):
        relativistic_g_loss(fake)


def test_registry_marks_the_paired_loss():
    rel = build_loss(LossConfig(name="relativistic", gp_weight=0.0, r1_weight=1.0, r2_weight=2.0))
    assert rel.paired and rel.r2_weight == 2.0
    plain = build_loss(LossConfig(name="hinge", gp_weight=0.0))
    assert not plain.paired
    # Every generator loss takes (fake, real); an unpaired one ignores the real scores.
    fake = torch.tensor([0.5, -0.5])
    assert plain.g_loss(fake, torch.tensor([9.0, 9.0])) == plain.g_loss(fake, None)


def _linear_trainer(tmp_path, loss, cfg_extra=()):
    from PIL import Image

    from facegan.config import apply_overrides, get_preset
    from facegan.data import load_dataset
    from facegan.models import build_networks
    from facegan.train import Trainer

    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for i in range(8):
        Image.new("RGB", (16, 16), (i * 30, 10, 200 - i * 20)).save(folder / f"{i}.png")
    cfg = apply_overrides(get_preset("demo"), [f"data.path={folder}", "data.resolution=8", "train.batch_size=4",
                                               "model.latent_dim=4", "model.g_width=4", "train.device=cpu",
                                               *cfg_extra])
    data = load_dataset(cfg.data, progress=False)
    torch.manual_seed(0)
    g, _ = build_networks(cfg.model, 8)
    d = _LinearCritic((3, 8, 8))
    opt_d = _RecordingOptimizer(d.parameters())
    return Trainer(cfg, g, d, None, torch.optim.SGD(g.parameters(), lr=0.0), opt_d, loss, data,
                   tmp_path / "run", torch.device("cpu")), d, opt_d


@pytest.mark.parametrize("which", ["r1", "r2", "both"])
def test_r1_and_r2_give_the_critic_their_analytic_gradient(tmp_path, which):
    """A linear critic D(x) = <w, x> has input gradient w for every image, so R1 = R2 =
    ||w||^2 and the penalty's gradient is gamma * w for each (times reg_every on its step)."""
    from facegan.losses import AdversarialLoss

    r1 = 3.0 if which in ("r1", "both") else 0.0
    r2 = 5.0 if which in ("r2", "both") else 0.0
    loss = AdversarialLoss("zero", lambda r, f: 0.0 * (r.sum() + f.sum()), lambda f, r=None: -f.mean(),
                           r1_weight=r1, r2_weight=r2, reg_every=2)
    tr, d, opt_d = _linear_trainer(tmp_path, loss)
    out = tr.critic_step()
    assert "r1" not in out and "r2" not in out  # lazy: not on the first critic step
    out = tr.critic_step()
    w = d.w.detach()
    torch.testing.assert_close(opt_d.total[0], 2 * (r1 + r2) * w, rtol=1e-4, atol=1e-6)
    for name, weight in (("r1", r1), ("r2", r2)):
        if weight:
            torch.testing.assert_close(out[name], w.pow(2).sum(), rtol=1e-4, atol=1e-6)
        else:
            assert name not in out


def test_paired_generator_step_scores_a_real_batch(tmp_path):
    """The relativistic generator loss compares with the critic's scores of real images,
    taken without a graph; an unpaired loss never draws a real batch in the generator step."""
    from facegan.losses import AdversarialLoss, relativistic_d_loss, relativistic_g_loss

    seen = {}

    def g_loss(fake, real=None):
        seen["real"] = real
        return relativistic_g_loss(fake, real)

    loss = AdversarialLoss("relativistic", relativistic_d_loss, g_loss, paired=True)
    tr, d, _ = _linear_trainer(tmp_path, loss)
    tr.generator_step()
    assert seen["real"].shape == (4,) and not seen["real"].requires_grad
    assert tr.batches.pos == 4  # a real batch was drawn
    unpaired = AdversarialLoss("hinge", lambda r, f: r.mean(), lambda f, r=None: seen.update(real=r) or -f.mean())
    tr2, _, _ = _linear_trainer(tmp_path, unpaired)
    tr2.generator_step()
    assert seen["real"] is None and tr2.batches.pos == 0
