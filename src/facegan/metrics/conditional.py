"""Measurements for conditional generators and for latent edits.

* :func:`conditional_accuracy`: the share of generated images that a classifier trained on
  real images assigns to the label the generator was asked for (StudioGAN's "classifier
  accuracy", a.k.a. GAN-test), per class or per attribute value.
* :func:`per_class_fid` / :func:`intra_class_fid`: intra-class FID / KID: each class's
  generated images against that class's real images (for binary attributes each value,
  e.g. Male=1 and Male=0, is a class), next to the overall FID, because a conditional model
  can score well overall while mixing its classes.
* :func:`edit_metrics`: for a latent direction, the classifier score of the edited attribute
  at each strength (should rise monotonically), the mean absolute change of the other
  attributes (should be small), and identity drift: the Inception-feature distance between a
  face and its edit, against the distance between two random faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..labels import ATTR, CLASS, UNCONDITIONAL, Condition, LabelSpec
from .fid import fid_from_features, kernel_inception_distance

# ---- conditional accuracy -------------------------------------------------------------------

@dataclass(frozen=True)
class LabelSetting:
    """One thing a conditional model can be asked for: a class (column ``name`` = 1) or one
    attribute at 0 or 1 (the others drawn from the data's rates), as ``condition``."""

    display: str  # 'cat' or 'Male=1'
    name: str  # the class or attribute, a column of c
    value: float  # what that column is set to
    condition: Condition


def label_settings(spec: LabelSpec) -> list[LabelSetting]:
    """What a conditional model can be asked for: each class by name, or each attribute set
    to 1 and to 0 (every value of a binary attribute is a class of its own)."""
    if spec.kind == ATTR:
        return [LabelSetting(f"{a}={v}", a, float(v), Condition(attrs=((a, float(v)),)))
                for a in spec.names for v in (1, 0)]
    return [LabelSetting(name, name, 1.0, Condition(cls=name)) for name in spec.names]


def _classifier_column(classifier, name: str) -> int:
    if name not in classifier.names:
        raise UserError(f"the classifier knows no '{name}' (it has: {', '.join(classifier.names)}); "
                        "train it on data with the model's labels")
    return classifier.names.index(name)


def _decisions(classifier, probs: torch.Tensor) -> torch.Tensor:
    """The classifier's 0/1 answer per column, float (N, K): the most probable class one-hot
    for a class classifier, probability > 0.5 per attribute otherwise."""
    if classifier.kind == CLASS:
        return torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).float()
    return (probs > 0.5).float()


def conditional_accuracy(generator: nn.Module, spec: LabelSpec, classifier, *, n: int = 500,
                         seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """Classifier accuracy of a conditional generator's samples.

    For every setting of :func:`label_settings`, n images are generated with that label
    (attributes not named are drawn from the data's rates) and scored: a class counts as
    right when the classifier's most probable class is the one asked for; an attribute value
    when the classifier's probability is on the same side of 0.5. Returns
    ``{"per_label": {"Male=1": 0.93, "Male=0": 0.88}, "per_attribute": {"Male": 0.905}
    (attributes: the mean of its two values, i.e. balanced accuracy), "mean": ..., "n": n}``.
    """
    from ..sampling import generate_images

    if classifier.kind != spec.kind:
        raise UserError(f"this model has '{spec.kind}' labels but the classifier is of kind "
                        f"'{classifier.kind}'; train it on data with the model's labels")
    per_label: dict[str, float] = {}
    for s in label_settings(spec):
        labels = s.condition.labels(spec, n, seed)
        imgs = generate_images(generator, n, seed=seed, batch_size=batch_size, labels=labels)
        col = _classifier_column(classifier, s.name)
        per_label[s.display] = float((_decisions(classifier, classifier.probs(imgs))[:, col]
                                      == s.value).float().mean())
    out: dict[str, Any] = {"per_label": per_label, "n": n}
    by_name: dict[str, list[float]] = {}
    for s in label_settings(spec):
        by_name.setdefault(s.name, []).append(per_label[s.display])
    if spec.kind == ATTR:
        out["per_attribute"] = {a: float(np.mean(v)) for a, v in by_name.items()}
    out["mean"] = float(np.mean([np.mean(v) for v in by_name.values()]))
    return out


# ---- intra-class FID --------------------------------------------------------------------------

def per_class_fid(gen_features: dict[str, np.ndarray], real_features: dict[str, np.ndarray], *,
                  kid: bool = True, seed: int = 0) -> dict[str, Any]:
    """FID (and KID) per class from features: ``{class: float (N_c, D)}`` for generated and
    real images alike -> ``{"per_class": {class: {"fid", "kid_mean", "kid_std", "n_gen",
    "n_real"}}, "mean_fid": ..., "mean_kid": ...}`` (the intra-class FID is the mean over
    classes, as StudioGAN reports it). Each FID is :func:`.fid.fid_from_features` of the two
    sets, so it is the same number ``facegan fid`` gives for those images.
    """
    missing = [c for c in gen_features if c not in real_features]
    if missing:
        raise UserError(f"no real images for class '{missing[0]}'; every class needs real images")
    out: dict[str, Any] = {"per_class": {}}
    for c, g in gen_features.items():
        r = real_features[c]
        if len(g) < 2 or len(r) < 2:
            raise UserError(f"class '{c}' has {len(g)} generated and {len(r)} real images; FID needs "
                            "at least 2 of each")
        rec: dict[str, Any] = {"fid": max(0.0, fid_from_features(g, r)), "n_gen": int(len(g)),
                               "n_real": int(len(r))}
        if kid:
            rec["kid_mean"], rec["kid_std"] = kernel_inception_distance(g, r, seed=seed)
        out["per_class"][c] = rec
    vals = list(out["per_class"].values())
    out["mean_fid"] = float(np.mean([v["fid"] for v in vals]))
    if kid:
        out["mean_kid"] = float(np.mean([v["kid_mean"] for v in vals]))
    return out


def real_features_by_label(features: np.ndarray, labels: torch.Tensor,
                           spec: LabelSpec) -> dict[str, np.ndarray]:
    """Split real features (N, D) by the labels float (N, K) of the same images (one-hot
    classes or {0, 1} attributes) into the settings of :func:`label_settings`: a class's rows,
    or the rows with an attribute at 1 / at 0."""
    lab = labels.float().cpu()
    return {s.display: features[(lab[:, spec.names.index(s.name)].round() == s.value).numpy()]
            for s in label_settings(spec)}


def intra_class_fid(generator: nn.Module, spec: LabelSpec, real_features: np.ndarray, real_labels: torch.Tensor,
                    net, *, n: int = 1000, seed: int = 0, kid: bool = True, batch_size: int = 64,
                    progress: bool = False) -> dict[str, Any]:
    """Intra-class FID / KID of a conditional generator.

    real_features float (N, 2048) and real_labels (N, K): the Inception features and labels of
    the same real images (e.g. ``FeatureStats.features`` and the data's labels at
    ``feature_index``). n images are generated per setting (:func:`label_settings`) and
    compared with that setting's real images. Also ``"overall_fid"``: all generated images
    of the settings pooled against all real features (with classes equally represented,
    which is how intra-class FID weighs them too).
    """
    from ..sampling import generate_images
    from .features import extract_features

    gen: dict[str, np.ndarray] = {}
    for s in label_settings(spec):
        imgs = generate_images(generator, n, seed=seed, labels=s.condition.labels(spec, n, seed))
        gen[s.display] = extract_features(net, imgs, batch_size=batch_size, progress=progress,
                                          desc=f"generated {s.display}")
    real = real_features_by_label(real_features, real_labels, spec)
    out = per_class_fid(gen, real, kid=kid, seed=seed)
    out["overall_fid"] = max(0.0, fid_from_features(np.concatenate(list(gen.values())), real_features))
    out["n_per_class"] = n
    return out


# ---- edits ------------------------------------------------------------------------------------

def is_monotonic(values: Sequence[float], tol: float = 0.0) -> bool:
    """True when ``values`` never go down by more than ``tol`` from one to the next."""
    v = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.diff(v) >= -tol))


@torch.inference_mode()
def edit_metrics(generator: nn.Module, classifier, vector: torch.Tensor, attr: str, *,
                 labels: LabelSpec = UNCONDITIONAL, strength: float = 3.0, steps: int = 7,
                 n: int = 64, seed: int = 0, net=None, batch_size: int = 64,
                 watch: Sequence[str] = (), z: torch.Tensor | None = None,
                 c: torch.Tensor | None = None, photos: torch.Tensor | None = None) -> dict[str, Any]:
    """How well a direction edits ``attr``.

    n faces (``sampling.latents(n, D, seed)``; a conditional generator keeps one label per
    face, ``labels.draw(n, seed)``), or the given ones (``z`` float (N, D), e.g. projected
    photos, with labels ``c`` float (N, K), default none; n is then N; with ``photos`` uint8
    (N, 3, R, R), the photos they were projected from, each edit keeps its photo's detail:
    :func:`facegan.directions.edit_latent_images`), are moved to ``steps``
    strengths evenly from ``-strength`` to ``+strength`` (steps odd, so 0 is one of them) and
    scored by the classifier. Returns:

    - ``strengths`` and ``target``: the mean probability of ``attr`` at each strength, and
      ``monotonic`` (it never decreases), ``target_change``: p(+strength) - p(-strength).
    - ``others_change``: the mean over the other attributes and faces of |p(edit) - p(face)|,
      averaged over the two ends; ``target_abs_change`` the same for ``attr`` itself, so the
      two compare directly. ``others_top``: the three other attributes that move most;
      ``watched``: that change for each attribute named in ``watch`` (e.g. the ones an edit
      was meant to keep).
    - with ``net`` (an Inception network): ``identity_drift``, the mean Inception-feature L2
      distance between a face and its edit at +-strength, ``random_pair_distance``, the mean
      distance between two different faces (face i and face i+1), and their ratio (< 1: an
      edit keeps a face closer to itself than to another face).
    """
    from ..directions import edit_images, edit_latent_images

    if steps < 3 or steps % 2 == 0:
        raise UserError(f"steps must be odd and at least 3 (so strength 0 is one of them), got {steps}")
    col = classifier.index(attr)
    strengths = torch.linspace(-strength, strength, steps)
    if z is None:
        imgs = edit_images(generator, vector.float(), strengths, n, labels=labels,
                           seed=seed)  # uint8 (n, S, 3, R, R)
    else:
        n = z.shape[0]
        c = torch.zeros(n, labels.dim) if c is None else c
        imgs = edit_latent_images(generator, z, vector.float(), strengths, c, photos=photos)
    probs = classifier.probs(imgs.flatten(0, 1)).view(n, steps, -1)  # (n, S, K)
    mid = steps // 2
    target = probs[:, :, col].mean(0)
    others = [k for k in range(probs.shape[-1]) if k != col]
    ends = (0, steps - 1)
    abs_change = torch.stack([(probs[:, e] - probs[:, mid]).abs() for e in ends]).mean(0).mean(0)  # (K,)
    top = sorted(others, key=lambda k: -float(abs_change[k]))[:3]
    out: dict[str, Any] = {
        "attr": attr, "n": n, "strengths": [float(s) for s in strengths],
        "target": [float(t) for t in target], "monotonic": is_monotonic(target.tolist()),
        "target_change": float(target[-1] - target[0]),
        "target_abs_change": float(abs_change[col]),
        "others_change": float(abs_change[others].mean()) if others else 0.0,
        "others_top": {classifier.names[k]: float(abs_change[k]) for k in top},
        "watched": {w: float(abs_change[classifier.index(w)]) for w in watch},
    }
    if net is not None:
        from .features import extract_features

        sel = torch.cat([imgs[:, mid], imgs[:, 0], imgs[:, -1]])  # (3n, 3, R, R)
        f = torch.from_numpy(extract_features(net, sel, batch_size=batch_size)).double()
        f0, f_lo, f_hi = f[:n], f[n:2 * n], f[2 * n:]
        drift = torch.cat([(f_lo - f0).norm(dim=1), (f_hi - f0).norm(dim=1)]).mean()
        rand = (f0 - f0.roll(1, 0)).norm(dim=1).mean() if n > 1 else torch.tensor(float("nan"))
        out.update(identity_drift=float(drift), random_pair_distance=float(rand),
                   drift_ratio=float(drift / rand))
    return out


__all__ = ["conditional_accuracy", "edit_metrics", "intra_class_fid", "is_monotonic",
           "label_settings", "per_class_fid", "real_features_by_label"]
