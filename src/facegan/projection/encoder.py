"""The encoder: an image -> latent guess, trained once per run on the generator's own samples
and cached in the run folder (read with ``weights_only``)."""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import to_float
from ..errors import UserError
from ..files import atomic_write, reporting_write_errors
from ..labels import LabelSpec
from ..models.spec import check_resolution
from ..progress import Progress, run_steps
from ..sampling import LoadedGenerator, generate

ENCODER_FILE = "encoder.pt"
ENCODER_FORMAT = "facegan-encoder"
ENCODER_VERSION = 1
DEFAULT_ENCODER_STEPS = 500


class Encoder(nn.Module):
    """Image -> latent guess: float (N, 3, R, R) in [-1, 1] -> float (N, latent_dim).

    The DCGAN critic's layout: stride-2 4x4 convs with LeakyReLU 0.2 halving the size down to
    4x4, the width doubling from ``width`` up to ``max_width``; no normalisation (one photo
    alone must get the answer it gets in a batch). The 4x4 features are flattened (where
    things are matters for a latent) into a linear layer. About 27 M multiply-adds per 64 px
    image at width 32, a fraction of what the generator costs.
    """

    def __init__(self, latent_dim: int, resolution: int, width: int = 32, max_width: int = 256):
        super().__init__()
        check_resolution(resolution)
        self.latent_dim, self.resolution, self.width, self.max_width = latent_dim, resolution, width, max_width
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(int(math.log2(resolution)) - 2):
            c = min(width * 2 ** i, max_width)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))

    def config(self) -> dict[str, int]:
        return {"latent_dim": self.latent_dim, "resolution": self.resolution, "width": self.width,
                "max_width": self.max_width}


def encoder_path(lg: LoadedGenerator) -> Path:
    """RUN/encoder.pt for a run; beside the checkpoint for a checkpoint outside a run."""
    return (lg.run_dir or lg.checkpoint.parent) / ENCODER_FILE


def generator_fingerprint(generator: nn.Module) -> str:
    """A short hash of the generator's weights (which of them the encoder was trained for)."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_encoder(generator: nn.Module, labels: LabelSpec, *, steps: int = DEFAULT_ENCODER_STEPS,
                  batch_size: int = 32, lr: float = 1e-3, image_weight: float = 0.0,
                  width: int = 32, seed: int = 0, progress: bool = True) -> Encoder:
    """Train an :class:`Encoder` on the generator's own samples for ``steps`` steps.

    Each step draws ``batch_size`` latents z ~ N(0, I) and labels ``labels.draw`` (their
    training rates), renders ``x = G(z, c)`` quantised to uint8 as a photo is (through
    :func:`facegan.sampling.generate`), and lowers ``MSE(E(x), z) + image_weight *
    MSE(G(E(x), c), x)``: the first teaches where a face's latent is, the second what matters
    for its image. The image term runs the generator forward and backward once more per step
    (about twice the time on a CPU), so it is off by default: the optimisation that follows
    the guess lowers the image error anyway. Adam with a cosine decay, gradients clipped;
    seeded, and the global random state is left as it was. Only the encoder's weights get
    gradients (the generator's ``.grad`` stay untouched). :func:`encoder_training` is the same
    one step at a time.
    """
    work = encoder_training(generator, labels, steps=steps, batch_size=batch_size, lr=lr,
                            image_weight=image_weight, width=width, seed=seed)
    bar = Progress(steps, "encoder", "steps", count="step {done}/{total}", rate_unit="steps/s",
                   bar_unit="step") if progress else None

    try:
        return run_steps(work, bar)
    finally:
        if bar is not None:
            bar.close()


@torch.enable_grad()  # per step (a generator function): within a caller's no_grad() as well
def encoder_training(generator: nn.Module, labels: LabelSpec, *, steps: int = DEFAULT_ENCODER_STEPS,
                     batch_size: int = 32, lr: float = 1e-3, image_weight: float = 0.0,
                     width: int = 32, seed: int = 0) -> Generator[float, None, Encoder]:
    """:func:`train_encoder` as a Python generator: each ``next()`` does one training step and
    yields its loss; the return value (``StopIteration.value``, or ``run_steps``) is the
    trained encoder in eval mode. For a caller that interleaves the training with other work
    (the web page's worker serves images between steps)."""
    if steps < 1:
        raise UserError(f"--encoder-steps must be at least 1, got {steps}")
    device = next(generator.parameters()).device
    d, r = int(generator.latent_dim), int(generator.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = Encoder(d, r, width).to(device)
    params = list(enc.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    gen = torch.Generator().manual_seed(seed)
    enc.train()
    for i in range(steps):
        z = torch.randn(batch_size, d, generator=gen)
        c = labels.draw(batch_size, seed=seed * 1_000_003 + i)
        x = to_float(generate(generator, z, c, batch_size=batch_size).clone()).to(device)
        z, c = z.to(device), c.to(device)
        guess = enc(x)
        loss = F.mse_loss(guess, z)
        if image_weight > 0:
            loss = loss + image_weight * F.mse_loss(generator(guess, c), x)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        nn.utils.clip_grad_norm_(params, 10.0)  # a bad first steps' spike must not blow it up
        opt.step()
        sched.step()
        yield float(loss.detach())
    return enc.eval()

def encoder_settings(lg: LoadedGenerator, *, steps: int = DEFAULT_ENCODER_STEPS, batch_size: int = 32,
                     image_weight: float = 0.0, width: int = 32, seed: int = 0) -> dict[str, Any]:
    """What a cached encoder must have been trained for to be used for ``lg``: the encoder's
    config, the training settings, the checkpoint step and the generator's fingerprint."""
    g = lg.generator
    training = {"steps": int(steps), "batch_size": int(batch_size), "image_weight": float(image_weight),
                "seed": int(seed)}
    return {"config": {"latent_dim": int(g.latent_dim), "resolution": int(g.resolution),
                       "width": int(width), "max_width": 256},
            "training": training, "checkpoint_step": int(lg.step), "generator": generator_fingerprint(g)}


def cached_encoder(lg: LoadedGenerator, **settings: Any) -> tuple[Encoder | None, str]:
    """(the encoder cached in :func:`encoder_path` when it was trained for ``lg`` with these
    :func:`encoder_settings`, ''), or (None, why not). Only reads: nothing is trained or written
    (for a caller that must leave the run folder alone, such as ``facegan serve``)."""
    path = encoder_path(lg)
    if not path.is_file():
        return None, "none cached yet"
    return _read_encoder(path, encoder_settings(lg, **settings), next(lg.generator.parameters()).device)


def encoder_for(lg: LoadedGenerator, *, steps: int = DEFAULT_ENCODER_STEPS, batch_size: int = 32,
                image_weight: float = 0.0, width: int = 32, seed: int = 0, retrain: bool = False,
                progress: bool = True) -> tuple[Encoder, bool]:
    """The run's encoder and whether it was trained by this call (else read from the cache).

    The cache, :func:`encoder_path` (``RUN/encoder.pt``), holds only tensors and plain values
    (read with ``torch.load(weights_only=True)``): the state dict, the encoder's config, the
    training settings, the checkpoint step and a fingerprint of the generator's weights (so
    EMA and raw weights, or another checkpoint, count as different). It is trained again (and
    replaced, atomically) when any of those differ or the file is unreadable, saying why; a
    folder that takes no files only loses the cache (a warning). :func:`cached_encoder` only
    reads it.
    """
    path = encoder_path(lg)
    settings = {"steps": steps, "batch_size": batch_size, "image_weight": image_weight,
                "width": width, "seed": seed}
    why = "asked to"
    if not retrain:
        enc, why = cached_encoder(lg, **settings)
        if enc is not None:
            if progress:
                print(f"encoder: read {path} (trained for step {lg.step})", file=sys.stderr, flush=True)
            return enc, False
    if progress:
        print(f"encoder: training it for step {lg.step} on the generator's samples ({steps} steps "
              f"of {batch_size}; {why}); cached in {path}", file=sys.stderr, flush=True)
    enc = train_encoder(lg.generator, lg.labels, steps=steps, batch_size=batch_size,
                        image_weight=image_weight, width=width, seed=seed, progress=progress)
    state = {"format": ENCODER_FORMAT, "version": ENCODER_VERSION, **encoder_settings(lg, **settings),
             "state": {k: v.detach().cpu() for k, v in enc.state_dict().items()}}
    try:
        with reporting_write_errors(path):
            atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (UserError, OSError) as e:
        warnings.warn(f"facegan: could not cache the encoder in {path} ({e}); it is trained again "
                      "next time", stacklevel=2)
    return enc, True


def _read_encoder(path: Path, want: dict[str, Any], device: torch.device) -> tuple[Encoder | None, str]:
    """(the cached encoder, '') when it matches ``want`` exactly, else (None, why not)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if (not isinstance(ckpt, dict) or ckpt.get("format") != ENCODER_FORMAT
                or ckpt.get("version") != ENCODER_VERSION):
            return None, f"{path.name} is not a facegan encoder of this version"
        if ckpt.get("checkpoint_step") != want["checkpoint_step"]:
            return None, f"the cached one is for step {ckpt.get('checkpoint_step')}"
        for key, what in (("generator", "other generator weights"), ("config", "another shape"),
                          ("training", "other training settings")):
            if ckpt.get(key) != want[key]:
                return None, f"the cached one is for {what}"
        cfg = ckpt["config"]
        enc = Encoder(int(cfg["latent_dim"]), int(cfg["resolution"]), int(cfg["width"]),
                      int(cfg["max_width"]))
        enc.load_state_dict(ckpt["state"])
    except Exception:  # untrusted or damaged file: train again and replace it
        return None, f"{path.name} is unreadable"
    return enc.to(device).eval(), ""
