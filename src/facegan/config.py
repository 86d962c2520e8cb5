"""Configs: frozen dataclasses, one named preset per recipe, overrides, JSON round-trip.

A run's resolved :class:`Config` is written to ``RUN/config.json`` and into every checkpoint,
so a checkpoint alone rebuilds the networks for sampling.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import UserError


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are preprocessed.

    path: an image folder (recursive), a .zip of images, a CelebA root (holding
        ``img_align_celeba/``), or ``builtin`` for the procedurally drawn faces.
    crop: ``auto`` (CelebA face box for the CelebA layout, else center square), ``center``,
        ``celeba`` (left 30, top 55, right 150, bottom 175 on 178x218, scaled), or ``none``.
    partition: CelebA partition: train | valid | test | all.
    max_images: use only the first N images (0: all).
    hflip: random horizontal flips during training.
    cache_dir: folder for the decoded-image cache ('' = $FACEGAN_CACHE or ~/.cache/facegan).
    condition: labels for conditional training ('' = unconditional): 'folders' (one class per
        first-level sub-folder of a folder or zip), 'Male,Smiling' (CelebA / builtin attributes
        as independent binary labels) or 'classes:Male,Smiling' (their combinations as classes).
        See ``facegan.data.labels``.
    """

    path: str = "builtin"
    resolution: int = 64
    crop: str = "auto"
    partition: str = "train"
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

    arch: str = "dcgan"  # dcgan | resnet (facegan.models.ARCHS)
    latent_dim: int = 128
    g_width: int = 64
    d_width: int = 64
    max_width: int = 1024
    g_norm: str = "batch"  # batch | none
    d_norm: str = "instance"  # batch | instance | layer | none
    d_dropout: float = 0.0
    g_sn: bool = False  # spectral norm on the generator's convolutions / linear layers
    d_sn: bool = False  # spectral norm on the critic's convolutions / linear layers
    # Conditioning, used only when the data has labels (NetSpec.label_dim > 0):
    g_cond: str = "concat"  # concat ([z, embed(c)] into G) | cbn (conditional batch norm)
    d_cond: str = "projection"  # concat (label maps) | projection | ac (auxiliary classifier)


@dataclass(frozen=True)
class LossConfig:
    """Adversarial objective.

    name: bce (non-saturating) | wasserstein | hinge.
    gp_weight: gradient-penalty lambda (0 = no penalty).
    r1_weight: R1 gamma: (gamma / 2) E[||grad_x D(x_real)||^2] added to the critic loss (0 = off).
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

    name: str = "wasserstein"
    gp_weight: float = 10.0
    r1_weight: float = 0.0
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
    optimizer: str = "adam"  # adam | rmsprop
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    ema_decay: float = 0.999  # 0 = no EMA generator
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 where the device has it (recent GPUs, CPUs with AVX-512 BF16 / AMX), else fp16
    # with a gradient scaler on a GPU, fp32 on a CPU.
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    # GPU switches ("auto": on for CUDA, off elsewhere; results equal the plain path within
    # floating-point tolerance): fused Adam (one kernel for all parameters), cuDNN autotuning.
    fused_optimizer: str = "auto"  # auto | on | off
    cudnn_benchmark: bool = True  # CUDA only
    # torch.compile of the networks' forward: off | generator | all. 'all' also compiles the
    # critic, which the gradient penalty's / R1's double backward does not support.
    compile: str = "off"
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune
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
    # Under torchrun: batch norm statistics over the global batch (all processes), as on one
    # process; false: each process normalises with its own share's statistics (faster, differs).
    sync_bn: bool = True


@dataclass(frozen=True)
class Config:
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
    def from_dict(cls, d: dict[str, Any]) -> "Config":
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
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


# --------------------------------------------------------------------------------------------
# Presets: one per recipe.

def _dcgan_celeba64() -> Config:
    return Config(
        preset="dcgan-celeba64",
        data=DataConfig(resolution=64),
        model=ModelConfig(latent_dim=128, g_width=64, d_width=64, g_norm="batch", d_norm="batch"),
        loss=LossConfig(name="bce", gp_weight=0.0, label_smoothing=0.1, label_noise=0.05, label_flip=0.03),
        train=TrainConfig(n_critic=1, batch_size=64, g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999),
    )


def _wgangp_celeba64() -> Config:
    return Config(
        preset="wgangp-celeba64",
        data=DataConfig(resolution=64),
        model=ModelConfig(latent_dim=128, g_width=64, d_width=64, g_norm="batch", d_norm="instance"),
        loss=LossConfig(name="wasserstein", gp_weight=10.0),
        train=TrainConfig(n_critic=5, batch_size=64, g_lr=1e-4, d_lr=1e-4, beta1=0.5, beta2=0.9),
    )


def _wgangp_celeba128() -> Config:
    return Config(
        preset="wgangp-celeba128",
        data=DataConfig(resolution=128),
        model=ModelConfig(latent_dim=200, g_width=64, d_width=64, max_width=1024, g_norm="batch",
                          d_norm="instance"),
        loss=LossConfig(name="wasserstein", gp_weight=10.0),
        train=TrainConfig(n_critic=5, batch_size=128, g_lr=1e-4, d_lr=1e-4, beta1=0.5, beta2=0.9),
    )


def _wgan_clip_celeba64() -> Config:
    return Config(
        preset="wgan-clip-celeba64",
        data=DataConfig(resolution=64),
        # The original WGAN critic uses batch norm; clipping (not a penalty) keeps it Lipschitz.
        model=ModelConfig(latent_dim=128, g_width=64, d_width=64, g_norm="batch", d_norm="batch"),
        loss=LossConfig(name="wasserstein", gp_weight=0.0, clip_value=0.01),
        train=TrainConfig(n_critic=5, batch_size=64, optimizer="rmsprop", g_lr=5e-5, d_lr=5e-5),
    )


def _resnet_wgangp_celeba64() -> Config:
    # The residual WGAN-GP of Gulrajani et al. (their 64 px ResNet), with a spectrally normalised
    # instance-norm critic: residual blocks with nearest up-sampling in G, average-pooling
    # down-sampling blocks and global sum pooling in the critic.
    return Config(
        preset="resnet-wgangp-celeba64",
        data=DataConfig(resolution=64),
        model=ModelConfig(arch="resnet", latent_dim=128, g_width=64, d_width=64, g_norm="batch",
                          d_norm="instance", d_sn=True),
        loss=LossConfig(name="wasserstein", gp_weight=10.0),
        train=TrainConfig(n_critic=5, batch_size=64, g_lr=1e-4, d_lr=1e-4, beta1=0.0, beta2=0.9),
    )


def _wgangp_ln_celeba64() -> Config:
    # WGAN-GP tuned for a budget, the quality preset on a CPU: the DCGAN generator at half
    # width (256-128-64-32), a layer-norm critic at half width (32-64-128-256), one critic step
    # per generator step, Adam 2e-4 (0, 0.9), and the penalty lazily, every 4th critic step
    # weighted by 4 (its average weight stays lambda 10). On a 2-core CPU a step is almost all
    # convolution backward, so each halving buys steps: 64-wide G, 2 critic steps 1.68 steps/s;
    # 32-wide G 2.54; and one critic step 3.62 (--profile 40). Measured on celeba-10k (2-core
    # AMD EPYC, Zen 5, bf16), 20 minutes on one core each, side by side, 2,000 samples: FID
    # 99.6 (3,513 steps) with one critic step against 118.2 (2,174 steps) with two. 60
    # training minutes on the whole CPU: FID 68.6 (13,757 steps, 10,000 samples) against 75.2
    # (6,161 steps) with the 64-wide G and 2 critic steps (README, Quality on a budget).
    # On a GPU or a bf16 CPU, over an hour or more, wgangp-ln-wide-celeba64 wins (README).
    return _budget("wgangp-ln-celeba64", DataConfig(resolution=64), model=dict(g_width=32),
                   train=dict(n_critic=1))


def _wgangp_ln_wide_celeba64() -> Config:
    # The budget recipe with both networks 64 wide (G 512-256-128-64, critic 64-128-256-512)
    # and one critic step: fewer, better steps. On a 2-core Intel Xeon with AMX (bf16), 60
    # training minutes on celeba-10k, 10,000 samples: FID 40.1 (9,275 steps) against 58.7
    # (27,433 steps) for wgangp-ln-celeba64, though a step costs 2.8x (README, Quality on a
    # budget). Not measured on an AVX2-only CPU, where the half-width preset stays the advice.
    return _budget("wgangp-ln-wide-celeba64", DataConfig(resolution=64), model=dict(d_width=64),
                   train=dict(n_critic=1))


def _budget(preset: str, data: DataConfig, *, model: dict | None = None, loss: dict | None = None,
            train: dict | None = None) -> Config:
    """The budget recipe (the one place it is written: 64-wide DCGAN generator, 32-wide
    layer-norm critic, 2 critic steps, lazy penalty every 4th critic step, Adam 2e-4 (0, 0.9))
    under a preset name and data config, with fields of its model / loss / train sections
    changed. The conditional presets use it as measured; wgangp-ln-celeba64 halves G and the
    critic steps."""
    return Config(
        preset=preset,
        data=data,
        model=ModelConfig(**dict(latent_dim=128, g_width=64, d_width=32, g_norm="batch",
                                 d_norm="layer") | (model or {})),
        loss=LossConfig(**dict(name="wasserstein", gp_weight=10.0, reg_every=4) | (loss or {})),
        train=TrainConfig(**dict(n_critic=2, batch_size=64, g_lr=2e-4, d_lr=2e-4, beta1=0.0,
                                 beta2=0.9) | (train or {})),
    )


def _sngan_celeba64() -> Config:
    # SNGAN's "standard CNN" recipe (Miyato et al. 2018, setting C: hinge loss, one critic step,
    # Adam 2e-4 (0.5, 0.999)) on the DCGAN networks, spectral norm in the critic and no norm
    # there, plus DiffAugment: 10,000 faces is small data, where augmenting what the critic
    # sees keeps it from memorising the training set. Translation alone: measured on
    # celeba-10k (2-core CPU, same seed, 2,000 samples), it reached FID 105.7 after 30 minutes
    # against 127.0 with colour + translation + cutout (115.8 after 45 minutes).
    return Config(
        preset="sngan-celeba64",
        data=DataConfig(resolution=64),
        model=ModelConfig(arch="dcgan", latent_dim=128, g_width=64, d_width=64, g_norm="batch",
                          d_norm="none", d_sn=True),
        loss=LossConfig(name="hinge", gp_weight=0.0),
        train=TrainConfig(n_critic=1, batch_size=64, g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999,
                          augment="translation"),
    )


def _cwgangp_animals64() -> Config:
    # AC-GAN on WGAN-GP for class folders (afhq-style: data/cat, data/dog, ...): the critic's
    # score stays unconditional and an auxiliary head classifies real images (lambda 1), the
    # generator is conditioned by conditional batch norm; the budget recipe (_budget: 64-wide
    # G, 32-wide layer-norm critic, 2 critic steps, lazy penalty, Adam 2e-4 (0, 0.9)). A few
    # thousand images per class is small data: flips plus DiffAugment small rotations,
    # translation and cutout (no colour jitter, which could wash out a class's colouring that
    # the classifier head learns from).
    return _budget("cwgangp-animals64",
                   DataConfig(resolution=64, crop="center", hflip=True, condition="folders"),
                   model=dict(g_cond="cbn", d_cond="ac"), loss=dict(ac_weight=1.0),
                   train=dict(augment="rotation,translation,cutout"))


def _cwgangp_celeba64() -> Config:
    # AC-GAN WGAN-GP on CelebA attributes, as independent binary labels (the AC head then has
    # one logit per attribute, trained with binary cross-entropy), on the budget recipe
    # (_budget: 64-wide G, 32-wide layer-norm critic, 2 critic steps, lazy penalty every 4th
    # critic step, Adam 2e-4 (0, 0.9)), which was wgangp-ln-celeba64 when this was measured.
    # The earlier settings (64-wide instance-norm critic, 5 critic steps) ran 242 steps in 45
    # minutes on one thread and drew Male at chance.
    return _budget("cwgangp-celeba64", DataConfig(resolution=64, condition="Male,Smiling,Eyeglasses"),
                   model=dict(g_cond="cbn", d_cond="ac"), loss=dict(ac_weight=1.0))


def _projection_celeba64() -> Config:
    # cGAN with a projection critic (Miyato & Koyama 2018: score = linear(h) + <embed(y), h>)
    # and conditional batch norm in G, on the Wasserstein budget recipe (_budget: 64-wide G,
    # 32-wide layer-norm critic, 2 critic steps, lazy penalty, Adam 2e-4 (0, 0.9)). Chosen by
    # measurement over the SNGAN-style hinge recipe (spectral norm, no norm, one critic step,
    # DiffAugment): conditioned on Male, 45 minutes side by side on celeba-10k, the hinge
    # critic's samples followed the label 58.9% of the time (balanced, a classifier trained
    # on the real images), the Wasserstein one's 87.5% (README, Measuring a conditional model).
    return _budget("projection-celeba64", DataConfig(resolution=64, condition="Male"),
                   model=dict(g_cond="cbn", d_cond="projection"))


def _demo() -> Config:
    # Small enough to show faces forming on the built-in set within a few CPU minutes.
    return Config(
        preset="demo",
        data=DataConfig(path="builtin", resolution=32),
        model=ModelConfig(latent_dim=64, g_width=32, d_width=32, g_norm="batch", d_norm="layer"),
        loss=LossConfig(name="wasserstein", gp_weight=10.0),
        # The time budget keeps a newcomer's first run short on any CPU: 2,000 steps take about
        # 3 minutes with native bf16 and 9 without; the run stops at whichever comes first.
        train=TrainConfig(steps=2000, n_critic=2, batch_size=64, g_lr=2e-4, d_lr=2e-4, beta1=0.0,
                          beta2=0.9, ema_decay=0.99, log_every=10, sample_every=250,
                          checkpoint_every=500, time_budget=180.0),
    )


PRESETS = {
    "dcgan-celeba64": _dcgan_celeba64,
    "wgangp-celeba64": _wgangp_celeba64,
    "wgangp-celeba128": _wgangp_celeba128,
    "wgan-clip-celeba64": _wgan_clip_celeba64,
    "resnet-wgangp-celeba64": _resnet_wgangp_celeba64,
    "wgangp-ln-celeba64": _wgangp_ln_celeba64,
    "wgangp-ln-wide-celeba64": _wgangp_ln_wide_celeba64,
    "sngan-celeba64": _sngan_celeba64,
    "cwgangp-animals64": _cwgangp_animals64,
    "cwgangp-celeba64": _cwgangp_celeba64,
    "projection-celeba64": _projection_celeba64,
    "demo": _demo,
}

PRESET_HELP = {
    "dcgan-celeba64": "DCGAN, BCE with label smoothing/noise/flips, batch norm, Adam 2e-4 (0.5, 0.999)",
    "wgangp-celeba64": "WGAN-GP, lambda 10, 5 critic steps, instance-norm critic, Adam 1e-4 (0.5, 0.9)",
    "wgangp-celeba128": "WGAN-GP at 128x128, latent 200, batch 128",
    "wgan-clip-celeba64": "original WGAN: weight clipping 0.01, RMSprop 5e-5, 5 critic steps",
    "resnet-wgangp-celeba64": "residual WGAN-GP: ResNet G, spectral-norm instance-norm critic, lambda 10, 5 critic steps",
    "wgangp-ln-celeba64": "WGAN-GP for a budget (start here for short runs or a CPU without bf16): 32-wide G, 32-wide "
                          "layer-norm critic, 1 critic step, lazy penalty (every 4th critic step), "
                          "Adam 2e-4 (0, 0.9)",
    "wgangp-ln-wide-celeba64": "the budget WGAN-GP with both nets 64 wide (start here on a GPU or a CPU "
                               "with bf16, an hour or more): 64-wide G and layer-norm critic, 1 critic step, lazy penalty",
    "sngan-celeba64": "hinge loss, spectral-norm critic, DiffAugment translation, 1 critic step",
    "cwgangp-animals64": "class-conditional AC-GAN WGAN-GP, one class per sub-folder, the budget recipe "
                         "(32-wide layer-norm critic), cond. batch norm G, flips + DiffAugment "
                         "rotation/translation/cutout",
    "cwgangp-celeba64": "AC-GAN WGAN-GP on CelebA attributes Male, Smiling, Eyeglasses (binary labels), "
                        "the budget recipe (64-wide G, 32-wide layer-norm critic, 2 critic steps)",
    "projection-celeba64": "projection critic conditioned on Male, cond. batch norm G, the budget "
                           "WGAN-GP recipe (measured better than hinge + spectral norm)",
    "demo": "small WGAN-GP for the built-in faces at 32x32, a few CPU minutes",
}


def get_preset(name: str) -> Config:
    try:
        return PRESETS[name]()
    except KeyError:
        raise UserError(
            f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}"
        ) from None


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


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Return ``cfg`` with overrides applied.

    ``overrides`` is a list of ``key=value`` strings (from the command line) or a dict of
    already-typed values. Unknown keys and malformed values raise :class:`UserError`.
    """
    keys = all_keys()
    items: list[tuple[str, Any, bool]] = []
    if isinstance(overrides, dict):
        items = [(k, v, False) for k, v in overrides.items()]
    else:
        for ov in overrides:
            if "=" not in ov:
                raise UserError(f"override '{ov}' is not key=value; write e.g. train.g_lr=2e-4")
            k, v = ov.split("=", 1)
            items.append((k.strip(), v, True))
    for key, value, is_text in items:
        if key not in keys:
            close = [k for k in keys if "." in k and key.split(".")[-1] in k]
            hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
            raise UserError(
                f"unknown config key '{key}'{hint}; run 'facegan presets --show NAME' to list the keys"
            )
        section, name = keys[key]
        sub = getattr(cfg, section)
        types = typing.get_type_hints(type(sub))
        if is_text:
            value = _parse_value(value, types[name], key)
        cfg = replace(cfg, **{section: replace(sub, **{name: value})})
    return cfg


RESOLUTIONS = (16, 32, 64, 128, 256)  # the training sizes (CLI --resolution choices, README)


def validate(cfg: Config) -> None:
    """Refuse combinations that cannot train correctly, with a message that says the fix."""
    r = cfg.data.resolution
    if r not in RESOLUTIONS:
        raise UserError(f"resolution {r} is not supported; use one of "
                        f"{', '.join(map(str, RESOLUTIONS))}")
    if cfg.data.crop not in ("auto", "center", "celeba", "none"):
        raise UserError(f"unknown crop '{cfg.data.crop}'; use auto, center, celeba or none")
    if cfg.data.partition not in ("train", "valid", "test", "all"):
        raise UserError(f"unknown partition '{cfg.data.partition}'; use train, valid, test or all")
    if cfg.model.d_norm not in ("batch", "instance", "layer", "none"):
        raise UserError(f"unknown critic norm '{cfg.model.d_norm}'; use batch, instance, layer or none")
    if cfg.model.g_norm not in ("batch", "none"):
        raise UserError(f"unknown generator norm '{cfg.model.g_norm}'; use batch or none")
    if cfg.model.g_cond not in ("concat", "cbn"):
        raise UserError(f"unknown model.g_cond '{cfg.model.g_cond}'; use concat or cbn")
    if cfg.model.d_cond not in ("concat", "projection", "ac"):
        raise UserError(f"unknown model.d_cond '{cfg.model.d_cond}'; use concat, projection or ac")
    if cfg.loss.gp_weight > 0 and cfg.model.d_norm == "batch":
        raise UserError(
            "batch norm in a WGAN-GP critic breaks the gradient penalty (it mixes samples); "
            "set model.d_norm=instance, layer or none"
        )
    if cfg.loss.gp_weight < 0 or cfg.loss.clip_value < 0 or cfg.loss.r1_weight < 0:
        raise UserError("loss.gp_weight, loss.r1_weight and loss.clip_value must be >= 0")
    if cfg.loss.ac_weight < 0:
        raise UserError(f"loss.ac_weight must be >= 0, got {cfg.loss.ac_weight}")
    from .data.labels import check_condition_syntax  # the condition's grammar lives with the labels

    check_condition_syntax(cfg.data.condition)
    if cfg.train.class_balance and not cfg.data.condition.strip():
        raise UserError("train.class_balance needs class labels; set data.condition=folders (or "
                        "classes:ATTR,...), or train.class_balance=false")
    if cfg.loss.reg_every < 1:
        raise UserError(f"loss.reg_every must be >= 1 (1 = every critic step), got {cfg.loss.reg_every}")
    if cfg.loss.r1_weight > 0 and cfg.model.d_norm == "batch":
        raise UserError("batch norm in the critic breaks the R1 penalty (it mixes samples); "
                        "set model.d_norm=instance, layer or none")
    t = cfg.train
    if t.steps < 0 or t.batch_size < 1 or t.n_critic < 1:
        raise UserError("train.steps must be >= 0, train.batch_size >= 1 and train.n_critic >= 1")
    if t.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UserError(f"unknown precision '{t.precision}'; use auto, fp32, bf16 or fp16")
    if t.fused_optimizer not in ("auto", "on", "off"):
        raise UserError(f"unknown train.fused_optimizer '{t.fused_optimizer}'; use auto, on or off")
    if t.compile not in ("off", "generator", "all"):
        raise UserError(f"unknown train.compile '{t.compile}'; use off, generator or all")
    if t.compile_mode not in ("default", "reduce-overhead", "max-autotune"):
        raise UserError(f"unknown train.compile_mode '{t.compile_mode}'; use default, reduce-overhead "
                        "or max-autotune")
    if t.compile == "all" and (cfg.loss.gp_weight > 0 or cfg.loss.r1_weight > 0):
        raise UserError("train.compile=all compiles the critic, but the gradient penalty / R1 needs "
                        "its double backward, which compiled graphs do not support; use "
                        "train.compile=generator")
    if t.optimizer not in ("adam", "rmsprop"):
        raise UserError(f"unknown optimizer '{t.optimizer}'; use adam or rmsprop")
    if t.time_budget < 0:
        raise UserError("train.time_budget must be >= 0 seconds (0 = no budget)")
    from .augment import parse_policy  # the policy names live with the augmentations

    parse_policy(t.augment)
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError("train.ema_decay must be in [0, 1)")
    for name in ("label_smoothing", "label_noise", "label_flip"):
        v = getattr(cfg.loss, name)
        if not 0.0 <= v < 1.0:
            raise UserError(f"loss.{name} must be in [0, 1)")
