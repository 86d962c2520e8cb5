"""An attribute / class classifier trained on real labelled images, for measuring generators.

Used by ``facegan directions`` (to score generated faces), by the edit metrics (does an edit
move the attribute it should, and only that one) and by the conditional accuracy of a
conditional model (does the generator draw the label it was asked for).

* :class:`AttributeNet`: a small CNN, float images (N, 3, R, R) in [-1, 1] -> logits (N, K).
  ``kind='attr'``: K independent binary attributes (sigmoid, binary cross-entropy);
  ``kind='class'``: K exclusive classes (softmax, cross-entropy).
* :func:`train_classifier`: trains it on uint8 images with labels, holding out a split, and
  reports the held-out accuracy per attribute (or class).
* :func:`save_classifier` / :func:`load_classifier`: ``NAME.pt`` holds the state dict only
  (read with ``torch.load(weights_only=True)``: a file is untrusted input) and ``NAME.json``
  its description (names, kind, resolution, width, accuracies, data fingerprint). The json
  is written last, so a half-written pair is never read as a classifier.
* :func:`classifier_for_data`: the classifier of a data set (its images preprocessed as the
  generator's: same crop and resolution), from the cache ``CACHE/classifiers/<key>`` keyed by
  the data fingerprint and the training settings, trained once when absent.

Held-out images: CelebA's valid and test partitions when the partition file has at least
:data:`MIN_HELDOUT` of them; otherwise (the 10k development subset has every image in
'train', and folders have no partitions) the last :data:`HELDOUT_FRACTION` of the images in
name order, a fixed rule so the figure is reproducible.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..files import atomic_write, atomic_write_text, cache_home
from ..labels import ATTR, CLASS, CLASSES_PREFIX, FOLDERS, LabelSpec
from ..losses import ac_loss
from ..models.spec import check_resolution
from ..runtime import autocast, has_fast_bf16

CLASSIFIER_VERSION = 1
HELDOUT_FRACTION = 0.1
MIN_HELDOUT = 100


class AttributeNet(nn.Module):
    """Small CNN: images float (N, 3, R, R) in [-1, 1] -> logits float (N, K).

    Per stage a stride-2 3x3 conv and a 3x3 conv, each with batch norm and ReLU, halving the
    size down to 4x4 (64 px: 32, 16, 8, 4; widths ``width``, 2x, 4x, 8x capped at 256), then
    global average pooling, dropout and a linear layer to K logits. About 40 M multiply-adds
    per 64 px image: a CPU trains it on 10,000 faces in minutes.
    """

    def __init__(self, n_out: int, resolution: int = 64, width: int = 32, channels: int = 3):
        super().__init__()
        check_resolution(resolution)
        self.n_out, self.resolution, self.width = n_out, resolution, width
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(int(math.log2(resolution)) - 2):
            c = min(width * 2 ** i, 256)
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(c_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(h))


@dataclass
class Classifier:
    """A trained classifier and what it means.

    net: :class:`AttributeNet` in eval mode. names: the K attribute / class names (column
    order of the outputs). kind: 'attr' or 'class'. accuracy: held-out accuracy per name
    (attributes: share of held-out images whose 0/1 prediction is right; classes: recall of
    each class), ``accuracy['mean']`` their mean. info: the rest of the description (data
    fingerprint, held-out rule, sizes, seconds).
    """

    net: AttributeNet
    names: list[str]
    kind: str
    resolution: int
    accuracy: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def probs(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images uint8 (N, 3, R, R) 0..255 or float in [-1, 1] -> float (N, K) on the CPU:
        per-attribute probabilities (sigmoid) or class probabilities (softmax, rows sum to 1).

        Images of another size are resized (bilinear, antialiased) to the classifier's.
        """
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(device)
            x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
            if x.shape[-1] != self.resolution:
                x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                                  antialias=True, align_corners=False)
            logits = self.net(x).float()
            out.append((torch.sigmoid(logits) if self.kind == ATTR else logits.softmax(1)).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.names))

    def index(self, name: str) -> int:
        """Column of ``name``; UserError naming the ones it knows."""
        if name not in self.names:
            raise UserError(f"the classifier knows no attribute '{name}'; it has: {', '.join(self.names)}")
        return self.names.index(name)

    def describe(self, names: list[str] | None = None) -> str:
        """'Male 97.1%, Smiling 91.0%' for ``names`` (default: all)."""
        names = names or self.names
        return ", ".join(f"{n} {100 * self.accuracy.get(n, float('nan')):.1f}%" for n in names)


def heldout_mask(names: list[str], data_path: str | os.PathLike | None = None,
                 classes: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
    """Which images to hold out: (bool (N,), a description of the rule).

    CelebA's valid + test partitions (``list_eval_partition.txt`` or Kaggle's ``.csv`` next to
    ``img_align_celeba``)
    when they hold at least MIN_HELDOUT of these images, else the last HELDOUT_FRACTION of the
    images in name order; with ``classes`` (int (N,), a class per image), the last
    HELDOUT_FRACTION of each class, since names of class folders sort by class ('cat/...'
    before 'dog/...') and the last 10% overall would be one class only.
    """
    n = len(names)
    if data_path and str(data_path).strip() != "builtin":
        from ..data.sources import celeba_partitions  # the .txt list, or Kaggle's .csv

        parts = celeba_partitions(data_path)
        if parts is not None:
            mask = torch.tensor([parts.get(nm, 0) > 0 for nm in names], dtype=torch.bool)
            if int(mask.sum()) >= MIN_HELDOUT and int(mask.sum()) < n:
                return mask, "CelebA valid+test partitions"
    mask = torch.zeros(n, dtype=torch.bool)
    groups = ([list(range(n))] if classes is None else
              [torch.nonzero(classes == k).flatten().tolist() for k in torch.unique(classes)])
    for members in groups:
        m = len(members)
        order = sorted(members, key=lambda i: names[i])
        k = max(1, int(round(m * HELDOUT_FRACTION))) if m > 1 else 0
        mask[order[m - k:]] = True
    if classes is not None:
        return mask, f"last {HELDOUT_FRACTION:.0%} of each class's images in name order"
    return mask, f"last {HELDOUT_FRACTION:.0%} of the images in name order"


def _accuracy(probs: torch.Tensor, labels: torch.Tensor, kind: str, names: list[str]) -> dict[str, float]:
    """Held-out accuracy per name: attributes: (p > 0.5) == label; classes: per-class recall."""
    out: dict[str, float] = {}
    if kind == ATTR:
        right = ((probs > 0.5).float() == labels.round()).float().mean(0)
        out = {n: float(v) for n, v in zip(names, right.tolist())}
    else:
        pred, true = probs.argmax(1), labels.argmax(1)
        for k, n in enumerate(names):
            sel = true == k
            out[n] = float((pred[sel] == k).float().mean()) if bool(sel.any()) else float("nan")
        out["overall"] = float((pred == true).float().mean())
    vals = [v for k, v in out.items() if k != "overall" and not math.isnan(v)]
    out["mean"] = float(np.mean(vals)) if vals else float("nan")
    return out


def train_classifier(images: torch.Tensor, labels: torch.Tensor, names: list[str], *,
                     kind: str = ATTR, heldout: torch.Tensor | None = None, epochs: int = 8,
                     batch_size: int = 64, lr: float = 2e-3, width: int = 32, seed: int = 0,
                     device: str | torch.device = "cpu", bf16: bool = False,
                     progress: bool = False) -> Classifier:
    """Train an :class:`AttributeNet` and measure it on the held-out images.

    images: uint8 (N, 3, R, R). labels: float (N, K), {0, 1} attributes or one-hot classes.
    heldout: bool (N,) images kept out of training and used for the reported accuracy (None:
    no held-out set, accuracy then on the training images, flagged in ``info``).
    Training: AdamW with a cosine schedule, random horizontal flips (faces and animals are
    left-right symmetric, so this doubles the data for free), ``epochs`` passes.
    bf16: autocast the convolutions to bf16 (worth it only on a CPU with native bf16 or a GPU).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, 3, R, R), got {images.dtype} {tuple(images.shape)}")
    n, k = images.shape[0], len(names)
    labels = labels.float()
    if labels.shape != (n, k):
        raise ValueError(f"labels must be ({n}, {k}), got {tuple(labels.shape)}")
    if kind not in (ATTR, CLASS):
        raise ValueError(f"kind must be '{ATTR}' or '{CLASS}', got {kind!r}")
    # The classifier is an auxiliary classifier of real images: the AC loss of the critic.
    spec = LabelSpec(kind, tuple(names), tuple(int(v) for v in labels.sum(0).round().tolist()), n)
    heldout = torch.zeros(n, dtype=torch.bool) if heldout is None else heldout.bool()
    train_idx = torch.nonzero(~heldout).flatten()
    test_idx = torch.nonzero(heldout).flatten()
    if len(train_idx) < 2:
        raise UserError(f"need at least 2 training images for the classifier, got {len(train_idx)}")
    device = torch.device(device)
    torch.manual_seed(seed)
    net = AttributeNet(k, images.shape[-1], width).to(device)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    net.train()
    for epoch in range(epochs):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        seen, loss_sum = 0, 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            if len(idx) < 2:  # batch norm needs two images
                continue
            x = images[idx].to(device).float() / 127.5 - 1.0
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            y = labels[idx].to(device)
            with autocast(device, "bf16" if bf16 else "fp32"):
                logits = net(x)
            loss = ac_loss(logits, y, spec)  # in float32
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
        if progress:
            print(f"classifier: epoch {epoch + 1}/{epochs}, loss {loss_sum / max(seen, 1):.4f}, "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    net.eval()
    clf = Classifier(net, list(names), kind, int(images.shape[-1]))
    eval_idx = test_idx if len(test_idx) else train_idx
    probs = clf.probs(images[eval_idx])
    clf.accuracy = _accuracy(probs, labels[eval_idx], kind, list(names))
    clf.info = {"n_train": int(len(train_idx)), "n_heldout": int(len(test_idx)),
                "accuracy_on": "held-out images" if len(test_idx) else "training images (no held-out set)",
                "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                "train_seconds": round(time.time() - t0, 1)}
    return clf


def save_classifier(clf: Classifier, path: str | os.PathLike) -> Path:
    """Write ``PATH.pt`` (state dict) then ``PATH.json`` (description), both atomically.

    ``path`` is the stem (a '.pt' or '.json' suffix is dropped). Returns the json path.
    """
    stem = Path(path)
    if stem.suffix in (".pt", ".json"):
        stem = stem.with_suffix("")
    state = {k: v.detach().cpu() for k, v in clf.net.state_dict().items()}
    atomic_write(stem.with_suffix(".pt"), lambda tmp: torch.save(state, tmp))
    meta = {"format": "facegan-classifier", "version": CLASSIFIER_VERSION, "names": clf.names,
            "kind": clf.kind, "resolution": clf.resolution, "width": clf.net.width,
            "accuracy": clf.accuracy, "info": clf.info}
    return atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1))


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
    """Read a classifier written by :func:`save_classifier` (``path``: the stem, .pt or .json).

    The weights are read with ``torch.load(weights_only=True)``. UserError for a missing,
    damaged or foreign file.
    """
    stem = Path(path)
    if stem.suffix in (".pt", ".json"):
        stem = stem.with_suffix("")
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if not js.is_file() or not pt.is_file():
        raise UserError(f"no classifier at '{stem}' (needs {pt.name} and {js.name})")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        if meta.get("format") != "facegan-classifier":
            raise ValueError("not a facegan classifier description")
        net = AttributeNet(len(meta["names"]), int(meta["resolution"]), int(meta["width"]))
        state = torch.load(pt, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:  # untrusted files: any failure means 'not a usable classifier'
        raise UserError(f"'{stem}' is not a readable facegan classifier ({str(e).splitlines()[0][:120]}); "
                        "delete it and it is trained again") from None
    net.to(device).eval()
    return Classifier(net, list(meta["names"]), str(meta["kind"]), int(meta["resolution"]),
                      {k: float(v) for k, v in meta.get("accuracy", {}).items()}, meta.get("info", {}))


def classifier_cache_dir(cache_dir: str = "") -> Path:
    """``CACHE/classifiers`` (CACHE: :func:`facegan.files.cache_home`)."""
    return cache_home(cache_dir) / "classifiers"


def classifier_for_data(data_cfg, *, names: list[str] | None = None, epochs: int = 10,
                        seed: int = 0, device: str | torch.device = "cpu",
                        progress: bool = True, retrain: bool = False,
                        require: list[str] | None = None) -> Classifier:
    """The classifier of a labelled data set, trained once and then read from the cache.

    data_cfg: a :class:`facegan.config.DataConfig` (path, crop, resolution: as the generator
    was trained, so the classifier sees real images exactly as the generator learnt them).
    The set is read with partition 'all' and the held-out rule of :func:`heldout_mask`.
    Labels: the data's attributes (all of them unless ``names``), or, for
    ``data_cfg.condition`` 'folders' / 'classes:...', its classes.
    Cache key: the data fingerprint (of the decoded images and labels), the label names, the
    held-out rule and rows, and the training settings (``CACHE/classifiers/<key>.pt`` + ``.json``).
    require: names that must be among the labels (UserError listing them otherwise), checked
    before any training.
    """
    from ..data import load_dataset, resolve_labels
    from ..data.cache import fingerprint

    dcfg = replace(data_cfg, partition="all", hflip=False, max_images=0)
    data = load_dataset(dcfg, progress=progress and sys.stderr.isatty())
    cond = (data_cfg.condition or "").strip()
    if cond == FOLDERS or cond.startswith(CLASSES_PREFIX):
        spec, labels = resolve_labels(cond, data)
        kind, all_names = CLASS, list(spec.names)
    else:
        if data.labels is None or not data.label_names:
            raise UserError(f"'{data_cfg.path}' has no labels to train an attribute classifier on; "
                            "give a CelebA folder with list_attr_celeba.txt (or class sub-folders "
                            "with data.condition=folders)")
        kind, all_names, labels = ATTR, list(data.label_names), data.labels.float()
    missing = [a for a in (require or []) + (names or []) if a not in all_names]
    if missing:
        raise UserError(f"unknown attribute '{missing[0]}'; the data has: {', '.join(all_names)}")
    if names:
        if kind == ATTR:
            labels = labels[:, [all_names.index(a) for a in names]]
            all_names = list(names)
    mask, rule = heldout_mask(data.names, data_cfg.path if data.source == "celeba" else None,
                              classes=labels.argmax(1) if kind == CLASS else None)
    # The held-out rows themselves, not only the rule's name: the data fingerprint is of the
    # images and labels, and two partition files can hold out different rows of the same set.
    held = np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()
    key = fingerprint({"classifier": CLASSIFIER_VERSION, "data": data.fingerprint, "names": all_names,
                       "kind": kind, "heldout": rule, "heldout_rows": held, "epochs": epochs,
                       "seed": seed})
    stem = classifier_cache_dir(data_cfg.cache_dir) / key
    if not retrain and stem.with_suffix(".json").is_file():
        try:
            return load_classifier(stem, device)
        except UserError:
            pass  # damaged cache entry: train again and replace it
    if progress:
        print(f"training the attribute classifier once on {int((~mask).sum())} real images "
              f"({len(all_names)} {'attributes' if kind == ATTR else 'classes'}; held out: "
              f"{int(mask.sum())}, {rule}); cached in {stem}.pt", file=sys.stderr, flush=True)
    dev = torch.device(device)
    bf16 = has_fast_bf16(dev)  # emulated bf16 is slower than fp32
    clf = train_classifier(data.images, labels, all_names, kind=kind, heldout=mask, epochs=epochs,
                           seed=seed, device=dev, bf16=bf16, progress=progress)
    clf.info.update(data_fingerprint=data.fingerprint, heldout_rule=rule, data=str(data_cfg.path))
    save_classifier(clf, stem)
    return clf


__all__ = ["ATTR", "CLASS", "AttributeNet", "Classifier", "classifier_for_data",
           "classifier_cache_dir", "heldout_mask", "load_classifier", "save_classifier",
           "train_classifier"]
