"""The face template a run's photos are aligned to: the mean landmarks of its training crops,
kept in the run folder, or CelebA's framing as a stand-in."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import DataConfig
from ..data.transforms import CELEBA_SIZE, crop_box
from ..errors import UserError
from ..files import atomic_write_text, reporting_write_errors
from ..sampling import LoadedGenerator

TEMPLATE_FILE = "face_template.json"
TEMPLATE_IMAGES = 64  # training crops whose mean landmarks make the template
# MTCNN's five landmarks (eyes, nose, mouth corners; facegan.align's order) averaged over the
# first 64 of CelebA's aligned images, as fractions of their 178 x 218 frame: where a face sits
# in CelebA's framing, for a run whose own training images are not at hand.
CELEBA_LANDMARKS = ((0.392, 0.514), (0.611, 0.513), (0.501, 0.625), (0.405, 0.707), (0.600, 0.705))


def face_template_path(lg: LoadedGenerator) -> Path:
    """RUN/face_template.json for a run; beside the checkpoint for a checkpoint outside a run."""
    return (lg.run_dir or lg.checkpoint.parent) / TEMPLATE_FILE


def read_face_template(lg: LoadedGenerator) -> np.ndarray | None:
    """The run's kept template, float (5, 2) in pixels of its R x R training crops, or None
    when there is none for this resolution (or the file is damaged). Only reads."""
    path = face_template_path(lg)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("resolution") != lg.config.data.resolution:
            return None
        return np.asarray(saved["landmarks"], dtype=np.float64).reshape(5, 2)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged: computed again by the caller


def template_images(lg: LoadedGenerator) -> Any:
    """The first :data:`TEMPLATE_IMAGES` training crops of the run, uint8 (N, 3, R, R) (unflipped),
    whose mean landmarks make its face template. UserError when the run's training data cannot
    be read on this machine."""
    from ..data import load_dataset

    cfg = replace(lg.config.data, max_images=TEMPLATE_IMAGES, hflip=False)
    try:
        return load_dataset(cfg, progress=False).images
    except UserError as e:
        raise UserError(f"cannot build the face template from the run's training data ({e}); "
                        "use --no-align to take photos as they are") from None


def celeba_face_template(data_cfg: DataConfig) -> np.ndarray:
    """A stand-in template, float (5, 2) in pixels of the R x R crop: :data:`CELEBA_LANDMARKS`
    cut by the run's crop ('auto' taken as CelebA's face box) and scaled to R, for a run whose
    training images are not at hand (or show no face). Right for a run trained on CelebA; for
    other data the run's own template (:func:`face_aligner`) frames photos better."""
    crop = "celeba" if data_cfg.crop == "auto" else data_cfg.crop
    w, h = CELEBA_SIZE
    left, top, right, bottom = crop_box(crop, w, h)
    r = float(data_cfg.resolution)
    pts = np.asarray(CELEBA_LANDMARKS, dtype=np.float64) * (w, h)
    return (pts - (left, top)) * (r / (right - left), r / (bottom - top))


def face_aligner(lg: LoadedGenerator, *, progress: bool = True) -> Callable[[Image.Image], Image.Image]:
    """A PIL -> PIL aligner for ``align=``: each photo's largest face (MTCNN landmarks,
    :mod:`facegan.align`) warped by a similarity onto the run's template, at the run's
    resolution, so it is framed as the training crops are.

    The template is the mean of the landmarks found in the first :data:`TEMPLATE_IMAGES`
    training crops, computed once and kept in ``RUN/face_template.json`` (beside the checkpoint
    outside a run); computing it needs the training data (``data.path`` of the run).
    """
    from ..align import align_faces, template_from_images

    path = face_template_path(lg)
    res = lg.config.data.resolution
    template = read_face_template(lg)
    if template is None:
        if progress:
            print(f"face template: landmarks of {TEMPLATE_IMAGES} training images of "
                  f"{lg.config.data.path}, once (kept in {path})", file=sys.stderr)
        images = template_images(lg)
        template = template_from_images(images)
        with reporting_write_errors(path):
            atomic_write_text(path, json.dumps({"resolution": res, "images": len(images),
                                                "landmarks": np.round(template, 3).tolist()}) + "\n")

    def aligner(im: Image.Image) -> Image.Image:
        return align_faces(im, template, res)[0]

    return aligner
