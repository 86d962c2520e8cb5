"""Evaluate a generator (or an image folder) against real data: FID, KID, IS, precision/recall.

Metrics live in :data:`METRICS`, a registry ``name -> function(inputs) -> dict``; every
function reads the generated features (and class probabilities) and the real statistics
from one :class:`MetricInputs`. :func:`evaluate_checkpoint` backs ``facegan evaluate``;
:class:`TrainingEvaluator` is what the training loop calls every ``eval_every`` steps.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import DataConfig
from ..errors import UserError, check_whole, plural
from ..files import WriteFailed, append_jsonl, reporting_write_errors
from ..labels import UNCONDITIONAL, LabelSpec
from ..runtime import resolve_device
from .features import extract_features
from .fid import (
    fid_from_features,
    frechet_distance,
    gaussian_fit,
    inception_score,
    kernel_inception_distance,
)
from .inception import (
    FEATURE_DIM,
    InceptionNet,
    inception_score_unavailable_message,
    load_inception,
)
from .precision_recall import precision_recall
from .stats import PROTOCOL, FeatureStats, real_stats

EVAL_SEED = 0  # one fixed latent set, so evaluations at different steps compare like with like
MIN_RELIABLE_FID_N = 50  # below this many images per side, FID is mostly bias and noise
RECOMMENDED_FID_N = 10_000


def clamp_fid(value: float) -> float:
    """FID is a squared distance: a tiny negative (float error, identical sets) is reported as 0.

    A clearly negative value (below -1e-3) is left alone: it means a real numerical problem.
    """
    return 0.0 if -1e-3 < value <= 0.0 else float(value)


def _same_data(given: str, trained: str) -> bool:
    from ..data.sources import absolute_path, scanned_folder

    a, b = absolute_path(given), absolute_path(trained)
    if a == b:
        return True
    if "builtin" in (a, b):  # the built-in set is no path (absolute_path leaves it as it is)
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    # A CelebA root and its image folder are the same data.
    fa, fb = scanned_folder(a), scanned_folder(b)
    return fa is not None and fb is not None and fa.resolve() == fb.resolve()


def other_data_warning(given: str, trained: str) -> str | None:
    """One line when ``given`` (the data to measure against) is not ``trained`` (the run's
    data.path), compared as absolute paths ('builtin': the built-in set), else None.
    Measuring against other data can be intended (a held-out set), so it is no error."""
    if not trained.strip() or _same_data(given, trained):
        return None
    from ..data.sources import absolute_path

    return (f"measuring against {absolute_path(given)}, which is not the data this run was "
            f"trained on ({absolute_path(trained)}); the numbers compare its samples with other "
            "images")


def small_sample_warning(counts: Sequence[tuple[int, str]]) -> str | None:
    """One line when a set has fewer than MIN_RELIABLE_FID_N images, else None.

    ``small_sample_warning([(16, "generated"), (48, "real")])`` ->
    'FID on 16 generated and 48 real images is unreliable ...' (a count of 0 means unknown).
    """
    if not any(0 < v < MIN_RELIABLE_FID_N for v, _ in counts):
        return None
    what = " and ".join(f"{v} {label}".strip() for v, label in counts)
    return (f"FID on {what} images is unreliable (biased upward and noisy below "
            f"{MIN_RELIABLE_FID_N} images a side); use at least 2,000, and "
            f"{RECOMMENDED_FID_N:,} for numbers to report or compare")


@dataclass
class MetricInputs:
    """gen_features float32 (N, 2048); gen_probs float64 (N, 1008) or None; real statistics."""

    gen_features: np.ndarray
    real: FeatureStats
    gen_probs: np.ndarray | None = None
    seed: int = 0
    _gen_fit: tuple[np.ndarray, np.ndarray] | None = None

    def gen_fit(self) -> tuple[np.ndarray, np.ndarray]:
        if self._gen_fit is None:
            self._gen_fit = gaussian_fit(self.gen_features)
        return self._gen_fit


MetricFn = Callable[[MetricInputs], dict]

# The registry: metric name -> function(MetricInputs) -> dict of values. A function's
# ``needs_probs`` / ``needs_real_features`` attributes say what inputs it reads.
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str, needs_probs: bool = False, needs_real_features: bool = False):
    def deco(fn: MetricFn) -> MetricFn:
        fn.needs_probs = needs_probs  # type: ignore[attr-defined]
        fn.needs_real_features = needs_real_features  # type: ignore[attr-defined]
        METRICS[name] = fn
        return fn

    return deco


def _needs(name: str, what: str) -> bool:
    return bool(getattr(METRICS[name], what, False))


def _has_all_features(st: FeatureStats) -> bool:
    return st.features is not None and len(st.features) == st.n


def fid_of_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID of two statistics; the exact low-rank form when both hold all their features."""
    if _has_all_features(a) and _has_all_features(b):
        return fid_from_features(a.features, b.features)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


@register_metric("fid")
def _fid(x: MetricInputs) -> dict:
    if _has_all_features(x.real) and len(x.gen_features) < x.gen_features.shape[1]:
        return {"fid": clamp_fid(fid_from_features(x.gen_features, x.real.features))}
    mu, sigma = x.gen_fit()
    return {"fid": clamp_fid(frechet_distance(mu, sigma, x.real.mu, x.real.sigma))}


@register_metric("kid", needs_real_features=True)
def _kid(x: MetricInputs) -> dict:
    mean, std = kernel_inception_distance(x.gen_features, x.real.features, seed=x.seed)
    return {"kid_mean": mean, "kid_std": std}


@register_metric("is", needs_probs=True)
def _is(x: MetricInputs) -> dict:
    mean, std = inception_score(x.gen_probs)
    return {"is_mean": mean, "is_std": std}


@register_metric("pr", needs_real_features=True)
def _pr(x: MetricInputs) -> dict:
    # Improved precision / recall, k = 3 (Kynkaanniemi et al. 2019); at most 10,000 points a side.
    try:
        precision, recall = precision_recall(x.gen_features, x.real.features, seed=x.seed)
    except ValueError as e:
        raise UserError(f"precision/recall: {e}; use more images (--n)") from None
    return {"precision": precision, "recall": recall}


def parse_metrics(spec: str | Sequence[str]) -> list[str]:
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if not names:
        raise UserError(f"no metrics given; choose from: {', '.join(METRICS)}")
    for n in names:
        if n not in METRICS:
            raise UserError(f"unknown metric '{n}'; choose from: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def check_metrics(names: Sequence[str], net: InceptionNet) -> None:
    """Refuse metrics the loaded network cannot give (IS without the classifier head)."""
    if any(_needs(n, "needs_probs") for n in names) and not net.has_logits:
        raise UserError(inception_score_unavailable_message())


def compute_metrics(names: Sequence[str], gen_features: np.ndarray, real: FeatureStats,
                    gen_probs: np.ndarray | None = None, seed: int = 0) -> dict:
    inputs = MetricInputs(gen_features=gen_features, real=real, gen_probs=gen_probs, seed=seed)
    out: dict = {}
    for n in names:
        if _needs(n, "needs_real_features") and real.features is None:
            raise UserError(f"'{n}' needs real features, but the statistics hold only mu and sigma "
                            "(recompute them with facegan, not another tool)")
        if _needs(n, "needs_probs") and gen_probs is None:
            raise UserError(inception_score_unavailable_message())
        out.update(METRICS[n](inputs))
    return out


def evaluate_images(images, real: FeatureStats, net: InceptionNet, metrics: Sequence[str] = ("fid",),
                    *, batch_size: int = 64, seed: int = 0, progress: bool = False) -> dict:
    """Metrics of images (uint8 (N, 3, H, W) or an ImageSource) against real statistics."""
    check_metrics(metrics, net)
    want_probs = any(_needs(n, "needs_probs") for n in metrics)
    res = extract_features(net, images, batch_size=batch_size, probs=want_probs, progress=progress,
                           desc="generated-image features")
    feats, probs = res if want_probs else (res, None)
    return compute_metrics(metrics, feats, real, probs, seed=seed)


def generate_uint8(generator: nn.Module, n: int, seed: int, labels: LabelSpec = UNCONDITIONAL,
                   batch_size: int = 256, truncation: float | None = None) -> torch.Tensor:
    """n images from ``generator`` as uint8 (n, 3, R, R): ``sampling.generate_images`` (labels
    ``labels.draw(n, seed)``, latents truncated at ``truncation`` when given), which samples in
    eval mode and restores the generator's mode after."""
    from ..sampling import generate_images

    return generate_images(generator, n, seed=seed, batch_size=batch_size, labels=labels,
                           truncation=truncation)


class TrainingEvaluator:
    """FID/KID of a generator against a fixed data set, for use during training.

    ``ev = TrainingEvaluator(cfg.data, n=2000)``; ``ev(generator, labels)`` -> ``{"fid",
    "kid_mean", "kid_std", "n", "n_real", "partition", "data_fingerprint", "network",
    "protocol", "seed"}`` (plus ``is_mean``/``is_std`` when asked for and available); ``labels``: the run's :class:`~facegan.labels.LabelSpec`, from which a
    conditional generator's labels are drawn (``labels.draw(n, seed)``). The
    network, the data and the real statistics load on the first call (statistics from the
    cache when present); the generator always sees the same latents (``seed``), and goes
    back to its previous train/eval mode afterwards. ``progress``: the features' progress on
    stderr (a bar on a terminal, else a line at every 10% and at least every 30 s).
    """

    def __init__(self, data_cfg: DataConfig, n: int = 2000, device="cpu",
                 metrics: Sequence[str] = ("fid", "kid"), inception: str | None = None,
                 seed: int = EVAL_SEED, batch_size: int = 64, progress: bool = False):
        if n < 2:
            raise UserError("eval_n must be at least 2")
        self.data_cfg = replace(data_cfg, hflip=False)
        self.n = int(n)
        self.device = device
        self.metrics = parse_metrics(metrics)
        self.inception = inception
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress
        self._net: InceptionNet | None = None
        self._real: FeatureStats | None = None
        self.fingerprint = ""

    def _setup(self) -> None:
        if self._net is None:
            self._net = load_inception(self.inception, device=self.device)
            check_metrics(self.metrics, self._net)
        if self._real is None:
            from ..data import load_dataset

            data = load_dataset(self.data_cfg, progress=False)
            self.fingerprint = data.fingerprint
            self._real = real_stats(data, self._net, cache_dir=self.data_cfg.cache_dir,
                                    batch_size=self.batch_size, progress=self.progress)

    def __call__(self, generator: nn.Module, labels: LabelSpec = UNCONDITIONAL) -> dict:
        self._setup()
        images = generate_uint8(generator, self.n, self.seed, labels)
        out = evaluate_images(images, self._real, self._net, self.metrics,
                              batch_size=self.batch_size, seed=self.seed, progress=self.progress)
        # The fields of facegan evaluate's records too, so that the run's records of both say
        # what they measured alike (the plot keeps each sample count a line of its own).
        out.update({"n": self.n, "n_real": self._real.n, "partition": self.data_cfg.partition,
                    "data_fingerprint": self.fingerprint, "network": self._net.network_id,
                    "protocol": PROTOCOL, "seed": self.seed})
        return out


def _warn_user(msg: str) -> None:
    """:func:`evaluate_checkpoint`'s default ``warn``: a UserWarning pointing at the caller's
    line (a notebook shows it; the command line passes its own)."""
    import warnings  # here: fid_paths names a list of its own ``warnings``

    warnings.warn(f"facegan: {msg}", UserWarning, stacklevel=3)


def evaluate_checkpoint(checkpoint: str | Path, data: str, *, n: int = 10000,
                        metrics: Sequence[str] = ("fid", "kid"), inception: str | None = None,
                        seed: int = EVAL_SEED, device="auto", partition: str | None = None,
                        batch_size: int = 64, progress: bool = True, log: bool = True,
                        warn: Callable[[str], None] | None = None, standing_stats: int = 0,
                        report: Callable[[dict], None] | None = None) -> dict:
    """Generate ``n`` images (EMA generator when the checkpoint has one), compare with the
    training data preprocessed as in training, append the record to the run's metrics.jsonl.

    device: 'auto' (a GPU when there is one, as the command's ``--device``), 'cpu', 'cuda'.
    standing_stats: when > 0, the generator's batch-norm statistics are first recomputed over
        that many of its own samples, in batches of the run's size
        (:func:`~facegan.sampling.recompute_standing_stats`); 0 keeps the checkpoint's.

    progress: feature progress on stderr (a bar on a terminal, else periodic lines) and a
        line when the real-image statistics are computed rather than read from the cache.
    warn: called with one line when FID is asked for on fewer than 50 images a side, when
        ``data`` is not the data the run was trained on, and when the record cannot be
        appended to metrics.jsonl. Without ``warn`` the first two are UserWarnings
        (``warnings.warn``) and the failed append is a UserError.
    report: called with the record before it is appended, so that a result shown there comes
        before a warning that it could not be logged.

    Returns the record: ``kind: "eval"``, the metric values, step, checkpoint, n, data path
    and fingerprint, network, protocol, seed, seconds.
    """
    from ..data import load_dataset
    from ..sampling import load_generator

    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"evaluate takes a run folder or checkpoint path (str or Path), got "
                        f"{type(checkpoint).__name__}; for a loaded generator give its file, "
                        "lg.checkpoint")
    names = parse_metrics(metrics)
    n = check_whole(n, "--n", 2)
    t0 = time.time()
    dev = resolve_device(device)
    if standing_stats < 0:
        raise UserError(f"--standing-stats must be >= 0 (samples; 0 = the checkpoint's statistics), "
                        f"got {standing_stats}")
    loaded = load_generator(checkpoint, device=dev, ema=True)
    other = other_data_warning(str(data), loaded.config.data.path)
    if other:
        (warn or _warn_user)(other)
    if standing_stats:
        from ..sampling import recompute_standing_stats

        recompute_standing_stats(loaded.generator, standing_stats, labels=loaded.labels,
                                 batch_size=loaded.config.train.batch_size)
    net = load_inception(inception, device=dev)
    check_metrics(names, net)
    dcfg = replace(loaded.config.data, path=str(data), hflip=False)
    if partition:
        dcfg = replace(dcfg, partition=partition)
    real_set = load_dataset(dcfg, progress=progress and sys.stderr.isatty())
    if len(real_set) < 2:
        raise UserError(f"{data} gives {plural(len(real_set), 'image')} with partition "
                        f"'{dcfg.partition}'; need at least 2")
    if "fid" in names:
        msg = small_sample_warning([(n, "generated"), (len(real_set), "real")])
        if msg:
            (warn or _warn_user)(msg)
    real = real_stats(real_set, net, cache_dir=dcfg.cache_dir, batch_size=batch_size,
                      progress=progress)
    images = generate_uint8(loaded.generator, n, seed, loaded.labels)
    values = evaluate_images(images, real, net, names, batch_size=batch_size, seed=seed,
                             progress=progress)
    record = {
        "kind": "eval",
        **values,
        "step": loaded.step,
        "checkpoint": str(loaded.checkpoint),
        "ema": bool(loaded.has_ema),
        "n": n,
        "n_real": real.n,
        "data": str(data),
        "partition": dcfg.partition,
        "data_fingerprint": real_set.fingerprint,
        "network": net.network_id,
        "protocol": PROTOCOL,
        "seed": seed,
        **({"standing_stats": standing_stats} if standing_stats else {}),
        "seconds": round(time.time() - t0, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if report is not None:
        report(record)
    if log:
        path = metrics_log_path(loaded)
        try:
            with reporting_write_errors(path):
                append_jsonl(path, record)
        except WriteFailed as failed:
            # The measurement itself succeeded: a read-only or full run folder loses the log
            # line, not the result.
            if warn is None:
                raise
            warn(f"the record was not appended to the run's log: {failed}")
    return record


def metrics_log_path(loaded) -> Path:
    """RUN/metrics.jsonl when the checkpoint sits in a run folder, else next to the checkpoint."""
    run_dir = getattr(loaded, "run_dir", None)
    if run_dir is not None:
        return Path(run_dir) / "metrics.jsonl"
    return Path(loaded.checkpoint).parent / "metrics.jsonl"


def _is_stats_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".npz"


def load_fid_stats(path: str | Path) -> tuple[FeatureStats, str]:
    """A statistics .npz for ``facegan fid``, checked against the FID network's feature size
    (mu (2048,), sigma (2048, 2048), finite): (stats, description)."""
    from .stats import check_stats, load_stats

    p = Path(path)
    st = load_stats(p)
    check_stats(st, p, FEATURE_DIM)
    return st, f"{p} (statistics, n={st.n})"


def _folder_files(path: str | Path) -> list[Path]:
    """An image folder's files for ``facegan fid``: at least 2, every header readable."""
    from .features import check_images_readable, list_image_files

    p = Path(path)
    files = list_image_files(p)  # raises for missing / empty
    if len(files) < 2:
        raise UserError(f"{p} holds only {len(files)} image; FID needs at least 2")
    check_images_readable(files, p)
    return files


def _folder_stats(p: Path, files: list[Path], net: InceptionNet, *, batch_size: int,
                  progress: bool) -> tuple[FeatureStats, str]:
    from .features import FileImages

    feats = extract_features(net, FileImages(files), batch_size=batch_size, progress=progress,
                             desc=f"features {p.name}")
    return FeatureStats.from_features(feats, network_id=net.network_id), f"{p} ({len(files)} images)"


def _fid_input(path: str | Path) -> tuple[FeatureStats, str] | list[Path]:
    """One input of ``facegan fid``, checked before the network loads: a statistics .npz read
    and checked, as (stats, description), or an image folder's files (:func:`_folder_files`)."""
    p = Path(path)
    if _is_stats_file(p):
        return load_fid_stats(p)
    if p.is_file():
        raise UserError(f"{p} is neither an image folder nor a statistics .npz file")
    return _folder_files(p)


def fid_paths(a: str | Path, b: str | Path, *, kid: bool = False, inception: str | None = None,
              batch_size: int = 64, device="cpu", progress: bool = False) -> dict:
    """FID (and KID) between two folders, or a folder/.npz and another folder/.npz."""
    # Statistics files are read and checked, and folders' image headers, before the network
    # loads: a wrong file fails in a second, not after a folder's features.
    given = [_fid_input(p) for p in (a, b)]
    if kid:
        for x in given:
            if isinstance(x, tuple) and x[0].features is None:
                raise UserError(f"KID needs features, but {x[1]} holds only mu and sigma; drop "
                                "--kid, or make the statistics with: facegan fid DIR --save-stats "
                                "FILE")
    net = load_inception(inception, device=device)
    (sa, da), (sb, db) = (x if isinstance(x, tuple) else
                          _folder_stats(Path(p), x, net, batch_size=batch_size, progress=progress)
                          for p, x in zip((a, b), given))
    warnings = []
    for st, d in ((sa, da), (sb, db)):
        if st.network_id and st.network_id != net.network_id:
            warnings.append(f"{d} was computed with network '{st.network_id}', not "
                            f"'{net.network_id}'; numbers may differ slightly")
        if st.protocol and st.protocol != PROTOCOL:
            warnings.append(f"{d} was computed with protocol '{st.protocol}', not '{PROTOCOL}'")
    small = small_sample_warning([(sa.n, ""), (sb.n, "")])
    if small:
        warnings.append(small)
    out = {"fid": clamp_fid(fid_of_stats(sa, sb))}
    if kid:  # (statistics without features were refused above)
        mean, std = kernel_inception_distance(sa.features, sb.features)
        out.update(kid_mean=mean, kid_std=std)
    out.update(a=da, b=db, network=net.network_id, protocol=PROTOCOL)
    if warnings:
        out["warnings"] = warnings
    return out


def save_folder_stats(folder: str | Path, out: str | Path, *, inception: str | None = None,
                      batch_size: int = 64, device="cpu", progress: bool = False) -> FeatureStats:
    from .stats import save_stats

    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--save-stats needs a .npz file name, got {out}")
    if not Path(folder).is_dir():
        raise UserError(f"--save-stats needs an image folder, got {folder}")
    files = _folder_files(folder)  # at least 2, every image readable, before the network loads
    net = load_inception(inception, device=device)
    st, _ = _folder_stats(Path(folder), files, net, batch_size=batch_size, progress=progress)
    save_stats(out, st)
    return st


__all__ = [
    "EVAL_SEED",
    "METRICS",
    "MetricInputs",
    "TrainingEvaluator",
    "compute_metrics",
    "evaluate_checkpoint",
    "evaluate_images",
    "fid_paths",
    "generate_uint8",
    "metrics_log_path",
    "other_data_warning",
    "parse_metrics",
    "register_metric",
    "save_folder_stats",
]
