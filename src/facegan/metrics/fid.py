"""The maths of FID, KID and the Inception Score, on feature arrays (numpy, float64).

* FID (Heusel et al. 2017): Frechet distance between Gaussian fits of two feature sets,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, with ``scipy.linalg.sqrtm`` and the usual
  handling (as pytorch-fid / clean-fid): retry with ``eps`` on the diagonals when the root is
  not finite, drop a negligible imaginary part.
* KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel ``k(x, y) = (x.y / d + 1)^3``,
  averaged over 100 random subsets of 1,000 (or of the smaller set's size); mean and std.
* IS (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over 10 splits; mean and std.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def gaussian_fit(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """feats (N, D) -> (mu float64 (D,), sigma float64 (D, D)), sigma = np.cov (ddof=1)."""
    x = np.asarray(feats, dtype=np.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2). Float64 throughout."""
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sizes differ: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Product of (nearly) singular covariances: nudge both diagonals, as pytorch-fid does.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Numerical error gives a tiny imaginary part; a large one means a real problem.
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
            if np.iscomplexobj(covmean):
                imag = np.max(np.abs(np.diagonal(covmean).imag))
                if imag > 1e-3:
                    raise ValueError(f"matrix square root has an imaginary component {imag:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two feature sets (N1, D), (N2, D).

    When a set has fewer rows than dimensions its covariance is low-rank, and the trace term
    has an exact small form: with S1 = A^T A, S2 = B^T B (A, B the centred features over
    sqrt(N - 1)), the non-zero eigenvalues of S1 S2 are the squared singular values of A B^T,
    so tr((S1 S2)^(1/2)) = ||A B^T||_* (nuclear norm) -- an (N1, N2) SVD instead of a
    (D, D) sqrtm, and no imaginary parts. Otherwise this is :func:`frechet_distance`.
    """
    x1 = np.asarray(feats1, dtype=np.float64)
    x2 = np.asarray(feats2, dtype=np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"feature shapes do not match: {x1.shape} vs {x2.shape}")
    n1, n2, d = x1.shape[0], x2.shape[0], x1.shape[1]
    if min(n1, n2) >= d:
        return frechet_distance(*gaussian_fit(x1), *gaussian_fit(x2))
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a = (x1 - mu1) / np.sqrt(n1 - 1)
    b = (x2 - mu2) / np.sqrt(n2 - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * nuclear)


def _poly_kernel_sums(x: torch.Tensor, y: torch.Tensor, d: int) -> float:
    """Unbiased MMD^2 of one subset pair; x, y float64 (m, d)."""
    m = x.shape[0]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID between two feature sets (N1, D), (N2, D) -> (mean, std) over the subsets.

    Each subset draws m = min(subset_size, N1, N2) rows of each set without replacement and
    computes the unbiased MMD^2 with the cubic polynomial kernel (as stylegan2-ada, clean-fid
    and torch-fidelity). Float64 matrix products (torch, so all cores are used).
    """
    f1 = torch.as_tensor(np.asarray(feats1), dtype=torch.float64)
    f2 = torch.as_tensor(np.asarray(feats2), dtype=torch.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes do not match: {tuple(f1.shape)} vs {tuple(f2.shape)}")
    d = f1.shape[1]
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    vals = np.empty(num_subsets)
    for i in range(num_subsets):
        a = f1[torch.from_numpy(rng.choice(f1.shape[0], m, replace=False))]
        b = f2[torch.from_numpy(rng.choice(f2.shape[0], m, replace=False))]
        vals[i] = _poly_kernel_sums(a, b, d)
    return float(vals.mean()), float(vals.std())


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """probs (N, C) softmax outputs -> (mean, std) of exp(mean KL(p(y|x) || p(y))) over splits."""
    p = np.asarray(probs, dtype=np.float64)
    n = p.shape[0]
    splits = max(1, min(splits, n))
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0: use xlogy-style masking so exact zeros in p do not give NaN.
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
