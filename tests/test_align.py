"""Face alignment (facegan.align): the similarity fit, the resampling, and MTCNN on real faces.

The transform tests need nothing but numpy and Pillow. The detector tests need facenet-pytorch
(facegan[align], part of facegan[dev], so CI runs them) and skip without it; the real-face ones
also need CelebA in ../shared/data.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from facegan import align as A
from facegan.errors import UserError

# Five landmarks roughly where CelebA's 64 px crop has them (eyes, nose, mouth corners).
TEMPLATE = np.array([[20.0, 30.0], [44.0, 30.0], [32.0, 44.0], [22.0, 54.0], [42.0, 54.0]])


def similarity(angle_deg: float, scale: float, shift: tuple[float, float],
               center: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2 x 3 matrix: rotate by angle and scale about center, then shift."""
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(center, dtype=np.float64)
    return np.hstack([r, (c - r @ c + np.asarray(shift))[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def angle_scale(m: np.ndarray) -> tuple[float, float]:
    return math.degrees(math.atan2(m[1, 0], m[0, 0])), math.hypot(m[0, 0], m[1, 0])


def warp(image: Image.Image, m: np.ndarray, size: tuple[int, int], fill=(0, 0, 0)) -> Image.Image:
    """``image`` moved by the similarity m (source -> output coordinates) onto a ``size`` canvas."""
    a = np.linalg.inv(m[:, :2])
    inv = np.hstack([a, -a @ m[:, 2:]])
    return image.transform(size, Image.Transform.AFFINE, data=tuple(inv.reshape(-1)),
                           resample=Image.Resampling.BICUBIC, fillcolor=fill)


# ---- the similarity fit ----------------------------------------------------------------------

@pytest.mark.parametrize("angle,scale,shift", [(17.0, 1.3, (12.0, -7.0)), (-40.0, 0.45, (-3.5, 20.0)),
                                               (0.0, 1.0, (0.0, 0.0)), (175.0, 2.0, (100.0, 50.0))])
def test_estimate_transform_recovers_a_known_similarity(angle, scale, shift):
    known = similarity(angle, scale, shift, center=(32, 40))
    rng = np.random.default_rng(0)
    photo = apply(known, TEMPLATE) + rng.normal(0, 0.05, TEMPLATE.shape)   # detector-like jitter
    m = A.estimate_transform(TEMPLATE, photo)
    assert m.shape == (2, 3)
    got_angle, got_scale = angle_scale(m)
    assert abs((got_angle - angle + 180) % 360 - 180) < 0.5
    assert got_scale == pytest.approx(scale, rel=0.01)
    assert np.abs(apply(m, TEMPLATE) - apply(known, TEMPLATE)).max() < 0.5
    # and the other way round: photo -> template is the inverse
    back = A.estimate_transform(photo, TEMPLATE)
    assert np.abs(apply(back, photo) - TEMPLATE).max() < 0.5


def test_estimate_transform_never_mirrors():
    mirrored = TEMPLATE * (-1, 1) + (64, 0)
    m = A.estimate_transform(TEMPLATE, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_estimate_transform_rejects_bad_input():
    with pytest.raises(ValueError):
        A.estimate_transform(TEMPLATE, TEMPLATE[:4])
    with pytest.raises(ValueError):
        A.estimate_transform(np.ones((5, 2)), TEMPLATE)


# ---- resampling --------------------------------------------------------------------------------

MARKERS = np.array([[30.0, 40.0], [98.0, 40.0], [64.0, 100.0]])   # in a 128 x 128 frame
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _marker_image(size=(128, 128)) -> Image.Image:
    im = Image.new("RGB", size, (0, 0, 0))
    d = ImageDraw.Draw(im)
    for (x, y), c in zip(MARKERS, COLOURS):
        d.ellipse((x - 5, y - 5, x + 4, y + 4), fill=c)   # pixels x-5..x+4: centre x
    return im


def _centroids(im: Image.Image) -> np.ndarray:
    """Each marker's centre: the mean pixel centre weighted by how much its colour dominates."""
    arr = np.asarray(im, dtype=np.float64)
    ys, xs = np.mgrid[:arr.shape[0], :arr.shape[1]] + 0.5
    out = []
    for ch in range(3):
        wgt = np.clip(arr[..., ch] - np.delete(arr, ch, axis=-1).max(-1), 0, None)
        out.append(((xs * wgt).sum() / wgt.sum(), (ys * wgt).sum() / wgt.sum()))
    return np.array(out)


@pytest.mark.parametrize("angle,scale,shift", [(12.0, 2.5, (60.0, 30.0)), (-25.0, 0.8, (10.0, 40.0)),
                                               (90.0, 1.0, (0.0, 0.0))])
def test_align_brings_markers_back(angle, scale, shift):
    template_img = _marker_image()
    assert np.abs(_centroids(template_img) - MARKERS).max() < 0.3
    known = similarity(angle, scale, shift, center=(64, 64))
    photo_size = (int(128 * scale) + 140, int(128 * scale) + 140)
    photo = warp(template_img, known, photo_size)
    photo_markers = apply(known, MARKERS)
    assert np.abs(_centroids(photo) - photo_markers).max() < 1.0   # the photo is what we think it is
    out = A.align(photo, photo_markers, MARKERS, 128)
    assert out.size == (128, 128) and out.mode == "RGB"
    assert np.abs(_centroids(out) - MARKERS).max() < 1.5


def test_align_size_can_be_a_rectangle():
    out = A.align(_marker_image(), MARKERS, MARKERS + (10, 20), (150, 170))
    assert out.size == (150, 170)
    assert np.abs(_centroids(out) - (MARKERS + (10, 20))).max() < 1.0


def test_facegan_align_imports_without_the_detector():
    code = "import sys, facegan.align; assert 'facenet_pytorch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_missing_detector_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    A._detector.cache_clear()
    try:
        with pytest.raises(UserError, match=r"facegan\[align\]") as e:
            A.detect_faces(Image.new("RGB", (64, 64)))
        assert "\n" not in str(e.value) and "--no-align" in str(e.value)
    finally:
        A._detector.cache_clear()


# ---- MTCNN on real faces (facegan[align]) --------------------------------------------------------

@pytest.fixture
def detector():
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is facegan[align]; CI installs it")


def _celeba(celeba_dir, i: int, upscale: int = 3) -> Image.Image:
    with Image.open(celeba_dir / "img_align_celeba" / f"{i:06d}.jpg") as im:
        im = im.convert("RGB")
        return im.resize((im.width * upscale, im.height * upscale), Image.BICUBIC)


def _photo(face: Image.Image, size=(480, 480), at=(100, 60)) -> Image.Image:
    canvas = Image.new("RGB", size, (118, 128, 138))
    canvas.paste(face, at)
    return canvas


def test_detector_recovers_a_known_rotation_shift_and_scale(detector, celeba_dir):
    base = _photo(_celeba(celeba_dir, 1))
    known = similarity(10.0, 1.2, (8.0, 8.0), center=(240, 240))
    moved = warp(base, known, base.size, fill=(118, 128, 138))

    (f0,) = A.find_faces(base, name="base")
    (f1,) = A.find_faces(moved, name="moved")
    assert f0.landmarks.shape == (5, 2) and f0.score > 0.95
    assert f0.landmarks[0, 0] < f0.landmarks[1, 0]                 # left eye left of right eye
    assert f0.landmarks[:2, 1].max() < f0.landmarks[2, 1] < f0.landmarks[3:, 1].min()

    # MTCNN's landmarks are good to a few pixels (here a face 270 px tall, eyes 60 px apart, and
    # blurred by the 3x enlargement); on CelebA's first ten faces turned by +-10 degrees this
    # recovered the angle within 1.8 degrees, the scale within 6% and the points within 7 px.
    m = A.estimate_transform(f0.landmarks, f1.landmarks)
    got_angle, got_scale = angle_scale(m)
    assert abs(got_angle - 10.0) < 2.5
    assert got_scale == pytest.approx(1.2, rel=0.06)
    assert np.abs(apply(m, f0.landmarks) - apply(known, f0.landmarks)).max() < 6.0

    # aligning the moved photo back onto the base's landmarks puts the face where it was
    back = A.align(moved, f1.landmarks, f0.landmarks, base.size)
    (fb,) = A.find_faces(back, name="back")
    assert np.abs(fb.landmarks - f0.landmarks).max() < 8.0


def test_no_face_is_a_one_line_error(detector):
    blank = Image.new("RGB", (320, 240), (128, 128, 128))
    assert A.detect_faces(blank) == []
    with pytest.raises(UserError) as e:
        A.find_faces(blank, name="blank.png")
    msg = str(e.value)
    assert msg == ("no face found in blank.png; give a photo with a frontal face, "
                   "or use --no-align to take the image as it is")
    with pytest.raises(UserError, match="no face found in blank.png"):
        A.align_faces(blank, TEMPLATE, 64, name="blank.png")


def test_the_largest_of_two_faces_is_used_unless_all_faces(detector, celeba_dir):
    photo = Image.new("RGB", (720, 420), (118, 128, 138))
    small, big = _celeba(celeba_dir, 2, upscale=2), _celeba(celeba_dir, 1, upscale=3)
    photo.paste(small, (40, 120))          # left, smaller
    photo.paste(big, (400, 50))            # right, larger
    (chosen,) = A.find_faces(photo, name="two.jpg")
    assert (chosen.box[0] + chosen.box[2]) / 2 > 400
    both = A.find_faces(photo, name="two.jpg", all_faces=True)
    assert len(both) == 2
    assert both[0].area > both[1].area and (both[1].box[0] + both[1].box[2]) / 2 < 400
    assert len(A.align_faces(photo, TEMPLATE, 64, all_faces=True)) == 2


def test_template_from_training_crops(detector, celeba_dir):
    from facegan.data import crop_box

    crops = []
    for i in range(1, 5):
        with Image.open(celeba_dir / "img_align_celeba" / f"{i:06d}.jpg") as im:
            im = im.convert("RGB")
            crops.append(im.crop(crop_box("celeba", *im.size)).resize((64, 64), Image.BICUBIC))
    # as a run holds them: a uint8 N x 3 x R x R tensor (ImageSet.images); PIL images work alike
    chw = torch.from_numpy(np.stack([np.asarray(c) for c in crops])).permute(0, 3, 1, 2)
    assert all(np.array_equal(np.asarray(A._as_pil(x)), np.asarray(c)) for x, c in zip(chw, crops))
    t = A.template_from_images(chw)
    assert t.shape == (5, 2)
    assert ((t > 4) & (t < 60)).all()
    assert t[0, 0] < 32 < t[1, 0] and abs(t[0, 1] - t[1, 1]) < 4       # eyes level, either side
    assert t[:2, 1].max() < t[2, 1] < t[3:, 1].min()                   # eyes, nose, mouth downwards
    out = A.align_faces(_photo(_celeba(celeba_dir, 1)), t, 64)[0]
    assert out.size == (64, 64)
    with pytest.raises(UserError, match="no face found in any of the 2 training images"):
        A.template_from_images([Image.new("RGB", (64, 64))] * 2)
    with pytest.raises(ValueError, match="differ in size"):
        A.template_from_images([Image.new("RGB", (64, 64)), Image.new("RGB", (32, 32))])
