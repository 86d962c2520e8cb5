"""Improved precision and recall (Kynkaanniemi et al. 2019) on feature arrays.

Each set of features stands for a manifold: the union of balls around its points, each ball's
radius the distance to that point's k-th nearest neighbour in the same set (k = 3, the point
itself not counted). Then

* precision = the share of generated points inside the real manifold (are the samples
  realistic?),
* recall = the share of real points inside the generated manifold (do the samples cover the
  variety of the real data?).

A point is inside when its distance to some point of the other set is at most that point's
radius. Distances are Euclidean, computed with ``torch.cdist`` in blocks of rows, so no more
than about ``block_bytes`` of distances are held at once (10,000 x 10,000 float32 distances
would be 400 MB, twice that in float64).
"""

from __future__ import annotations

import numpy as np
import torch

NEIGHBOURS = 3  # k of the paper
MAX_POINTS = 10_000  # points per set; larger sets use a fixed random subset of this many
BLOCK_BYTES = 64 * 2**20  # distances held at once


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)
    if t.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(t.shape)}")
    return t


def _rows_per_block(cols: int, block_bytes: int) -> int:
    return max(1, block_bytes // (4 * max(1, cols)))


def knn_radii(feats: torch.Tensor, k: int = NEIGHBOURS, block_bytes: int = BLOCK_BYTES) -> torch.Tensor:
    """feats float (N, D) -> float (N,): each point's distance to its k-th nearest other point.

    The point itself (distance 0) is the first of the k + 1 smallest distances of its row, so
    a duplicate point counts as a neighbour at distance 0."""
    n = feats.shape[0]
    if n <= k:
        raise ValueError(f"k-NN radii with k = {k} need more than {k} points, got {n}")
    rows = _rows_per_block(n, block_bytes)
    out = []
    for i in range(0, n, rows):
        d = torch.cdist(feats[i:i + rows], feats)  # (b, N)
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def subsample(feats: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """At most ``max_points`` rows of ``feats`` (N, D): all of them, or a fixed random subset."""
    feats = np.asarray(feats)
    if len(feats) <= max_points:
        return feats
    idx = np.sort(np.random.default_rng(seed).choice(len(feats), max_points, replace=False))
    return feats[idx]


def precision_recall(gen_features, real_features, *, k: int = NEIGHBOURS,
                     block_bytes: int = BLOCK_BYTES, max_points: int = MAX_POINTS, seed: int = 0,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """Improved precision and recall of generated features (Ng, D) against real ones (Nr, D)
    -> (precision, recall), each in [0, 1].

    Each set is first cut to at most ``max_points`` rows (a fixed random subset, ``seed``);
    both need more than ``k`` rows. Float32 distances, in blocks of ``block_bytes``.
    """
    g = _as_tensor(subsample(gen_features, max_points, seed), device)
    r = _as_tensor(subsample(real_features, max_points, seed), device)
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"feature sizes differ: {tuple(g.shape)} vs {tuple(r.shape)}")
    for t, what in ((g, "generated"), (r, "real")):
        if t.shape[0] <= k:
            raise ValueError(f"precision/recall with k = {k} needs more than {k} {what} "
                             f"samples, got {t.shape[0]}")
    r_radii = knn_radii(r, k, block_bytes)  # (Nr,)
    g_radii = knn_radii(g, k, block_bytes)  # (Ng,)
    in_real = torch.zeros(g.shape[0], dtype=torch.bool, device=g.device)
    in_gen = torch.zeros(r.shape[0], dtype=torch.bool, device=g.device)
    rows = _rows_per_block(r.shape[0], block_bytes)
    # One pass over the generated-to-real distances serves both: a row block answers
    # precision for its generated points and adds to the real points it covers.
    for i in range(0, g.shape[0], rows):
        d = torch.cdist(g[i:i + rows], r)  # (b, Nr)
        in_real[i:i + rows] = (d <= r_radii[None, :]).any(dim=1)
        in_gen |= (d <= g_radii[i:i + rows, None]).any(dim=0)
    return int(in_real.sum()) / len(in_real), int(in_gen.sum()) / len(in_gen)


__all__ = ["NEIGHBOURS", "knn_radii", "precision_recall", "subsample"]
