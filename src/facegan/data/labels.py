"""Labels for conditional training: ``data.condition`` -> a :class:`LabelSpec` and ``c`` per image.

``data.condition`` (a string, so it fits the command line and config.json):

- ``''``: unconditional (``c`` has width 0).
- ``'folders'``: one class per first-level sub-folder (``data/cat/*.jpg``, ``data/dog/*.jpg``
  -> classes ``cat``, ``dog``), for a folder and a zip alike. A zip that wraps everything in
  one top folder (``zip -r animals.zip animals/``) is read below that folder.
- ``'Male'`` or ``'Male,Smiling,Eyeglasses'``: CelebA (or builtin) attributes as independent
  binary labels, ``c`` in {0, 1}^K.
- ``'classes:Male,Smiling'``: the combinations of those attributes as classes, one class per
  combination present in the data, named like ``'Male=1,Smiling=0'``; ``c`` one-hot.

A :class:`LabelSpec` (kind, names, counts) is what a run records (config.json, labels.json,
checkpoints): it is enough to sample a conditional generator without the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UserError
from .dataset import ImageSet

CLASS, ATTR = "class", "attr"
FOLDERS = "folders"
CLASSES_PREFIX = "classes:"


@dataclass(frozen=True)
class LabelSpec:
    """What the label vector ``c`` (N, K) means.

    kind: ``'class'`` (c one-hot over K classes) or ``'attr'`` (c in {0, 1}^K, K attributes).
    names: the K class or attribute names, in the order of c's columns.
    counts: per class, its number of images; per attribute, the images that have it.
    total: the number of images the counts are out of.
    """

    kind: str
    names: tuple[str, ...]
    counts: tuple[int, ...]
    total: int

    @property
    def dim(self) -> int:
        return len(self.names)

    def frequencies(self) -> torch.Tensor:
        """float (K,): class probabilities (summing to 1) or per-attribute rates in [0, 1]."""
        return torch.tensor(self.counts, dtype=torch.float64).div(max(self.total, 1)).float()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names), "counts": list(self.counts),
                "total": self.total}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "LabelSpec | None":
        if not d:
            return None
        return cls(kind=str(d["kind"]), names=tuple(str(n) for n in d["names"]),
                   counts=tuple(int(c) for c in d["counts"]), total=int(d["total"]))

    def balance(self) -> dict[str, Any]:
        """The class / attribute balance, for labels.json and the line printed before training."""
        return {"kind": self.kind, "images": self.total,
                "counts": dict(zip(self.names, self.counts)),
                "fractions": {n: round(c / max(self.total, 1), 4)
                              for n, c in zip(self.names, self.counts)}}

    def describe(self) -> str:
        """One line: 'classes: cat 500 (50.0%), dog 500 (50.0%)' or 'attributes: Male 41.2%'."""
        if self.kind == CLASS:
            parts = [f"{n} {c} ({100 * c / max(self.total, 1):.1f}%)"
                     for n, c in zip(self.names, self.counts)]
            return f"{self.dim} classes over {self.total} images: " + ", ".join(parts)
        parts = [f"{n} {100 * c / max(self.total, 1):.1f}%" for n, c in zip(self.names, self.counts)]
        return f"{self.dim} attributes over {self.total} images (share with it): " + ", ".join(parts)


def resolve_labels(condition: str, data: ImageSet) -> tuple[LabelSpec | None, torch.Tensor]:
    """Turn ``data.condition`` into (spec, c): c float32 (N, K) for the N images of ``data``.

    Unconditional (``''``): (None, an (N, 0) tensor). Raises UserError for a condition the data
    cannot give (no sub-folders, no attributes, an unknown attribute), listing what exists.
    """
    cond = (condition or "").strip()
    n = len(data)
    if not cond:
        return None, torch.zeros(n, 0)
    if cond == FOLDERS:
        return _folder_classes(data)
    if cond.startswith(CLASSES_PREFIX):
        names = _attribute_names(cond[len(CLASSES_PREFIX):], data, cond)
        return _attribute_classes(data, names)
    names = _attribute_names(cond, data, cond)
    cols = _attribute_columns(data, names)
    counts = tuple(int(v) for v in cols.sum(0).round().long().tolist())
    return LabelSpec(ATTR, tuple(names), counts, n), cols


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _attribute_names(text: str, data: ImageSet, cond: str) -> list[str]:
    names = _split(text)
    if not names:
        raise UserError(f"data.condition '{cond}' names no attribute; write e.g. 'Male,Smiling', "
                        "'classes:Male,Smiling' or 'folders'")
    if data.labels is None or not data.label_names:
        raise UserError(f"data.condition '{cond}' asks for attributes, but the {data.source} data "
                        "has none (only a CelebA folder with list_attr_celeba.txt, or builtin, has "
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
        raise UserError(f"data.condition=folders needs a folder or a zip with one sub-folder per "
                        f"class, but data.path is {data.source} data; use attribute names instead "
                        f"(e.g. data.condition={(data.label_names or ['Male'])[0]})")
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


def check_condition_syntax(condition: str) -> None:
    """Cheap checks that need no data (config validation)."""
    cond = (condition or "").strip()
    if cond.startswith(CLASSES_PREFIX) and not _split(cond[len(CLASSES_PREFIX):]):
        raise UserError(f"data.condition '{cond}' names no attribute; write e.g. 'classes:Male,Smiling'")


__all__ = ["ATTR", "CLASS", "FOLDERS", "LabelSpec", "check_condition_syntax", "folder_of",
           "resolve_labels"]
