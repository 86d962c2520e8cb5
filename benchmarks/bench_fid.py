"""FID speed and reference figures on this machine.

    python benchmarks/bench_fid.py engines --data CELEBA_DIR   # TorchScript vs eager: img/s (interleaved) and FID change
    python benchmarks/bench_fid.py sweep                       # eager img/s by batch size and torch threads
    python benchmarks/bench_fid.py throughput                  # images/s: resize, fp32, channels_last, bf16
    python benchmarks/bench_fid.py halves --data CELEBA_DIR --crop center  # FID/KID of images 1-5000 vs 5001-10000
    python benchmarks/bench_fid.py bf16 --data CELEBA_DIR      # FID change that bf16 autocast causes (the halves)
    python benchmarks/bench_fid.py fid10k --data CELEBA_DIR    # wall time: FID of 10,000 generated vs cached stats

Real data (engines, halves, bf16, fid10k): ``--data CELEBA_DIR``, a CelebA folder with at least
10,000 images (default: the environment variable ``CELEBA_DIR``). The halves use the facegan.data pipeline
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

import numpy as np
import torch
from _common import add_data_option, require_data

from facegan.runtime import cpu_name


def _data_cfg(args):
    from facegan.config import DataConfig

    return DataConfig(path=str(require_data(args)), resolution=args.resolution, crop=args.crop,
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


def _real_299(args, n: int) -> torch.Tensor:
    """The first n images of the data (training preprocessing), resized as the protocol does:
    float (n, 3, 299, 299) in [0, 255]."""
    from facegan.data import load_dataset
    from facegan.metrics.resize import resize_clean

    data = load_dataset(_data_cfg(args), progress=False)
    if len(data) < n:
        sys.exit(f"need {n} images, {args.data} gives {len(data)}")
    imgs = data.images[:n]
    return torch.from_numpy(np.stack([resize_clean(im.permute(1, 2, 0).numpy()) for im in imgs]))


def engines(args) -> None:
    """The reference TorchScript file and the eager module, same weights, same inputs.

    Speed: the same batch of real 299 x 299 inputs through each engine in turn (interleaved, so
    load from other processes hits both alike), --repeats times after warm-up; medians.
    FID: features of 2 x --n-fid real images with each engine; FID of the two halves.
    """
    from facegan.metrics.fid import fid_from_features, frechet_distance, gaussian_fit
    from facegan.metrics.inception import load_inception

    print(f"{cpu_name()}; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}")
    nets = {"torchscript": load_inception(device="cpu", engine="reference"),
            "eager": load_inception(device="cpu", engine="eager"),  # the default: parallel streams
            "eager-1stream": load_inception(device="cpu", engine="eager", streams=1)}
    print(f"eager streams {nets['eager'].streams} (x {max(1, torch.get_num_threads() // nets['eager'].streams)}"
          " threads); eager-1stream: one stream of all threads")
    x = _real_299(args, max(args.batch, 2 * args.n_fid))
    xb = x[:args.batch]
    for net in nets.values():
        for _ in range(3):  # TorchScript's profiling executor specialises over the first calls
            net(xb)
    times: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(args.repeats):
        for name, net in nets.items():
            t = time.perf_counter()
            net(xb)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in nets:
        ips = [args.batch / t for t in times[k]]
        print(f"  {k:12s} {args.batch / med[k]:7.2f} img/s (median of {args.repeats}; "
              f"min {min(ips):.2f}, max {max(ips):.2f})")
    for k in ("eager", "eager-1stream"):
        print(f"  speed-up {k} / torchscript: {med['torchscript'] / med[k]:.2f}x")

    n = args.n_fid
    if n < 2:
        return
    feats = {}
    for name, net in nets.items():
        if name == "eager-1stream":
            continue
        t = time.perf_counter()
        feats[name] = torch.cat([net(x[i:i + args.batch]) for i in range(0, 2 * n, args.batch)]).numpy()
        print(f"  features of {2 * n} real images, {name}: {time.perf_counter() - t:.1f} s", flush=True)
    diff = np.abs(feats["eager"] - feats["torchscript"])
    print(f"  features: max |eager - torchscript| {diff.max():.2e}, mean {diff.mean():.2e} "
          f"(feature mean {np.abs(feats['torchscript']).mean():.3f})")
    fids = {}
    for name, f in feats.items():
        a, b = f[:n], f[n:2 * n]
        fids[name] = (fid_from_features(a, b) if n < a.shape[1]
                      else frechet_distance(*gaussian_fit(a), *gaussian_fit(b)))
    rel = (fids["eager"] - fids["torchscript"]) / fids["torchscript"]
    print(f"  FID real {n} vs {n} ({args.data}, {args.resolution}px, crop {args.crop}): "
          f"torchscript {fids['torchscript']:.5f}, eager {fids['eager']:.5f}, change {100 * rel:+.5f}%")


def sweep(args) -> None:
    """Eager img/s by batch size, for one stream of all threads, one stream of one thread, and
    parallel single-thread streams (the default); interleaved, medians (real 299 x 299 inputs)."""
    from facegan.metrics.inception import load_inception

    threads = torch.get_num_threads()
    print(f"{cpu_name()}; torch {torch.__version__}, threads {threads}")
    one = load_inception(device="cpu", engine="eager", streams=1)
    par = load_inception(device="cpu", engine="eager", streams=threads)
    configs = [(f"1 stream x {threads} threads", one, threads),
               ("1 stream x 1 thread", one, 1),
               (f"{threads} streams x 1 thread", par, threads)]
    batches = [int(b) for b in args.batches.split(",")]
    x = _real_299(args, max(batches))
    for bs in batches:
        xb = x[:bs]
        times: dict[str, list[float]] = {c[0]: [] for c in configs}
        for rep in range(args.repeats + 1):
            for label, net, nthreads in configs:
                torch.set_num_threads(nthreads)
                t = time.perf_counter()
                net(xb)
                if rep:  # the first round warms up
                    times[label].append(time.perf_counter() - t)
        torch.set_num_threads(threads)
        print(f"  batch {bs:3d}: " + ", ".join(
            f"{label} {bs / statistics.median(v):.2f}" for label, v in times.items())
            + f" img/s (medians of {args.repeats})", flush=True)


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
    print(f"{args.data} {args.resolution}px crop={args.crop} ({data.source}, fingerprint {data.fingerprint[:12]}), "
          f"images 1-5000 vs 5001-10000, {args.precision}:")
    print(f"  FID {fid:.4f}  ({t_fid:.1f} s)")
    print(f"  KID {kid[0]:.6f} +- {kid[1]:.6f}  ({t_kid:.1f} s)")


def bf16(args) -> None:
    fid32, kid32, *_ = _halves(args, "fp32")
    fid16, kid16, *_ = _halves(args, "bf16")
    rel = (fid16 - fid32) / fid32
    print(f"{args.data} {args.resolution}px crop={args.crop} halves: FID fp32 {fid32:.4f}, bf16 {fid16:.4f}, "
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
    p.add_argument("mode", choices=("engines", "sweep", "throughput", "halves", "bf16", "fid10k"))
    add_data_option(p)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--crop", default="center", choices=("center", "celeba", "none", "auto"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--n-fid", type=int, default=1000, help="engines: FID of N vs N real images")
    p.add_argument("--batches", default="8,16,32,64", help="sweep: batch sizes")
    args = p.parse_args()
    {"engines": engines, "sweep": sweep, "throughput": throughput, "halves": halves, "bf16": bf16,
     "fid10k": fid10k}[args.mode](args)


if __name__ == "__main__":
    main()
