"""Labels from the data: ``data.condition`` -> a :class:`~facegan.labels.LabelSpec` and ``c`` per
image.

What ``data.condition`` may say, and what a spec means, is :mod:`facegan.labels`; this module
reads the labels the data holds: one class per first-level sub-folder (for a folder and a zip
alike; a zip that wraps everything in one top folder, ``zip -r animals.zip animals/``, is read
below that folder), CelebA (or builtin) attributes, or the combinations of attributes as
classes.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..labels import (
    ATTR,
    CLASS,
    CLASSES_PREFIX,
    FOLDERS,
    UNCONDITIONAL,
    LabelSpec,
    split_names,
)
from .dataset import ImageSet
from .sources import CELEBA_ATTR


def resolve_labels(condition: str, data: ImageSet) -> tuple[LabelSpec, torch.Tensor]:
    """Turn ``data.condition`` into (spec, c): c float32 (N, K) for the N images of ``data``.

    Unconditional (``''``): (:data:`~facegan.labels.UNCONDITIONAL`, an (N, 0) tensor). Raises
    UserError for a condition the data cannot give (no sub-folders, no attributes, an unknown
    attribute), listing what exists.
    """
    cond = (condition or "").strip()
    n = len(data)
    if not cond:
        return UNCONDITIONAL, UNCONDITIONAL.empty(n)
    if cond == FOLDERS:
        return _folder_classes(data)
    if cond.startswith(CLASSES_PREFIX):
        names = _attribute_names(cond[len(CLASSES_PREFIX):], data, cond)
        return _attribute_classes(data, names)
    names = _attribute_names(cond, data, cond)
    cols = _attribute_columns(data, names)
    counts = tuple(int(v) for v in cols.sum(0).round().long().tolist())
    return LabelSpec(ATTR, tuple(names), counts, n), cols


def _attribute_names(text: str, data: ImageSet, cond: str) -> list[str]:
    names = split_names(text)
    if not names:
        raise UserError(f"data.condition '{cond}' names no attribute; write e.g. 'Male,Smiling', "
                        "'classes:Male,Smiling' or 'folders'")
    if data.labels is None or not data.label_names:
        if data.source == "celeba":  # class sub-folders are no way out for CelebA
            raise UserError(f"data.condition '{cond}' asks for attributes, but this CelebA folder "
                            f"has no {CELEBA_ATTR} (or Kaggle's list_attr_celeba.csv) next to "
                            f"img_align_celeba/; add it, or train without data.condition")
        raise UserError(f"data.condition '{cond}' asks for attributes, but the {data.source} data "
                        f"has none (only a CelebA folder with {CELEBA_ATTR}, or builtin, has "
                        "them); use data.condition=folders for one class per sub-folder")
    missing = [a for a in names if a not in data.label_names]
    if missing:
        raise UserError(f"unknown attribute '{missing[0]}' in data.condition; this data has: "
                        f"{', '.join(data.label_names)}")
    if len(set(names)) != len(names):
        raise UserError(f"data.condition '{cond}' names an attribute twice")
    return names


def _attribute_columns(data: ImageSet, names: list[str]) -> torch.Tensor:
    idx = [data.label_names.index(a) for a in names]
    return data.labels[:, idx].float().clamp(0, 1).contiguous()


def _attribute_classes(data: ImageSet, names: list[str]) -> tuple[LabelSpec, torch.Tensor]:
    cols = _attribute_columns(data, names).round().long()  # (N, A) in {0, 1}
    # Combinations in binary order (first attribute most significant), only those present.
    code = (cols * (2 ** torch.arange(len(names) - 1, -1, -1))).sum(1)
    present = sorted(set(code.tolist()))
    class_names = []
    for v in present:
        bits = [(v >> (len(names) - 1 - j)) & 1 for j in range(len(names))]
        class_names.append(",".join(f"{a}={b}" for a, b in zip(names, bits)))
    index = {v: i for i, v in enumerate(present)}
    y = torch.tensor([index[v] for v in code.tolist()], dtype=torch.long)
    return _classes(class_names, y, len(data))


def _classes(class_names: list[str], y: torch.Tensor, n: int) -> tuple[LabelSpec, torch.Tensor]:
    k = len(class_names)
    c = torch.nn.functional.one_hot(y, k).float()
    counts = tuple(int(v) for v in torch.bincount(y, minlength=k).tolist())
    return LabelSpec(CLASS, tuple(class_names), counts, n), c


def folder_of(names: list[str], source: str) -> list[str | None]:
    """The class folder of each image name ('cat/001.jpg' -> 'cat'; a top-level file -> None).

    A zip whose files all sit in one top folder is read one level down (that folder is the
    archive's wrapper, not a class), as long as every file is still inside a sub-folder there.
    """
    parts = [n.split("/") for n in names]
    if source == "zip":
        while (parts and all(len(p) > 2 for p in parts)
               and len({p[0] for p in parts}) == 1):
            parts = [p[1:] for p in parts]
    return [p[0] if len(p) > 1 else None for p in parts]


def _folder_classes(data: ImageSet) -> tuple[LabelSpec, torch.Tensor]:
    if data.source not in ("folder", "zip"):
        example = f"data.condition={(data.label_names or ['Male'])[0]}"
        if not data.label_names:  # CelebA without its attribute list: it must come first
            example += f", after adding CelebA's {CELEBA_ATTR} next to img_align_celeba/"
        raise UserError(f"data.condition=folders needs a folder or a zip with one sub-folder per "
                        f"class, but data.path is {data.source} data; use attribute names instead "
                        f"(e.g. {example})")
    folders = folder_of(data.names, data.source)
    loose = [n for n, f in zip(data.names, folders) if f is None]
    if loose:
        raise UserError(f"data.condition=folders: {len(loose)} image(s) are not in a class "
                        f"sub-folder (first: '{loose[0]}'); put every image in a folder named "
                        "after its class (data/cat/*.jpg, data/dog/*.jpg)")
    class_names = sorted(set(folders))
    if len(class_names) < 2:
        raise UserError(f"data.condition=folders found only one class folder ('{class_names[0]}'); "
                        "conditional training needs at least two (one sub-folder per class)")
    index = {name: i for i, name in enumerate(class_names)}
    y = torch.tensor([index[f] for f in folders], dtype=torch.long)
    return _classes(class_names, y, len(data))


__all__ = ["folder_of", "resolve_labels"]
