"""GAN evaluation: FID, KID, Inception Score, precision/recall and a memorisation check.

Generated images are quantised as saved PNGs are, resized to 299 px as clean-fid does and
fed to Inception-v3 with the TensorFlow 2015-12-05 weights; every record names its protocol
(:data:`PROTOCOL`). Metrics are a registry (:data:`METRICS`); real-image statistics are
cached per data set and network. The full protocol and its choices: docs/evaluation.md.
"""

from .evaluate import (
    METRICS,
    TrainingEvaluator,
    compute_metrics,
    evaluate_checkpoint,
    evaluate_images,
    fid_paths,
    register_metric,
)
from .features import FileImages, TensorImages, extract_features, list_image_files
from .fid import (
    fid_from_features,
    frechet_distance,
    gaussian_fit,
    inception_score,
    kernel_inception_distance,
)
from .inception import InceptionNet, default_weights_path, load_inception
from .precision_recall import precision_recall
from .resize import resize_clean
from .stats import (
    PROTOCOL,
    FeatureStats,
    load_stats,
    real_stats,
    save_stats,
    stats_cache_path,
)

__all__ = [
    "METRICS",
    "PROTOCOL",
    "FeatureStats",
    "FileImages",
    "InceptionNet",
    "TensorImages",
    "TrainingEvaluator",
    "compute_metrics",
    "default_weights_path",
    "evaluate_checkpoint",
    "evaluate_images",
    "extract_features",
    "fid_from_features",
    "fid_paths",
    "frechet_distance",
    "gaussian_fit",
    "inception_score",
    "kernel_inception_distance",
    "list_image_files",
    "load_inception",
    "load_stats",
    "precision_recall",
    "real_stats",
    "register_metric",
    "resize_clean",
    "save_stats",
    "stats_cache_path",
]
