"""The training loop: n critic steps per generator step, EMA, logging, checkpoints, resume.

The trainer is given built objects (networks, optimizers, loss, data);
``facegan.train.build_trainer`` turns a config into them.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..augment import DiffAugment
from ..checkpoint import BEST, LATEST, save_checkpoint
from ..config import Config
from ..data import ImageSet
from ..errors import UserError
from ..files import WriteFailed, atomic_write_text, reporting_write_errors
from ..labels import UNCONDITIONAL, LabelSpec
from ..losses import (
    AdversarialLoss,
    ac_loss,
    clip_weights,
    gradient_penalty,
    r1_penalty,
    squared_grad_norms,
)
from ..models import set_lod
from ..runtime import autocast
from ..sampling import STANDING_SEED, generate, latents, make_grid, save_png, standing_latents, standing_stats
from .batches import BatchSampler, ClassBalancedSampler, LabelDraw
from .distributed import DistEnv, shutdown
from .logger import RunLogger
from .schedule import is_constant, run_progress, settings_at


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written, the run can be resumed."""


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Trainer:
    """Runs a GAN training job into a run folder.

    generator: G(z, c), z (N, latent_dim), c float (N, K) -> (N, 3, R, R) in [-1, 1];
    critic: D(x, c) -> (scores (N,), aux (N, K) logits of an AC critic, else None); K = 0 for
    an unconditional run (c is then (N, 0)).
    data.images: uint8 (M, 3, R, R); batches are scaled to [-1, 1] on the device.
    A batch is ``(x, c)``: images (N, 3, R, R) in [-1, 1] and labels (N, K) float. The critic
    is called in one place, :meth:`_critic`, which applies the augmentation (``augment``, a
    :class:`DiffAugment` or None) and the labels.
    labels: float (M, K), the label of every image (see ``facegan.data.labels``); None for an
        unconditional run. label_spec: what they mean (:data:`~facegan.labels.UNCONDITIONAL`
        without labels); its width must be the labels'.
    The generator's labels are those of random data images (so they follow the data's label
    distribution, correlations between attributes included), drawn from their own seeded
    stream (:class:`LabelDraw`), saved in checkpoints.
    evaluator: ``evaluator(generator, label_spec) -> {"fid": ..., ...}``, run every
    ``train.eval_every`` steps (``facegan.metrics.evaluate.TrainingEvaluator``).
    dist: this process's place in a multi-process run (:mod:`.distributed`). ``batch_size`` is
    the global batch; this process trains on its share (``local_batch`` = B / N) of every
    global draw, averages gradients with the others, and only rank 0 writes files.
    """

    def __init__(self, cfg: Config, generator: nn.Module, critic: nn.Module, g_ema: nn.Module | None,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, loss: AdversarialLoss,
                 data: ImageSet, run_dir: str | Path, device: torch.device, *, precision: str = "fp32",
                 channels_last: bool = False,
                 evaluator: Callable[[nn.Module, LabelSpec], dict] | None = None,
                 progress: bool = True, augment: DiffAugment | None = None,
                 labels: torch.Tensor | None = None, label_spec: LabelSpec = UNCONDITIONAL,
                 dist: DistEnv | None = None):
        self.cfg, self.G, self.D, self.G_ema = cfg, generator, critic, g_ema
        self.augment = augment if augment else None  # an empty policy is no augmentation
        self.d_steps = 0  # critic steps taken, for lazy regularisation
        self._settings = settings_at(cfg, 0)  # this step's scheduled values (train_step sets them)
        self.opt_g, self.opt_d, self.loss, self.data = opt_g, opt_d, loss, data
        self.run_dir, self.device = Path(run_dir), device
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {precision}")
        self.precision, self.channels_last = precision, channels_last
        # fp16 needs loss scaling (its small gradients underflow); one scaler per optimizer,
        # since the critic and generator steps alternate. Disabled, a scaler is a pass-through.
        fp16 = precision == "fp16"
        if fp16 and cfg.train.simultaneous:
            raise UserError("train.simultaneous needs fp32 or bf16, but this device trains in fp16 "
                            "(its loss scaling is per net); set train.precision=bf16 or fp32, or "
                            "train.simultaneous=false")
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self._G_fwd, self._D_fwd = generator, critic  # compiled versions, see compile_networks
        # fp16: while the scaler finds its scale, a penalty's scaled inner gradient overflows
        # (inf/NaN penalty) and the scaler skips that step. That is not a divergence (the
        # losses themselves show one); such values are left out of the logs.
        self._may_overflow = {"gp", "r1", "r2"} if fp16 else set()
        self.evaluator, self.progress = evaluator, progress
        t = cfg.train
        self.batch_size, self.n_critic = t.batch_size, t.n_critic
        self.dist = dist if dist is not None else DistEnv()
        if t.batch_size % self.dist.world_size:
            raise UserError(f"train.batch_size={t.batch_size} (the global batch) does not split over "
                            f"{self.dist.world_size} processes; use a multiple of {self.dist.world_size}")
        self.local_batch = self.dist.local_size(t.batch_size)
        self.step = 0
        self.best_fid = math.inf
        # The step RUN/checkpoints/latest.pt holds, when known (set by save(), and on resume
        # from it): a failed write names it as the checkpoint that is kept.
        self.latest_step: int | None = None
        self.run_files_written = False  # RUN/config.json (labels.json): written once, see write_run_files
        # The run folder's lock (a FolderLock, on rank 0), taken by start_run, dropped by end_run.
        self.run_lock = None
        self.label_spec = label_spec
        if labels is None:
            labels = label_spec.empty(len(data))
        if tuple(labels.shape) != (len(data), label_spec.dim):
            raise ValueError(f"labels of shape {tuple(labels.shape)} for {len(data)} images and a "
                             f"label spec of width {label_spec.dim}")
        self.label_dim = label_spec.dim
        if t.class_balance:  # Config.validate allows it only with class labels
            self.batches = ClassBalancedSampler(labels.argmax(1), t.batch_size, seed=t.seed,
                                                hflip=cfg.data.hflip)
        else:
            self.batches = BatchSampler(len(data), t.batch_size, seed=t.seed, hflip=cfg.data.hflip)
        self.labels = labels.float().to(device)
        # Its own stream: an unconditional run never draws from it, so it stays bitwise as before.
        self.label_draw = LabelDraw(len(data), seed=t.seed + 3)
        # AC loss only where the critic has an AC head and there are labels.
        self.use_ac = label_spec.conditional and cfg.model.d_cond == "ac" and loss.ac_weight > 0
        # One critic pass over real and fake together is only equivalent when the critic has no
        # batch norm (batch statistics would mix the two halves).
        self.joint_pass = not has_batch_norm(critic)
        # The whole uint8 set on the GPU costs little and removes a host->device copy per batch.
        self.images = data.images
        if device.type == "cuda" and data.images.numel() < 4e9:
            self.images = data.images.to(device)
        # The progress grids' latents and labels (for classes, one class a row), fixed for the run.
        self.fixed_z = latents(t.n_samples, generator.latent_dim, t.seed + 1, device)
        self.fixed_c = label_spec.progress_labels(self.labels, t.n_samples, seed=t.seed + 1)
        self.logger = RunLogger(self.run_dir, tensorboard=t.tensorboard, enabled=self.dist.is_main)
        self._stop_signal: str | None = None  # set by the signal handler, acted on by all ranks
        self._stop_reason: str | None = None
        self._window: dict[str, float] = {}
        self._window_counts: dict[str, int] = {}
        self._pending: list[tuple[int, dict[str, torch.Tensor]]] = []
        self._window_n = 0
        self._ema_stats_step: int | None = None  # the step whose standing statistics G_ema holds
        self.elapsed = 0.0  # training time (s): the steps alone, without the pauses between them
        self._window_start = 0.0  # self.elapsed when the log window began
        # A GPU runs the queued steps after the host has moved on: before each pause (a log
        # window's end, samples, a checkpoint, an evaluation) the clock waits for them, so the
        # time budget and the logged rates count the steps' own time, and no pause's.
        self._sync_clock: Callable[[], None] | None = (
            functools.partial(torch.cuda.synchronize, device) if device.type == "cuda" else None)

    # ---- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg, "step": self.step, "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng,
            "batches": self.batches.state_dict(), "best_fid": self.best_fid,
            "data_fingerprint": self.data.fingerprint, "elapsed": self.elapsed,
            "d_steps": self.d_steps,
            "augment": self.augment.state_dict() if self.augment is not None else None,
            "labels": self.label_spec.to_dict(),  # None when unconditional
            "label_dim": self.label_dim,
            "label_draw": self.label_draw.state_dict() if self.label_dim else None,
            "world_size": self.dist.world_size,
            "scalers": ({"d": self.scaler_d.state_dict(), "g": self.scaler_g.state_dict()}
                        if self.scaler_d.is_enabled() else None),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None and ckpt.get("G_ema") is not None:
            self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.batches.load_state_dict(ckpt["batches"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        self.step = int(ckpt["step"])
        self.best_fid = float(ckpt.get("best_fid", math.inf))
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self.d_steps = int(ckpt.get("d_steps", self.step * self.n_critic))
        if self.augment is not None and ckpt.get("augment"):
            self.augment.load_state_dict(ckpt["augment"])
        if int(ckpt.get("label_dim", 0)) != self.label_dim:
            raise ValueError(f"the checkpoint has labels of width {ckpt.get('label_dim', 0)} but "
                             f"the data gives {self.label_dim}")
        if self.label_dim and ckpt.get("label_draw"):
            self.label_draw.load_state_dict(ckpt["label_draw"])
        if self.scaler_d.is_enabled() and ckpt.get("scalers"):
            self.scaler_d.load_state_dict(ckpt["scalers"]["d"])
            self.scaler_g.load_state_dict(ckpt["scalers"]["g"])

    def config_json(self) -> str:
        """RUN/config.json: the config, plus the resolved label spec of a conditional run
        (``labels``: kind, names, counts; ignored by ``Config.from_dict``)."""
        if not self.label_spec.conditional:
            return self.cfg.to_json() + "\n"
        import json

        return json.dumps({**self.cfg.to_dict(), "labels": self.label_spec.to_dict()}, indent=2) + "\n"

    def close(self) -> None:
        """End the run: drop the run folder's lock (``start_run`` took it) and leave the
        torchrun job (a no-op for one process). Safe to call more than once; ``with
        start_run(...) as trainer:`` calls it on leaving."""
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None
        shutdown(self.dist)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, name: str = LATEST) -> Path | None:
        """Write RUN/checkpoints/NAME (rank 0 only: every rank holds the same state; under
        torchrun every rank calls it). The EMA generator's standing statistics are brought to
        this step first, and non-finite weights (a diverged model) raise TrainingDiverged with
        nothing written, so a loop of one's own saves what :meth:`train` would."""
        params = [p for net in (self.G, self.D) for p in net.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            latest = self.run_dir / "checkpoints" / LATEST
            kept = (f"the last checkpoint ({latest}) is kept" if latest.is_file()
                    else "no checkpoint was written")
            raise TrainingDiverged(f"training diverged by step {self.step} (weights are not finite); {kept}; "
                                   f"lower the learning rates{self._fp32_advice()}, then resume")
        self.refresh_ema_stats()  # all ranks: their batch norm is synchronised
        if not self.dist.is_main:
            return None
        path = save_checkpoint(self.run_dir / "checkpoints" / name, self.state_dict())
        if name == LATEST:
            self.latest_step = self.step
        return path

    def write_failed(self, error: WriteFailed) -> UserError:
        """The one-line error for a failed write (a full disk): the file and the free space, then
        what is kept and how to go on."""
        latest = self.run_dir / "checkpoints" / LATEST
        if not latest.is_file():
            return UserError(f"{error}; no checkpoint was written; free space and start the run again")
        kept = f"step {self.latest_step}" if self.latest_step is not None else str(latest)
        return UserError(f"{error}; the last good checkpoint ({kept}) is kept; free space and resume "
                         f"with facegan train --resume {self.run_dir}")

    # ---- one step ---------------------------------------------------------------------------

    def _autocast(self):
        return autocast(self.device, self.precision)

    def compile_networks(self, what: str, mode: str = "default", backend: str = "inductor") -> None:
        """torch.compile the training forward of the generator ('generator') or of both nets
        ('all'; not with a gradient penalty or R1, whose double backward compiled graphs do not
        support). The modules themselves stay as they are: checkpoints, EMA and sampling use
        them, so their state dicts do not change."""
        if what in ("generator", "all"):
            self._G_fwd = torch.compile(self.G, mode=mode, backend=backend)
        if what == "all":
            self._D_fwd = torch.compile(self.D, mode=mode, backend=backend)

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Next batch (x, c): x float (B, 3, R, R) in [-1, 1] on the device, c float (B, K) the
        images' labels (K = 0: unconditional)."""
        idx, flip = self.batches.next()  # the global batch; this rank keeps its share
        idx, flip = self.dist.share(idx), self.dist.share(flip)
        x = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
        x = x.float().div_(127.5).sub_(1.0)
        if self.cfg.data.hflip:
            x = torch.where(flip.to(self.device).view(-1, 1, 1, 1), x.flip(3), x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx.to(self.labels.device)]

    def _noise(self) -> torch.Tensor:
        """z (B/N, latent_dim): this rank's share of one global draw."""
        return self.dist.share(torch.randn(self.batch_size, self.G.latent_dim, device=self.device))

    def _fake_labels(self) -> torch.Tensor:
        """Labels for the generator (B/N, K): those of random data images; (B/N, 0) without
        labels, drawing nothing, so an unconditional run's random streams are untouched."""
        if not self.label_spec.conditional:
            return self.label_spec.empty(self.local_batch, self.device)
        idx = self.dist.share(self.label_draw.next(self.batch_size))
        return self.labels[idx.to(self.labels.device)]


    def _critic(self, x: torch.Tensor, c: torch.Tensor, parts: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The one place the critic is called: augmentation, then D. x (N, 3, R, R), c (N, K)
        (K = 0 without labels) -> (scores (N,), aux (N, K) logits of an AC critic, else None).
        ``parts``: x is that many batches side by side (real and fake in one pass); each is
        augmented as a batch of its own, so its random parameters are its share of a global
        draw (the same for any number of processes)."""
        if self.augment is not None:
            x = torch.cat([self.augment(p) for p in x.chunk(parts)]) if parts > 1 else self.augment(x)
        return self._D_fwd(x, c)

    def _score(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The critic's score alone (N,), labels held fixed: what the penalties differentiate."""
        return self._critic(x, c)[0]

    def _real_fake_scores(self, real: torch.Tensor, c: torch.Tensor, fake: torch.Tensor,
                          c_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The critic on a real batch (B, 3, R, R) and a fake one: (real scores (B,), fake
        scores (B,), the real images' aux logits or None), in one pass where the critic has no
        batch norm."""
        if self.joint_pass:
            scores, aux = self._critic(torch.cat([real, fake]), torch.cat([c, c_fake]), parts=2)
            real_aux = aux[: self.local_batch] if aux is not None else None
            return scores[: self.local_batch], scores[self.local_batch:], real_aux
        (real_s, real_aux), (fake_s, _) = self._critic(real, c), self._critic(fake, c_fake)
        return real_s, fake_s, real_aux

    def _gradient_penalty(self, real: torch.Tensor, c: torch.Tensor, fake: torch.Tensor,
                          out_scale: float | None = None) -> torch.Tensor:
        """WGAN-GP's penalty on images between real and fake (the real labels held fixed),
        its mixing weights this rank's share of one global draw."""
        eps = self.dist.share(torch.rand(self.batch_size, device=self.device))
        return gradient_penalty(functools.partial(self._score, c=c), real, fake, eps=eps, out_scale=out_scale)

    def critic_step(self) -> dict[str, torch.Tensor]:
        real, c = self._real_batch()
        c_fake = self._fake_labels()
        with torch.no_grad(), self._autocast():
            fake = self._G_fwd(self._noise(), c_fake).float()
        loss = self.loss
        self.d_steps += 1
        # Lazy regularisation: the penalty every k-th critic step, weighted by k, so it has the
        # same weight on average (k = 1: the classic recipe, every step).
        regularise = self.d_steps % loss.reg_every == 0
        # fp16: the penalties' inner gradients are taken of scaled scores, then unscaled (AMP's
        # recipe for gradient penalties); reading the scale costs one sync, in fp16 only.
        out_scale = self.scaler_d.get_scale() if self.scaler_d.is_enabled() and regularise else None
        out: dict[str, torch.Tensor] = {}
        with self._autocast():
            real_s, fake_s, real_aux = self._real_fake_scores(real, c, fake, c_fake)
            d_loss = loss.d_loss(real_s, fake_s)
            total = d_loss
            if self.use_ac:
                # AC-GAN: the critic learns to classify real images only, so it never learns
                # the generator's mistakes as a class's look.
                ac_real = ac_loss(real_aux, c, self.label_spec)
                total = total + loss.ac_weight * ac_real
                out["ac_real"] = ac_real.detach()
            # The penalties see images between real and fake; the real labels stay fixed.
            if loss.gp_weight > 0 and regularise:
                gp = self._gradient_penalty(real, c, fake, out_scale)
                total = total + loss.gp_weight * loss.reg_every * gp
                out["gp"] = gp.detach()
            r1_w, r2_w = (w * self._settings.gamma_scale for w in (loss.r1_weight, loss.r2_weight))
            if r1_w > 0 and r2_w > 0 and regularise:
                # R1 and R2 (R3GAN): one pass over real and fake, each with its own labels.
                both = functools.partial(self._score, c=torch.cat([c, c_fake]))
                norms = squared_grad_norms(both, torch.cat([real, fake]), out_scale=out_scale)
                r1, r2 = norms[: self.local_batch].mean(), norms[self.local_batch:].mean()
                total = total + 0.5 * loss.reg_every * (r1_w * r1 + r2_w * r2)
                out["r1"], out["r2"] = r1.detach(), r2.detach()
            elif r1_w > 0 and regularise:
                r1 = r1_penalty(functools.partial(self._score, c=c), real, out_scale=out_scale)
                total = total + 0.5 * r1_w * loss.reg_every * r1
                out["r1"] = r1.detach()
            elif r2_w > 0 and regularise:
                r2 = r1_penalty(functools.partial(self._score, c=c_fake), fake, out_scale=out_scale)
                total = total + 0.5 * r2_w * loss.reg_every * r2
                out["r2"] = r2.detach()
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(total).backward()
        self.dist.sync_grads(self.D)  # scaled gradients: every rank has the same scale
        self.scaler_d.step(self.opt_d)  # skips the step if a gradient is inf/NaN (fp16)
        self.scaler_d.update()
        if loss.clip_value > 0:
            clip_weights(self.D, loss.clip_value)
        out["d_loss"] = d_loss.detach()
        out["wasserstein"] = real_s.detach().float().mean() - fake_s.detach().float().mean()
        return out

    def generator_step(self) -> dict[str, torch.Tensor]:
        # Frozen critic: the generator step needs gradients through D, not for D's weights
        # (the stages frozen for good, train.freeze_d, stay frozen afterwards).
        trainable = [p for p in self.D.parameters() if p.requires_grad]
        self.D.requires_grad_(False)
        try:
            c_fake = self._fake_labels()
            real_s = None
            if self.loss.paired:
                # A relativistic loss compares each fake with a real image; the real scores are
                # constants for the generator, so they need no graph.
                real, c = self._real_batch()
                with torch.no_grad(), self._autocast():
                    real_s = self._critic(real, c)[0]
            with self._autocast():
                fake_s, fake_aux = self._critic(self._G_fwd(self._noise(), c_fake), c_fake)
                g_loss = self.loss.g_loss(fake_s, real_s)
                total = g_loss
                if self.use_ac:
                    ac_fake = ac_loss(fake_aux, c_fake, self.label_spec)
                    total = total + self.loss.ac_weight * ac_fake
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler_g.scale(total).backward()
            self.dist.sync_grads(self.G)
            self.scaler_g.step(self.opt_g)
            self.scaler_g.update()
        finally:
            for p in trainable:
                p.requires_grad_(True)
        out = {"g_loss": g_loss.detach()}
        if self.use_ac:
            out["ac_fake"] = ac_fake.detach()
        return out

    def simultaneous_step(self) -> dict[str, torch.Tensor]:
        """One critic and one generator update from one pass (``train.simultaneous``): a single
        generator forward, one critic pass over real and fake, one backward for both nets.
        The Wasserstein generator loss, -mean(D(fake)), is the negated fake half of the
        critic's loss, so the gradient that reaches the fakes, negated, is the generator's: it
        takes the critic's scores from before the critic's update (simultaneous gradient
        descent) and saves a generator forward, a critic forward and a critic backward a step."""
        real, c = self._real_batch()
        c_fake = self._fake_labels()
        loss = self.loss
        self.d_steps += 1
        regularise = self.d_steps % loss.reg_every == 0
        out: dict[str, torch.Tensor] = {}
        with self._autocast():
            fake = self._G_fwd(self._noise(), c_fake).float()
            fake.register_hook(torch.neg)  # the generator ascends what the critic descends
            real_s, fake_s, _ = self._real_fake_scores(real, c, fake, c_fake)
            d_loss = loss.d_loss(real_s, fake_s)
            total = d_loss
            if loss.gp_weight > 0 and regularise:
                # the penalty is the critic's alone: it sees the fakes without their graph
                gp = self._gradient_penalty(real, c, fake.detach())
                total = total + loss.gp_weight * loss.reg_every * gp
                out["gp"] = gp.detach()
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.dist.sync_grads(self.D)
        self.dist.sync_grads(self.G)
        self.opt_d.step()
        self.opt_g.step()
        if loss.clip_value > 0:
            clip_weights(self.D, loss.clip_value)
        out["d_loss"] = d_loss.detach()
        out["wasserstein"] = real_s.detach().float().mean() - fake_s.detach().float().mean()
        out["g_loss"] = -fake_s.detach().float().mean()
        return out

    def _apply_settings(self) -> None:
        """This step's learning rates, beta2, R1/R2 scale, EMA decay and level of detail
        (``schedule``); the optimizer settings are set on
        the optimizers only when they change along the run, so a classic recipe's optimizers
        keep exactly the settings they were built (or resumed) with."""
        self._settings = settings_at(self.cfg, self.step,
                                     run_progress(self.cfg, self.step, self.elapsed))
        if self.cfg.model.grow_from:  # the EMA generator takes it with the buffers
            set_lod(self.G, self._settings.lod)
            set_lod(self.D, self._settings.lod)
        if is_constant(self.cfg):
            return
        s = self._settings
        for opt, lr in ((self.opt_g, s.g_lr), (self.opt_d, s.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
                if "betas" in group:
                    group["betas"] = (group["betas"][0], s.beta2)

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self._settings.ema_decay
        if self.G_ema is None or decay is None:
            return
        ema_p = list(self.G_ema.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in self.G.parameters()], 1.0 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def refresh_ema_stats(self) -> None:
        """Recompute the EMA generator's batch-norm statistics (``train.standing_stats``
        samples, :func:`~facegan.sampling.standing_stats`; nothing without batch norm), before
        its samples, evaluation and checkpoints. The latents and labels come from their own fixed seed, so
        training's random streams and an exact resume are untouched; each rank runs its share
        of every global batch, all ranks together (synchronised batch norm collects them).
        Training is unaffected: the next EMA update copies the live statistics back."""
        n = self.cfg.train.standing_stats
        g = self.G_ema
        if g is None or n <= 0 or self._ema_stats_step == self.step:
            return
        self._ema_stats_step = self.step  # until the next step's EMA update copies the live ones
        b, per = self.batch_size, self.local_batch
        mine = slice(self.dist.rank * per, (self.dist.rank + 1) * per)
        seed = STANDING_SEED + self.cfg.train.seed
        z = standing_latents(n, b, g.latent_dim, seed)
        # labels of random data images, as training draws them, from a stream of their own
        rows = torch.randint(len(self.data), z.shape[:2], generator=torch.Generator().manual_seed(seed + 1))
        standing_stats(g, z[:, mine], self.labels[rows[:, mine].to(self.labels.device)])

    def train_step(self) -> dict[str, torch.Tensor]:
        """n_critic critic steps, one generator step (or, with ``train.simultaneous``, one
        update of both from one pass), the EMA update. Returns the critic stats
        averaged over the critic steps that produced them (a lazy penalty appears only on its
        steps) and the generator loss."""
        self._apply_settings()
        if self.cfg.train.simultaneous:
            stats = self.simultaneous_step()
        else:
            sums: dict[str, torch.Tensor] = {}
            counts: dict[str, int] = {}
            for _ in range(self.n_critic):
                for k, v in self.critic_step().items():
                    sums[k] = sums.get(k, 0) + v
                    counts[k] = counts.get(k, 0) + 1
            stats = {k: v / counts[k] for k, v in sums.items()}
            stats.update(self.generator_step())
        if self.cfg.model.grow_from:
            stats["lod"] = torch.tensor(self._settings.lod, device=self.device)  # stacked with the losses
        self.update_ema()
        self.step += 1
        return stats

    # ---- outputs ----------------------------------------------------------------------------

    @property
    def sample_generator(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        if not self.dist.is_main:
            return None
        # generate samples in eval mode and gives the generator its mode back
        imgs = generate(self.sample_generator, self.fixed_z, self.fixed_c, batch_size=self.fixed_z.shape[0])
        grid = make_grid(imgs, nrow=int(math.ceil(math.sqrt(imgs.shape[0]))))
        path = save_png(grid, self.run_dir / "samples" / f"step_{self.step:06d}.png")
        self.logger.image("samples", np.asarray(grid).transpose(2, 0, 1), self.step)
        return path

    def _fp32_advice(self) -> str:
        """The divergence advice's second remedy, full precision, for a run not already in it."""
        return "" if self.precision == "fp32" else " or train in full precision (train.precision=fp32)"

    def _check_pending(self, last_good: int) -> None:
        """Read the losses of the steps since the last check in one host-device transfer, add
        them to the log window, and raise TrainingDiverged at the first non-finite one."""
        if not self._pending:
            return
        flat = [(step, k, v) for step, stats in self._pending for k, v in stats.items()]
        self._pending = []
        # The mean over ranks: the global batch's figures, and a NaN on any rank stops them all.
        values = self.dist.mean(torch.stack([v.detach().float().reshape(()) for _, _, v in flat])).tolist()
        bad_step = next((step for (step, k, _), v in zip(flat, values)
                         if not math.isfinite(v) and k not in self._may_overflow), None)
        if bad_step is not None:
            bad = ", ".join(f"{k}={v}" for (step, k, _), v in zip(flat, values)
                            if step == bad_step and not math.isfinite(v) and k not in self._may_overflow)
            self.logger.event(f"step {bad_step}: non-finite loss ({bad}); stopped")
            raise TrainingDiverged(
                f"training diverged at step {bad_step} ({bad}); the last good checkpoint "
                f"(step {last_good}) is kept in {self.run_dir / 'checkpoints' / LATEST}; "
                f"lower the learning rates{self._fp32_advice()}, then resume")
        for (_, k, _), v in zip(flat, values):
            if not math.isfinite(v):
                continue  # an fp16 overflow the scaler skipped (above)
            self._window[k] = self._window.get(k, 0.0) + v
            self._window_counts[k] = self._window_counts.get(k, 0) + 1
        self._window_n += len({step for step, _, _ in flat})

    def _flush_window(self) -> dict[str, Any]:
        # Rates over the window's training time: the pauses (samples, checkpoints, evaluations)
        # within it are not training.
        dt = max(self.elapsed - self._window_start, 1e-9)
        rec = {"kind": "train", "step": self.step}
        rec.update({k: round(v / self._window_counts[k], 6) for k, v in self._window.items()})
        rec["steps_per_s"] = round(self._window_n / dt, 4)
        rec["img_per_s"] = round(self._window_n * self.batch_size * self.n_critic / dt, 2)
        rec["elapsed_s"] = round(self.elapsed, 1)
        if self.scaler_d.is_enabled():
            rec["loss_scale_d"] = self.scaler_d.get_scale()
            rec["loss_scale_g"] = self.scaler_g.get_scale()
        self.logger.metrics(rec)
        self._window, self._window_counts, self._window_n = {}, {}, 0
        self._window_start = self.elapsed
        return rec

    class EvaluationStopped(BaseException):
        """Raised by the stop-signal handler in the middle of :meth:`evaluate` (during
        :meth:`train`) to abandon the evaluation at once. A BaseException, like
        KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""

    _evaluating = False  # True while the evaluator runs: a stop signal then abandons it

    def evaluate(self) -> dict[str, Any] | None:
        """FID/KID of the sample generator, on rank 0 alone (the others wait for it at their
        next collective): every rank holds the same generator, so one evaluation is the run's.
        The evaluator gets the run's label spec, from which it draws a conditional generator's
        labels. Within :meth:`train`, a stop signal (Ctrl-C, SIGTERM) during the evaluator's
        call raises :class:`EvaluationStopped` there (see :meth:`_request_stop`)."""
        if self.evaluator is None or not self.dist.is_main:
            return None
        self._evaluating = True
        try:
            result = self.evaluator(self.sample_generator, self.label_spec)
        finally:
            self._evaluating = False
        rec = {"kind": "eval", "step": self.step, **result}
        self.logger.metrics(rec)
        fid = result.get("fid")
        if fid is not None and fid < self.best_fid:
            self.best_fid = float(fid)
            self.save(BEST)
            self.logger.event(f"step {self.step}: new best FID {fid:.2f}, saved checkpoints/{BEST}")
        return rec

    def _evaluate_in_loop(self, say: Callable[[str], None]) -> None:
        """The loop's evaluation at this step. It is skipped when a stop is already asked for;
        a stop signal during it abandons it at once (``say`` tells the user so, before the
        checkpoint is written) and makes this step the run's last -- the final step's included.
        Rank 0 alone evaluates, so every rank agrees here on whether to stop."""
        stopping = self._stop_reason is not None or self._stop_signal is not None
        abandoned = False
        if not stopping:
            try:
                self.evaluate()
            except self.EvaluationStopped:
                abandoned = True
        (stop,) = self.dist.any_flags(self._stop_signal is not None)
        if stop and self._stop_reason is None:
            self._stop_reason = self._stop_signal or "a stop signal to another process"
        if abandoned:
            say(f"facegan: stopping: {self._stop_signal} during the evaluation at step {self.step}; "
                "evaluation abandoned, writing the checkpoint")
            self.logger.event(f"step {self.step}: {self._stop_signal} during the evaluation, evaluation "
                              "abandoned")
        elif not stopping:
            self.logger.plot()

    # ---- the loop ---------------------------------------------------------------------------

    def _request_stop(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        # A second Ctrl-C stops a single process at once, without the checkpoint. Not under
        # torchrun: there Ctrl-C reaches a worker twice (from the terminal, then forwarded by
        # torchrun), and it must still checkpoint; torchrun kills workers that do not stop.
        if self._stop_signal == name and not self.dist.enabled:
            raise KeyboardInterrupt
        # Acted on after the current step, by every rank at once (see the loop).
        self._stop_signal = self._stop_signal or name
        if self._evaluating:
            # An evaluation takes minutes on a CPU: abandon it now, not after it (the loop
            # says so and stops at this step, see _evaluate_in_loop).
            self._evaluating = False
            raise self.EvaluationStopped(name)

    def write_run_files(self) -> None:
        """RUN/config.json, and RUN/labels.json for a conditional run (rank 0). ``start_run``
        writes them; :meth:`train` does for a trainer built without it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with reporting_write_errors(self.run_dir / "config.json"):
            atomic_write_text(self.run_dir / "config.json", self.config_json())
        if self.label_spec.conditional:
            import json

            with reporting_write_errors(self.run_dir / "labels.json"):
                atomic_write_text(self.run_dir / "labels.json",
                                  json.dumps({"condition": self.cfg.data.condition,
                                              **self.label_spec.to_dict(),
                                              "balance": self.label_spec.balance()}, indent=2) + "\n")
        self.run_files_written = True

    def _due(self, step: int, until: int) -> dict[str, bool]:
        """What :meth:`train` (ending at ``until``) does after generator step ``step``: log,
        sample, evaluate, keep a checkpoint, rewrite latest.pt."""
        t = self.cfg.train
        last = step == until
        return {"log": last or step % t.log_every == 0, "sample": last or step % t.sample_every == 0,
                "eval": bool(t.eval_every and (last or step % t.eval_every == 0)),
                "keep": bool(t.keep_every and step % t.keep_every == 0),
                "latest": last or step % t.checkpoint_every == 0}

    def pauses_after(self, step: int, until: int) -> bool:
        """Whether :meth:`train` (ending at ``until``) stops after generator step ``step`` to
        log, sample, evaluate or checkpoint, before the next step (a stop signal or the time
        budget add a last pause of their own)."""
        return any(self._due(step, until).values())

    def train(self, until: int) -> dict[str, Any]:
        """Train until ``until`` generator steps in total. Returns the last logged record.

        Raises TrainingInterrupted after writing checkpoints/latest.pt on SIGINT/SIGTERM, and
        TrainingDiverged (without overwriting the last good checkpoint) on a NaN/inf loss. A
        failed write (a full disk) is a one-line UserError (:meth:`write_failed`). A stop
        signal during an evaluation abandons it at once, with a line on stderr saying so.

        Progress (``progress``, rank 0) goes to stderr: a bar on a terminal, else a plain line
        at every 10% of the steps and at least every 30 s (:class:`~facegan.progress.Progress`).
        Its ETA is the smaller of the steps left at the rate so far and the time budget left.
        """
        import sys

        from ..progress import Progress

        t = self.cfg.train
        if self.dist.is_main and not self.run_files_written:
            try:
                self.write_run_files()
            except WriteFailed as e:
                raise self.write_failed(e) from None
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._request_stop)
        self.G.train()
        self.D.train()
        last: dict[str, Any] = {}
        bar = None
        if self.progress and self.dist.is_main:
            bar = Progress(until, "train", "steps", initial=self.step, count="step {done}/{total}",
                           rate_unit="steps/s", bar_unit="step", leave=True)

        def say(message: str) -> None:  # one line on stderr, above the bar when there is one
            if bar is not None:
                bar.write(message)
            else:
                print(message, file=sys.stderr, flush=True)

        last_good = self.step
        try:
            self._window_start = self.elapsed
            while self.step < until:
                t0 = time.perf_counter()
                # Losses stay on the device: reading them every step would make the host wait
                # for the GPU each time. They are read (and checked) once per log window and
                # before every checkpoint, so a checkpoint never holds a diverged model.
                self._pending.append((self.step + 1, self.train_step()))
                if self._sync_clock is not None and self.pauses_after(self.step, until):
                    self._sync_clock()
                self.elapsed += time.perf_counter() - t0
                # Every rank takes the same decisions at the same step: a signal to any of them
                # stops all, and all go by the slowest rank's training time, so the time budget
                # ends the run, and the cool-down sets the learning rates, alike on every rank.
                stop_flag, self.elapsed = self.dist.max_over_ranks(float(self._stop_signal is not None),
                                                                   self.elapsed)
                stop = stop_flag > 0
                over_budget = bool(t.time_budget and self.elapsed >= t.time_budget)
                if stop and self._stop_reason is None:
                    self._stop_reason = self._stop_signal or "a stop signal to another process"
                # The time budget ends the run like reaching `until` does (samples, checkpoint).
                if over_budget and self.step < until:
                    self.logger.event(f"step {self.step}: time budget of {t.time_budget:g} s reached")
                    until = self.step
                    if bar is not None:
                        bar.set_total(until)
                s = self.step
                due = self._due(s, until)
                latest_now, keep_now, sample_now, eval_now = (due[k] for k in ("latest", "keep", "sample", "eval"))
                checkpoint_now = latest_now or keep_now or self._stop_reason is not None
                if due["log"] or checkpoint_now:
                    self._check_pending(last_good)
                if due["log"]:
                    last = self._flush_window()
                    if bar is not None:
                        bar.set_fields(d=f"{last['d_loss']:.3f}", g=f"{last['g_loss']:.3f}",
                                       img_s=f"{last['img_per_s']:.0f}")
                if bar is not None:
                    if t.time_budget:
                        bar.set_budget_left(t.time_budget - self.elapsed)
                    bar.update(1)
                if sample_now or eval_now or checkpoint_now:  # what the EMA generator writes
                    self.refresh_ema_stats()
                if sample_now:
                    self.write_samples()
                    self.logger.plot()
                if eval_now:
                    self._evaluate_in_loop(say)
                if keep_now:
                    self.save(f"step_{s:06d}.pt")
                if latest_now:
                    self.save(LATEST)
                    last_good = s
                if self._stop_reason is not None:
                    break
            if self._stop_reason is not None:
                if last_good != self.step:
                    self.save(LATEST)
                self.write_samples()
                self.logger.plot()
                self.logger.event(f"step {self.step}: {self._stop_reason}, checkpoint written")
                self.dist.barrier()  # no rank leaves (and ends the job) before rank 0 has written
                raise TrainingInterrupted(
                    f"stopped by {self._stop_reason} at step {self.step}; checkpoint saved, continue "
                    f"with: facegan train --resume {self.run_dir}")
            self.logger.event(f"step {self.step}: done")
            self.dist.barrier()
            return last
        except WriteFailed as e:
            # A full disk: one line saying which file, the free space and what is kept (the
            # checkpoint being replaced stays whole: checkpoints are written atomically).
            raise self.write_failed(e) from None
        finally:
            if bar is not None:
                bar.close()
            self.logger.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
