"""The label contract: what ``c`` means, and every operation callers need on it.

Every generator is ``G(z, c)`` and every critic ``D(x, c) -> (score, aux or None)``; ``c`` is
always a float tensor (N, K), K = 0 for a model trained without labels. A :class:`LabelSpec`
says what the K columns mean; an unconditional model has :data:`UNCONDITIONAL` (kind
``'none'``, K = 0), never ``None``.

``data.condition`` (a string, so it fits the command line and config.json) chooses the labels:

- ``''``: unconditional (``c`` has width 0).
- ``'folders'``: one class per first-level sub-folder (``data/cat/*.jpg``, ``data/dog/*.jpg``).
- ``'Male'`` or ``'Male,Smiling,Eyeglasses'``: attributes as independent binary labels,
  ``c`` in {0, 1}^K.
- ``'classes:Male,Smiling'``: the combinations of those attributes as classes, named like
  ``'Male=1,Smiling=0'``; ``c`` one-hot.

The user-facing grammar for choosing labels when sampling, ``--class NAME`` or
``--attr Male=0,Smiling=1`` (the web page's ``class=`` / ``attr=``), is parsed once, by
:func:`parse_condition`, into a :class:`Condition`.

This module imports nothing else of facegan but its errors (bottom layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError, check_whole

NONE, CLASS, ATTR = "none", "class", "attr"
KINDS = (NONE, CLASS, ATTR)
FOLDERS = "folders"
CLASSES_PREFIX = "classes:"
GRID_ALL_COMBINATIONS_UP_TO = 4  # attributes; above, one row per attribute alone
_LABEL_SEED_OFFSET = 7919  # labels draw from a stream apart from the latents' (same seed)


@dataclass(frozen=True)
class LabelSpec:
    """What the label vector ``c`` (N, K) means.

    kind: ``'none'`` (K = 0), ``'class'`` (c one-hot over K classes) or ``'attr'``
        (c in {0, 1}^K, K independent attributes).
    names: the K class or attribute names, in the order of c's columns.
    counts: per class, its number of images; per attribute, the images that have it.
    total: the number of images the counts are out of.
    """

    kind: str = NONE
    names: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    total: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"label kind must be one of {KINDS}, not {self.kind!r}")
        if len(self.names) != len(self.counts):
            raise ValueError("a LabelSpec needs one count per name")
        if (self.kind == NONE) != (len(self.names) == 0):
            raise ValueError("kind 'none' has no names; 'class' and 'attr' have at least one")

    # ---- what it is ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """K, the width of ``c``."""
        return len(self.names)

    @property
    def conditional(self) -> bool:
        return self.kind != NONE

    def frequencies(self) -> torch.Tensor:
        """float (K,): class probabilities (summing to 1) or per-attribute rates in [0, 1]."""
        return torch.tensor(self.counts, dtype=torch.float64).div(max(self.total, 1)).float()

    def to_dict(self) -> dict[str, Any] | None:
        """JSON form for config.json, labels.json and checkpoints; None when unconditional
        (what every checkpoint has always stored for a model without labels)."""
        if not self.conditional:
            return None
        return {"kind": self.kind, "names": list(self.names), "counts": list(self.counts),
                "total": self.total}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LabelSpec:
        """Inverse of :meth:`to_dict`; None or {} gives :data:`UNCONDITIONAL`."""
        if not d:
            return UNCONDITIONAL
        return cls(kind=str(d["kind"]), names=tuple(str(n) for n in d["names"]),
                   counts=tuple(int(c) for c in d["counts"]), total=int(d["total"]))

    def balance(self) -> dict[str, Any]:
        """The class / attribute balance, for labels.json and the line printed before training."""
        return {"kind": self.kind, "images": self.total,
                "counts": dict(zip(self.names, self.counts)),
                "fractions": {n: round(c / max(self.total, 1), 4)
                              for n, c in zip(self.names, self.counts)}}

    def describe(self) -> str:
        """One line: '2 classes over 1000 images: cat 500 (50.0%), ...' or attribute rates."""
        if self.kind == CLASS:
            parts = [f"{n} {c} ({100 * c / max(self.total, 1):.1f}%)"
                     for n, c in zip(self.names, self.counts)]
            return f"{self.dim} classes over {self.total} images: " + ", ".join(parts)
        if self.kind == ATTR:
            parts = [f"{n} {100 * c / max(self.total, 1):.1f}%" for n, c in zip(self.names, self.counts)]
            return f"{self.dim} attributes over {self.total} images (share with it): " + ", ".join(parts)
        return "no labels"

    # ---- making c --------------------------------------------------------------------------

    def empty(self, n: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """float (n, 0): the ``c`` of an unconditional model."""
        return torch.zeros(n, 0, device=device)

    def draw(self, n: int, seed: int = 0) -> torch.Tensor:
        """float (n, K) labels drawn from the training data's frequencies (``counts``):
        classes in their data proportions; attributes each on with its data rate, independently
        (a run keeps the rates, not the correlations between attributes). K = 0: no draw.
        UserError for ``n`` below 0."""
        n = check_whole(n, "labels: n (rows of labels)")
        if not self.conditional or n == 0:
            return torch.zeros(n, self.dim)
        g = _label_generator(seed)
        freq = self.frequencies()
        if self.kind == CLASS:
            y = torch.multinomial(freq.double().clamp_min(0) + 1e-12, n, replacement=True, generator=g)
            return F.one_hot(y, self.dim).float()
        return (torch.rand(n, self.dim, generator=g) < freq).float()

    def one_hot(self, name: str, n: int) -> torch.Tensor:
        """float (n, K): every row the one-hot of class ``name``, one of ``names`` (UserError
        naming them for another, as :func:`parse_condition` does for a user's)."""
        c = torch.zeros(n, self.dim)
        c[:, self.column(name, "class")] = 1.0
        return c

    def column(self, name: str, what: str = "label") -> int:
        """The column of ``c`` that ``name`` (a class or attribute, ``what``) is; UserError
        naming this spec's names when it has no such name (say, one of another model's)."""
        if name in self.names:
            return self.names.index(name)
        if not self.conditional:
            raise UserError(f"this model is unconditional (trained without labels); it has no {what} "
                            f"'{str(name)[:60]}'")
        raise UserError(f"unknown {what} '{str(name)[:60]}'; this model has: {', '.join(self.names)}")

    def grid_rows(self) -> tuple[torch.Tensor, list[str]]:
        """The rows of a by-label grid: (labels float (rows, K), row names).

        Classes: one row per class. Attributes: every 0/1 combination (first attribute slowest)
        for up to four attributes (16 rows), else all off plus one row per attribute alone.
        """
        k = self.dim
        if self.kind == CLASS:
            return torch.eye(k), list(self.names)
        if self.kind == NONE:
            raise UserError("this model is unconditional (trained without labels); it has no "
                            "rows by label")
        if k <= GRID_ALL_COMBINATIONS_UP_TO:
            rows = torch.tensor([[(v >> (k - 1 - j)) & 1 for j in range(k)] for v in range(2 ** k)],
                                dtype=torch.float32)
        else:
            rows = torch.cat([torch.zeros(1, k), torch.eye(k)])
        names = [",".join(f"{a}={int(b)}" for a, b in zip(self.names, r.tolist())) for r in rows]
        return rows, names

    def progress_labels(self, data_labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
        """Labels for a training progress grid, float (n, K) on the CPU: for classes, row r of
        the near-square grid shows class r mod K; for attributes, the labels of n random data
        images (``data_labels`` (M, K), a fixed draw for ``seed``); K = 0: (n, 0)."""
        if self.kind == CLASS:
            nrow = max(1, int(math.ceil(math.sqrt(n))))
            y = (torch.arange(n) // nrow) % self.dim
            return F.one_hot(y, self.dim).float()
        if self.kind == NONE:
            return self.empty(n)
        idx = torch.randint(data_labels.shape[0], (n,), generator=_label_generator(seed))
        return data_labels[idx.to(data_labels.device)].float().cpu()

    def ac_target(self, c: torch.Tensor) -> torch.Tensor:
        """The auxiliary classifier's target for labels ``c`` (N, K): class indices long (N,)
        for classes, ``c`` itself (float in {0, 1}) for attributes."""
        if self.kind == CLASS:
            return c.argmax(1)
        if self.kind == ATTR:
            return c.float()
        raise ValueError("an unconditional model has no auxiliary-classifier target")


UNCONDITIONAL = LabelSpec()


def _label_generator(seed: int) -> torch.Generator:
    # A stream apart from the latents' (seed) so labels and noise do not share draws.
    return torch.Generator().manual_seed(seed + _LABEL_SEED_OFFSET)


# ---- choosing labels when sampling: --class NAME / --attr A=0,B=1 ---------------------------

@dataclass(frozen=True)
class Condition:
    """A user's choice of labels: none (drawn from the data's rates, as training saw them), a
    class, or some attributes fixed (the others drawn). Attributes are kept in the model's
    order, so the command line written back for it is the same whatever order it came in."""

    cls: str | None = None
    attrs: tuple[tuple[str, float], ...] = ()

    def labels(self, spec: LabelSpec, n: int, seed: int = 0) -> torch.Tensor:
        """float (n, K) for this condition; K = 0 for an unconditional model."""
        if self.cls is not None:
            return spec.one_hot(self.cls, n)
        c = spec.draw(n, seed)
        for name, v in self.attrs:
            c[:, spec.column(name, "attribute")] = v
        return c

    def cli_options(self) -> str:
        """The ``facegan sample`` options that choose the same labels (' --class cat')."""
        import shlex

        if self.cls is not None:
            return f" --class {shlex.quote(self.cls)}"
        if self.attrs:
            return " --attr " + shlex.quote(",".join(f"{a}={int(v)}" for a, v in self.attrs))
        return ""


def parse_condition(spec: LabelSpec, cls: str | int | None = None,
                    attr: str | Mapping[str, int] | None = None, *,
                    class_opt: str = "--class", attr_opt: str = "--attr") -> Condition:
    """``cls`` (a class name, or its index in ``spec.names``) or ``attr`` ('Male=0,Smiling=1',
    or a dict ``{"Male": 0, "Smiling": 1}``) -> a checked :class:`Condition`.

    ``spec``: a :class:`LabelSpec`, or a :class:`~facegan.sampling.LoadedGenerator` (its
    ``labels``). UserError (one line, naming what this model has) for a model without labels,
    the wrong kind, an unknown name or index, a value other than 0/1, a name given twice, or
    both given; TypeError for a ``cls`` or ``attr`` of another type.
    ``class_opt`` / ``attr_opt``: how the caller's user writes them (the web page: 'class=').
    """
    if not isinstance(spec, LabelSpec):
        # A LoadedGenerator (sampling sits above this module: it is known by its labels)
        if not isinstance(getattr(spec, "labels", None), LabelSpec):
            raise TypeError(f"parse_condition takes a LabelSpec (lg.labels) or a LoadedGenerator, "
                            f"got {type(spec).__name__}")
        spec = spec.labels
    if cls is not None and (isinstance(cls, bool) or not isinstance(cls, (str, int))):
        raise TypeError(f"cls takes a class name (str) or its index (int), got {type(cls).__name__}")
    if attr is not None and not isinstance(attr, (str, Mapping)):
        raise TypeError(f"attr takes 'NAME=0|1,...' or a dict {{NAME: 0 or 1}}, got {type(attr).__name__}")
    if cls is None and attr is None:
        return Condition()
    given = class_opt if cls is not None else attr_opt
    if not spec.conditional:
        raise UserError(f"this model is unconditional (trained without labels); drop {given}")
    if cls is not None and attr is not None:
        raise UserError(f"{class_opt} and {attr_opt} cannot be combined; give one of them")
    names = ", ".join(spec.names)
    if cls is not None:
        if spec.kind != CLASS:
            raise UserError(f"this model has attribute labels ({names}), not classes; use "
                            f"{_with(attr_opt, 'NAME=0|1,...')}")
        if isinstance(cls, int):
            if not 0 <= cls < spec.dim:
                raise UserError(f"class index {cls} is out of range 0..{spec.dim - 1}; this model has: {names}")
            cls = spec.names[cls]
        spec.column(cls, "class")  # UserError naming the classes for an unknown one
        return Condition(cls=cls)
    if spec.kind != ATTR:
        raise UserError(f"this model has class labels ({names}), not attributes; use {_with(class_opt, 'NAME')}")
    if isinstance(attr, Mapping):
        # As the text would be written: 0 / 1 (False / True, 0.0 / 1.0), anything else shown as
        # given, so the value check below words it
        attr = ",".join(f"{k}={int(v) if isinstance(v, (int, float)) and v in (0, 1) else v}"
                        for k, v in attr.items())
    setting: dict[str, float] = {}
    for part in (p.strip() for p in attr.split(",") if p.strip()):
        name, eq, value = (s.strip() for s in part.partition("="))
        if name not in spec.names:
            raise UserError(f"unknown attribute '{name[:60]}' in {attr_opt}; this model has: {names}")
        if not eq or value not in ("0", "1"):
            raise UserError(f"{attr_opt} '{part[:60]}': write NAME=0 or NAME=1, e.g. "
                            f"{_with(attr_opt, spec.names[0] + '=1')}")
        if name in setting:
            raise UserError(f"attribute '{name}' is given twice in {attr_opt}")
        setting[name] = float(value)
    if not setting:
        raise UserError(f"{attr_opt} is empty; write e.g. {_with(attr_opt, spec.names[0] + '=1')}")
    return Condition(attrs=tuple((n, setting[n]) for n in spec.names if n in setting))


def _with(option: str, value: str) -> str:
    """'--attr' + 'Male=1' -> '--attr Male=1'; a query key 'attr=' + 'Male=1' -> 'attr=Male=1'."""
    return f"{option}{value}" if option.endswith("=") else f"{option} {value}"


# ---- data.condition --------------------------------------------------------------------------

def split_names(text: str) -> list[str]:
    """'Male, Smiling,' -> ['Male', 'Smiling']."""
    return [s.strip() for s in text.split(",") if s.strip()]


def check_condition_syntax(condition: str) -> None:
    """Cheap checks of ``data.condition`` that need no data (config validation)."""
    cond = (condition or "").strip()
    if cond.startswith(CLASSES_PREFIX) and not split_names(cond[len(CLASSES_PREFIX):]):
        raise UserError(f"data.condition '{cond}' names no attribute; write e.g. 'classes:Male,Smiling'")


__all__ = ["ATTR", "CLASS", "CLASSES_PREFIX", "Condition", "FOLDERS", "KINDS", "LabelSpec", "NONE",
           "UNCONDITIONAL", "check_condition_syntax", "parse_condition", "split_names"]
