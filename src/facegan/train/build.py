"""Config -> trainer: the networks, optimizers, loss and augmentation a :class:`Trainer` takes,
built from a :class:`~facegan.config.Config` (new run) or restored from a checkpoint (resume)."""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import torch
from torch import nn

from ..augment import DiffAugment
from ..checkpoint import LATEST, checkpoint_home, load_checkpoint
from ..config import Config, TrainConfig
from ..data import ImageSet
from ..data.labels import resolve_labels
from ..errors import UserError, plural
from ..losses import build_loss
from ..models import NetSpec, build_networks, critic_stages
from ..runtime import resolve_device, resolve_precision, use_fused
from .distributed import DistEnv, convert_sync_batchnorm, process_device
from .resume import apply_optimizer_settings, check_resume_changes
from .trainer import Trainer


def build_optimizers(t: TrainConfig, g: nn.Module, d: nn.Module, *, fused: bool = False):
    """Adam (fused into one kernel if ``fused``) or RMSprop (``t.optimizer``, checked by
    ``Config.validate``) for G and D."""
    if t.optimizer == "adam":
        kw = {"fused": True} if fused else {}
        return (torch.optim.Adam(g.parameters(), lr=t.g_lr, betas=(t.beta1, t.beta2), **kw),
                torch.optim.Adam(d.parameters(), lr=t.d_lr, betas=(t.beta1, t.beta2), **kw))
    return torch.optim.RMSprop(g.parameters(), lr=t.g_lr), torch.optim.RMSprop(d.parameters(), lr=t.d_lr)


def build_trainer(cfg: Config, data: ImageSet, run_dir: str | Path, *, evaluator=None,
                  progress: bool = True, dist: DistEnv | None = None) -> Trainer:
    """Turn a config (and loaded data) into a ready Trainer: networks on the device, optimizers,
    loss, EMA copy, precision and memory format chosen. ``data.condition`` is resolved into
    the data's labels here (UserError when the data cannot give them). ``dist``: this process's
    place in a torchrun job (batch norms synchronised if ``train.sync_bn``, rank 0's weights
    broadcast, augmentation drawn for the global batch)."""
    dist = dist if dist is not None else DistEnv()
    cfg.validate()
    spec, labels = resolve_labels(cfg.data.condition, data)
    cfg = clamp_batch_size(cfg, len(data), dist.world_size)
    device = resolve_device(process_device(dist, cfg.train.device))
    torch.manual_seed(cfg.train.seed)
    g, d = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, labels.shape[1]))
    if dist.enabled and cfg.train.sync_bn:
        # Batch statistics over the global batch: the same normalisation as on one process.
        g, d = convert_sync_batchnorm(g, device), convert_sync_batchnorm(d, device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    g.to(device=device, memory_format=memory_format)
    d.to(device=device, memory_format=memory_format)
    dist.broadcast_module(g)
    dist.broadcast_module(d)
    g_ema = None
    if cfg.train.ema_decay > 0 or cfg.train.ema_kimg > 0:
        g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    if cfg.train.init_from:
        init_from(cfg, g, d, g_ema, cfg.train.init_from)
    freeze_critic(d, cfg.train.freeze_d)
    opt_g, opt_d = build_optimizers(cfg.train, g, d, fused=use_fused(cfg.train.fused_optimizer, device))
    if device.type == "cuda":
        # cuDNN tries its algorithms once per shape and keeps the fastest (shapes are static).
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    # The augmenter draws from its own stream (seeded from the run's seed), saved in checkpoints.
    augment = DiffAugment(cfg.train.augment, seed=cfg.train.seed + 2, device=device,
                          share=(dist.rank, dist.world_size))
    loss = build_loss(cfg.loss, share=(dist.rank, dist.world_size))
    trainer = Trainer(cfg, g, d, g_ema, opt_g, opt_d, loss, data, run_dir, device,
                      precision=resolve_precision(cfg.train.precision, device, warn=dist.is_main),
                      channels_last=cfg.train.channels_last, evaluator=evaluator, progress=progress,
                      augment=augment, labels=labels, label_spec=spec, dist=dist)
    if cfg.train.compile != "off":
        trainer.compile_networks(cfg.train.compile, cfg.train.compile_mode, cfg.train.compile_backend)
    return trainer


def init_from(cfg: Config, g: nn.Module, d: nn.Module, g_ema: nn.Module | None, source: str) -> None:
    """Load the networks' weights from ``source`` (a run folder or checkpoint), whose model must
    be the one ``cfg`` builds; the EMA generator starts from the source's (or its G)."""
    ckpt = load_checkpoint(source)
    old = ckpt["config"]
    diff = [f"model.{f.name} {getattr(old.model, f.name)} -> {getattr(cfg.model, f.name)}"
            for f in dataclasses.fields(cfg.model) if getattr(old.model, f.name) != getattr(cfg.model, f.name)]
    if old.data.resolution != cfg.data.resolution:
        diff.append(f"data.resolution {old.data.resolution} -> {cfg.data.resolution}")
    if diff:
        raise UserError(f"cannot initialise from {ckpt['path']}: its networks differ ({', '.join(diff[:3])}); "
                        f"train with its preset and model settings (facegan presets --show {old.preset})")
    try:
        g.load_state_dict(ckpt["G"])
        d.load_state_dict(ckpt["D"])
        if g_ema is not None:
            g_ema.load_state_dict(ckpt.get("G_ema") or ckpt["G"])
    except RuntimeError as e:  # labels of another width: the conditional layers differ
        raise UserError(f"cannot initialise from {ckpt['path']}: {str(e).splitlines()[0][:160]}; "
                        "the source must have the same labels (data.condition)") from None


def freeze_critic(d: nn.Module, k: int) -> None:
    """Keep the first ``k`` critic stages (image side) fixed: no gradients for their weights."""
    stages = critic_stages(d)
    if k > len(stages) - 1:
        raise UserError(f"train.freeze_d={k} would freeze the whole critic ({len(stages)} stages); "
                        f"use at most {len(stages) - 1}")
    for stage in stages[:k]:
        stage.requires_grad_(False)


def clamp_batch_size(cfg: Config, n_images: int, world_size: int = 1) -> Config:
    """A set smaller than one batch trains with the batch clamped to the set (one warning), so
    a folder of a few dozen images needs no config edit. The clamped size is what the run
    records (config.json, checkpoints), so a resume uses it too. With N processes the clamped
    global batch is a multiple of N."""
    if n_images < 1:
        raise UserError("the data holds no images; point --data at a folder, zip or CelebA root with images")
    if n_images >= cfg.train.batch_size:
        return cfg
    size = n_images - n_images % world_size
    if size < 1:
        raise UserError(f"the data has {plural(n_images, 'image')}, fewer than the {world_size} processes; "
                        "add images or start fewer processes")
    print(f"facegan: warning: the data has {plural(n_images, 'image')}, fewer than one batch "
          f"({cfg.train.batch_size}); training with train.batch_size={size}", file=sys.stderr)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=size))


def resume_trainer(run_dir: str | Path, data: ImageSet, cfg: Config | None = None, *, evaluator=None,
                   progress: bool = True, ckpt: dict | None = None, dist: DistEnv | None = None) -> Trainer:
    """Rebuild a trainer from RUN/checkpoints/latest.pt (or the loaded checkpoint ``ckpt``) with
    every state restored. ``cfg`` may change what ``resume.check_resume_changes`` allows.
    A run may resume on another number of processes: its global batch and random streams do
    not depend on it, so the data order and noise stay exactly the same (a warning says so)."""
    ckpt = ckpt or load_checkpoint(Path(run_dir) / "checkpoints" / LATEST)
    cfg = cfg or ckpt["config"]
    check_resume_changes(ckpt["config"], cfg)
    check_resume_data(ckpt, cfg, data)
    trainer = build_trainer(cfg, data, run_dir, evaluator=evaluator, progress=progress, dist=dist)
    try:
        trainer.load_state_dict(ckpt)
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"cannot resume from {ckpt['path']}: {str(e).splitlines()[0][:160]}") from None
    apply_optimizer_settings(trainer)
    trainer.logger.truncate_after(trainer.step)
    before, now = int(ckpt.get("world_size", 1)), trainer.dist.world_size
    if before != now:
        message = (f"this run trained on {before} process(es) and continues on {now}; the global "
                   f"batch ({trainer.batch_size}) and the data order stay the same, each process "
                   f"now takes {trainer.local_batch} images of every batch")
        trainer.logger.event(f"step {trainer.step}: {message}")
        if trainer.dist.is_main:
            print(f"facegan: warning: {message}", file=sys.stderr)
    return trainer


def check_resume_data(ckpt: dict, cfg: Config, data: ImageSet) -> None:
    """UserError when ``data`` cannot continue the checkpoint's run: its saved data order is
    over another number of images. The fix: the run's images, or a new run from its weights."""
    order = ckpt.get("batches")
    trained_on = int(order["n"]) if isinstance(order, dict) and "n" in order else None
    if trained_on is None or trained_on == len(data):
        return
    path = Path(ckpt["path"])
    run = checkpoint_home(path) or path
    raise UserError(f"cannot resume from {path}: the data ({cfg.data.path}) has {len(data)} images "
                    f"but the run trained on {trained_on}; give --data the run's images, or start a "
                    f"new run from its weights on these: facegan train --init-from {run} --data "
                    f"{cfg.data.path} --out NEW_RUN_DIR (with the run's --preset and model settings)")
