"""Feature statistics (mean, covariance, a feature sample for KID) and their on-disk cache.

Real-data statistics are computed once per (dataset fingerprint, feature network) and stored
as ``CACHE/stats/<fingerprint>-<network_id>.npz`` (``CACHE`` = the data config's cache_dir,
else ``$FACEGAN_CACHE``, else ``~/.cache/facegan``), written atomically. The fingerprint of a
:class:`facegan.data.ImageSet` is a hash of its decoded content (pixels, labels, names), so a
change to a file, the partition, crop, resolution or max_images computes new statistics, and
a fresh copy of the same files (new mtimes, another path) does not.

File layout (``np.load(allow_pickle=False)`` reads it): ``mu`` float64 (D,), ``sigma`` float64
(D, D), ``features`` float32 (M, D) -- all features when N <= 10,000, else a fixed random
subset of 10,000 -- ``feature_index`` int64 (M,) (rows of the image set they come from),
``n`` (images the moments were computed on), and the strings ``network_id``,
``fingerprint``, ``protocol``. A file with only ``mu`` and ``sigma`` (pytorch-fid's
``--save-stats`` format) also loads; it gives FID but not KID.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import atomic_write, cache_home

MAX_KID_FEATURES = 10_000
PROTOCOL = "fid-tf-inception-2015-12-05/clean-bicubic-299/uint8"
STATS_VERSION = 1


@dataclass
class FeatureStats:
    """Gaussian fit of a feature set, plus the features KID needs.

    mu: float64 (D,); sigma: float64 (D, D) (unbiased covariance, ddof=1, as np.cov);
    features: float32 (M, D) or None; feature_index: int64 (M,) rows of the source set.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    feature_index: np.ndarray | None = None
    network_id: str = ""
    fingerprint: str = ""
    protocol: str = PROTOCOL

    @classmethod
    def from_features(cls, feats: np.ndarray, *, max_features: int = MAX_KID_FEATURES,
                      seed: int = 0, network_id: str = "", fingerprint: str = "") -> FeatureStats:
        """feats: (N, D) float -> statistics keeping up to ``max_features`` rows for KID."""
        from .fid import gaussian_fit

        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[0] < 2:
            raise UserError(f"need at least 2 images for feature statistics, got {feats.shape[0]}")
        mu, sigma = gaussian_fit(feats)
        n = feats.shape[0]
        if n <= max_features:
            index = np.arange(n, dtype=np.int64)
        else:
            index = np.sort(np.random.default_rng(seed).choice(n, max_features, replace=False))
        return cls(mu=mu, sigma=sigma, n=n, features=np.ascontiguousarray(feats[index], np.float32),
                   feature_index=index.astype(np.int64), network_id=network_id,
                   fingerprint=fingerprint)


def save_stats(path: str | os.PathLike, stats: FeatureStats) -> Path:
    """Write ``stats`` to ``path`` (.npz) atomically."""
    arrays = {
        "mu": np.asarray(stats.mu, np.float64),
        "sigma": np.asarray(stats.sigma, np.float64),
        "n": np.int64(stats.n),
        "network_id": np.str_(stats.network_id),
        "fingerprint": np.str_(stats.fingerprint),
        "protocol": np.str_(stats.protocol),
        "version": np.int64(STATS_VERSION),
    }
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, np.float32)
        idx = stats.feature_index
        arrays["feature_index"] = np.asarray(
            idx if idx is not None else np.arange(len(stats.features)), np.int64)

    def _write(tmp: str) -> None:
        # A file object, so np.savez does not append '.npz' to the temporary name.
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, _write)


def remake_hint(path: str | os.PathLike) -> str:
    """How to make a statistics file again, for the messages about a broken one."""
    return f"make it again with: facegan fid DIR --save-stats {path}"


def load_stats(path: str | os.PathLike) -> FeatureStats:
    """Read statistics written by :func:`save_stats` (or any .npz with ``mu`` and ``sigma``)."""
    path = Path(path)
    # Anything but a zip archive would reach np.load's other readers: a .npy gives one array,
    # and any other file numpy's advice about allow_pickle, which is no use here.
    if path.is_file() and not zipfile.is_zipfile(path):  # (is_zipfile is False for any OSError)
        try:
            path.open("rb").close()
        except OSError as e:
            raise UserError(f"cannot read statistics file {path} ({e.strerror or e})") from None
        # No remake hint naming this path: following it would overwrite someone's other file.
        raise UserError(f"{path} is not a statistics .npz written by facegan fid --save-stats "
                        "(it is no NumPy .npz archive); give such a file, made with: facegan fid "
                        "DIR --save-stats STATS.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"mu", "sigma"} <= keys:
                raise UserError(f"{path} holds no feature statistics (needs arrays 'mu' and "
                                f"'sigma', has {', '.join(sorted(keys)) or 'none'}); "
                                f"{remake_hint(path)}")
            mu = np.asarray(z["mu"], np.float64)
            sigma = np.asarray(z["sigma"], np.float64)
            feats = np.asarray(z["features"], np.float32) if "features" in keys else None
            index = np.asarray(z["feature_index"], np.int64) if "feature_index" in keys else None
            n = int(z["n"]) if "n" in keys else (len(feats) if feats is not None else 0)
            text = {k: str(z[k]) if k in keys else "" for k in ("network_id", "fingerprint", "protocol")}
    except UserError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserError(f"cannot read statistics file {path}: {e}; {remake_hint(path)}") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise UserError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together; "
                        f"{remake_hint(path)}")
    return FeatureStats(mu=mu, sigma=sigma, n=n, features=feats, feature_index=index,
                        network_id=text["network_id"], fingerprint=text["fingerprint"],
                        protocol=text["protocol"])


def check_stats(stats: FeatureStats, path: str | os.PathLike, dim: int) -> None:
    """UserError unless ``stats`` (read from ``path``) fit a ``dim``-feature network: mu (dim,),
    sigma (dim, dim), features (M, dim) when present, all finite."""
    problem = None
    if stats.mu.shape != (dim,):
        problem = f"mu has shape {stats.mu.shape}, not ({dim},)"
    elif stats.sigma.shape != (dim, dim):
        problem = f"sigma has shape {stats.sigma.shape}, not ({dim}, {dim})"
    elif stats.features is not None and (stats.features.ndim != 2
                                         or stats.features.shape[1] != dim):
        problem = f"features have shape {stats.features.shape}, not (N, {dim})"
    elif not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
        problem = "mu or sigma holds NaN or infinite values"
    elif stats.features is not None and not np.isfinite(stats.features).all():
        problem = "its features hold NaN or infinite values"
    if problem:
        raise UserError(f"{path} does not hold statistics of the {dim}-feature FID network "
                        f"({problem}); {remake_hint(path)}")


def stats_cache_path(fingerprint: str, network_id: str, cache_dir: str | os.PathLike = "") -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{fingerprint}-{network_id}")
    return cache_home(cache_dir) / "stats" / f"{safe}.npz"


def real_stats(images, net, *, cache_dir: str | os.PathLike = "", batch_size: int = 64,
               progress: bool = False, use_cache: bool = True) -> FeatureStats:
    """Statistics of a :class:`facegan.data.ImageSet`, from the cache when present.

    images: an ImageSet (``.images`` uint8 (N, 3, R, R), ``.fingerprint``); net: an
    :class:`~facegan.metrics.inception.InceptionNet`. A cache hit runs no network at all.
    progress: on a cache miss, say so on stderr (once) and report the features' progress.
    """
    from .features import extract_features

    fp = str(getattr(images, "fingerprint", "") or "")
    path = stats_cache_path(fp, net.network_id, cache_dir) if (fp and use_cache) else None
    if path is not None and path.is_file():
        try:
            st = load_stats(path)
            if st.network_id == net.network_id and st.fingerprint == fp and st.protocol == PROTOCOL:
                return st
        except UserError:
            pass  # a damaged cache file is recomputed and replaced
    if progress:
        where = f"; cached in {path} for later evaluations" if path is not None else ""
        print(f"computing real-image statistics once: Inception features of {len(images.images)} "
              f"images{where}", file=sys.stderr, flush=True)
    feats = extract_features(net, images.images, batch_size=batch_size, progress=progress,
                             desc="real-image features")
    st = FeatureStats.from_features(feats, network_id=net.network_id, fingerprint=fp)
    if path is not None:
        from ..files import WriteFailed, reporting_write_errors

        try:
            with reporting_write_errors(path):
                save_stats(path, st)
        except WriteFailed as failed:  # the cache only saves time: an unwritable one costs a warning
            print(f"facegan: warning: {failed}; the real-image statistics were not "
                  "cached and will be computed again next time (FACEGAN_CACHE=DIR caches elsewhere)",
                  file=sys.stderr, flush=True)
    return st
