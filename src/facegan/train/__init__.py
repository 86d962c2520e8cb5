"""Training: the builder (config -> trainer), and ``run_training`` for the CLI."""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
from pathlib import Path

import torch
from torch import nn

from ..augment import DiffAugment
from ..checkpoint import LATEST, load_checkpoint
from ..config import Config, TrainConfig, validate
from ..data import ImageSet
from ..data.labels import resolve_labels
from ..errors import UserError
from ..losses import build_loss
from ..models import NetSpec, build_networks
from ..sampling import pick_device
from .distributed import DistEnv, convert_sync_batchnorm, process_device
from .resume import apply_optimizer_settings, check_resume_changes
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX-512 BF16 or AMX), where oneDNN's
    bf16 convolutions beat fp32; elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast precision to train in: 'fp32' (none), 'bf16' or 'fp16' (with a gradient
    scaler). 'auto': bf16 where the device computes it natively (recent GPUs; CPUs with
    AVX-512 BF16 or AMX), else fp16 on a GPU (older cards: tensor cores need a half type) and
    fp32 on a CPU (emulated bf16 is slower than fp32)."""
    if precision in ("fp32", "fp16"):
        return precision
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        ok = cpu_has_fast_bf16()
    else:
        ok = False
    if precision == "bf16":
        if not ok and device.type == "cuda":
            raise UserError("precision=bf16 asked for but this GPU has no bf16; use precision=fp16 "
                            "(with a gradient scaler) or fp32")
        return "bf16"
    if ok:
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def use_fused(setting: str, device: torch.device) -> bool:
    """train.fused_optimizer: 'auto' is on for CUDA (one kernel for all parameters instead of
    several per tensor), off elsewhere."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def build_optimizers(t: TrainConfig, g: nn.Module, d: nn.Module, *, fused: bool = False):
    """Adam (fused into one kernel if ``fused``) or RMSprop for G and D."""
    if t.optimizer == "adam":
        kw = {"fused": True} if fused else {}
        return (torch.optim.Adam(g.parameters(), lr=t.g_lr, betas=(t.beta1, t.beta2), **kw),
                torch.optim.Adam(d.parameters(), lr=t.d_lr, betas=(t.beta1, t.beta2), **kw))
    if t.optimizer == "rmsprop":
        return (torch.optim.RMSprop(g.parameters(), lr=t.g_lr), torch.optim.RMSprop(d.parameters(), lr=t.d_lr))
    raise UserError(f"unknown optimizer '{t.optimizer}'; use adam or rmsprop")


def build_trainer(cfg: Config, data: ImageSet, run_dir: str | Path, *, evaluator=None,
                  progress: bool = True, dist: DistEnv | None = None) -> Trainer:
    """Turn a config (and loaded data) into a ready Trainer: networks on the device, optimizers,
    loss, EMA copy, precision and memory format chosen. ``data.condition`` is resolved into
    the data's labels here (UserError when the data cannot give them). ``dist``: this process's
    place in a torchrun job (batch norms synchronised if ``train.sync_bn``, rank 0's weights
    broadcast, augmentation drawn for the global batch)."""
    dist = dist if dist is not None else DistEnv()
    validate(cfg)
    spec, labels = resolve_labels(cfg.data.condition, data)
    if cfg.train.class_balance and (spec is None or spec.kind != "class"):
        raise UserError(f"train.class_balance needs class labels, but data.condition="
                        f"'{cfg.data.condition}' gives attributes; use data.condition=folders or "
                        "classes:ATTR,..., or train.class_balance=false")
    cfg = clamp_batch_size(cfg, len(data), dist.world_size)
    device = pick_device(process_device(dist, cfg.train.device))
    torch.manual_seed(cfg.train.seed)
    g, d = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, labels.shape[1]))
    if dist.enabled and cfg.train.sync_bn:
        # Batch statistics over the global batch: the same normalisation as on one process.
        g, d = convert_sync_batchnorm(g, device), convert_sync_batchnorm(d, device)
    # Samplers (sampling.generate_images, the evaluator) read what the labels mean from here.
    g.label_spec = spec
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    g.to(device=device, memory_format=memory_format)
    d.to(device=device, memory_format=memory_format)
    dist.broadcast_module(g)
    dist.broadcast_module(d)
    g_ema = None
    if cfg.train.ema_decay > 0:
        g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g, opt_d = build_optimizers(cfg.train, g, d, fused=use_fused(cfg.train.fused_optimizer, device))
    if device.type == "cuda":
        # cuDNN tries its algorithms once per shape and keeps the fastest (shapes are static).
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    # The augmenter draws from its own stream (seeded from the run's seed), saved in checkpoints.
    augment = DiffAugment(cfg.train.augment, seed=cfg.train.seed + 2, device=device,
                          share=(dist.rank, dist.world_size))
    loss = build_loss(cfg.loss, share=(dist.rank, dist.world_size))
    trainer = Trainer(cfg, g, d, g_ema, opt_g, opt_d, loss, data, run_dir, device,
                   precision=resolve_precision(cfg.train.precision, device),
                   channels_last=cfg.train.channels_last, evaluator=evaluator, progress=progress,
                   augment=augment, labels=labels, label_spec=spec, dist=dist)
    if cfg.train.compile != "off":
        trainer.compile_networks(cfg.train.compile, cfg.train.compile_mode, cfg.train.compile_backend)
    return trainer


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
        raise UserError(f"the data has {n_images} images, fewer than the {world_size} processes; "
                        "add images or start fewer processes")
    print(f"facegan: warning: the data has {n_images} images, fewer than one batch "
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


__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "build_trainer", "resume_trainer",
           "resolve_precision", "build_optimizers"]
