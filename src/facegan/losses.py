"""Adversarial losses as pure functions of critic outputs, plus the gradient penalty and clipping.

Sign conventions: every function returns a quantity to *minimise*. Scores are unbounded
floats of shape (N,) (logits for BCE). The Wasserstein critic loss is
``E[D(fake)] - E[D(real)]``, so the estimate of the distance is its negation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LossConfig
from .errors import UserError
from .labels import LabelSpec

# ---- BCE / non-saturating (DCGAN) --------------------------------------------------------

def bce_targets(n: int, *, real: bool, smoothing: float = 0.0, noise: float = 0.0,
                flip: float = 0.0, device=None, generator: torch.Generator | None = None,
                share: tuple[int, int] = (0, 1)) -> Tensor:
    """Discriminator targets (N,) in [0, 1] with the tricks against an overpowering discriminator.

    smoothing: real targets become 1 - smoothing (one-sided; fakes stay 0).
    noise: targets move towards the other class by U[0, noise].
    flip: each target is swapped (real <-> fake) with this probability.
    share: (rank, world): the N samples are this rank's share of a global batch of N * world;
        the random draws are made for the global batch and the rank's share kept, so they do
        not depend on the number of processes.
    """
    rank, world = share

    def draw() -> Tensor:
        return torch.rand(n * world, device=device, generator=generator)[rank * n:(rank + 1) * n]

    hi = 1.0 - smoothing
    t = torch.full((n,), hi if real else 0.0, device=device)
    if noise > 0:
        u = draw() * noise
        t = t - u if real else t + u
    if flip > 0:
        swap = draw() < flip
        t = torch.where(swap, (hi if not real else 0.0) + torch.zeros_like(t), t)
    return t


def bce_d_loss(real_scores: Tensor, fake_scores: Tensor, *, smoothing: float = 0.0,
               noise: float = 0.0, flip: float = 0.0, share: tuple[int, int] = (0, 1)) -> Tensor:
    """BCE discriminator loss on logits (N,): -log D(real) - log(1 - D(fake)), with label tricks
    (share: see :func:`bce_targets`)."""
    rt = bce_targets(real_scores.shape[0], real=True, smoothing=smoothing, noise=noise, flip=flip,
                     device=real_scores.device, share=share)
    ft = bce_targets(fake_scores.shape[0], real=False, smoothing=smoothing, noise=noise, flip=flip,
                     device=fake_scores.device, share=share)
    return (F.binary_cross_entropy_with_logits(real_scores.float(), rt)
            + F.binary_cross_entropy_with_logits(fake_scores.float(), ft))


def bce_g_loss(fake_scores: Tensor) -> Tensor:
    """Non-saturating generator loss: -log D(G(z)) (targets 1, never smoothed)."""
    return F.binary_cross_entropy_with_logits(fake_scores.float(), torch.ones_like(fake_scores, dtype=torch.float32))


# ---- Wasserstein --------------------------------------------------------------------------

def wasserstein_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Critic loss E[D(fake)] - E[D(real)]; its negation estimates the Wasserstein-1 distance."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wasserstein_g_loss(fake_scores: Tensor) -> Tensor:
    """Generator loss -E[D(G(z))]."""
    return -fake_scores.float().mean()


# ---- Hinge ---------------------------------------------------------------------------------

def hinge_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[relu(1 - D(real))] + E[relu(1 + D(fake))]."""
    return F.relu(1.0 - real_scores.float()).mean() + F.relu(1.0 + fake_scores.float()).mean()


hinge_g_loss = wasserstein_g_loss


# ---- Relativistic pairing (RpGAN) ------------------------------------------------------------

def relativistic_d_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[softplus(D(fake) - D(real))] over pairs (Jolicoeur-Martineau 2019; R3GAN's loss): the
    critic is asked only that each real image score above its paired fake, not that the
    scores reach any level. real_scores, fake_scores: (N,), paired by position."""
    return F.softplus(fake_scores.float() - real_scores.float()).mean()


def relativistic_g_loss(fake_scores: Tensor, real_scores: Tensor | None = None) -> Tensor:
    """E[softplus(D(real) - D(fake))], the mirror of :func:`relativistic_d_loss`; real_scores
    (N,) of a real batch (constants: no gradient reaches the generator through them)."""
    if real_scores is None:
        raise ValueError("the relativistic generator loss needs the critic's scores of a real batch")
    return F.softplus(real_scores.float() - fake_scores.float()).mean()


# ---- Auxiliary classifier (AC-GAN) ---------------------------------------------------------

def ac_loss(logits: Tensor, labels: Tensor, spec: LabelSpec) -> Tensor:
    """The auxiliary classifier's loss (Odena et al. 2017), a scalar to minimise.

    logits: (N, K) from the critic's AC head; labels: float (N, K), whose meaning ``spec``
    gives; its target (:meth:`LabelSpec.ac_target`) is either
    class indices, long (N,): the cross-entropy of softmax(logits) against the labelled class,
        averaged over the batch; or
    the labels themselves, float in {0, 1}^K (independent attributes): binary cross-entropy
        with logits per attribute, averaged over the batch and the K attributes (so the loss's
        scale, and ``loss.ac_weight``'s meaning, do not grow with the number of attributes).
    Computed in float32 (under bf16 autocast too).
    """
    target = spec.ac_target(labels)
    logits = logits.float()
    if target.dtype == torch.long:
        return F.cross_entropy(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target.float())


# ---- Regularisers ----------------------------------------------------------------------------

def _as_channels_last_like(x: Tensor, like: Tensor) -> Tensor:
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _input_gradients(score_fn: Callable[[Tensor], Tensor], x: Tensor,
                     out_scale: float | Tensor | None = None) -> Tensor:
    """grad_x sum(score_fn(x)) (N, ...) in float32, kept in the graph (create_graph) so the
    penalty built from it trains the critic (double backward).

    out_scale: fp16 training's loss scale (``GradScaler.get_scale()``). As PyTorch's AMP
    documentation prescribes for gradient penalties, the scores are multiplied by it before
    ``autograd.grad`` (so fp16 intermediate gradients do not underflow) and the gradient is
    divided by it before any norm is taken (an overflow then shows as inf, which the scaler
    sees and skips).
    """
    x = x.detach().requires_grad_(True)
    total = score_fn(x).float().sum()
    if out_scale is not None:
        total = total * out_scale
    (grad,) = torch.autograd.grad(total, x, create_graph=True)
    grad = grad.float()
    return grad / out_scale if out_scale is not None else grad


def gradient_penalty(score_fn: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     *, eps: Tensor | None = None, out_scale: float | Tensor | None = None,
                     return_norms: bool = False):
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017).

    score_fn: image (N, C, H, W) -> scores (N,). The trainer passes a closure over its one
        critic call (augmentation, labels held fixed), so this function knows nothing of them.
    real, fake: (N, C, H, W) (any C, any size; fake detached by the caller or not).
    x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] of shape (N, 1, 1, 1), one per
    sample (out_scale: fp16's loss scale, see :func:`_input_gradients`; ``eps``: given by the caller, (N,) or (N, 1, 1, 1) in [0, 1]; a multi-process
    trainer passes its share of one global draw); the norm is over all non-batch dims and computed in float32 even under autocast,
    because a bf16 norm of ~10^4 small terms loses the penalty's signal.
    Returns the scalar penalty (and the per-sample norms (N,) if return_norms).
    """
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    if eps is None:
        eps = torch.rand(eps_shape, device=real.device, dtype=torch.float32)
    eps = eps.reshape(eps_shape).to(device=real.device, dtype=torch.float32)
    x_hat = _as_channels_last_like(eps * real.float() + (1.0 - eps) * fake.detach().float(), real)
    norms = _input_gradients(score_fn, x_hat, out_scale).flatten(1).norm(2, dim=1)
    penalty = ((norms - 1.0) ** 2).mean()
    return (penalty, norms) if return_norms else penalty


def squared_grad_norms(score_fn: Callable[[Tensor], Tensor], x: Tensor, *,
                       out_scale: float | Tensor | None = None) -> Tensor:
    """||grad_x D(x)||_2^2 per sample (N,), float32, in the graph, for images x (N, C, H, W):
    what the zero-centred penalties average (out_scale: the fp16 loss scale, see
    ``gradient_penalty``)."""
    grad = _input_gradients(score_fn, _as_channels_last_like(x.float(), x), out_scale)
    return grad.flatten(1).pow(2).sum(1)


def r1_penalty(score_fn: Callable[[Tensor], Tensor], real: Tensor, *,
               out_scale: float | Tensor | None = None) -> Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||_2^2] on real images x (N, C, H, W).

    The caller adds (gamma / 2) * r1 to the critic loss. R2 is the same penalty on generated
    images (R3GAN uses both, with one gamma). Gradients in float32, as above (out_scale: the
    fp16 loss scale, see ``gradient_penalty``).
    """
    return squared_grad_norms(score_fn, real, out_scale=out_scale).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """Original WGAN: clamp every critic parameter to [-c, c] after each critic step."""
    for p in module.parameters():
        p.clamp_(-c, c)


# ---- Registry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AdversarialLoss:
    """The pair of losses a trainer calls; options are bound in (functools.partial).

    d_loss(real_scores, fake_scores); g_loss(fake_scores, real_scores), where real_scores is
    None unless ``paired`` (a relativistic loss, whose generator step also scores a real batch).
    """

    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor, Tensor | None], Tensor]
    gp_weight: float = 0.0
    clip_value: float = 0.0
    r1_weight: float = 0.0
    reg_every: int = 1
    ac_weight: float = 0.0
    r2_weight: float = 0.0
    paired: bool = False


def _unpaired(g_loss: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor | None], Tensor]:
    @functools.wraps(g_loss)
    def g(fake_scores: Tensor, real_scores: Tensor | None = None) -> Tensor:
        return g_loss(fake_scores)
    return g


LOSSES: dict[str, tuple[Callable[..., Tensor], Callable[[Tensor], Tensor]]] = {
    "bce": (bce_d_loss, bce_g_loss),
    "wasserstein": (wasserstein_d_loss, wasserstein_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "relativistic": (relativistic_d_loss, relativistic_g_loss),
}
PAIRED = {"relativistic"}  # losses whose generator step compares with a real batch


def build_loss(cfg: LossConfig, share: tuple[int, int] = (0, 1)) -> AdversarialLoss:
    """The loss pair of ``cfg``, options bound in. share: (rank, world) of a multi-process run,
    whose per-sample random label tricks are then drawn for the global batch."""
    if cfg.name not in LOSSES:
        raise UserError(f"unknown loss '{cfg.name}'; choose one of: {', '.join(LOSSES)}")
    d, g = LOSSES[cfg.name]
    if cfg.name == "bce":
        d = functools.partial(d, smoothing=cfg.label_smoothing, noise=cfg.label_noise, flip=cfg.label_flip,
                              share=share)
    elif cfg.label_smoothing or cfg.label_noise or cfg.label_flip:
        raise UserError(f"label smoothing/noise/flips apply to the bce loss only, not '{cfg.name}'; "
                        "set them to 0 or use loss.name=bce")
    paired = cfg.name in PAIRED
    return AdversarialLoss(cfg.name, d, g if paired else _unpaired(g), cfg.gp_weight, cfg.clip_value,
                           cfg.r1_weight, cfg.reg_every, cfg.ac_weight, cfg.r2_weight, paired)
