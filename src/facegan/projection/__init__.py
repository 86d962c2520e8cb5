"""GAN inversion: put a real photo into a trained generator's latent space, then edit or morph it.

``project(run, photos)`` finds, for each photo, a latent ``z`` (latent_dim,) whose image
``G(z, c)`` looks like the photo as the run's training data would have shown it:

1. **Preprocess** the photo exactly as the training images were (:func:`load_photo`: the
   run's crop and size, bicubic; :func:`preprocess` for a PIL image in hand). Face alignment is
   a hook: ``align``, a callable PIL -> PIL returning the face framed as the training crop
   frames faces (default None: the photo as it is, cut by the run's crop as training images
   were).
2. **Guess** ``z`` with an encoder (:class:`Encoder`, a small strided-conv net image -> z),
   trained once per run on the generator's own samples (:func:`encoder_for`): MSE between
   ``E(G(z, c))`` and ``z`` (optionally plus an image reconstruction loss
   ``|G(E(x), c) - x|^2``, :func:`train_encoder`). It is cached in ``RUN/encoder.pt`` (read
   with ``weights_only``) with the checkpoint step it was trained for, and trained again when
   that step (or the generator's weights, or the training settings) differ.
3. **Optimise** ``z`` from the guess with Adam (:func:`optimise_latent`): pixel MSE at the
   model's resolution + a feature loss (a :class:`FeatureNet`, :func:`load_features`: the
   run's critic, the FID Inception's early blocks, the attribute classifier, or none) + a
   prior term keeping ``z`` in the band of ``|z|^2 / D`` where the generator's training
   latents were (:func:`prior_penalty`; the guess is first scaled into it, :func:`into_band`).

Each :class:`Projection` carries the latent, the images (photo, crop, projection) and PSNR,
SSIM and feature distance; :func:`save_projection` writes ``NAME.latent.npy``,
``NAME.crop.png``, ``NAME.png`` and ``NAME.json``. A projected latent edits and morphs like a
sampled one (:func:`edit_latent_images`, :func:`morph_latent_images`; ``facegan edit
--latent``, ``facegan morph --from A --to B``); given the crop (:func:`latent_photo`), they
keep the photo's own detail, what the projection missed (:func:`keep_detail`), so an edit
at strength 0 is the photo itself.

A conditional run projects with the labels the user gives (``--class`` / ``--attr``,
:func:`facegan.labels.parse_condition`); they are required, and saved in ``NAME.json``.

For a caller that must interleave the work with other work and leave the run folder alone
(``facegan serve``'s page): :func:`encoder_training`, :func:`latent_optimisation` and
:func:`projection_steps` do one step per ``next()`` (:func:`run_steps` runs one to its end);
:func:`cached_encoder` and :func:`read_face_template` only read the run's caches;
:func:`template_images` and :func:`celeba_face_template` give a template's inputs or a
stand-in without writing; :func:`decode_photo` and :func:`sniff_photo` check a photo's bytes
in memory.

The parts, one module each: :mod:`.photos` (reading, checking and preprocessing a photo),
:mod:`.template` (the face template alignment aims at), :mod:`.encoder` (the guess),
:mod:`.features` (the feature loss's networks), :mod:`.optimise` (the latent's optimisation
and its prior), :mod:`.scores` (PSNR, SSIM), :mod:`.inversion` (a photo's whole projection and
its files) and :mod:`.latents` (a projected latent read back). Everything is importable from
``facegan.projection`` itself.
"""

from __future__ import annotations

from ..directions import edit_latent_images
from ..progress import run_steps
from ..sampling import keep_detail, morph_latent_images, photo_detail
from .encoder import (
    DEFAULT_ENCODER_STEPS,
    ENCODER_FILE,
    ENCODER_FORMAT,
    ENCODER_VERSION,
    Encoder,
    cached_encoder,
    encoder_for,
    encoder_path,
    encoder_settings,
    encoder_training,
    generator_fingerprint,
    train_encoder,
)
from .features import (
    DEFAULT_FEATURES,
    FEATURES,
    INCEPTION_SIZE,
    ClassifierFeatures,
    CriticFeatures,
    FeatureNet,
    InceptionFeatures,
    load_critic,
    load_features,
)
from .inversion import (
    Projection,
    json_number,
    project,
    projection_steps,
    save_projection,
)
from .latents import (
    latent_labels,
    latent_photo,
    latent_source_note,
    load_latent,
)
from .optimise import (
    DEFAULT_FEATURE_WEIGHT,
    DEFAULT_LR,
    DEFAULT_PRIOR_WEIGHT,
    DEFAULT_PRIOR_WIDTH,
    DEFAULT_STEPS,
    into_band,
    latent_optimisation,
    optimise_latent,
    prior_penalty,
)
from .photos import (
    FORMAT_NAMES,
    MAX_PHOTO_BYTES,
    MAX_PHOTO_PIXELS,
    Photo,
    PhotoError,
    decode_photo,
    fit_photo,
    load_photo,
    output_names,
    photo_crop,
    preprocess,
    read_photo,
    sniff_photo,
)
from .scores import (
    psnr,
    ssim,
)
from .template import (
    CELEBA_LANDMARKS,
    TEMPLATE_FILE,
    TEMPLATE_IMAGES,
    celeba_face_template,
    face_aligner,
    face_template_path,
    read_face_template,
    template_images,
)

__all__ = [
    "CELEBA_LANDMARKS",
    "ClassifierFeatures",
    "CriticFeatures",
    "DEFAULT_ENCODER_STEPS",
    "DEFAULT_FEATURES",
    "DEFAULT_FEATURE_WEIGHT",
    "DEFAULT_LR",
    "DEFAULT_PRIOR_WEIGHT",
    "DEFAULT_PRIOR_WIDTH",
    "DEFAULT_STEPS",
    "ENCODER_FILE",
    "ENCODER_FORMAT",
    "ENCODER_VERSION",
    "Encoder",
    "FEATURES",
    "FORMAT_NAMES",
    "FeatureNet",
    "INCEPTION_SIZE",
    "InceptionFeatures",
    "MAX_PHOTO_BYTES",
    "MAX_PHOTO_PIXELS",
    "Photo",
    "PhotoError",
    "Projection",
    "TEMPLATE_FILE",
    "TEMPLATE_IMAGES",
    "cached_encoder",
    "celeba_face_template",
    "decode_photo",
    "edit_latent_images",
    "encoder_for",
    "encoder_path",
    "encoder_settings",
    "encoder_training",
    "face_aligner",
    "face_template_path",
    "fit_photo",
    "generator_fingerprint",
    "into_band",
    "json_number",
    "keep_detail",
    "latent_labels",
    "latent_optimisation",
    "latent_photo",
    "latent_source_note",
    "load_critic",
    "load_features",
    "load_latent",
    "load_photo",
    "morph_latent_images",
    "optimise_latent",
    "output_names",
    "photo_crop",
    "photo_detail",
    "preprocess",
    "prior_penalty",
    "project",
    "projection_steps",
    "psnr",
    "read_face_template",
    "read_photo",
    "run_steps",
    "save_projection",
    "sniff_photo",
    "ssim",
    "template_images",
    "train_encoder",
]
