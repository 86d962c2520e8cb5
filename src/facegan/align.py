"""Face alignment: bring a user's photo to the framing of a run's training images.

    faces = find_faces(photo, name="me.jpg")                 # the largest face (all_faces=True: all)
    crop = align(photo, faces[0].landmarks, template, 64)    # 64 x 64, framed like the training crop

The detector is MTCNN from facenet-pytorch (``pip install 'facegan[align]'``): its three small
networks' weights (pnet.pt, rnet.pt, onet.pt, state dicts, MIT) ship inside that wheel, so
nothing is downloaded at run time. It gives a box, a score and five landmarks per face, in this
order: left eye, right eye, nose, left mouth corner, right mouth corner ("left" is the image's
left). The library is imported inside the functions that need it, so facegan imports without it.

A template is the mean of those five landmarks over a run's own training images, in the pixel
coordinates of the training crop (:func:`template_from_images`); the caller computes it once and
keeps it. :func:`align` maps a photo's landmarks onto it with the least-squares similarity
(rotation, one scale, shift; never a mirror image) and resamples the photo with Pillow.

Coordinates are continuous pixel coordinates, as Pillow's transforms use: pixel (i, j) covers
[i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5). The caller applies EXIF rotation
(``ImageOps.exif_transpose``) before detection if the photo carries one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import UserError

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
MIN_SCORE = 0.9
# Detection runs on a copy whose longer side lies in this range: a phone photo is shrunk (MTCNN's
# time grows with the pixel count) and a small training crop (64 px) enlarged, since MTCNN's
# smallest face is 20 px and its landmarks are coarse on tiny faces. Coordinates are scaled back.
_DETECT_SIDE = (256, 1024)
# The second look (refine=True): each face is warped upright into a 256 px frame with these
# landmarks (a frontal face, as fractions of the frame) and detected again. MTCNN's landmarks lean
# with the head; on an upright face of one fixed size that lean is the same for every photo. On
# CelebA's first ten faces turned by +-10 degrees it cut the mean error of the recovered angle
# from 1.6 to 0.6 degrees (worst 4.9 to 2.2) and the worst landmark error from 11 to 7 px.
_CANONICAL = np.array([[0.405, 0.477], [0.594, 0.476], [0.5, 0.584], [0.423, 0.695], [0.579, 0.694]]) * 256


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: box (left, top, right, bottom), landmarks (5, 2) as x, y, and score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        l, t, r, b = self.box
        return max(r - l, 0.0) * max(b - t, 0.0)


def available() -> bool:
    """Whether facenet-pytorch (the detector) is installed; nothing is imported to find out."""
    import importlib.util

    return importlib.util.find_spec("facenet_pytorch") is not None


@functools.lru_cache(maxsize=1)
def _detector() -> Any:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as e:
        raise UserError("face alignment needs facenet-pytorch, which is not installed: pip install "
                        "'facegan[align]', or use --no-align to take the image as it is") from e
    # keep_all: every face; post_process only concerns MTCNN's own crops, which are not used.
    return MTCNN(keep_all=True, post_process=False, device=torch.device("cpu")).eval()


def _as_pil(image: Any) -> Image.Image:
    """A PIL image from a PIL image, an H x W x 3 uint8 array, or a 3 x H x W uint8 array/tensor."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8))).convert("RGB")


def detect_faces(image: Image.Image, *, min_score: float = MIN_SCORE, refine: bool = True) -> list[Face]:
    """Every face MTCNN finds with at least ``min_score``, largest box first; [] when there is none.

    ``refine`` takes a second look at each face, upright and at one size, for steadier landmarks
    (one more MTCNN pass per face); box and score stay those of the first look.
    """
    image = _as_pil(image)
    faces = _detect(image, min_score)
    if refine:
        faces = [Face(f.box, _refine(image, f.landmarks), f.score) for f in faces]
    return faces


def _refine(image: Image.Image, landmarks: np.ndarray) -> np.ndarray:
    upright, to_image = _warp(image, landmarks, _CANONICAL, (256, 256))
    # The face meant is the one whose landmarks lie where they were put; none near: keep the first look.
    near = [f for f in _detect(upright, 0.5)
            if np.linalg.norm(f.landmarks.mean(0) - _CANONICAL.mean(0)) < 0.1 * 256]
    if not near:
        return landmarks
    best = min(near, key=lambda f: np.abs(f.landmarks - _CANONICAL).sum())
    return best.landmarks @ to_image[:, :2].T + to_image[:, 2]


def _detect(image: Image.Image, min_score: float) -> list[Face]:
    w, h = image.size
    lo, hi = _DETECT_SIDE
    k = min(max(1.0, lo / max(w, h)), hi / max(w, h))
    small = image if k == 1.0 else image.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BICUBIC)
    sx, sy = small.width / w, small.height / h
    with torch.no_grad():
        boxes, probs, points = _detector().detect(small, landmarks=True)
    if boxes is None:
        return []
    faces = [Face(box=(float(b[0] / sx), float(b[1] / sy), float(b[2] / sx), float(b[3] / sy)),
                  landmarks=np.asarray(p, dtype=np.float64) / (sx, sy), score=float(s))
             for b, s, p in zip(boxes, probs, points) if s is not None and s >= min_score]
    return sorted(faces, key=lambda f: f.area, reverse=True)


class NoFaceFound(UserError):
    """A photo shows no face: the one-line error names ``name`` (the photo's path, for the user)."""

    def __init__(self, name: str = "the photo"):
        super().__init__(f"no face found in {name}; give a photo with a frontal face, "
                         "or use --no-align to take the image as it is")


def find_faces(image: Image.Image, *, name: str = "the photo", all_faces: bool = False,
               min_score: float = MIN_SCORE) -> list[Face]:
    """The largest face of ``image`` as a one-item list (``all_faces``: every face, largest first).

    No face is a one-line :class:`UserError` naming ``name`` (the photo's path, for the user).
    """
    faces = detect_faces(image, min_score=min_score)
    if not faces:
        raise NoFaceFound(name)
    return faces if all_faces else faces[:1]


def estimate_transform(landmarks: Any, template: Any) -> np.ndarray:
    """The 2 x 3 similarity [s R | t] that maps ``landmarks`` onto ``template`` in least squares.

    Umeyama's closed form: rotation, one scale and a shift, with the rotation kept proper (a
    mirror image is never the answer). Both are (N, 2) arrays of x, y with N >= 2 matching rows.
    """
    src, dst = np.asarray(landmarks, dtype=np.float64), np.asarray(template, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"landmarks {src.shape} and template {dst.shape} must both be (N, 2), N >= 2")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("the landmarks are all at one point")
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    e = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e) / var_s)
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def _invert(m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -a @ m[:, 2:]])


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def align(image: Image.Image, landmarks: Any, template: Any, size: int | tuple[int, int]) -> Image.Image:
    """``image`` resampled so that ``landmarks`` land on ``template``: a ``size`` RGB image.

    ``size`` (an int for a square, or (width, height)) is the frame the template's coordinates
    are in, the training crop's. Bicubic; where the frame reaches past the photo it is black.
    """
    return _warp(_as_pil(image), landmarks, template, _size(size))[0]


def _warp(image: Image.Image, landmarks: Any, template: Any,
          size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """The aligned image, and the 2 x 3 matrix from its coordinates back to ``image``'s.

    Pillow's affine transform does not antialias, so a shrink by more than 2x first resizes the
    photo with Pillow's (antialiased) resize, leaving at most 2x to the affine step.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    m = estimate_transform(landmarks, template)
    kx = ky = 1.0
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        w, h = image.size
        image = image.resize((max(1, round(w * 2 * scale)), max(1, round(h * 2 * scale))), Image.BICUBIC)
        kx, ky = image.width / w, image.height / h
        m = estimate_transform(landmarks * (kx, ky), template)
    inv = _invert(m)
    out = image.transform(size, Image.Transform.AFFINE, data=tuple(inv.reshape(-1)),
                          resample=Image.Resampling.BICUBIC)
    return out, inv / np.array([[kx], [ky]])


def align_faces(image: Image.Image, template: Any, size: int | tuple[int, int], *, name: str = "the photo",
                all_faces: bool = False) -> list[Image.Image]:
    """Find the largest face (``all_faces``: every face) and align each to ``template``; see :func:`align`."""
    image = _as_pil(image)
    return [align(image, f.landmarks, template, size)
            for f in find_faces(image, name=name, all_faces=all_faces)]


def largest_face_landmarks(image: Any, *, min_score: float = MIN_SCORE) -> np.ndarray | None:
    """The (5, 2) landmarks of the largest face in ``image`` (as :func:`template_from_images`
    takes them), or None when it shows none: one image of a template, for a caller that
    builds it one image at a time."""
    faces = detect_faces(_as_pil(image), min_score=min_score)
    return faces[0].landmarks if faces else None


def template_from_images(images: Iterable[Any], *, min_score: float = MIN_SCORE) -> np.ndarray:
    """The mean (5, 2) landmarks of the largest face in each image, in the images' pixel coordinates.

    ``images`` are a run's training crops, all of one size: PIL images, H x W x 3 uint8 arrays or
    3 x H x W uint8 arrays/tensors (a slice of ``ImageSet.images``). Images without a face are
    left out; none with a face at all is a :class:`UserError`.
    """
    found, size, n = [], None, 0
    for image in images:
        pil = _as_pil(image)
        if size is None:
            size = pil.size
        elif pil.size != size:
            raise ValueError(f"the images differ in size: {size} and {pil.size}")
        n += 1
        landmarks = largest_face_landmarks(pil, min_score=min_score)
        if landmarks is not None:
            found.append(landmarks)
    if not found:
        raise UserError(f"no face found in any of the {n} training images, so there is no template "
                        "to align photos to; use --no-align to take photos as they are")
    return np.mean(found, axis=0)
