"""Steering a trained generator without retraining: latent directions and edits.

Two ways to find a direction ``v`` (unit norm, length ``z_dim``); an edit is ``z + a * v``:

* InterFaceGAN (Shen et al. 2020): sample latents, score their images with an attribute
  classifier trained on real images, keep the most and least confident ``ratio`` of them
  (default 2% each side), split 70/30, fit a linear boundary in latent space; its unit normal,
  pointing towards the attribute, is the direction, and the boundary's accuracy on the 30% is
  reported. ``keep``: each direction is projected onto the orthogonal complement of the kept
  attributes' directions ("conditional manipulation"), so moving along it does not move the
  kept attributes' boundaries (CelebA attributes are correlated: Bald alone also turns women
  into men).
* SeFa (Shen & Zhou 2021): no labels, no sampling: the generator's first layer maps z
  linearly (``y = A z``), and the directions that change ``y`` most are the top eigenvectors
  of ``A^T A``. Each is named after the attribute whose classifier score it moves most (when
  a classifier is at hand), and signed so that a positive strength raises that score.

Directions live in ``RUN/directions.json`` (read by the web page too), exactly::

    {"version": 1, "z_dim": D, "directions": {"Smiling": {"vector": [D floats, unit norm],
     "method": "interfacegan" | "sefa", "accuracy": float | null, "kept": ["Male", ...]}}}

written atomically and merged with the directions already there.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .labels import UNCONDITIONAL, LabelSpec

DIRECTIONS_FILE = "directions.json"
DIRECTIONS_VERSION = 1
METHODS = ("interfacegan", "sefa")
DEFAULT_RATIO = 0.02  # InterFaceGAN's share of most / least confident samples, each side
VAL_FRACTION = 0.3  # InterFaceGAN's validation share of those samples


# ---- fitting a boundary ---------------------------------------------------------------------

def fit_boundary(z: torch.Tensor, y: torch.Tensor, *, l2: float = 1e-3,
                 max_iter: int = 200) -> tuple[torch.Tensor, float]:
    """Linear boundary in latent space by L2-regularised logistic regression.

    z float (N, D), y (N,) in {0, 1} -> (w float64 (D,), b): ``sigmoid(z @ w + b)`` is the
    probability of y = 1. Full-batch L-BFGS in float64 (the problem is convex and small: a few
    hundred latents of 128 dims), so the fit is deterministic.

    Why logistic regression and not InterFaceGAN's linear SVM: no extra dependency (torch
    alone), and on the two well-separated extremes of a score both give nearly the same
    normal; only the normal's direction is used.
    """
    x = z.detach().double().cpu()
    t = y.detach().double().cpu()
    if x.ndim != 2 or t.shape != (x.shape[0],):
        raise ValueError(f"z must be (N, D) and y (N,), got {tuple(x.shape)} and {tuple(t.shape)}")
    if not (bool((t == 0).any()) and bool((t == 1).any())):
        raise ValueError("fit_boundary needs both classes (y = 0 and y = 1)")
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ w + b, t) + 0.5 * l2 * (w @ w)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), float(b.detach())


def _best_threshold(proj: torch.Tensor, y: torch.Tensor) -> float:
    """The threshold on 1-d projections (N,) that best separates y (N,) in {0, 1} (y = 1 above)."""
    order = torch.argsort(proj)
    p, t = proj[order].double(), y[order].double()
    n = len(p)
    # Threshold before position i: 0..i-1 predicted 0, i..n-1 predicted 1.
    zeros_left = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - t, 0)])
    ones_right = torch.cat([torch.cumsum(t.flip(0), 0).flip(0), torch.zeros(1, dtype=torch.float64)])
    i = int(torch.argmax(zeros_left + ones_right))
    if i == 0:
        return float(p[0]) - 1.0
    if i == n:
        return float(p[-1]) + 1.0
    return float(p[i - 1] + p[i]) / 2.0


@dataclass
class Boundary:
    """One InterFaceGAN fit: the unit normal (D,) pointing to the attribute, the validation
    accuracy of the boundary, and the latents / labels it was fitted and validated on
    (kept so that a projected direction can be re-validated on the same split)."""

    normal: torch.Tensor
    accuracy: float
    z_train: torch.Tensor
    y_train: torch.Tensor
    z_val: torch.Tensor
    y_val: torch.Tensor

    def accuracy_of(self, v: torch.Tensor) -> float:
        """Validation accuracy of the direction ``v`` (D,) with its threshold re-fitted on the
        training split: how well ``z . v`` alone still tells the two extremes apart."""
        v = v.double()
        thr = _best_threshold(self.z_train.double() @ v, self.y_train)
        pred = (self.z_val.double() @ v > thr).double()
        return float((pred == self.y_val.double()).double().mean())


def interfacegan_boundary(z: torch.Tensor, scores: torch.Tensor, *, ratio: float = DEFAULT_RATIO,
                          val_fraction: float = VAL_FRACTION, seed: int = 0) -> Boundary:
    """InterFaceGAN's fit: z float (N, D) latents, scores float (N,) (a classifier's
    probability or logit of the attribute) -> :class:`Boundary`.

    The ``ratio * N`` lowest-scoring latents are the negatives, the ``ratio * N`` highest the
    positives (at least 5 a side); each side is shuffled (``seed``) and split
    ``1 - val_fraction`` / ``val_fraction`` for fitting and validation.
    """
    n = z.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"scores must be ({n},), got {tuple(scores.shape)}")
    k = max(5, int(round(n * ratio)))
    if 2 * k > n:
        raise UserError(f"InterFaceGAN needs at least {2 * k} samples for its {k} most and least "
                        f"confident ones, got {n}; raise --n")
    order = torch.argsort(scores.detach().float().cpu(), stable=True)
    g = torch.Generator().manual_seed(seed)
    sides = []
    for idx, label in ((order[:k], 0.0), (order[n - k:], 1.0)):
        idx = idx[torch.randperm(k, generator=g)]
        n_val = max(1, int(round(k * val_fraction)))
        sides.append((idx[n_val:], idx[:n_val], label))
    z = z.detach().cpu()
    z_tr = torch.cat([z[tr] for tr, _, _ in sides])
    y_tr = torch.cat([torch.full((len(tr),), lab) for tr, _, lab in sides])
    z_va = torch.cat([z[va] for _, va, _ in sides])
    y_va = torch.cat([torch.full((len(va),), lab) for _, va, lab in sides])
    w, b = fit_boundary(z_tr, y_tr)
    acc = float((((z_va.double() @ w + b) > 0).double() == y_va.double()).double().mean())
    normal = (w / w.norm().clamp_min(1e-12)).float()
    return Boundary(normal, acc, z_tr, y_tr, z_va, y_va)


def orthogonalize(v: torch.Tensor, kept: Sequence[torch.Tensor], name: str = "the direction",
                  kept_names: Sequence[str] = ()) -> torch.Tensor:
    """``v`` (D,) with the span of ``kept`` (each (D,)) projected out, renormalised to unit norm.

    InterFaceGAN's conditional manipulation: for one kept direction n2 this is
    ``(v - (v . n2) n2) / |...|``; for several, the projection onto the orthogonal complement
    of their span (an orthonormal basis by QR), so moving along the result leaves every kept
    direction's coordinate ``z . n_k`` unchanged. UserError when ``v`` lies (almost) in that
    span: nothing of it would be left to edit.
    """
    v = v.double()
    if not kept:
        return (v / v.norm()).float()
    basis = torch.stack([k.double() for k in kept], dim=1)  # (D, M)
    q, r = torch.linalg.qr(basis)
    q = q[:, r.diagonal().abs() > 1e-8 * max(1.0, float(r.diagonal().abs().max()))]
    out = v - q @ (q.T @ v)
    if float(out.norm()) < 1e-3 * float(v.norm()):
        raise UserError(f"{name} lies in the span of the kept directions "
                        f"({', '.join(kept_names) or 'kept'}); nothing is left to edit: keep fewer")
    return (out / out.norm()).float()


# ---- SeFa -----------------------------------------------------------------------------------

def first_layer_matrix(generator: nn.Module) -> torch.Tensor:
    """The matrix A (out, latent_dim) of the generator's first layer acting on z: y = A z.

    DCGAN: the first transposed conv (latent + embed, C, 4, 4) on a 1x1 input is a linear map
    z -> (C, 4, 4): A = weight[:latent].reshape(latent, C * 16).T. ResNet: the seed Linear,
    A = fc.weight[:, :latent]. A conditional generator's label-embedding inputs are left out
    (only z is steered). Spectral norm: the normalised weight, the one the forward pass uses.
    """
    from .models import DCGANGenerator, ResNetGenerator

    d = int(generator.latent_dim)
    with torch.no_grad():
        if isinstance(generator, DCGANGenerator):
            w = generator.net[0].weight  # (in, C, 4, 4): ConvTranspose2d weight layout
            return w[:d].reshape(d, -1).T.detach().float().cpu()
        if isinstance(generator, ResNetGenerator):
            return generator.fc.weight[:, :d].detach().float().cpu()
    raise UserError(f"SeFa needs a DCGAN or ResNet generator, got {type(generator).__name__}")


def sefa(generator: nn.Module, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa's closed form: the top ``k`` eigenvectors of ``A^T A`` (A from
    :func:`first_layer_matrix`) -> (directions float (k, D), unit rows; eigenvalues (k,),
    descending). Each vector's sign is fixed so its largest-magnitude entry is positive
    (eigenvectors have no sign of their own; this makes the output reproducible)."""
    a = first_layer_matrix(generator).double()
    d = a.shape[1]
    if not 1 <= k <= d:
        raise UserError(f"--unsupervised K must be between 1 and the latent size {d}, got {k}")
    vals, vecs = torch.linalg.eigh(a.T @ a)  # ascending
    vals, vecs = vals.flip(0)[:k], vecs.flip(1)[:, :k].T  # (k,), (k, D)
    sign = torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    return (vecs * sign).float(), vals.float()


# ---- generating and scoring -----------------------------------------------------------------

def score_latents(generator: nn.Module, classifier, z: torch.Tensor, c: torch.Tensor,
                  batch_size: int = 256) -> torch.Tensor:
    """Classifier probabilities of the images of latents z float (N, D) with labels c float
    (N, K) (K = 0 without labels) -> float (N, K') for the classifier's K' names. The images
    are quantised as saved PNGs are, so the classifier scores exactly what a user sees."""
    from .sampling import generate

    out = []
    for i in range(0, z.shape[0], batch_size):
        imgs = generate(generator, z[i:i + batch_size], c[i:i + batch_size], batch_size=batch_size)
        out.append(classifier.probs(imgs))
    return torch.cat(out)


def edit_latents(z: torch.Tensor, vector: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """z (N, D), vector (D,), strengths (S,) -> (N, S, D): ``z + a * vector`` for each a."""
    return z[:, None, :] + strengths.to(z.dtype)[None, :, None] * vector.to(z.dtype)[None, None, :]


def edit_images(generator: nn.Module, vector: torch.Tensor, strengths: torch.Tensor, n: int, *,
                labels: LabelSpec = UNCONDITIONAL, seed: int = 0, batch_size: int = 256,
                truncation: float | None = None) -> torch.Tensor:
    """n faces (latents ``sampling.latents(n, D, seed, truncation=truncation)``), each moved
    along ``vector`` (D,): uint8 (n, S, 3, R, R); column j is strength ``strengths[j]`` (S,).
    A conditional generator keeps one label per face, ``labels.draw(n, seed)``. Truncation
    applies to the faces drawn, not to the edit: ``z + a * vector`` may leave [-T, T]."""
    from .sampling import latents

    z = latents(n, generator.latent_dim, seed, truncation=truncation)
    return edit_latent_images(generator, z, vector, strengths, labels.draw(n, seed), batch_size=batch_size)


def edit_latent_images(generator: nn.Module, z: torch.Tensor, vector: torch.Tensor,
                       strengths: torch.Tensor, c: torch.Tensor, *, batch_size: int = 256,
                       photos: torch.Tensor | Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Given faces (latents z float (N, D), e.g. projected photos, labels c float (N, K)), each
    moved along ``vector`` (D,): uint8 (N, S, 3, R, R), column j at strength ``strengths[j]``
    (S,). What :func:`facegan.directions.edit_images` does for random faces.

    ``photos``: uint8 (N, 3, R, R), the photos the latents were projected from (their aligned
    crops), or N such (3, R, R) images or None: the edits keep each given photo's detail
    (:func:`facegan.sampling.keep_detail`), so strength 0 is the photo itself."""
    from .sampling import generate, keep_detail, photo_detail

    zs = edit_latents(z.float(), vector, strengths)  # (N, S, D)
    n, s = zs.shape[:2]
    imgs = generate(generator, zs.reshape(n * s, -1), c.float().repeat_interleave(s, dim=0),
                    batch_size=batch_size)
    imgs = imgs.view(n, s, *imgs.shape[1:])
    if photos is None:
        return imgs
    if len(photos) != n:
        raise ValueError(f"edit_latent_images: {len(photos)} photos for {n} faces")
    kept = [i for i, p in enumerate(photos) if p is not None]
    if kept:
        base = generate(generator, z[kept].float(), c[kept].float(), batch_size=batch_size)
        given = torch.stack([photos[i] for i in kept])
        done = dict(zip(kept, keep_detail(imgs[kept], photo_detail(given, base)[:, None])))
        imgs = torch.stack([done.get(i, imgs[i]) for i in range(n)])
    return imgs


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def parse_strength(text: str) -> tuple[float, float]:
    """'-3:3' -> (-3.0, 3.0); a single number 'A' -> (-A, A). UserError for anything else."""
    t = (text or "").strip()
    m = re.fullmatch(rf"({_NUMBER})\s*:\s*({_NUMBER})", t)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
    elif re.fullmatch(_NUMBER, t):
        hi = abs(float(t))
        lo = -hi
    else:
        raise UserError(f"--strength '{text}' is not LOW:HIGH or one number S (for -S:S); "
                        "write e.g. --strength -3:3")
    # A literal too large for a float (1e309) reads as inf: not a strength to move by, and not
    # a LOW/HIGH order problem either. The edit computes in float32, where anything above its
    # largest value (3.4e38) is inf as well.
    big = float(torch.finfo(torch.float32).max)
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > big:
        raise UserError(f"--strength '{text}' is not LOW:HIGH or one number S (for -S:S) of "
                        "finite numbers (this one is too large); write e.g. --strength -3:3")
    if lo >= hi:
        raise UserError(f"--strength '{text}': LOW must be below HIGH, e.g. --strength -3:3")
    return lo, hi


# ---- directions.json ------------------------------------------------------------------------

def directions_path(run: str | os.PathLike) -> Path:
    """RUN/directions.json for a run folder; for a checkpoint file, its run folder's (or the
    file's own folder when it is not inside a run)."""
    from .checkpoint import run_dir_of

    p = Path(run)
    if p.is_dir():
        return p / DIRECTIONS_FILE
    home = run_dir_of(p) if p.exists() else None
    return (home or p.parent) / DIRECTIONS_FILE


def direction_entry(vector: torch.Tensor, method: str, accuracy: float | None,
                    kept: Sequence[str] = ()) -> dict[str, Any]:
    """One entry of directions.json; the vector is renormalised to unit norm."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    v = vector.detach().double().flatten()
    v = v / v.norm()
    return {"vector": [float(x) for x in v.tolist()], "method": method,
            "accuracy": None if accuracy is None else float(accuracy), "kept": list(kept)}


def _check_document(doc: Any, where: Path) -> dict[str, Any]:
    bad = f"'{where}' is not a facegan directions file"
    if not isinstance(doc, dict) or doc.get("version") != DIRECTIONS_VERSION:
        raise UserError(f"{bad} (version {DIRECTIONS_VERSION}); delete it and run 'facegan "
                        "directions' again")
    z_dim = doc.get("z_dim")
    dirs = doc.get("directions")
    if not isinstance(z_dim, int) or not isinstance(dirs, dict):
        raise UserError(f"{bad} (needs z_dim and directions); delete it and run 'facegan directions' again")
    for name, e in dirs.items():
        vec = e.get("vector") if isinstance(e, dict) else None
        # Numbers only (json has no NaN but Python's reader accepts it), and not all zero:
        # an edit divides by the norm.
        if (not isinstance(vec, list) or len(vec) != z_dim
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                           and math.isfinite(x) for x in vec)
                or not any(vec)):
            raise UserError(f"'{where}': direction '{name}' has no vector of length {z_dim} "
                            "(finite, not all zero); "
                            "delete the file and run 'facegan directions' again")
    return doc


def read_directions(path: str | os.PathLike) -> dict[str, Any]:
    """A directions.json file (format above) as a dict, checked. UserError when it cannot be
    read or is not one, naming the command that writes it again."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read '{path}' ({e}); delete it and run 'facegan directions' again") from None
    return _check_document(doc, path)


def load_directions(run: str | os.PathLike) -> dict[str, Any]:
    """The run's directions.json (:func:`directions_path`) as a dict. UserError when missing
    or damaged, naming the command that writes it."""
    path = directions_path(run)
    if not path.is_file():
        raise UserError(f"'{run}' has no {DIRECTIONS_FILE}; find directions first: facegan "
                        f"directions {run} --data CELEBA_FOLDER (or --unsupervised K)")
    return read_directions(path)


def save_directions(run: str | os.PathLike, z_dim: int, new: dict[str, dict[str, Any]]) -> Path:
    """Merge ``new`` (name -> :func:`direction_entry`) into the run's directions.json and write
    it atomically. A file for another latent size is refused (UserError), not overwritten; a
    failed write is a :class:`~facegan.files.WriteFailed` (a one-line UserError)."""
    path = directions_path(run)
    doc: dict[str, Any] = {"version": DIRECTIONS_VERSION, "z_dim": int(z_dim), "directions": {}}
    if path.is_file():
        old = load_directions(run)
        if old["z_dim"] != z_dim:
            raise UserError(f"'{path}' holds directions for z_dim {old['z_dim']}, but this generator's "
                            f"latent has {z_dim}; move the file away first")
        doc["directions"].update(old["directions"])
    for name, e in new.items():
        if len(e["vector"]) != z_dim:
            raise ValueError(f"direction '{name}' has length {len(e['vector'])}, not {z_dim}")
        doc["directions"][name] = e
    from .files import atomic_write_text, reporting_write_errors

    with reporting_write_errors(path):  # a read-only folder, a full disk: one line, not a traceback
        return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def get_direction(doc: dict[str, Any], name: str, run: str | os.PathLike = "RUN") -> torch.Tensor:
    """The unit vector float (D,) of direction ``name``; UserError listing the names there are."""
    dirs = doc["directions"]
    if name not in dirs:
        have = ", ".join(sorted(dirs)) or "none"
        raise UserError(f"no direction '{name}' in {directions_path(run)}; it has: {have} (add one "
                        f"with facegan directions {run} --data CELEBA_FOLDER --attrs {name})")
    v = torch.tensor(dirs[name]["vector"], dtype=torch.float32)
    return v / v.norm()


# ---- the whole recipe, for the CLI ------------------------------------------------------------

def name_sefa_directions(generator: nn.Module, classifier, vectors: torch.Tensor, *,
                         labels: LabelSpec = UNCONDITIONAL, n: int = 128, strength: float = 3.0,
                         seed: int = 0) -> list[tuple[str, float, torch.Tensor]]:
    """For each SeFa vector (k, D): (the attribute whose mean classifier probability it moves
    most between ``-strength`` and ``+strength`` over n samples, that change (> 0), the vector
    signed so that + raises the attribute). A conditional generator keeps one label per
    sample, ``labels.draw(n, seed)``."""
    from .sampling import latents

    z = latents(n, generator.latent_dim, seed)
    c = labels.draw(n, seed)
    out = []
    for v in vectors:
        lo = score_latents(generator, classifier, z - strength * v, c).mean(0)
        hi = score_latents(generator, classifier, z + strength * v, c).mean(0)
        delta = hi - lo
        j = int(delta.abs().argmax())
        sign = 1.0 if float(delta[j]) >= 0 else -1.0
        out.append((classifier.names[j], abs(float(delta[j])), v * sign))
    return out


def parse_names(text: str | None, option: str) -> list[str]:
    """'Male, Smiling' -> ['Male', 'Smiling'] (empty for None); UserError for a repeat."""
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    if len(set(names)) != len(names):
        raise UserError(f"{option} names an attribute twice: {text}")
    return names


__all__ = ["DIRECTIONS_FILE", "Boundary", "direction_entry", "directions_path", "edit_images",
           "edit_latents", "first_layer_matrix", "fit_boundary", "get_direction",
           "interfacegan_boundary", "load_directions", "name_sefa_directions", "orthogonalize",
           "parse_names", "parse_strength", "read_directions", "save_directions", "score_latents", "sefa"]
