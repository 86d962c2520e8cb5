"""``facegan train --profile N``: where the time of a training step goes.

Runs N generator steps (after one warm-up step) twice: once plainly, for the wall time, and
once under ``torch.profiler``, for the operators and (on a GPU) the kernels: their total time
against the wall time says whether the device is kept busy or waits for the Python side, and
the number of kernel launches per step says why. Nothing is written to disk.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from .build import build_trainer
from .distributed import DistEnv
from .start import auto_data, load_data, new_run_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MAX_CYCLE = 64  # the longest lazy-penalty cycle a profile is rounded up to


def profile_steps(trainer, steps: int, *, top: int = 15) -> str:
    """Profile ``steps`` generator steps of ``trainer`` (rounded up to whole cycles of a lazy
    penalty; its state moves on by 2 * steps + 1 steps; nothing is saved). Returns the report
    as text."""
    import os

    # Kineto's own log lines (a CUDA build on a machine without a GPU complains) stay quiet.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    dev = trainer.device
    cuda = dev.type == "cuda"
    lazy = ""
    loss = trainer.cfg.loss
    reg = loss.reg_every  # validated >= 1
    if reg > 1 and (loss.gp_weight > 0 or loss.r1_weight > 0 or loss.r2_weight > 0):
        # A lazy penalty runs on every reg-th critic step only: profile whole cycles of it, so
        # the time per step is its average (6 steps at 1 critic step, reg 4, would hold 1 or 2
        # penalty steps in place of 1.5).
        cycle = reg // math.gcd(reg, trainer.n_critic)
        rounded = -(-steps // cycle) * cycle
        if cycle > MAX_CYCLE:  # a penalty so rare is no part of a step's cost worth the wait
            lazy = (f" (a lazy penalty every {reg}th critic step is too rare to profile whole "
                    "cycles of: the time per step leaves it out)")
        elif rounded != steps:
            lazy = (f" (rounded up from {steps}: whole cycles of the lazy penalty, every {reg}th "
                    "critic step)")
            steps = rounded
    trainer.G.train()
    trainer.D.train()
    trainer.train_step()  # warm-up: kernel selection, caches, lazy initialisation
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    _sync(dev)
    wall = (time.perf_counter() - t0) / steps

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step()
        _sync(dev)
    events = prof.key_averages()
    lines = [f"profile of {steps} generator step(s) ({trainer.n_critic} critic step(s) each, global batch "
             f"{trainer.batch_size}, {trainer.precision}) on {dev}{lazy}:",
             f"  wall time: {wall * 1e3:.1f} ms per generator step ({1 / wall:.2f} steps/s)"]
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernel_s = sum(e.device_time_total for e in kernels) / 1e6 / steps
        lines.append(f"  GPU kernel time: {kernel_s * 1e3:.1f} ms per step: the GPU is busy "
                     f"{100 * kernel_s / wall:.0f}% of the wall time; {len(kernels) / steps:.0f} kernel "
                     "launches per step")
        if kernel_s < 0.6 * wall:
            lines.append("  -> the GPU mostly waits for the host: launches and Python, not arithmetic, "
                         "set the speed (try a larger batch, train.compile=generator)")
        sort = "self_device_time_total"
    else:
        cpu_s = sum(e.self_cpu_time_total for e in events) / 1e6 / steps
        conv_s = sum(e.self_cpu_time_total for e in events if "conv" in e.key or "mkldnn" in e.key) / 1e6 / steps
        lines.append(f"  operator time (profiled, so a little slower): {cpu_s * 1e3:.1f} ms per step, "
                     f"{100 * conv_s / max(cpu_s, 1e-12):.0f}% in convolutions and their gradients")
        sort = "self_cpu_time_total"
    lines.append(f"  top {top} operators by self time (all {steps} profiled steps):")
    lines.append(events.table(sort_by=sort, row_limit=top, max_name_column_width=48))
    return "\n".join(lines)


def profile_config(cfg: Config, steps: int, overrides: Mapping[str, Any] | None = None) -> str:
    """Build the run that ``facegan train`` would start from ``cfg`` and ``overrides`` (typed,
    by dotted key; preset ``auto`` resolved as for a new run, :func:`new_run_config`) in memory,
    in a temporary folder with evaluation and TensorBoard off, and profile ``steps`` generator
    steps of it (:func:`profile_steps`); nothing is kept."""
    overrides = dict(overrides or {})
    cfg, auto_why = new_run_config(cfg, overrides)
    t = dataclasses.replace(cfg.train, eval_every=0, tensorboard=False)
    cfg = dataclasses.replace(cfg, train=t)  # new_run_config validated it; these two are always valid
    with tempfile.TemporaryDirectory(prefix="facegan-profile-") as tmp:
        data = load_data(cfg, Path(tmp))
        if auto_why is not None:
            cfg = auto_data(cfg, len(data), auto_why, overrides, env=DistEnv())
        trainer = build_trainer(cfg, data, tmp, progress=False)
        print(f"profiling {cfg.preset} on {len(data)} images ({cfg.data.resolution}px), "
              f"{steps} step(s) after 1 warm-up step; nothing is written", file=sys.stderr)
        return profile_steps(trainer, steps)
