"""Projecting photos: the encoder's guess, then the optimisation, with the scores; and saving
``NAME.latent.npy`` / ``NAME.crop.png`` / ``NAME.png`` / ``NAME.json``."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.transforms import to_float
from ..errors import UserError, check_whole
from ..files import atomic_write, atomic_write_text, reporting_write_errors
from ..labels import parse_condition
from ..progress import Progress, run_steps
from ..sampling import LoadedGenerator, generate, load_generator, make_grid, save_png
from .encoder import DEFAULT_ENCODER_STEPS, Encoder, encoder_for
from .features import DEFAULT_FEATURES, FEATURES, FeatureNet, load_features
from .optimise import (
    DEFAULT_FEATURE_WEIGHT,
    DEFAULT_LR,
    DEFAULT_PRIOR_WEIGHT,
    DEFAULT_STEPS,
    latent_optimisation,
)
from .photos import Photo, fit_photo, load_photo, output_names
from .scores import psnr, ssim


@dataclass
class Projection:
    """One projected photo.

    latent: float32 (latent_dim,). labels: float (K,) the labels it was projected with (K = 0
    unconditional). photo: uint8 (3, R, R), the whole photo fitted into R x R; target: uint8
    (3, R, R), the preprocessed crop; image: uint8 (3, R, R), the projection ``G(latent,
    labels)``; guess: uint8 (3, R, R), the encoder's guess before optimisation. psnr (dB) and
    ssim compare image with target; feature_distance: :meth:`FeatureNet.distance` of the
    two (None with ``features='none'``). info: the rest of NAME.json (steps, seconds, crop...).
    """

    name: str
    latent: torch.Tensor
    labels: torch.Tensor
    photo: torch.Tensor
    target: torch.Tensor
    image: torch.Tensor
    guess: torch.Tensor
    psnr: float
    ssim: float
    feature_distance: float | None
    guess_psnr: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """What ``NAME.json`` holds."""
        return {"name": self.name, "psnr": json_number(self.psnr), "ssim": self.ssim,
                "feature_distance": self.feature_distance, "guess_psnr": json_number(self.guess_psnr),
                "labels": [float(v) for v in self.labels.tolist()], **self.info}


def json_number(v: float) -> float | None:
    """``v``, or None for inf / nan (JSON has neither; PSNR of identical images is inf)."""
    return v if math.isfinite(v) else None


def _photo_list(photos: Any) -> list[str | os.PathLike | Image.Image]:
    """``photos`` as a list: one path or PIL image alone is a list of one (a str must not be
    taken for a sequence of one-letter photos); TypeError for what is neither."""
    if isinstance(photos, (str, os.PathLike, Image.Image)):
        photos = [photos]
    for p in photos if isinstance(photos, Sequence) else [photos]:
        if not isinstance(p, (str, os.PathLike, Image.Image)):
            raise TypeError(f"photos are image files (str or Path) or PIL images, one or a list of them; "
                            f"got a {type(p).__name__} (an image array: PIL.Image.fromarray(uint8 "
                            "(H, W, 3)) first)")
    return list(photos)


# The optimisation and the encoder's training differentiate through the generator: gradients
# on, also within a caller's torch.no_grad() or torch.inference_mode().
@torch.inference_mode(False)
@torch.enable_grad()
def project(generator: LoadedGenerator | str | os.PathLike,
            photos: str | os.PathLike | Image.Image | Sequence[str | os.PathLike | Image.Image], *,
            cls: str | int | None = None, attr: str | dict[str, int] | None = None,
            steps: int = DEFAULT_STEPS, features: str = DEFAULT_FEATURES,
            encoder_steps: int = DEFAULT_ENCODER_STEPS, encoder_image_weight: float = 0.0,
            seed: int = 0, lr: float = DEFAULT_LR,
            feature_weight: float = DEFAULT_FEATURE_WEIGHT, prior_weight: float = DEFAULT_PRIOR_WEIGHT,
            crop: str | None = None, align: Callable[[Image.Image], Image.Image] | None = None,
            device: str | torch.device = "auto", retrain_encoder: bool = False,
            progress: bool = True) -> list[Projection]:
    """Project ``photos`` (image files, ``~`` for the home folder, or PIL images; one alone or
    a list) into the latent space of ``generator`` (a :class:`~facegan.sampling.LoadedGenerator`
    loaded outside ``torch.inference_mode()``, or a run folder / checkpoint loaded with EMA
    weights on ``device``): one :class:`Projection` per photo, in order. Runs with gradients
    on, also when called within ``torch.no_grad()`` or ``torch.inference_mode()``.

    cls / attr: a conditional run's labels (``--class`` / ``--attr`` grammar, a class index or
    an attribute dict as :func:`~facegan.labels.parse_condition` takes; required for a
    conditional run; attributes not given are drawn with ``seed``). steps: optimisation steps
    per photo (0: the encoder's guess alone). features: the feature loss (:func:`load_features`):
    'critic' (the run's critic's stage activations), 'inception' (the FID Inception's early
    blocks), 'classifier' (the attribute classifier's stages; needs the run's labelled data)
    or 'none'. encoder_steps: training steps of the run's
    encoder when it is not cached (:func:`encoder_for`; ``encoder_image_weight``: its image
    loss, :func:`train_encoder`). crop: override the run's crop (see :func:`photo_crop`).
    align: a PIL -> PIL face aligner applied to each photo first (None: the photo as it is;
    see :func:`load_photo`).
    Every photo is read and checked before any work. progress: lines (or a bar on a terminal)
    on stderr for the encoder's training and the optimisation.
    """
    if features not in FEATURES:
        raise UserError(f"--features must be one of {', '.join(FEATURES)}, got '{features}'")
    steps = check_whole(steps, "steps", 0)
    encoder_steps = check_whole(encoder_steps, "encoder_steps", 1)
    photos = _photo_list(photos)
    if not photos:
        raise UserError("no photos to project; give one or more image files")
    if not isinstance(generator, (LoadedGenerator, str, os.PathLike)):
        raise TypeError(f"project takes a LoadedGenerator (facegan.load_generator) or a run folder / "
                        f"checkpoint path, got {type(generator).__name__}")
    lg = generator if isinstance(generator, LoadedGenerator) else load_generator(generator, device=device)
    spec, g = lg.labels, lg.generator
    if next(g.parameters()).is_inference():
        raise UserError("the generator was loaded inside torch.inference_mode(): its weights cannot "
                        "be differentiated through; load it outside (or give project the run folder)")
    if spec.conditional and cls is None and attr is None:
        what, how = (("classes", "--class NAME") if spec.kind == "class" else
                     ("attributes", f"--attr {spec.names[0]}=0|1,..."))
        raise UserError(f"this model is conditional ({what}: {', '.join(spec.names)}); say which "
                        f"labels the photos have with {how}")
    c1 = parse_condition(spec, cls, attr).labels(spec, 1, seed=seed)  # (1, K)
    loaded = [load_photo(p, lg.config.data, crop=crop, align=align, name=n)
              for p, n in zip(photos, output_names(photos))]
    feats = load_features(lg, features, progress=progress)
    t0 = time.perf_counter()
    enc, trained = encoder_for(lg, steps=encoder_steps, image_weight=encoder_image_weight, seed=seed,
                               retrain=retrain_encoder, progress=progress)
    # Which generator the latents belong to: edits and morphs read it back (latent_source_note).
    common = {"run": str(lg.run_dir.resolve()) if lg.run_dir else None,
              "checkpoint": str(lg.checkpoint.resolve()), "checkpoint_step": lg.step,
              "features": features, "steps": steps,
              "encoder": {"steps": encoder_steps, "trained_now": trained,
                          "seconds": round(time.perf_counter() - t0, 2)},
              "seed": seed, "label_names": list(spec.names)}
    bar = Progress(len(loaded) * steps, "projection", "steps", count="step {done}/{total}",
                   rate_unit="steps/s", bar_unit="step") if progress and steps else None
    out = []
    try:
        for ph in loaded:
            out.append(run_steps(projection_steps(ph, g, enc, c1, steps=steps, lr=lr, feats=feats,
                                                  feature_weight=feature_weight,
                                                  prior_weight=prior_weight, info=common), bar))
    finally:
        if bar is not None:
            bar.close()
    return out


def projection_steps(ph: Photo, g: nn.Module, enc: Encoder, c1: torch.Tensor, *,
                     steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                     feats: FeatureNet | None = None, feature_weight: float = DEFAULT_FEATURE_WEIGHT,
                     prior_weight: float = DEFAULT_PRIOR_WEIGHT,
                     info: dict[str, Any] | None = None) -> Generator[float, None, Projection]:
    """Project one :class:`Photo` (:func:`load_photo`) with a ready encoder ``enc`` and labels
    ``c1`` float (1, K), one optimisation step per ``next()`` (each yields the loss; the
    encoder's guess comes with the first, the final image and scores with the last); the
    return value is the :class:`Projection`. What :func:`project` does for each photo, for a
    caller that interleaves it with other work (the web page's worker). ``info``: extra
    entries for :attr:`Projection.info`."""
    device = next(g.parameters()).device
    r = int(g.resolution)
    target = to_float(ph.target)[None]
    t1 = time.perf_counter()
    with torch.no_grad():
        z0 = enc(target.to(device)).cpu()
    guess = generate(g, z0, c1)[0]
    t2 = time.perf_counter()
    z = z0
    if steps:
        z = yield from latent_optimisation(g, target, z0, c1, steps=steps, lr=lr, features=feats,
                                           feature_weight=feature_weight, prior_weight=prior_weight)
    t3 = time.perf_counter()
    image = generate(g, z, c1)[0]
    fd = None
    if feats is not None:
        with torch.no_grad():
            c = c1.to(device)
            fd = float(feats.distance(feats(to_float(image)[None].to(device), c),
                                               feats(target.to(device), c))[0])
    info = {"photo": Path(ph.source).name if ph.source else None, "crop": ph.crop, "resolution": r,
            **(info or {}), "seconds": {"encoder_guess": round(t2 - t1, 3),
                                        "optimisation": round(t3 - t2, 3)}}
    return Projection(ph.name, z[0].float(), c1[0].float(), fit_photo(ph.image, r), ph.target, image,
                      guess, psnr(image, ph.target), ssim(image, ph.target), fd,
                      psnr(guess, ph.target), info)


def save_projection(p: Projection, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``NAME.latent.npy`` (float32 (latent_dim,)), ``NAME.crop.png`` (the preprocessed
    crop alone, R x R: the photo whose detail edits and morphs keep, :func:`latent_photo`),
    ``NAME.png`` (photo fitted to R, the crop, the projection, side by side) and ``NAME.json``
    (:meth:`Projection.to_json`), each atomically, the json last. Returns the four paths."""
    out = Path(out_dir)
    crop = save_png(Image.fromarray(p.target.permute(1, 2, 0).numpy()), out / f"{p.name}.crop.png")
    lat = out / f"{p.name}.latent.npy"
    arr = p.latent.detach().cpu().numpy().astype(np.float32)

    def write_npy(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    with reporting_write_errors(lat):
        atomic_write(lat, write_npy)
    png = save_png(make_grid(torch.stack([p.photo, p.target, p.image]), nrow=3), out / f"{p.name}.png")
    js = out / f"{p.name}.json"
    with reporting_write_errors(js):
        atomic_write_text(js, json.dumps(p.to_json(), indent=1) + "\n")
    return [lat, crop, png, js]
