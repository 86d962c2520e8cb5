"""Network cost on this machine: one forward + backward of each generator and critic.

Prints, per network, the parameter count, forward GFLOPs per batch and the median (and
fastest) time of a forward + backward after a warm-up, in rounds that interleave the networks,
for the ResNet nets at a few widths and the DCGAN nets for comparison, so that a CPU recipe can
be chosen by cost. fp32, channels_last, 64 px, batch 64 unless told otherwise. On a shared
machine the fastest time is the better guide to the uncontended cost.

    python benchmarks/bench_models.py
    python benchmarks/bench_models.py --widths 32,32 64,64 --repeats 5 --threads 2
    python benchmarks/bench_models.py --resolution 32 --d-norm layer --no-d-sn

Generator pass: loss = G(z, c).square().mean(), backward (weights only, as in a G step).
Critic pass: loss = D(x, c)[0].mean() (the score), backward (weights only; no gradient penalty).
c is the (N, 0) label tensor of unconditional nets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from facegan.config import ModelConfig
from facegan.models import NetSpec, build_networks


def _no_labels(x: torch.Tensor) -> torch.Tensor:
    """Labels of an unconditional net: float (N, 0)."""
    return torch.zeros(x.shape[0], 0)


def fwd_bwd_time(net, x) -> float:
    net.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out = net(x, _no_labels(x))
    loss = out.square().mean() if isinstance(out, torch.Tensor) else out[0].mean()  # G: images; D: (score, aux)
    loss.backward()
    return time.perf_counter() - t0


def forward_gflops(net, x) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, _no_labels(x))
    return fc.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", nargs="+", default=["32,32", "64,64"],
                    help="ResNet (g_width,d_width) pairs")
    ap.add_argument("--dcgan-width", type=int, default=64, help="0: leave DCGAN out")
    ap.add_argument("--g-norm", default="batch")
    ap.add_argument("--d-norm", default="none", help="ResNet critic norm (DCGAN uses instance)")
    ap.add_argument("--no-d-sn", dest="d_sn", action="store_false",
                    help="ResNet critic without spectral norm (default: with)")
    ap.add_argument("--g-sn", action="store_true", help="ResNet generator with spectral norm")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = NetSpec(args.resolution)
    cases: list[tuple[str, ModelConfig]] = []
    for pair in args.widths:
        gw, dw = (int(v) for v in pair.split(","))
        cases.append((f"resnet {gw}/{dw}", ModelConfig(
            arch="resnet", g_width=gw, d_width=dw, g_norm=args.g_norm, d_norm=args.d_norm,
            g_sn=args.g_sn, d_sn=args.d_sn)))
    if args.dcgan_width:
        w = args.dcgan_width
        cases.append((f"dcgan {w}/{w}", ModelConfig(arch="dcgan", g_width=w, d_width=w,
                                                    g_norm="batch", d_norm="instance")))

    cl = torch.channels_last
    n, r = args.batch, args.resolution
    print(f"{r} px, batch {n}, fp32, channels_last, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (torch {torch.__version__})")
    print(f"ResNet: g_norm={args.g_norm} g_sn={args.g_sn}, d_norm={args.d_norm} d_sn={args.d_sn}; "
          f"DCGAN: batch / instance")
    print(f"{'nets (G/D width)':<18} {'net':<3} {'params':>10} {'GFLOP fwd':>10} "
          f"{'fwd+bwd s':>10} {'img/s':>8} {'min s':>8}")
    nets = []
    for name, m in cases:
        g, d = build_networks(m, spec)
        z = torch.randn(n, m.latent_dim)
        x = (torch.rand(n, 3, r, r) * 2 - 1).contiguous(memory_format=cl)
        nets += [(name, "G", g.to(memory_format=cl).train(), z),
                 (name, "D", d.to(memory_format=cl).train(), x)]
    for _, _, net, inp in nets:
        fwd_bwd_time(net, inp)  # warm-up: oneDNN builds its kernels for these shapes
    # Rounds interleave the networks, so that load from other processes hits all of them alike.
    times: list[list[float]] = [[] for _ in nets]
    for _ in range(args.repeats):
        for i, (_, _, net, inp) in enumerate(nets):
            times[i].append(fwd_bwd_time(net, inp))
    for (name, tag, net, inp), ts in zip(nets, times):
        params = sum(p.numel() for p in net.parameters())
        t = statistics.median(ts)
        print(f"{name:<18} {tag:<3} {params:>10,} {forward_gflops(net, inp):>10.1f} {t:>10.3f} "
              f"{n / t:>8.0f} {min(ts):>8.3f}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
