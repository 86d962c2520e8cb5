"""Training throughput: facegan's wgangp-celeba64 against a tutorial-style reference loop.

Prints generator steps/s and real images/s (5 critic steps x batch 64 real images per
generator step) for facegan and for ``reference_wgangp.py`` measured in the same run,
interleaved (facegan, reference, facegan, reference, ...) so that load on a noisy machine hits
both alike; quotes medians and their ratio. Optional variants show what each choice buys.

    python benchmarks/bench_train.py --data CELEBA_DIR --steps 3 --rounds 2
    python benchmarks/bench_train.py --data CELEBA_DIR --variants  # + fp32 / no channels_last / separate passes
    python benchmarks/bench_train.py --data CELEBA_DIR --ceiling   # + FLOPs per step and this CPU's compute ceiling

``--data`` defaults to the environment variable ``CELEBA_DIR`` (a CelebA folder with
``img_align_celeba/``, or any image folder); the first ``--max-images`` images are used.

The ceiling: one facegan generator step is recorded op by op; its convolutions (and their
gradients, the double backward of the penalty included) are replayed alone with the same
shapes, dtypes and memory formats. That time is what this recipe costs on this CPU with
PyTorch's (oneDNN's) kernels even if everything else were free, and the reference's time over
it is the largest speed-up those kernels allow. FLOPs per step are counted for both loops.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_data_option, require_data
from reference_wgangp import run_reference

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.models import build_networks
from facegan.train import build_trainer


def facegan_step_times(cfg, data, steps: int, *, joint: bool | None = None) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        tr = build_trainer(cfg, data, tmp, progress=False)
        if joint is not None:
            tr.joint_pass = joint
        tr.train_step()  # warm-up: oneDNN builds its kernels for these shapes
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            tr.train_step()
            times.append(time.perf_counter() - t0)
        return times


def reference_step_times(cfg, files, steps: int) -> list[float]:
    torch.manual_seed(0)
    g, d = build_networks(cfg.model, cfg.data.resolution)
    return run_reference(files, g, d, steps + 1, latent_dim=cfg.model.latent_dim)["step_times"][1:]


def _shape(t):
    return t.shape if isinstance(t, torch.Tensor) else t


def _copy(t):
    # clone keeps strides, so the replay sees the same memory formats
    return t.detach().clone() if isinstance(t, torch.Tensor) else t


class ConvRecorder(TorchDispatchMode):
    """Records every op torch's flop_counter knows (here: convolutions and their gradients) with
    copies of its arguments, and counts its FLOPs. A bare dispatch mode because
    FlopCounterMode's module hooks do not allow the gradient penalty's torch.autograd.grad."""

    def __init__(self, keep: bool = True):
        super().__init__()
        self.keep = keep
        self.flops: collections.Counter = collections.Counter()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops[str(func._overloadpacket)] += count(
                *tree_map(_shape, args), **tree_map(_shape, kwargs), out_val=tree_map(_shape, out))
            if self.keep:
                self.calls.append((func, tree_map(_copy, args), tree_map(_copy, kwargs)))
        return out

    def replay_seconds(self, reps: int = 3) -> float:
        """Median time to run just the recorded ops again, back to back."""
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for func, args, kwargs in self.calls:
                func(*args, **kwargs)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def conv_floor(cfg, data, files) -> dict:
    """One facegan generator step (with its critic steps) recorded op by op: its FLOPs and the
    time of its convolutions alone, replayed with the same shapes, dtypes and memory formats.
    Also the reference loop's FLOPs for the same step."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = build_trainer(cfg, data, tmp, progress=False)
        tr.train_step()
        with ConvRecorder() as rec:
            tr.train_step()
    torch.manual_seed(0)
    g, d = build_networks(cfg.model, cfg.data.resolution)
    with ConvRecorder(keep=False) as rec_ref:
        run_reference(files[: 5 * cfg.train.batch_size], g, d, 1, latent_dim=cfg.model.latent_dim)
    return {"flops": sum(rec.flops.values()), "ref_flops": sum(rec_ref.flops.values()),
            "n_ops": len(rec.calls), "conv_s": rec.replay_seconds()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(ap)
    ap.add_argument("--max-images", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=3, help="timed generator steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--ceiling", action="store_true")
    args = ap.parse_args()
    require_data(args)

    root = Path(args.data)
    img_dir = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    files = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.max_images]
    if not files:
        sys.exit(f"no images under {args.data}")
    cfg = apply_overrides(get_preset("wgangp-celeba64"),
                          {"data.path": str(root), "data.max_images": args.max_images, "train.device": "cpu"})
    t0 = time.perf_counter()
    data = load_dataset(cfg.data, progress=False)
    t_load = time.perf_counter() - t0
    bs, nc = cfg.train.batch_size, cfg.train.n_critic
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(files)} images from {args.data}; "
          f"facegan data load (decode or cache hit) {t_load:.1f} s")

    fg, ref = [], []
    for r in range(args.rounds):
        fg += facegan_step_times(cfg, data, args.steps)
        ref += reference_step_times(cfg, files, args.steps)
        print(f"round {r + 1}: facegan {statistics.median(fg):.2f} s/step, reference {statistics.median(ref):.2f} s/step",
              flush=True)

    def line(name, times, base=None):
        m = statistics.median(times)
        ratio = f"{statistics.median(base) / m:5.2f}x" if base else "  1.00x"
        print(f"{name:44s} {1 / m:7.3f} G steps/s {bs * nc / m:8.1f} real img/s  {ratio} (median of {len(times)})")

    print("\nwgangp-celeba64, batch 64, 5 critic steps, CPU")
    line("reference (tutorial loop, PIL per access, fp32)", ref)
    line("facegan (defaults: bf16 autocast, channels_last)", fg, ref)
    if args.variants:
        variants = {
            "facegan fp32, channels_last": (["train.precision=fp32"], None),
            "facegan fp32, contiguous": (["train.precision=fp32", "train.channels_last=false"], None),
            "facegan bf16, contiguous": (["train.channels_last=false"], None),
            "facegan bf16, channels_last, separate passes": ([], False),
        }
        for name, (ov, joint) in variants.items():
            line(name, facegan_step_times(apply_overrides(cfg, ov), data, args.steps, joint=joint), ref)
        # Not the recipe: how fast the step gets with the critic's instance norms taken out, a
        # bound on what any faster norm implementation could buy.
        line("facegan bf16, critic with no norm (NOT the recipe)",
             facegan_step_times(apply_overrides(cfg, ["model.d_norm=none"]), data, args.steps), ref)
    if args.ceiling:
        fl = conv_floor(cfg, data, files)
        t_ref, t_fg = statistics.median(ref), statistics.median(fg)
        print(f"\nFLOPs per generator step (convolutions and their gradients): facegan "
              f"{fl['flops'] / 1e9:.0f} G, reference {fl['ref_flops'] / 1e9:.0f} G")
        print(f"facegan's {fl['n_ops']} convolution ops of one generator step replayed alone: "
              f"{fl['conv_s']:.2f} s ({fl['flops'] / fl['conv_s'] / 1e9:.0f} GFLOP/s); the whole step "
              f"takes {t_fg:.2f} s, so {fl['conv_s'] / t_fg:.0%} of it is convolution kernels")
        print(f"ceiling with these kernels (everything but the convolutions free): "
              f"{t_ref / fl['conv_s']:.2f}x the reference")


if __name__ == "__main__":
    main()
