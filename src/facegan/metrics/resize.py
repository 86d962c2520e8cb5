"""Resize images to the Inception input the way clean-fid's 'clean' mode does.

Each channel of a uint8 RGB image becomes a float32 PIL image (mode 'F'), is resized to
299 x 299 with PIL's bicubic filter (which antialiases when shrinking), and is clipped to
0..255 -- no re-quantisation to uint8 (Parmar et al. 2022, "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation"). Images already 299 x 299 pass through unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

INCEPTION_SIZE = 299


def resize_clean(img: np.ndarray, size: int = INCEPTION_SIZE) -> np.ndarray:
    """One image, uint8 (H, W, 3) RGB -> float32 (3, size, size) in [0, 255].

    H and W may be anything (non-square images are squashed, as in clean-fid).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(img.shape)}")
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    out = np.empty((3, size, size), dtype=np.float32)
    for c in range(3):
        # A 2-D float32 array becomes a mode 'F' (32-bit float) image: no rounding anywhere.
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c], dtype=np.float32))
        out[c] = np.asarray(ch.resize((size, size), resample=Image.BICUBIC))
    np.clip(out, 0.0, 255.0, out=out)
    return out
