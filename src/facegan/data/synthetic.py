"""The built-in data set: procedurally drawn cartoon faces with known attributes.

Needs no download, so the demo, the tests and a first training run work anywhere. Each face is
drawn with PIL at 4x the target resolution and box-filtered down, so edges stay smooth at 32 px.
Image ``i`` depends only on (seed, stream, i): the first N images are the same whatever the
total, and generation can be split across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

# Bump when the drawing changes, so cached builtin sets are regenerated.
DRAWING_VERSION = 1
DEFAULT_SIZE = 10_000
SUPERSAMPLE = 4
MAX_CANVAS = 256

LABEL_NAMES = [
    "black_hair", "blond_hair", "brown_hair", "gray_hair", "bald",  # exactly one of these five
    "long_hair", "dark_skin", "glasses", "smiling",
]

_HAIR = {  # name -> (probability, base colour)
    "black_hair": (0.30, (30, 24, 22)),
    "blond_hair": (0.25, (228, 196, 112)),
    "brown_hair": (0.30, (112, 70, 38)),
    "gray_hair": (0.07, (178, 178, 182)),
    "bald": (0.08, None),
}
_LIGHT_SKIN = [(255, 224, 196), (243, 200, 165), (226, 178, 140)]
_DARK_SKIN = [(176, 124, 86), (140, 94, 62), (98, 66, 44)]
_IRIS = [(70, 45, 25), (40, 90, 150), (50, 110, 60), (30, 25, 20)]


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int) -> tuple:
    noise = rng.integers(-amount, amount + 1, size=3)
    return tuple(min(255, max(0, int(c + n))) for c, n in zip(colour, noise))


def _shade(colour: tuple, factor: float) -> tuple:
    return tuple(min(255, max(0, int(c * factor))) for c in colour)


def _random_colour(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _supersample(resolution: int) -> int:
    # 4x makes 32 px edges smooth; above 64 px a 256 px canvas is smooth enough and 4x cheaper.
    return max(1, min(SUPERSAMPLE, MAX_CANVAS // resolution))


def draw_face(rng: np.random.Generator, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face. Returns (uint8 R x R x 3 image, uint8 K labels in {0, 1}, K = len(LABEL_NAMES))."""
    factor = _supersample(resolution)
    s = resolution * factor
    hair_names = list(_HAIR)
    hair = hair_names[rng.choice(len(hair_names), p=[_HAIR[h][0] for h in hair_names])]
    bald = hair == "bald"
    long_hair = (not bald) and rng.random() < 0.4
    dark = rng.random() < 0.35
    glasses = rng.random() < 0.3
    smiling = rng.random() < 0.5

    skin = _jitter(rng, (_DARK_SKIN if dark else _LIGHT_SKIN)[rng.integers(3)], 8)
    hair_col = _jitter(rng, _HAIR[hair][1], 14) if not bald else None
    brow_col = _shade(hair_col, 0.7) if hair_col else _shade(skin, 0.45)
    background = _random_colour(rng, 40, 236)

    # Geometry in canvas pixels: face centre, width and height, random within the frame.
    fw = s * rng.uniform(0.36, 0.48)
    fh = fw * rng.uniform(1.18, 1.34)
    cx = s * (0.5 + rng.uniform(-0.09, 0.09))
    cy = s * (0.5 + rng.uniform(-0.06, 0.08))

    img = Image.new("RGB", (s, s), background)
    # Shoulders, so the head sits on a body like in a portrait photo. They stay upright; only
    # the head layer below is tilted (tilting the body would cut its bottom edge diagonally).
    shirt = _random_colour(rng, 30, 220)
    ImageDraw.Draw(img).ellipse([cx - 1.1 * fw, cy + 0.62 * fh, cx + 1.1 * fw, cy + 2.2 * fh],
                                fill=shirt)
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)

    def ell(x0, y0, x1, y1, fill, **kw):
        d.ellipse([cx + x0 * fw, cy + y0 * fh, cx + x1 * fw, cy + y1 * fh], fill=fill, **kw)

    d.rectangle([cx - 0.2 * fw, cy + 0.3 * fh, cx + 0.2 * fw, cy + 0.72 * fh],
                fill=_shade(skin, 0.85))

    if hair_col:  # hair behind the head; long hair falls to the shoulders
        if long_hair:
            ell(-0.64, -0.62, 0.64, 0.55, hair_col)
            d.rectangle([cx - 0.64 * fw, cy - 0.05 * fh, cx + 0.64 * fw, cy + 0.72 * fh],
                        fill=hair_col)
        else:
            ell(-0.56, -0.62, 0.56, 0.2, hair_col)

    ell(-0.58, -0.12, -0.42, 0.14, _shade(skin, 0.92))  # ears
    ell(0.42, -0.12, 0.58, 0.14, _shade(skin, 0.92))
    ell(-0.5, -0.5, 0.5, 0.5, skin)  # head

    if hair_col:  # the top of the head: an upper half-ellipse, parted a little to one side
        part = rng.uniform(-0.15, 0.15)
        box = [cx - 0.54 * fw, cy - 0.6 * fh, cx + 0.54 * fw, cy + 0.02 * fh]
        d.chord(box, 180, 360, fill=hair_col)
        d.pieslice([cx + (part - 0.4) * fw, cy - 0.45 * fh, cx + (part + 0.3) * fw, cy - 0.1 * fh],
                   180, 270, fill=hair_col)

    # Eyes: white, iris, pupil.
    ey, ex = -0.04, 0.2
    iris = _IRIS[rng.integers(len(_IRIS))]
    for side in (-1, 1):
        ell(side * ex - 0.1, ey - 0.055, side * ex + 0.1, ey + 0.055, (250, 250, 250))
        r = 0.05
        ell(side * ex - r, ey - r * fw / fh, side * ex + r, ey + r * fw / fh, iris)
        r = 0.022
        ell(side * ex - r, ey - r * fw / fh, side * ex + r, ey + r * fw / fh, (10, 10, 10))
        # Eyebrows, slightly tilted.
        d.line([cx + side * (ex + 0.11) * fw, cy + (ey - 0.1) * fh,
                cx + side * (ex - 0.09) * fw, cy + (ey - 0.12) * fh],
               fill=brow_col, width=max(1, int(0.045 * fw)))

    # Nose: a short shadow.
    d.line([cx, cy + 0.04 * fh, cx + 0.03 * fw, cy + 0.14 * fh, cx - 0.02 * fw, cy + 0.15 * fh],
           fill=_shade(skin, 0.72), width=max(1, int(0.03 * fw)))

    my, mw = 0.27, 0.2
    if smiling:  # an open smile: the lower half of an ellipse, with teeth
        box = [cx - mw * fw, cy + (my - 0.07) * fh, cx + mw * fw, cy + (my + 0.09) * fh]
        d.chord(box, 0, 180, fill=(130, 30, 40))
        d.chord([box[0] + 0.03 * fw, box[1], box[2] - 0.03 * fw, box[3] - 0.07 * fh], 0, 180,
                fill=(245, 245, 240))
    else:  # closed lips
        lips = (_shade(skin, 0.6)[0], int(_shade(skin, 0.5)[1] * 0.8), int(_shade(skin, 0.5)[2] * 0.8))
        ell(-0.14, my - 0.025, 0.14, my + 0.025, lips)

    if glasses:
        frame = _random_colour(rng, 0, 60) if rng.random() < 0.8 else (150, 30, 30)
        w = max(1, int(0.035 * fw))
        for side in (-1, 1):
            ell(side * ex - 0.15, ey - 0.11, side * ex + 0.15, ey + 0.11, None, outline=frame,
                width=w)
        d.line([cx - (ex - 0.15) * fw, cy + ey * fh, cx + (ex - 0.15) * fw, cy + ey * fh],
               fill=frame, width=w)

    tilt = rng.uniform(-12, 12)
    # Bilinear is enough here (the result is box-filtered 4x afterwards) and much faster.
    layer = layer.rotate(tilt, resample=Image.BILINEAR, center=(cx, cy))
    img.paste(layer, (0, 0), layer)
    # A box filter over each factor x factor block: exact antialiasing for an integer reduction.
    out = np.asarray(img.reduce(factor), dtype=np.uint8)
    labels = np.array([hair == h for h in hair_names] + [long_hair, dark, glasses, smiling],
                      dtype=np.uint8)
    return out, labels


def _draw_range(args: tuple[int, int, int, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    seed, stream, start, stop, resolution = args
    images = np.empty((stop - start, 3, resolution, resolution), dtype=np.uint8)
    labels = np.empty((stop - start, len(LABEL_NAMES)), dtype=np.uint8)
    for j, i in enumerate(range(start, stop)):
        img, lab = draw_face(np.random.default_rng([seed, stream, i]), resolution)
        images[j] = img.transpose(2, 0, 1)
        labels[j] = lab
    return start, images, labels


def generate_faces(n: int, resolution: int, *, seed: int = 0, stream: int = 0,
                   workers: int = 1,
                   on_progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` faces. Returns (uint8 n x 3 x R x R images, uint8 n x K labels in {0, 1}).

    ``stream`` separates independent sets with the same seed (0 train, 1 valid, 2 test).
    ``workers`` > 1 draws blocks of faces in that many processes (the result is the same).
    ``on_progress(k)`` is called as each block of k faces is done.
    """
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    labels = np.empty((n, len(LABEL_NAMES)), dtype=np.uint8)
    block = 250
    jobs = [(seed, stream, a, min(a + block, n), resolution) for a in range(0, n, block)]
    if workers <= 1 or len(jobs) <= 1:
        results = map(_draw_range, jobs)
        pool = None
    else:
        # Drawing is Python-bound (the GIL would serialise threads), so use processes.
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)))
        results = pool.map(_draw_range, jobs)
    try:
        for start, imgs, labs in results:
            images[start:start + len(imgs)] = imgs
            labels[start:start + len(labs)] = labs
            if on_progress is not None:
                on_progress(len(imgs))
    finally:
        if pool is not None:
            # Interrupted (Ctrl-C, SIGTERM): the ranges not yet started are dropped.
            pool.shutdown(cancel_futures=True)
    return images, labels

