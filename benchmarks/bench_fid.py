"""FID speed and reference figures on this machine.

    python benchmarks/bench_fid.py throughput            # images/s: resize, fp32, channels_last, bf16
    python benchmarks/bench_fid.py halves --crop center  # FID/KID of CelebA images 1-5000 vs 5001-10000
    python benchmarks/bench_fid.py bf16                  # FID change that bf16 autocast causes (celeba halves)
    python benchmarks/bench_fid.py fid10k                # wall time: FID of 10,000 generated vs cached stats

Real data: ../shared/data/celeba-10k (or --data). The halves use the facegan.data pipeline
(the training preprocessing: crop, then resize to --resolution) and the full protocol of
facegan.metrics. The real-statistics cache (FACEGAN_CACHE) is shared between the modes, so
'halves' then 'fid10k' computes the real features once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data")) / "celeba-10k"


def _data_cfg(args):
    from facegan.config import DataConfig

    return DataConfig(path=str(args.data), resolution=args.resolution, crop=args.crop,
                      partition="all", hflip=False)


def throughput(args) -> None:
    from facegan.metrics.features import extract_features
    from facegan.metrics.inception import load_inception
    from facegan.metrics.resize import resize_clean

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (args.batch, 3, args.resolution, args.resolution), dtype=torch.uint8,
                         generator=g)
    # Resize alone, one thread and the pool.
    t = time.perf_counter()
    for i in range(imgs.shape[0]):
        resize_clean(imgs[i].permute(1, 2, 0).numpy())
    dt = time.perf_counter() - t
    print(f"resize {args.resolution}->299 (clean bicubic), 1 thread: {imgs.shape[0] / dt:8.1f} img/s")
    x = torch.from_numpy(np.stack([resize_clean(im.permute(1, 2, 0).numpy()) for im in imgs]))

    variants = [("fp32 NCHW", {"precision": "fp32", "channels_last": False}),
                ("fp32 channels_last", {"precision": "fp32", "channels_last": True}),
                ("bf16 channels_last", {"precision": "bf16", "channels_last": True}),
                ("bf16 NCHW", {"precision": "bf16", "channels_last": False})]
    for name, kw in variants:
        net = load_inception(device="cpu", **kw)
        net(x[:4])  # warm-up (TorchScript profiling runs)
        net(x)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"inception {name:20s} batch {args.batch}: {args.batch / med:7.2f} img/s "
              f"(median of {args.repeats}, min {args.batch / max(times):.2f} max {args.batch / min(times):.2f})")
    net = load_inception(device="cpu")
    extract_features(net, imgs[:8], batch_size=8)
    t = time.perf_counter()
    extract_features(net, imgs.repeat(2, 1, 1, 1), batch_size=args.batch)
    dt = time.perf_counter() - t
    print(f"end to end (uint8 {args.resolution}px -> features, fp32, pipelined): {2 * args.batch / dt:.2f} img/s")


def _halves(args, precision: str):
    from facegan.data import load_dataset
    from facegan.metrics.fid import (
        frechet_distance,
        gaussian_fit,
        kernel_inception_distance,
    )
    from facegan.metrics.inception import load_inception
    from facegan.metrics.stats import real_stats

    data = load_dataset(_data_cfg(args), progress=True)
    if len(data) < 10000:
        sys.exit(f"need 10,000 images, {args.data} gives {len(data)}")
    net = load_inception(device="cpu", precision=precision)
    t = time.perf_counter()
    st = real_stats(data, net, batch_size=args.batch, progress=True)
    print(f"[{precision}] statistics of {st.n} images: {time.perf_counter() - t:.1f} s "
          "(0 s when cached)", flush=True)
    f = st.features
    assert f is not None and len(f) == len(data) and (st.feature_index == np.arange(len(data))).all()
    a, b = f[:5000], f[5000:10000]
    t = time.perf_counter()
    fid = frechet_distance(*gaussian_fit(a), *gaussian_fit(b))
    t_fid = time.perf_counter() - t
    t = time.perf_counter()
    kid = kernel_inception_distance(a, b)
    t_kid = time.perf_counter() - t
    return fid, kid, t_fid, t_kid, data


def halves(args) -> None:
    fid, kid, t_fid, t_kid, data = _halves(args, args.precision)
    print(f"celeba-10k {args.resolution}px crop={args.crop} ({data.source}, fingerprint {data.fingerprint[:12]}), "
          f"images 1-5000 vs 5001-10000, {args.precision}:")
    print(f"  FID {fid:.4f}  ({t_fid:.1f} s)")
    print(f"  KID {kid[0]:.6f} +- {kid[1]:.6f}  ({t_kid:.1f} s)")


def bf16(args) -> None:
    fid32, kid32, *_ = _halves(args, "fp32")
    fid16, kid16, *_ = _halves(args, "bf16")
    rel = (fid16 - fid32) / fid32
    print(f"celeba-10k {args.resolution}px crop={args.crop} halves: FID fp32 {fid32:.4f}, bf16 {fid16:.4f}, "
          f"change {100 * rel:+.3f}%  (KID fp32 {kid32[0]:.6f}, bf16 {kid16[0]:.6f})")
    print("bf16 allowed as default (|change| < 0.1%):", abs(rel) < 1e-3)


def fid10k(args) -> None:
    from facegan.config import ModelConfig
    from facegan.data import load_dataset
    from facegan.metrics.evaluate import evaluate_images
    from facegan.metrics.inception import load_inception
    from facegan.metrics.stats import real_stats
    from facegan.models import build_networks
    from facegan.sampling import generate_images

    net = load_inception(device="cpu")
    data = load_dataset(_data_cfg(args), progress=True)
    t = time.perf_counter()
    real = real_stats(data, net, batch_size=args.batch, progress=True)
    print(f"real statistics: {time.perf_counter() - t:.1f} s (cached: near 0)")
    torch.manual_seed(0)
    g, _ = build_networks(ModelConfig(), args.resolution)  # random DCGAN: speed does not depend on content
    t0 = time.perf_counter()
    imgs = generate_images(g.eval(), args.n, seed=0)
    t1 = time.perf_counter()
    res = evaluate_images(imgs, real, net, ["fid", "kid"], batch_size=args.batch, progress=True)
    t2 = time.perf_counter()
    print(f"{args.n} generated {args.resolution}px images: generate {t1 - t0:.1f} s, features+FID+KID "
          f"{t2 - t1:.1f} s ({args.n / (t2 - t1):.2f} img/s overall); FID {res['fid']:.2f} (random G)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("throughput", "halves", "bf16", "fid10k"))
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--crop", default="center", choices=("center", "celeba", "none", "auto"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=10000)
    args = p.parse_args()
    {"throughput": throughput, "halves": halves, "bf16": bf16, "fid10k": fid10k}[args.mode](args)


if __name__ == "__main__":
    main()
