"""Resuming with a changed config: which fields may change mid-run, and applying the changes.

A resumed run may change how it trains (learning rates, loss weights, steps, device, logging)
but not what the checkpoint's tensors are: the networks' shapes and the data they were trained
on. The rule is by section, so fields added later are covered without a list to maintain:

* ``model.*``: fixed, every field (present and future): they decide the networks' parameters.
* ``data.*``: fixed except ``data.path`` (the same images may move to another folder) and
  ``data.cache_dir`` (where decoded images are cached).
* ``train.*`` and ``loss.*``: may change, except the few that would make the checkpoint's
  optimizer or EMA state unusable (:data:`FIXED_TRAIN`, and turning the EMA on or off).
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import Config
from ..errors import UserError

FIXED_SECTIONS = ("model",)
DATA_MAY_CHANGE = ("path", "cache_dir")
# The optimizer's saved state (Adam moments vs RMSprop averages) only fits the same optimizer.
FIXED_TRAIN = ("optimizer",)

Change = tuple[str, Any, Any]  # (dotted key, old value, new value)


def _flat(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for name, v in values.items():
                out[f"{section}.{name}"] = v
        else:
            out[section] = values
    return out


def config_changes(old: Config, new: Config) -> list[Change]:
    """Every field whose value differs between two configs, in config order."""
    a, b = _flat(old), _flat(new)
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def _why_fixed(key: str, old: Any, new: Any) -> str | None:
    section, _, name = key.partition(".")
    if section in FIXED_SECTIONS or key == "data.resolution":
        return "it shapes the networks"
    if section == "data" and name not in DATA_MAY_CHANGE:
        return "it changes the training images"
    if key == "train.class_balance":
        return "the saved batch order belongs to the old sampler"
    if section == "train" and name in FIXED_TRAIN:
        return "the saved optimizer state belongs to the old one"
    if key in ("train.ema_decay", "train.ema_kimg") and (old == 0) != (new == 0):
        return "the EMA generator cannot be turned on or off mid-run"
    if key == "train.seed":
        return ("the run's random streams go on from the checkpoint, so a new seed would only change "
                "the progress grids' faces")
    if key == "train.init_from":
        return "it gives a new run its first weights; a resumed run goes on from its checkpoint"
    if section == "preset":
        return "a run keeps its preset"
    return None


def check_resume_changes(old: Config, new: Config) -> list[Change]:
    """The changes from ``old`` (the checkpoint's config) to ``new``; UserError naming each
    field that cannot change in a resumed run."""
    changes = config_changes(old, new)
    refused = []
    for key, a, b in changes:
        why = _why_fixed(key, a, b)
        if why is not None:
            refused.append(f"{key} ({_shown(a)} -> {_shown(b)}: {why})")
    if refused:
        raise UserError(f"cannot change {'; '.join(refused)} when resuming; drop "
                        f"{'that override' if len(refused) == 1 else 'those overrides'}, or start a "
                        "new run with --out NEW_RUN_DIR")
    return changes


def _shown(value: Any) -> str:
    """A value in a message: an empty string as '' (else it would read as nothing at all)."""
    return "''" if value == "" else str(value)


def describe_changes(changes: list[Change]) -> str:
    """'train.g_lr 0.0001 -> 5e-05, train.steps 20 -> 40'."""
    return ", ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, a, b in changes)


def apply_optimizer_settings(trainer) -> None:
    """Put the config's learning rates and betas into the optimizers.

    Loading an optimizer's state dict also restores its old hyperparameters, so without this a
    resumed run with ``train.g_lr=5e-5`` would go on at the old rate.
    """
    t = trainer.cfg.train
    for opt, lr in ((trainer.opt_g, t.g_lr), (trainer.opt_d, t.d_lr)):
        for group in opt.param_groups:
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (t.beta1, t.beta2)
            # ... and the fused / foreach choice of this run (train.fused_optimizer may change).
            for key in ("fused", "foreach"):
                if key in group:
                    group[key] = opt.defaults.get(key)
            # Loading placed each step count for the saved choice: a fused (or capturable) Adam
            # reads it on the parameter's device, a plain one on the CPU.
            on_device = bool(group.get("fused") or group.get("capturable"))
            for p in group["params"]:
                step = opt.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor):
                    opt.state[p]["step"] = step.to(device=p.device if on_device else "cpu",
                                                   dtype=torch.float32)
