"""Configs: frozen dataclasses, one named preset per recipe, overrides, JSON round-trip.

A run's resolved :class:`Config` is written to ``RUN/config.json`` and into every checkpoint,
so a checkpoint alone rebuilds the networks for sampling. A field with a fixed set of values
declares it once (:func:`choice`); :meth:`Config.validate` checks it and the command line
offers the same list (:func:`field_choices`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import UserError
from .labels import CLASSES_PREFIX, FOLDERS, check_condition_syntax
from .runtime import FUSED, PRECISIONS

RESOLUTIONS = (16, 32, 64, 128, 256)  # the training sizes
CROPS = ("auto", "center", "celeba", "none")
PARTITIONS = ("train", "valid", "test", "all")
G_NORMS = ("batch", "none")
D_NORMS = ("batch", "instance", "layer", "none")
G_CONDS = ("concat", "cbn")
D_CONDS = ("concat", "projection", "ac")
OPTIMIZERS = ("adam", "rmsprop")
ARCHS = ("dcgan", "resnet", "nfresnet")  # facegan.models.ARCHS builds each
LOSS_NAMES = ("bce", "wasserstein", "hinge", "relativistic")  # facegan.losses.LOSSES
COMPILE = ("off", "generator", "all")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
AUGMENT_NAMES = ("color", "rotation", "translation", "cutout")  # DiffAugment's, in facegan.augment


def parse_policy(policy: str) -> list[str]:
    """train.augment: 'color,translation,cutout' -> ['color', 'translation', 'cutout'];
    '' or 'none' -> []. UserError for an unknown name."""
    names = [p.strip() for p in policy.replace("+", ",").split(",") if p.strip()]
    if names == ["none"]:
        return []
    bad = [p for p in names if p not in AUGMENT_NAMES]
    if bad:
        raise UserError(f"unknown augmentation '{bad[0]}' in augment='{policy}'; "
                        f"use a comma-separated subset of {', '.join(AUGMENT_NAMES)} (or '' for none)")
    return names


def choice(default: Any, choices: tuple, *, what: str = "", error: str = "") -> Any:
    """A dataclass field that takes one of ``choices``.

    what: the name in the error message (default: the dotted key, e.g. ``model.g_cond``).
    error: a message template with {value}, {listed} ('a, b, c') and {spoken} ('a, b or c'),
        instead of "unknown {what} '{value}'; use {spoken}".
    """
    return field(default=default, metadata={"choices": tuple(choices), "what": what, "error": error})


def _spoken(values: tuple) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are preprocessed.

    path: an image folder (recursive), a .zip of images, a CelebA root (holding
        ``img_align_celeba/``), or ``builtin`` for the procedurally drawn faces.
    resolution: image size in pixels, one of :data:`RESOLUTIONS`.
    crop: ``auto`` (CelebA face box for the CelebA layout, else center square), ``center``,
        ``celeba`` (left 30, top 55, right 150, bottom 175 on 178x218, scaled), or ``none``.
    partition: CelebA partition: train | valid | test | all.
    max_images: use only the first N images (0: all).
    hflip: random horizontal flips during training.
    cache_dir: folder for the decoded-image cache ('' = $FACEGAN_CACHE or ~/.cache/facegan).
    condition: labels for conditional training ('' = unconditional): 'folders' (one class per
        first-level sub-folder of a folder or zip), 'Male,Smiling' (CelebA / builtin attributes
        as independent binary labels) or 'classes:Male,Smiling' (their combinations as classes).
        See ``facegan.labels``.
    """

    path: str = "builtin"
    resolution: int = choice(64, RESOLUTIONS,
                             error="resolution {value} is not supported; use one of {listed}")
    crop: str = choice("auto", CROPS, what="crop")
    partition: str = choice("train", PARTITIONS, what="partition")
    max_images: int = 0
    hflip: bool = True
    cache_dir: str = ""
    condition: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """Network shapes. Channel count at each stage doubles from ``*_width`` up to ``max_width``.

    With resolution 64, g_width 64 the generator goes 4x4x512 -> 8x8x256 -> 16x16x128 ->
    32x32x64 -> 64x64x3; the critic mirrors it (64 -> 128 -> 256 -> 512, then a 4x4 conv).
    """

    arch: str = choice("dcgan", ARCHS, what="model.arch")  # facegan.models.ARCHS
    latent_dim: int = 128
    g_width: int = 64
    d_width: int = 64
    max_width: int = 1024
    g_norm: str = choice("batch", G_NORMS, what="generator norm")
    d_norm: str = choice("instance", D_NORMS, what="critic norm")
    d_dropout: float = 0.0
    g_sn: bool = False  # spectral norm on the generator's convolutions / linear layers
    d_sn: bool = False  # spectral norm on the critic's convolutions / linear layers
    # The critic's last layer also reads the minibatch standard deviation over groups of this
    # many consecutive samples (ProGAN / StyleGAN); 0 = off. arch=dcgan or resnet.
    d_mbstd: int = 0
    # Conditioning, used only when the data has labels (K > 0): concat ([z, embed(c)] into G) |
    # cbn (conditional batch norm); the critic: concat (label maps) | projection | ac
    # (auxiliary classifier).
    g_cond: str = choice("concat", G_CONDS)
    d_cond: str = choice("projection", D_CONDS)
    # arch=nfresnet only: residual blocks per stage, the blocks' channel expansion (1x1 conv
    # C -> e*C -> grouped 3x3 -> 1x1 back to C) and the channels in each group of the 3x3 conv.
    blocks: int = 1
    expansion: int = 2
    group_size: int = 16
    # arch=dcgan only: progressive growing. The networks are built at data.resolution but train
    # first at this resolution (0 = off), each finer one faded in after train.grow_kimg.
    grow_from: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Adversarial objective.

    name: bce (non-saturating) | wasserstein | hinge | relativistic (pairing: each real image
        against a generated one, R3GAN's loss) (facegan.losses.LOSSES).
    gp_weight: gradient-penalty lambda (0 = no penalty).
    r1_weight: R1 gamma: (gamma / 2) E[||grad_x D(x_real)||^2] added to the critic loss (0 = off).
    r2_weight: R2 gamma: the same penalty on generated images (0 = off); R3GAN uses R1 and R2
        with one gamma.
    gamma_anneal: the R1/R2 weights at the end of ``train.anneal_kimg``, as a fraction of their
        start (cosine; 1 = constant).
    reg_every: lazy regularisation: apply the gradient penalty / R1 every k-th critic step only,
        with its weight multiplied by k (1 = every step, the classic recipes).
    clip_value: critic weight clipping bound c (0 = no clipping), the original WGAN.
    label_smoothing: real target becomes 1 - s (one-sided, BCE only).
    label_noise: uniform noise in [0, a] pushed into the targets (BCE only).
    label_flip: probability that a sample's real/fake target is swapped (BCE only).
    ac_weight: lambda of the auxiliary-classifier loss (AC-GAN; used when model.d_cond=ac and the
        data has labels): lambda * L_AC(real) joins the critic loss, lambda * L_AC(fake, its
        sampled labels) the generator loss.
    """

    name: str = choice("wasserstein", LOSS_NAMES, what="loss")
    gp_weight: float = 10.0
    r1_weight: float = 0.0
    r2_weight: float = 0.0
    gamma_anneal: float = 1.0
    reg_every: int = 1
    clip_value: float = 0.0
    label_smoothing: float = 0.0
    label_noise: float = 0.0
    label_flip: float = 0.0
    ac_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. ``steps`` counts generator steps."""

    steps: int = 10000
    batch_size: int = 64
    n_critic: int = 5
    optimizer: str = choice("adam", OPTIMIZERS, what="optimizer")
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    ema_decay: float = 0.999  # 0 = no EMA generator
    # BigGAN's standing statistics: before every sample grid, evaluation and checkpoint, the
    # EMA generator's batch-norm statistics are recomputed over this many samples of its own
    # (its averaged weights make other activations than the live generator whose running
    # statistics it would otherwise copy). 0: copy them. No effect without batch norm in G.
    standing_stats: int = 0
    # EMA by half-life, in thousands of images (0: use ema_decay): the EMA weight of a step of
    # B images is 0.5 ** (B / (1000 * ema_kimg)); it ramps up from 0 over anneal_kimg (cosine),
    # so early weights are not averaged into a late model.
    ema_kimg: float = 0.0
    # Cosine annealing over this many thousand real images (0 = constant): the learning rates
    # go to lr_anneal times their start, beta2 to beta2_end (0 = constant), loss.gamma_anneal.
    anneal_kimg: float = 0.0
    # Progressive growing (model.grow_from > 0): thousands of images shown at each resolution
    # before the next one fades in, and over how many thousand the fade runs.
    grow_kimg: float = 0.0
    fade_kimg: float = 0.0
    lr_anneal: float = 1.0
    beta2_end: float = 0.0
    # Cool-down: over this last fraction of the run (0 = off) the learning rates fall linearly
    # to zero, the decay phase of a warmup-stable-decay schedule. The run's length is
    # train.steps, or train.time_budget when that ends it first. Multiplies any annealing.
    cooldown: float = 0.0
    # One pass for both nets each step (simultaneous gradient descent): the generator's
    # gradient comes from the critic's backward on the fakes, before the critic's update,
    # instead of a pass of its own after it. About a fifth cheaper a step; Wasserstein loss,
    # one critic step, no AC head, fp32 or bf16.
    simultaneous: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (facegan.runtime.resolve_device)
    # auto: bf16 where the device has it (recent GPUs, CPUs with AVX-512 BF16 / AMX), else fp16
    # with a gradient scaler on a GPU, fp32 on a CPU.
    precision: str = choice("auto", PRECISIONS, what="precision")
    channels_last: bool = True
    # GPU switches ("auto": on for CUDA, off elsewhere; results equal the plain path within
    # floating-point tolerance): fused Adam (one kernel for all parameters), cuDNN autotuning.
    fused_optimizer: str = choice("auto", FUSED)
    cudnn_benchmark: bool = True  # CUDA only
    # torch.compile of the networks' forward. 'all' also compiles the critic, which the
    # gradient penalty's / R1's double backward does not support.
    compile: str = choice("off", COMPILE)
    compile_mode: str = choice("default", COMPILE_MODES)  # reduce-overhead: CUDA graphs
    compile_backend: str = "inductor"  # any torch.compile backend (aot_eager: no C++ compiler needed)
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000  # rewrite checkpoints/latest.pt
    keep_every: int = 0  # also keep checkpoints/step_XXXXXX.pt every K steps (0 = never)
    n_samples: int = 64  # images in the fixed-noise sample grid
    tensorboard: bool = False
    eval_every: int = 0  # FID/KID every N steps (0 = never)
    eval_n: int = 2000
    # DiffAugment policy for every critic call: comma-separated from color, rotation,
    # translation, cutout, applied in the order given ('' = none). Real and fake images go
    # through the same random transformations' distribution.
    augment: str = ""
    # Wall-clock budget in seconds of training (0 = none): the run stops at `steps` or when the
    # budget is spent, whichever comes first; resumed runs count the time already trained.
    time_budget: float = 0.0
    # Class labels only: draw real batches class-balanced (each class equally often, a small
    # class's images repeating within its own reshuffled cycle) instead of in data proportions.
    class_balance: bool = False
    # Transfer: start a new run from another run's weights (a run folder or checkpoint; the
    # same model.* and resolution), with fresh optimizers; and keep the first freeze_d critic
    # stages (from the image side) fixed, as FreezeD does (Mo et al. 2020).
    init_from: str = ""
    freeze_d: int = 0
    # Under torchrun: batch norm statistics over the global batch (all processes), as on one
    # process; false: each process normalises with its own share's statistics (faster, differs).
    sync_bn: bool = True


@dataclass(frozen=True)
class Config:
    """A run's whole configuration, frozen: the preset's name and the data, model, loss and
    train sections. Build one with :func:`get_preset` and :func:`apply_overrides` (dotted keys,
    ``facegan presets --show NAME`` lists them); written into every run folder and checkpoint."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Rebuild a config; unknown keys (from a newer facegan) are ignored, missing ones defaulted."""
        sections = {}
        for f in fields(cls):
            if f.name == "preset":
                continue
            sub_cls = _SECTIONS[f.name]
            raw = d.get(f.name, {}) or {}
            known = {sf.name for sf in fields(sub_cls)}
            sections[f.name] = sub_cls(**{k: v for k, v in raw.items() if k in known})
        return cls(preset=str(d.get("preset", "custom")), **sections)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))

    def validate(self) -> Config:
        """Refuse values and combinations that cannot train correctly, each with a one-line
        UserError that says the fix; returns ``self``. Every choice-valued field is checked
        here (and nowhere else)."""
        for section, cls in _SECTIONS.items():
            sub = getattr(self, section)
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                _check_type(getattr(sub, f.name), hints[f.name], f"{section}.{f.name}", f.default)
                _check_choice(f, getattr(sub, f.name), f"{section}.{f.name}")
        m, loss, t = self.model, self.loss, self.train
        if loss.gp_weight > 0 and m.d_norm == "batch":
            raise UserError(
                "batch norm in a WGAN-GP critic breaks the gradient penalty (it mixes samples); "
                "set model.d_norm=instance, layer or none"
            )
        if loss.gp_weight < 0 or loss.clip_value < 0 or loss.r1_weight < 0 or loss.r2_weight < 0:
            raise UserError("loss.gp_weight, loss.r1_weight, loss.r2_weight and loss.clip_value must be >= 0")
        if not 0.0 <= loss.gamma_anneal <= 1.0 or not 0.0 <= t.lr_anneal <= 1.0:
            raise UserError("loss.gamma_anneal and train.lr_anneal must be in [0, 1] (the final value as a "
                            "fraction of the first; 1 = constant)")
        self._validate_growth()
        if not 0.0 <= t.cooldown < 1.0:
            raise UserError(f"train.cooldown must be in [0, 1) (the last fraction of the run over which "
                            f"the learning rates fall to zero; 0 = off), not {t.cooldown:g}")
        if not 0 <= t.seed < 2**63:
            raise UserError(f"train.seed must be a whole number from 0 to {2**63 - 1}, not {t.seed}")
        if t.anneal_kimg < 0 or t.ema_kimg < 0:
            raise UserError("train.anneal_kimg and train.ema_kimg must be >= 0 (thousands of images; 0 = off)")
        if not 0.0 <= t.beta2_end < 1.0:
            raise UserError(f"train.beta2_end must be in [0, 1) (0 = beta2 constant), got {t.beta2_end}")
        if m.d_mbstd < 0:
            raise UserError(f"model.d_mbstd must be >= 0 (samples per minibatch-std group, e.g. 4; "
                            f"0 = off), got {m.d_mbstd}")
        for name in ("blocks", "expansion", "group_size"):
            if getattr(m, name) < 1:
                raise UserError(f"model.{name} must be >= 1, got {getattr(m, name)}")
        if loss.ac_weight < 0:
            raise UserError(f"loss.ac_weight must be >= 0, got {loss.ac_weight}")
        check_condition_syntax(self.data.condition)
        if t.class_balance:
            cond = self.data.condition.strip()
            if not cond:
                raise UserError("train.class_balance needs class labels; set data.condition=folders "
                                "(or classes:ATTR,...), or train.class_balance=false")
            if cond != FOLDERS and not cond.startswith(CLASSES_PREFIX):
                raise UserError(f"train.class_balance needs class labels, but data.condition="
                                f"'{self.data.condition}' gives attributes; use data.condition=folders "
                                "or classes:ATTR,..., or train.class_balance=false")
        if loss.reg_every < 1:
            raise UserError(f"loss.reg_every must be >= 1 (1 = every critic step), got {loss.reg_every}")
        if (loss.r1_weight > 0 or loss.r2_weight > 0) and m.d_norm == "batch":
            raise UserError("batch norm in the critic breaks the R1/R2 penalty (it mixes samples); "
                            "set model.d_norm=instance, layer or none")
        for name in ("latent_dim", "g_width", "d_width", "max_width"):
            if getattr(m, name) < 1:
                raise UserError(f"model.{name} must be >= 1, got {getattr(m, name)}; e.g. "
                                f"model.{name}={getattr(ModelConfig, name)} (the default)")
        if self.data.max_images < 0:
            raise UserError(f"data.max_images must be >= 0 (a number of images; 0 = all), got "
                            f"{self.data.max_images}")
        for name in ("g_lr", "d_lr"):
            # Written as 'not 0 <= v' so that nan is refused too.
            if not 0.0 <= getattr(t, name):
                raise UserError(f"train.{name} must be >= 0 (a learning rate, e.g. 2e-4), got "
                                f"{getattr(t, name)}")
        if t.optimizer == "adam":
            for name in ("beta1", "beta2"):
                if not 0.0 <= getattr(t, name) < 1.0:
                    raise UserError(f"train.{name} must be in [0, 1) (an Adam beta, e.g. "
                                    f"train.{name}={getattr(TrainConfig, name)}), got {getattr(t, name)}")
        for name, low, what in (("steps", 0, "generator steps of the whole run"),
                                ("batch_size", 1, "images per step"),
                                ("n_critic", 1, "critic steps per generator step")):
            if getattr(t, name) < low:
                raise UserError(f"train.{name} must be >= {low} ({what}), got {getattr(t, name)}")
        if t.simultaneous:
            self._validate_simultaneous()
        if t.compile == "all" and (loss.gp_weight > 0 or loss.r1_weight > 0 or loss.r2_weight > 0):
            raise UserError("train.compile=all compiles the critic, but the gradient penalty / R1 needs "
                            "its double backward, which compiled graphs do not support; use "
                            "train.compile=generator")
        for name in ("log_every", "sample_every", "checkpoint_every"):
            if getattr(t, name) < 1:
                raise UserError(f"train.{name} must be >= 1 (a number of steps), got {getattr(t, name)}")
        for name in ("keep_every", "eval_every"):
            if getattr(t, name) < 0:
                raise UserError(f"train.{name} must be >= 0 (a number of steps; 0 = never), got "
                                f"{getattr(t, name)}")
        if t.freeze_d < 0:
            raise UserError(f"train.freeze_d must be >= 0 (critic stages to keep fixed), got {t.freeze_d}")
        if not 0 <= t.time_budget < math.inf:  # nan and inf too
            raise UserError(f"train.time_budget must be a number of seconds >= 0 (0 = no budget), "
                            f"got {t.time_budget}")
        if t.n_samples < 1:
            raise UserError(f"train.n_samples must be >= 1 (images in the sample grid), got {t.n_samples}")
        if not 0.0 <= m.d_dropout < 1.0:
            raise UserError(f"model.d_dropout must be in [0, 1) (a dropout probability; 0 = off), "
                            f"got {m.d_dropout}")
        parse_policy(t.augment)
        if not 0.0 <= t.ema_decay < 1.0:
            raise UserError("train.ema_decay must be in [0, 1)")
        if t.standing_stats < 0:
            raise UserError(f"train.standing_stats must be >= 0 (samples; 0 = copy the live "
                            f"generator's statistics), got {t.standing_stats}")
        for name in ("label_smoothing", "label_noise", "label_flip"):
            v = getattr(loss, name)
            if not 0.0 <= v < 1.0:
                raise UserError(f"loss.{name} must be in [0, 1)")
        return self

    def _validate_simultaneous(self) -> None:
        loss, t = self.loss, self.train
        wrong = [why for bad, why in (
            (loss.name != "wasserstein", f"loss.name=wasserstein (not '{loss.name}')"),
            (t.n_critic != 1, f"train.n_critic=1 (not {t.n_critic})"),
            (loss.r1_weight > 0 or loss.r2_weight > 0, "loss.r1_weight=0 loss.r2_weight=0"),
            (self.data.condition.strip() != "" and self.model.d_cond == "ac",
             "a critic without an AC head (model.d_cond=projection)"),
            (t.precision == "fp16", "train.precision fp32 or bf16 (fp16 scales each net's loss apart)"),
        ) if bad]
        if wrong:
            raise UserError("train.simultaneous updates both nets from the critic's one backward, which "
                            f"needs {'; '.join(wrong)}; set those, or train.simultaneous=false")

    def _validate_growth(self) -> None:
        m, t, res = self.model, self.train, self.data.resolution
        if m.grow_from == 0:
            return
        if m.arch != "dcgan":
            raise UserError(f"model.grow_from (progressive growing) needs model.arch=dcgan, not '{m.arch}'; "
                            "set model.grow_from=0")
        g = m.grow_from
        if g < 8 or g & (g - 1) or g >= res:
            raise UserError(f"model.grow_from must be 0 (off) or a power of two from 8 up to half of "
                            f"data.resolution ({res // 2}), got {g}; e.g. model.grow_from={res // 2}")
        if t.grow_kimg <= 0 or t.fade_kimg < 0:
            raise UserError("model.grow_from needs train.grow_kimg > 0 (thousands of images at each "
                            "resolution) and train.fade_kimg >= 0, e.g. train.grow_kimg=60 train.fade_kimg=30")
        if self.data.condition.strip() and m.d_cond == "concat":
            raise UserError("progressive growing cannot feed labels to the critic as image channels; "
                            "set model.d_cond=projection (or ac), or model.grow_from=0")


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _check_type(value: Any, typ: Any, key: str, default: Any) -> None:
    """A field set from Python (a mapping of overrides, ``dataclasses.replace``) holds a value
    of its type: bool a bool, int an int (not a bool), float an int or a float, str a str."""
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(typ)
    if ok is not None and not ok(value):
        raise UserError(f"{key} must be {_TYPE_WORDS[typ]}, got {value!r} ({type(value).__name__}); "
                        f"e.g. {key}={default!r} (the default)")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """A value given from Python for a field of type ``typ``, made that type where that loses
    nothing: a string parsed as the command line does ('false', '2e-4'), a path as its string,
    an int as a float, a whole float (16.0, as JSON and YAML give) as an int. Anything else is
    left for :meth:`Config.validate` to name."""
    if isinstance(value, str) and typ is not str:
        return _parse_value(value, typ, key)
    if typ is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_choice(f: dataclasses.Field, value: Any, key: str) -> None:
    choices = f.metadata.get("choices")
    if choices is None or value in choices:
        return
    template = f.metadata.get("error") or "unknown {what} '{value}'; use {spoken}"
    raise UserError(template.format(what=f.metadata.get("what") or key, value=value,
                                    listed=", ".join(map(str, choices)), spoken=_spoken(choices)))


def field_choices(key: str) -> tuple | None:
    """The values a choice-valued field takes ('train.precision' -> ('auto', 'fp32', ...)),
    None for a free-valued one; KeyError for an unknown key."""
    section, _, name = key.partition(".")
    for f in fields(_SECTIONS[section]):
        if f.name == name:
            return f.metadata.get("choices")
    raise KeyError(key)


def validate(cfg: Config) -> None:
    """:meth:`Config.validate` as a function."""
    cfg.validate()


# --------------------------------------------------------------------------------------------
# Presets: one row per recipe, as overrides of the defaults above (which are WGAN-GP).

@dataclass(frozen=True)
class PresetSpec:
    """One recipe: a line of help and its values, by dotted key, applied to the defaults
    (``base`` first, then ``overrides``)."""

    help: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    base: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        return {**self.base, **self.overrides}


# The budget recipe: 64-wide DCGAN generator, 32-wide layer-norm critic, 2 critic steps, the
# penalty lazily (every 4th critic step, weighted by 4: its average weight stays lambda 10),
# Adam 2e-4 (0, 0.9). Halving widths and critic steps buys steps where convolution backward
# dominates a step (a CPU).
BUDGET = {
    "model.latent_dim": 128, "model.g_width": 64, "model.d_width": 32, "model.g_norm": "batch",
    "model.d_norm": "layer", "loss.name": "wasserstein", "loss.gp_weight": 10.0,
    "loss.reg_every": 4, "train.n_critic": 2, "train.batch_size": 64, "train.g_lr": 2e-4,
    "train.d_lr": 2e-4, "train.beta1": 0.0, "train.beta2": 0.9,
}

# R3GAN's objective (Huang et al. 2024): the relativistic pairing loss with zero-centred R1 and
# R2 penalties of one gamma (here lazily, every 4th critic step, weighted by 4), Adam beta1 0,
# learning rate, beta2 and gamma annealed by cosine, an EMA whose half-life ramps up.
RPGAN = {
    "loss.name": "relativistic", "loss.gp_weight": 0.0, "loss.r1_weight": 1.0, "loss.r2_weight": 1.0,
    "loss.gamma_anneal": 0.1, "loss.reg_every": 4, "train.n_critic": 1, "train.batch_size": 64,
    "train.g_lr": 2e-4, "train.d_lr": 2e-4, "train.beta1": 0.0, "train.beta2": 0.9,
    "train.beta2_end": 0.99, "train.lr_anneal": 0.25,
}

# Both networks 64 wide, one critic step: fewer, better steps, where the hardware affords them.
WIDE = {**BUDGET, "model.d_width": 64, "train.n_critic": 1}

PRESETS: dict[str, PresetSpec] = {
    "dcgan-celeba64": PresetSpec(
        "DCGAN, BCE with label smoothing/noise/flips, batch norm, Adam 2e-4 (0.5, 0.999)",
        {"model.g_norm": "batch", "model.d_norm": "batch", "loss.name": "bce",
         "loss.gp_weight": 0.0, "loss.label_smoothing": 0.1, "loss.label_noise": 0.05,
         "loss.label_flip": 0.03, "train.n_critic": 1, "train.g_lr": 2e-4, "train.d_lr": 2e-4,
         "train.beta1": 0.5, "train.beta2": 0.999}),
    "wgangp-celeba64": PresetSpec(
        "WGAN-GP, lambda 10, 5 critic steps, instance-norm critic, Adam 1e-4 (0.5, 0.9)",
        {"model.d_norm": "instance", "loss.name": "wasserstein", "loss.gp_weight": 10.0,
         "train.n_critic": 5, "train.g_lr": 1e-4, "train.d_lr": 1e-4, "train.beta1": 0.5,
         "train.beta2": 0.9}),
    "wgangp-celeba128": PresetSpec(
        "WGAN-GP at 128x128, latent 200, batch 128",
        {"data.resolution": 128, "model.latent_dim": 200, "model.d_norm": "instance",
         "loss.gp_weight": 10.0, "train.n_critic": 5, "train.batch_size": 128}),
    # The original WGAN critic uses batch norm; clipping (not a penalty) keeps it Lipschitz.
    "wgan-clip-celeba64": PresetSpec(
        "original WGAN: weight clipping 0.01, RMSprop 5e-5, 5 critic steps",
        {"model.d_norm": "batch", "loss.name": "wasserstein", "loss.gp_weight": 0.0,
         "loss.clip_value": 0.01, "train.n_critic": 5, "train.optimizer": "rmsprop",
         "train.g_lr": 5e-5, "train.d_lr": 5e-5}),
    # Gulrajani et al.'s 64 px ResNet: nearest up-sampling in G, average-pooling down-sampling
    # and global sum pooling in the critic, here spectrally normalised with instance norm.
    "resnet-wgangp-celeba64": PresetSpec(
        "residual WGAN-GP: ResNet G, spectral-norm instance-norm critic, lambda 10, 5 critic steps",
        {"model.arch": "resnet", "model.d_norm": "instance", "model.d_sn": True,
         "loss.gp_weight": 10.0, "train.n_critic": 5, "train.beta1": 0.0, "train.beta2": 0.9}),
    # Half-width G and one critic step: the cheapest step of the budget recipe.
    "wgangp-ln-celeba64": PresetSpec(
        "WGAN-GP for a budget, at half width (the cheapest step; fine-tune small folders from it): 32-wide G, "
        "32-wide layer-norm critic, 1 critic step, lazy penalty (every 4th critic step), "
        "Adam 2e-4 (0, 0.9)",
        {"model.g_width": 32, "train.n_critic": 1}, base=BUDGET),
    "wgangp-ln-wide-celeba64": PresetSpec(
        "the budget WGAN-GP with both nets 64 wide (start here on a GPU): 64-wide G and "
        "layer-norm critic, 1 critic step, lazy penalty, batch 64",
        base=WIDE),
    # The wide nets at batch 32: twice the steps of batch 64 for about the same images a
    # second on a CPU, where the early part of training gains more from steps than from batch.
    # An hour is early in training, short of step size rather than of averaging (the EMA
    # averages), so both nets take twice the budget learning rate. Twice the steps also
    # halve the images an EMA half-life spans, so its decay doubles the half-life back, with
    # standing batch statistics, which keep the longer average true to its own weights.
    "wgangp-ln-wide-b32-celeba64": PresetSpec(
        "the wide budget WGAN-GP at batch 32 (start here on a CPU, for runs of any length): "
        "64-wide G and layer-norm critic, 1 critic step, lazy penalty, twice the steps, "
        "Adam 4e-4 (0, 0.9), EMA 0.9995 with standing statistics",
        {"train.batch_size": 32, "train.g_lr": 4e-4, "train.d_lr": 4e-4, "train.ema_decay": 0.9995,
         "train.standing_stats": 2048}, base=WIDE),
    # The budget recipe at 128 px: each stage doubles the cost of a step, so at 128 px both
    # nets are 16 wide (256 channels at 4x4), which keeps a step near the 64 px preset's.
    "wgangp-ln-celeba128": PresetSpec(
        "the budget WGAN-GP at 128x128 for a CPU: 16-wide G and layer-norm critic, 1 critic step, "
        "lazy penalty, Adam 2e-4 (0, 0.9)",
        {"data.resolution": 128, "model.g_width": 16, "model.d_width": 16, "train.n_critic": 1},
        base=BUDGET),
    # R3GAN's normalisation-free residual nets, narrowed for a CPU: 16 wide (128 channels at
    # 4x4), one block a stage; the schedule spans about what a CPU hour shows.
    "r3gan-celeba64": PresetSpec(
        "R3GAN: relativistic pairing loss with R1 + R2, normalisation-free residual G and D "
        "(16 wide, 1 block a stage), gamma / lr / beta2 annealed, EMA half-life ramp",
        {"model.arch": "nfresnet", "model.g_norm": "none", "model.d_norm": "none",
         "model.latent_dim": 64, "model.g_width": 16, "model.d_width": 16, "model.blocks": 1,
         "model.expansion": 2, "model.group_size": 16, "train.anneal_kimg": 100.0,
         "train.ema_kimg": 10.0}, base=RPGAN),
    # R3GAN's objective on the budget nets (32-wide DCGAN G, 32-wide layer-norm critic).
    "rpgan-ln-celeba64": PresetSpec(
        "R3GAN's objective (relativistic pairing, R1 + R2, annealing, EMA half-life ramp) on "
        "the budget nets: 32-wide G, 32-wide layer-norm critic",
        {**{k: v for k, v in BUDGET.items() if k.startswith("model.")}, "model.g_width": 32,
         "train.anneal_kimg": 300.0, "train.ema_kimg": 20.0}, base=RPGAN),
    # SNGAN's standard-CNN setting C (hinge, one critic step, Adam 2e-4 (0.5, 0.999)) on the
    # DCGAN networks; translation-only DiffAugment keeps the critic from memorising a small set.
    "sngan-celeba64": PresetSpec(
        "hinge loss, spectral-norm critic, DiffAugment translation, 1 critic step",
        {"model.d_norm": "none", "model.d_sn": True, "loss.name": "hinge", "loss.gp_weight": 0.0,
         "train.n_critic": 1, "train.g_lr": 2e-4, "train.d_lr": 2e-4, "train.beta1": 0.5,
         "train.beta2": 0.999, "train.augment": "translation"}),
    # AC-GAN on class folders: the critic's score stays unconditional and an auxiliary head
    # classifies real images. No colour jitter: it could wash out a class's colouring, which
    # the classifier head learns from.
    "cwgangp-animals64": PresetSpec(
        "class-conditional AC-GAN WGAN-GP, one class per sub-folder, the budget recipe "
        "(32-wide layer-norm critic), cond. batch norm G, flips + DiffAugment "
        "rotation/translation/cutout",
        {"data.crop": "center", "data.hflip": True, "data.condition": "folders",
         "model.g_cond": "cbn", "model.d_cond": "ac", "loss.ac_weight": 1.0,
         "train.augment": "rotation,translation,cutout"}, base=BUDGET),
    # Attributes as independent binary labels: the AC head has one logit per attribute.
    "cwgangp-celeba64": PresetSpec(
        "AC-GAN WGAN-GP on CelebA attributes Male, Smiling, Eyeglasses (binary labels), the "
        "budget recipe (64-wide G, 32-wide layer-norm critic, 2 critic steps)",
        {"data.condition": "Male,Smiling,Eyeglasses", "model.g_cond": "cbn",
         "model.d_cond": "ac", "loss.ac_weight": 1.0}, base=BUDGET),
    # Miyato & Koyama's projection critic: score = linear(h) + <embed(y), h>.
    "projection-celeba64": PresetSpec(
        "projection critic conditioned on Male, cond. batch norm G, the budget WGAN-GP recipe",
        {"data.condition": "Male", "model.g_cond": "cbn", "model.d_cond": "projection"},
        base=BUDGET),
    # Small enough to show faces forming on the built-in set within a few CPU minutes; the
    # time budget keeps a newcomer's first run short on a slow CPU.
    "demo": PresetSpec(
        "small WGAN-GP for the built-in faces at 32x32, a few CPU minutes",
        {"data.path": "builtin", "data.resolution": 32, "model.latent_dim": 64,
         "model.g_width": 32, "model.d_width": 32, "model.d_norm": "layer",
         "loss.gp_weight": 10.0, "train.steps": 2000, "train.n_critic": 2,
         "train.g_lr": 2e-4, "train.d_lr": 2e-4, "train.beta1": 0.0, "train.beta2": 0.9,
         "train.ema_decay": 0.99, "train.sample_every": 250, "train.checkpoint_every": 500,
         "train.time_budget": 180.0}),
}


# --------------------------------------------------------------------------------------------
# preset auto: the recipe for the hardware, then DiffAugment for a small data set.

AUTO = "auto"
HARDWARE = ("gpu", "cpu-bf16", "cpu")  # a CUDA device; a CPU with fast bf16; a CPU without
# hardware -> (preset, why). Measured in docs/quality.md; docs/presets.md ("`auto`: the default")
# shows this table.
AUTO_PRESETS: dict[str, tuple[str, str]] = {
    "gpu": ("wgangp-ln-wide-celeba64", "a GPU affords both nets 64 wide"),
    "cpu-bf16": ("wgangp-ln-wide-b32-celeba64",
                 "a CPU with fast bf16 affords both nets 64 wide, at batch 32 for twice the steps"),
    "cpu": ("wgangp-ln-wide-b32-celeba64",
            "a CPU without fast bf16 (fp32) too: the wide nets at batch 32 beat 3x the steps of half width"),
}
# From this resolution up a CPU takes the 128 px budget preset (a GPU keeps its choice above).
HIGH_RES = 128
AUTO_HIGH_RES: dict[str, tuple[str, str]] = {
    "cpu-bf16": ("wgangp-ln-celeba128", "at 128 px and above a CPU affords 16-wide nets"),
    "cpu": ("wgangp-ln-celeba128", "at 128 px and above a CPU affords 16-wide nets"),
}
# Below this many images a critic memorises the set within a CPU hour; DiffAugment's policy
# for small sets (Zhao et al. 2020) then goes on every critic input.
SMALL_DATA = 2000
SMALL_DATA_AUGMENT = "color,translation,cutout"
# A CPU without fast bf16, below HIGH_RES, given train.time_budget of this many seconds or less:
# the same nets this wide. Their steps cost about half, and over such a run more of them beat
# wider ones (docs/quality.md, "An hour of an AVX2-only CPU"); given longer, the wider nets,
# still learning more per step, catch up.
SHORT_RUN = 1800.0
SHORT_RUN_WIDTH = 48


def auto_preset(hardware: str, resolution: int = 64) -> tuple[Config, str]:
    """preset auto's recipe for ``hardware`` (one of :data:`HARDWARE`) at ``resolution`` (the
    run's ``data.resolution``, which the user's setting keeps) and why, in words."""
    name, why = AUTO_PRESETS[hardware]
    if resolution >= HIGH_RES and hardware in AUTO_HIGH_RES:
        name, why = AUTO_HIGH_RES[hardware]
    return get_preset(name), f"{name} ({why})"


def auto_time_settings(hardware: str, resolution: int, time_budget: float,
                       given: Iterable[str]) -> tuple[dict[str, Any], str]:
    """preset auto's settings for a short run: on a CPU without fast bf16 below
    :data:`HIGH_RES`, a ``train.time_budget`` of :data:`SHORT_RUN` seconds or less makes both
    nets :data:`SHORT_RUN_WIDTH` wide, unless the user set either width (``given``: the keys the
    user set). Returns (overrides, why; '' when there are none)."""
    keys = {"model.g_width", "model.d_width"}
    if (hardware != "cpu" or resolution >= HIGH_RES or not 0 < time_budget <= SHORT_RUN
            or keys & _dotted(given)):
        return {}, ""
    return ({k: SHORT_RUN_WIDTH for k in sorted(keys)},
            f"both nets {SHORT_RUN_WIDTH} wide, since {time_budget / 60:g} minutes "
            f"(train.time_budget) on such a CPU pay more for their cheaper steps")


def auto_data_settings(n_images: int, given: Iterable[str]) -> tuple[dict[str, Any], str]:
    """preset auto's settings for a data set of ``n_images``: DiffAugment below
    :data:`SMALL_DATA` images unless the user set ``train.augment`` (``given``: the keys the
    user set). Returns (overrides, why; '' when there are none)."""
    if n_images >= SMALL_DATA or "train.augment" in _dotted(given):
        return {}, ""
    return ({"train.augment": SMALL_DATA_AUGMENT},
            f"DiffAugment {SMALL_DATA_AUGMENT}, since {n_images:,} images are under {SMALL_DATA:,}")


def _dotted(given: Iterable[str]) -> set[str]:
    """The dotted form of each key the user set (a bare key where it is unique:
    'augment' -> 'train.augment'), by the lookup the overrides themselves go through."""
    keys = all_keys()
    return {".".join(_field_of(k, keys)) for k in given}


def get_preset(name: str) -> Config:
    """The preset's Config: the defaults with its settings applied. ``auto`` is a placeholder
    (the defaults, preset 'auto') that ``facegan.train.start_run`` replaces by a preset chosen
    for the device and the data (:func:`auto_preset`, :func:`auto_data_settings`)."""
    if name == AUTO:
        return replace(Config(), preset=AUTO)
    try:
        spec = PRESETS[name]
    except KeyError:
        raise UserError(
            f"unknown preset '{name}'; choose one of: {AUTO}, {', '.join(PRESETS)}"
        ) from None
    return replace(apply_overrides(Config(), spec.settings()), preset=name)


# --------------------------------------------------------------------------------------------
# Overrides: 'section.key=value' or a key that is unique across sections ('g_lr=2e-4').

def all_keys() -> dict[str, tuple[str, str]]:
    """Map every accepted override key (dotted and, where unique, bare) to (section, field)."""
    out: dict[str, tuple[str, str]] = {}
    bare: dict[str, list[tuple[str, str]]] = {}
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            out[f"{section}.{f.name}"] = (section, f.name)
            bare.setdefault(f.name, []).append((section, f.name))
    for name, where in bare.items():
        if len(where) == 1:
            out[name] = where[0]
    return out


def _parse_value(raw: str, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is str:
            return raw
        if origin is tuple:
            return tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        pass
    name = getattr(typ, "__name__", str(typ))
    raise UserError(f"bad value '{raw}' for '{key}': expected {name}")


def _field_of(key: str, keys: dict[str, tuple[str, str]]) -> tuple[str, str]:
    if key not in keys:
        close = [k for k in keys if "." in k and key.split(".")[-1] in k]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise UserError(
            f"unknown config key '{key}'{hint}; run 'facegan presets --show NAME' to list the keys"
        )
    return keys[key]


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``['g_lr=2e-4', 'train.steps=10']`` -> ``{'train.g_lr': 0.0002, 'train.steps': 10}``:
    each value typed by its field, keys made dotted (a later item for the same field wins).
    Malformed items, unknown keys and bad values raise :class:`UserError`."""
    keys = all_keys()
    out: dict[str, Any] = {}
    for ov in overrides:
        if "=" not in ov:
            raise UserError(f"override '{ov}' is not key=value; write e.g. train.g_lr=2e-4")
        k, v = ov.split("=", 1)
        section, name = _field_of(k.strip(), keys)
        typ = typing.get_type_hints(_SECTIONS[section])[name]
        out[f"{section}.{name}"] = _parse_value(v, typ, k.strip())
    return out


def apply_overrides(cfg: Config, overrides: Iterable[str] | Mapping[str, Any]) -> Config:
    """Return ``cfg`` with overrides applied.

    ``overrides`` is a list of ``key=value`` strings (from the command line, see
    :func:`parse_overrides`; one such string alone too) or a mapping of values by key (dotted,
    or bare where unique), each of its field's type or made so without loss: a string parsed
    as on the command line, a path as its string, a whole float as an int. Unknown keys and
    malformed values raise :class:`UserError`; values of another type are named by
    :meth:`Config.validate`.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"apply_overrides takes a Config first (e.g. get_preset('demo')), not "
                        f"{type(cfg).__name__}")
    if isinstance(overrides, str):  # one 'key=value', not its characters
        overrides = [overrides]
    if overrides is None or not isinstance(overrides, (Mapping, Iterable)):
        raise TypeError("overrides are a mapping {'train.steps': 200} or a list of 'key=value' strings, "
                        f"not {type(overrides).__name__}")
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    keys = all_keys()
    for key, value in overrides.items():
        section, name = _field_of(key, keys)
        typ = typing.get_type_hints(_SECTIONS[section])[name]
        value = _coerce(value, typ, key)
        sub = getattr(cfg, section)
        cfg = replace(cfg, **{section: replace(sub, **{name: value})})
    return cfg
