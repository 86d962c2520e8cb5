"""Training throughput: facegan's wgangp-celeba64 against a tutorial-style reference loop.

Prints generator steps/s and real images/s (5 critic steps x batch 64 real images per
generator step) for facegan and for ``reference_wgangp.py`` measured in the same run,
interleaved (facegan, reference, facegan, reference, ...) so that load on a noisy machine hits
both alike; quotes medians and their ratio. Optional variants show what each choice buys.

    python benchmarks/bench_train.py --data ../shared/data/celeba-10k --steps 3 --rounds 2
    python benchmarks/bench_train.py --variants      # + fp32 / no channels_last / separate passes
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

from reference_wgangp import run_reference  # noqa: E402

from facegan.config import apply_overrides, get_preset  # noqa: E402
from facegan.data import load_dataset  # noqa: E402
from facegan.models import build_networks  # noqa: E402
from facegan.train import build_trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "celeba-10k"))
    ap.add_argument("--max-images", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=3, help="timed generator steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", action="store_true")
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
