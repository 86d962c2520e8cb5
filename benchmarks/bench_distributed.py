"""Data-parallel scaling: generator steps/s on 1 process and on N processes (torchrun), same
global batch, same total CPU threads, interleaved repeats; plus the all-reduce volume per
step that decides where scaling stops.

    python benchmarks/bench_distributed.py --preset dcgan-celeba64 --steps 40 --repeats 3

Each run trains ``--steps`` generator steps on the built-in faces (or ``--data``) into a
temporary folder and reads the steps/s of its log windows (the first window, warm-up, is
dropped); the figure per configuration is the median over its windows and repeats. On a CPU
the fair comparison is the same number of cores: 1 process x T threads against N processes x
T/N threads (``--threads T``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facegan.config import apply_overrides, get_preset
from facegan.models import NetSpec, build_networks
from facegan.runtime import cpu_name


def run(nproc: int, threads: int, args, out: Path) -> list[float]:
    cmd = ["-m", "facegan", "train", "--data", args.data, "--preset", args.preset, "--steps", str(args.steps),
           "--out", str(out), "--no-progress", "--batch-size", str(args.batch_size),
           "--resolution", str(args.resolution), "train.log_every=5", "train.sample_every=100000",
           "train.checkpoint_every=100000", "train.ema_decay=0", *args.set]
    if nproc > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc))}
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"run failed ({nproc} processes):\n{r.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [rec["steps_per_s"] for rec in recs if rec.get("kind") == "train"][1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="dcgan-celeba64")
    p.add_argument("--data", default="builtin")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="CPU threads in all")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", nargs="*", default=["train.precision=fp32"], metavar="KEY=VALUE")
    args = p.parse_args()

    cfg = apply_overrides(get_preset(args.preset), {"data.resolution": args.resolution})
    g, d = build_networks(cfg.model, NetSpec(args.resolution, 3, 0))
    n_g = sum(q.numel() for q in g.parameters())
    n_d = sum(q.numel() for q in d.parameters())
    # One all-reduce of D's gradients per critic step and one of G's per generator step (fp32).
    volume = 4 * (cfg.train.n_critic * n_d + n_g)

    print(f"CPU: {cpu_name()}; {args.threads} threads in all; preset {args.preset}, {args.resolution}px, "
          f"global batch {args.batch_size}, {args.steps} steps, {args.repeats} repeats")
    rates: dict[int, list[float]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for n in (1, args.nproc):  # interleaved: drifting load hits both alike
                rates[n] += run(n, args.threads, args, Path(tmp) / f"r{rep}-{n}")
    med = {n: statistics.median(v) for n, v in rates.items()}
    for n, v in rates.items():
        print(f"{n} process(es) x {max(1, args.threads // n)} thread(s): {med[n]:.2f} generator steps/s "
              f"(median of {len(v)} windows; min {min(v):.2f}, max {max(v):.2f})")
    print(f"speed-up of {args.nproc} processes over 1: {med[args.nproc] / med[1]:.2f}x")
    step_s = 1.0 / med[1]
    print(f"parameters: G {n_g / 1e6:.2f} M, D {n_d / 1e6:.2f} M; gradients all-reduced per generator "
          f"step ({cfg.train.n_critic} critic + 1 generator): {volume / 1e6:.1f} MB")
    # A ring all-reduce moves 2 (N-1)/N of the buffer through each link.
    for name, gbps in (("PCIe 4 x16 (~25 GB/s)", 25), ("NVLink H100 (~300 GB/s bus)", 300),
                       ("25 Gb/s Ethernet (~3 GB/s)", 3)):
        t = 2 * volume / (gbps * 1e9)
        print(f"  all-reduce time per step over {name}: {t * 1e3:.2f} ms, against {step_s * 1e3:.0f} ms "
              f"of compute per step here")


if __name__ == "__main__":
    main()
