"""The page's projector: a photo brought to the page becomes a latent of the served model.

What ``facegan project`` does for one photo (:mod:`facegan.projection`: align the face to the
run's template, guess its latent with the run's encoder, optimise it), as work the batcher's
worker runs one step at a time between image batches (:class:`~.engine.Task`), never in a
request's thread, and without writing anything anywhere:

- The encoder: ``RUN/encoder.pt`` when it was trained for this checkpoint with these settings
  (:func:`facegan.projection.cached_encoder`, which only reads; ``facegan project`` with its
  default ``--encoder-steps`` writes a matching one). Else it is trained in memory by the
  worker on first need, and kept only in memory: serve only reads the run folder, which a
  trainer may hold. Meanwhile a photo is answered :class:`Preparing` (503, "preparing the
  projector, about N s", with a Retry-After; the page tries again by itself).
- The face template, for aligning: ``RUN/face_template.json`` when there; else computed in
  memory from the run's first training images (MTCNN on each, in the worker) when the run's
  data is on this machine; else CelebA's framing
  (:func:`facegan.projection.celeba_face_template`), which every answer then says.
- The feature loss: the run's critic, as ``facegan project --features critic``; none (pixels
  and the prior) when the checkpoint holds no critic.

Nothing of a photo is kept: its task holds the decoded image until the answer, which carries
the latent (base64url float32, :func:`.params.encode_latent`), the labels, PSNR and SSIM, and
the crop the generator was asked to match and the projection as PNG data URLs.
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import align as face_align
from .. import projection
from ..errors import UserError
from ..sampling import generate
from .engine import Batcher, Model, ModelHolder, Overloaded, Task, png_bytes, whole_seconds
from .params import LATENT_MAX, BadRequest, encode_latent

# Optimisation steps per photo on the page. Fewer than `facegan project`'s 300: the person
# waits for the answer, and past about a hundred steps the PSNR rises by tenths of a dB.
PAGE_STEPS = 100
PREPARING_RETRY_S = 5  # the page asks again at least this often, to show the progress


class Preparing(Overloaded):
    """The projector is being prepared (answered 503 with the time left and a Retry-After)."""


class ProjectorFailed(Exception):
    """Preparing the projector failed (answered 500 with the reason)."""


PAGE_FEATURES = ("critic", "none")


@dataclass(frozen=True)
class ProjectorSettings:
    """How the page projects: ``steps`` optimisation steps per photo; ``encoder_steps``, the
    encoder's training (``facegan project``'s default, so its cached RUN/encoder.pt is used);
    ``features``: 'critic' or 'none' (the feature loss, as ``facegan project --features``; the
    page never loads the Inception network or the attribute classifier, which are evaluation's)."""

    steps: int = PAGE_STEPS
    encoder_steps: int = projection.DEFAULT_ENCODER_STEPS
    features: str = "critic"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise UserError(f"--project-steps must be at least 0, got {self.steps}")
        if self.encoder_steps < 1:
            raise UserError(f"encoder steps must be at least 1, got {self.encoder_steps}")
        if self.features not in PAGE_FEATURES:
            raise UserError(f"the page projects with features {' or '.join(PAGE_FEATURES)}, not "
                            f"'{self.features}'")


@dataclass(frozen=True)
class Prepared:
    """What projecting a photo needs for one model version: the encoder, the critic's
    features (None: pixels only), the template float (5, 2) (None: not prepared, or no
    aligner installed) and notes for the answer."""

    version: int
    encoder: projection.Encoder
    features: projection.CriticFeatures | None
    template: np.ndarray | None
    notes: tuple[str, ...] = ()
    encoder_from: str = ""  # read from RUN/encoder.pt, or trained in memory


@dataclass
class _State:
    """The projector of one model version, as far as it is prepared."""

    version: int
    encoder: projection.Encoder | None = None
    encoder_from: str = ""
    features: projection.CriticFeatures | None = None
    template: np.ndarray | None = None
    notes: dict[str, str] = field(default_factory=dict)
    encoder_task: Task | None = None
    template_task: Task | None = None
    failed: str | None = None


def _units(kind: str, work: Generator[Any, None, Any]) -> Generator[str, None, Any]:
    """A step-at-a-time generator of :mod:`facegan.projection` (yielding losses) as task
    units of ``kind``; returns what it returns."""
    while True:
        try:
            next(work)
        except StopIteration as stop:
            return stop.value
        yield kind


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class Projector:
    """Prepares (on first need) and runs the projection of photos for the served model; one
    per server. Its state follows the model: a reloaded checkpoint is prepared again."""

    def __init__(self, holder: ModelHolder, batcher: Batcher,
                 settings: ProjectorSettings | None = None, *, align_available: bool | None = None):
        self.holder, self.batcher = holder, batcher
        self.settings = settings or ProjectorSettings()
        self.align_available = face_align.available() if align_available is None else align_available
        self._lock = threading.Lock()
        self._state: _State | None = None

    # ---- preparing ----
    def ready(self, model: Model, align: bool) -> Prepared:
        """What projecting a photo for ``model`` needs (with the template when ``align``).
        Starts preparing what is missing (the first call for a model reads the cached
        encoder, the template file and the critic: call it off the event loop) and raises
        :class:`Preparing` until that is done; :class:`ProjectorFailed` if it failed."""
        with self._lock:
            st = self._state_for(model)
            self._collect(st, model)
            if st.failed:
                raise ProjectorFailed(st.failed)
            if st.encoder is None and st.encoder_task is None:
                st.encoder_task = self.batcher.submit_task(
                    Task(self._train_encoder(model), {"encoder_step": self.settings.encoder_steps}),
                    admit=False)
            if align and st.template is None and st.template_task is None:
                plan = {"setup": 1, "template_image": projection.TEMPLATE_IMAGES}
                st.template_task = self.batcher.submit_task(Task(self._find_template(model, plan), plan),
                                                            admit=False)
            waiting = [t for t in (st.encoder_task, st.template_task if align else None) if t is not None]
            if not waiting:
                notes = (st.notes.get("features"),) + ((st.notes.get("template"),) if align else ())
                return Prepared(st.version, st.encoder, st.features, st.template if align else None,
                                tuple(n for n in notes if n), st.encoder_from)
        left = max(self.batcher.until_done(t) for t in waiting)
        doing = []
        if st.encoder_task is not None:
            done, total = st.encoder_task.done.get("encoder_step", 0), st.encoder_task.plan["encoder_step"]
            doing.append(f"training its encoder on this model's faces, step {done} of {total}")
        if align and st.template_task is not None:
            t = st.template_task
            doing.append(f"finding the faces' framing in the run's training images, "
                         f"{t.done.get('template_image', 0)} of {t.plan['template_image']}")
        raise Preparing(f"preparing the projector ({'; '.join(doing)}), about {math.ceil(left)} s; "
                        "this happens once, and the page tries again by itself",
                        min(whole_seconds(left), PREPARING_RETRY_S))

    def status(self, model: Model) -> dict[str, Any]:
        """For /api/info: 'idle' (nothing prepared yet), 'preparing', 'ready' or 'failed', and
        the estimated seconds of one photo's projection. Reads without the lock (the event
        loop must not wait for a first :meth:`ready` reading files): a moment's staleness."""
        st = self._state
        pending = [] if st is None else [t for t in (st.encoder_task, st.template_task)
                                         if t is not None and not t.future.done()]
        if st is None or st.version != model.version:
            state = "idle"
        elif st.failed:
            state = "failed"
        elif pending:
            state = "preparing"
        else:
            state = "ready" if st.encoder is not None or st.encoder_task is not None else "idle"
        return {"state": state, "steps": self.settings.steps, "align_available": self.align_available,
                "seconds": round(self.batcher.task_cost(self.plan(self.align_available)), 1)}

    def _state_for(self, model: Model) -> _State:
        """This model's state, created (reading the cached encoder, the template file and the
        critic) when the model is new; the tasks of an older model are given up."""
        st = self._state
        if st is not None and st.version == model.version:
            return st
        if st is not None:
            for t in (st.encoder_task, st.template_task):
                if t is not None:
                    t.cancel()
        st = _State(model.version)
        lg = model.loaded
        st.encoder, why = projection.cached_encoder(lg, steps=self.settings.encoder_steps)
        # Until one is trained: why the cached one (if any) could not be used.
        st.encoder_from = "read from the run's encoder.pt" if st.encoder is not None else why
        if self.settings.features == "critic":
            try:
                st.features = projection.load_critic(lg)
            except UserError:
                st.notes["features"] = "the checkpoint holds no critic: projected on pixels only"
        st.template = projection.read_face_template(lg)
        self._state = st
        return st

    def _collect(self, st: _State, model: Model) -> None:
        """Take the results of preparing tasks that have ended (holding the lock)."""
        t = st.encoder_task
        if t is not None and t.future.done():
            st.encoder_task = None
            if t.future.cancelled() or t.future.exception() is not None:
                why = "stopped" if t.future.cancelled() else str(t.future.exception())
                st.failed = f"could not train the projector's encoder ({why}); restart facegan serve"
            else:
                st.encoder, st.encoder_from = t.future.result(), "trained in memory (not written)"
        t = st.template_task
        if t is not None and t.future.done():
            st.template_task = None
            if t.future.cancelled() or t.future.exception() is not None:
                why = "stopped" if t.future.cancelled() else str(t.future.exception())
                st.template = projection.celeba_face_template(model.loaded.config.data)
                st.notes["template"] = (f"the face template could not be computed ({why}): faces are "
                                        "framed as in CelebA's aligned images")
            else:
                st.template, note = t.future.result()
                if note:
                    st.notes["template"] = note

    def _train_encoder(self, model: Model) -> Generator[str, None, projection.Encoder]:
        return (yield from _units("encoder_step", projection.encoder_training(
            model.generator, model.labels, steps=self.settings.encoder_steps)))

    def _find_template(self, model: Model,
                       plan: dict[str, int]) -> Generator[str, None, tuple[np.ndarray, str | None]]:
        """(the run's template from its training images, None), computed in memory as
        ``facegan project`` computes it (without keeping it); (CelebA's framing, a note) when
        the images are not on this machine or show no face the detector finds."""
        lg = model.loaded
        try:
            images = projection.template_images(lg)
        except UserError:
            images = []
        # The task's plan changes in place (the dict keeps its keys), so estimates stay right.
        plan["template_image"] = len(images)
        yield "setup"
        found = []
        for img in images:
            landmarks = face_align.largest_face_landmarks(img)
            if landmarks is not None:
                found.append(landmarks)
            yield "template_image"
        if found:
            return np.mean(found, axis=0), None
        return projection.celeba_face_template(lg.config.data), (
            "the run's training images are not on this machine or show no face the detector "
            "finds: faces are framed as in CelebA's aligned images")

    # ---- projecting ----
    def plan(self, align: bool) -> dict[str, int]:
        """The units of one photo's projection."""
        return {"align" if align else "crop": 1, "project_step": self.settings.steps}

    def task(self, prep: Prepared, model: Model, photo: Image.Image, labels: torch.Tensor,
             align: bool, notes: tuple[str, ...] = ()) -> Task:
        """The projection of ``photo`` (decoded, RGB) with labels float (K,), as a task whose
        result is the answer (a dict, see :meth:`_project`)."""
        return Task(self._project(prep, model, photo, labels[None], align, notes), self.plan(align))

    def _project(self, prep: Prepared, model: Model, photo: Image.Image, c1: torch.Tensor, align: bool,
                 notes: tuple[str, ...]) -> Generator[str, None, dict[str, Any]]:
        lg, r = model.loaded, model.resolution
        aligner = None
        if align:
            def aligner(im: Image.Image) -> Image.Image:
                faces = face_align.detect_faces(im)
                if not faces:
                    raise BadRequest("no face found in the photo; send a photo with one clear, frontal "
                                     "face, or turn alignment off (align=0) to take the photo as it is")
                return face_align.align(im, faces[0].landmarks, prep.template, r)
        ph = projection.load_photo(photo, lg.config.data, align=aligner, name="photo")
        del photo
        yield "align" if align else "crop"
        g = model.generator
        result = yield from _units("project_step", projection.projection_steps(
            ph, g, prep.encoder, c1, steps=self.settings.steps, feats=prep.features))
        z, image = result.latent, result.image
        if float(z.abs().max()) > LATENT_MAX:
            # The image endpoints take latents within +-LATENT_MAX: answer one they take, and
            # the image it draws.
            z = z.clamp(-LATENT_MAX, LATENT_MAX)
            image = generate(g, z[None], c1)[0]
        return {
            "latent": encode_latent(z),
            "latent_dim": int(z.shape[0]),
            "labels": [float(v) for v in c1[0].tolist()],
            "label_names": list(model.labels.names),
            "psnr": projection.json_number(projection.psnr(image, ph.target)),
            "ssim": projection.ssim(image, ph.target),
            "guess_psnr": projection.json_number(result.guess_psnr),
            "aligned": align,
            "cropped_by": ph.crop,  # the crop applied ('center' after aligning)
            "notes": [*notes, *prep.notes],
            "crop": data_url(png_bytes(ph.target)),
            "projection": data_url(png_bytes(image)),
            "resolution": r,
            "steps": self.settings.steps,
            "features": "critic" if prep.features is not None else "none",
            "encoder": prep.encoder_from,
            "model_version": model.version,
        }
