"""GPU training speed: facegan's step against a tutorial loop on the same card, same run.

    python benchmarks/bench_gpu.py --data CELEBA_DIR --device cuda
    python benchmarks/bench_gpu.py --data CELEBA_DIR --device cpu --steps 2 --rounds 1 --quick

Prints generator steps/s (median over rounds, interleaved so drifting clocks hit all alike) for:
the tutorial-style loop (PIL decoding in DataLoader workers, fp32, the GP the tutorials write:
the same networks as wgangp-celeba64), facegan ``wgangp-celeba64`` and ``dcgan-celeba64`` with
the defaults (on CUDA: bf16, channels_last, data on the GPU, fused Adam, cuDNN autotuning, no
host sync per step) and with each switch changed (compile, fp16 + scaler, fp32, plain Adam);
then images/s at batch 256 and the fraction of the card's bf16 throughput reached (FLOPs of
one step counted with torch's flop counter, divided by its time; ``--peak-tflops``: 989 for an
H100 SXM's dense bf16). ``--quick`` runs fewer variants (for a CPU smoke test). ``--data``
defaults to the environment variable ``CELEBA_DIR``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import add_data_option, require_data
from bench_train import ConvRecorder
from reference_wgangp import JPEGFolder, gradient_penalty, no_labels

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.models import NetSpec, build_networks
from facegan.runtime import cpu_name
from facegan.train import build_trainer


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))  # that card's queue (cuda:1 included)


def tutorial_steps_per_s(cfg, files, device, steps: int, workers: int) -> float:
    """The tutorial loop on ``device``: PIL decoding in DataLoader workers, fp32, 5 critic
    steps with the penalty, separate real/fake passes."""
    from torch.utils.data import DataLoader

    # facegan's trainers turn cuDNN's autotuner on for the process; the tutorials' loop leaves
    # it at PyTorch's default, in every round alike.
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    g, d = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, 0))
    g, d = g.to(device), d.to(device)
    loader = DataLoader(JPEGFolder(files, cfg.data.resolution), batch_size=cfg.train.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=torch.device(device).type == "cuda",
                        persistent_workers=workers > 0)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.9))
    it = iter(loader)
    n = 0
    t0 = None
    while n < steps + 2:  # two warm-up steps
        if n == 2:
            _sync(device)
            t0 = time.perf_counter()
        for _ in range(cfg.train.n_critic):
            try:
                real = next(it)
            except StopIteration:
                it = iter(loader)
                real = next(it)
            real = real.to(device, non_blocking=True)
            c = no_labels(real.shape[0], device)  # unconditional: G(z, c), D(x, c) -> (score, aux)
            fake = g(torch.randn(real.shape[0], cfg.model.latent_dim, device=device), c)
            # gradient_penalty of the reference draws alpha on the CPU: move it for the device.
            loss = d(fake, c)[0].mean() - d(real, c)[0].mean() + 10 * _gp(d, real, fake)
            opt_d.zero_grad()
            loss.backward(retain_graph=True)
            opt_d.step()
        g_loss = -d(fake, c)[0].mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        n += 1
    _sync(device)
    return steps / (time.perf_counter() - t0)


def _gp(critic, real, fake):
    if real.device.type == "cpu":
        return gradient_penalty(critic, real, fake)
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (real * alpha + fake * (1 - alpha)).requires_grad_(True)
    grad = torch.autograd.grad(critic(x, no_labels(x.shape[0], x.device))[0].sum(), x, create_graph=True)[0]
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def facegan_steps_per_s(cfg, data, steps: int, device) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        tr = build_trainer(cfg, data, tmp, progress=False)
        for _ in range(3):  # warm-up: autotuning, compilation
            tr.train_step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        _sync(device)
        return steps / (time.perf_counter() - t0)


def flops_per_step(cfg, data) -> float:
    """Convolution / matmul FLOPs of one generator step (its critic steps included)."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = build_trainer(apply_overrides(cfg, {"train.compile": "off"}), data, tmp, progress=False)
        tr.train_step()
        with ConvRecorder(keep=False) as rec:
            tr.train_step()
    return float(sum(rec.flops.values()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(p, what="a CelebA folder with img_align_celeba/, or an image folder")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the tutorial loop")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 TFLOP/s")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    require_data(args)
    dev = torch.device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    print(f"device: {where}; torch {torch.__version__}; {args.steps} steps x {args.rounds} rounds, medians")

    base = {"data.path": args.data, "data.resolution": 64, "train.device": args.device, "train.batch_size": 64}
    wg = apply_overrides(get_preset("wgangp-celeba64"), base)
    dc = apply_overrides(get_preset("dcgan-celeba64"), base)
    data = load_dataset(wg.data, progress=False)
    root = Path(args.data) / "img_align_celeba" if (Path(args.data) / "img_align_celeba").is_dir() else Path(args.data)
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    variants = {"wgangp-celeba64 (defaults)": wg, "dcgan-celeba64 (defaults)": dc}
    if not args.quick:
        variants.update({
            "wgangp, compile=generator": apply_overrides(wg, {"train.compile": "generator"}),
            "wgangp, compile=generator, reduce-overhead (CUDA graphs)": apply_overrides(
                wg, {"train.compile": "generator", "train.compile_mode": "reduce-overhead"}),
            "wgangp, fp16 + gradient scaler": apply_overrides(wg, {"train.precision": "fp16"}),
            "wgangp, fp32": apply_overrides(wg, {"train.precision": "fp32"}),
            "wgangp, plain Adam": apply_overrides(wg, {"train.fused_optimizer": "off"}),
            "dcgan, compile=all": apply_overrides(dc, {"train.compile": "all"}),
        })
    rates: dict[str, list[float]] = {"tutorial loop (wgangp, PIL workers, fp32)": []}
    rates.update({k: [] for k in variants})
    for _ in range(args.rounds):
        rates["tutorial loop (wgangp, PIL workers, fp32)"].append(
            tutorial_steps_per_s(wg, files, dev, args.steps, args.workers))
        for name, cfg in variants.items():
            try:
                rates[name].append(facegan_steps_per_s(cfg, data, args.steps, dev))
            except Exception as e:  # a variant this machine cannot run (no compiler, ...)
                print(f"  {name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                rates[name].append(float("nan"))
    ref = statistics.median(rates["tutorial loop (wgangp, PIL workers, fp32)"])
    print(f"{'loop':58s} {'G steps/s':>10s} {'vs tutorial':>12s}")
    for name, v in rates.items():
        m = statistics.median(v)
        print(f"{name:58s} {m:10.2f} {m / ref:11.2f}x")

    big = apply_overrides(wg, {"train.batch_size": 256})
    rate = statistics.median(facegan_steps_per_s(big, data, max(2, args.steps // 4), dev) for _ in range(args.rounds))
    flops = flops_per_step(big, data)
    img_s = rate * 256 * big.train.n_critic
    print(f"wgangp-celeba64 at batch 256: {rate:.2f} G steps/s, {img_s:.0f} real images/s; "
          f"{flops / 1e9:.0f} GFLOP per step -> {rate * flops / 1e12:.1f} TFLOP/s, "
          f"{100 * rate * flops / 1e12 / args.peak_tflops:.1f}% of {args.peak_tflops:g} TFLOP/s")


if __name__ == "__main__":
    main()
