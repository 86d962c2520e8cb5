"""Data: image folders, zips, CelebA and the built-in faces, decoded once into a uint8 cache.

    from facegan.data import load_dataset, to_float
    ds = load_dataset(cfg.data)          # ds.images: uint8 N x 3 x R x R
    batch = to_float(ds.images[:64])     # float32 in [-1, 1]
"""

from .dataset import DataWarning, ImageSet, SkippedFilesWarning, load_dataset
from .labels import resolve_labels
from .sources import CELEBA_ATTRIBUTES, IMAGE_EXTENSIONS
from .synthetic import LABEL_NAMES as BUILTIN_ATTRIBUTES
from .transforms import crop_box, resolve_crop, to_float

__all__ = [
    "BUILTIN_ATTRIBUTES",
    "CELEBA_ATTRIBUTES",
    "DataWarning",
    "IMAGE_EXTENSIONS",
    "ImageSet",
    "SkippedFilesWarning",
    "crop_box",
    "load_dataset",
    "resolve_crop",
    "resolve_labels",
    "to_float",
]
