"""Quality on a budget: train a preset for a fixed wall-clock time, then measure FID and KID.

Trains ``--preset`` on real data (``--data CELEBA_DIR``, default the environment variable
``CELEBA_DIR``: a CelebA folder, 64x64, CelebA face crop) for ``--minutes`` of training
time (the trainer's own clock: data, steps, sample grids and checkpoints; evaluation is not counted), and
evaluates the EMA generator with facegan's protocol (``facegan evaluate``: uint8 images, clean
bicubic resize, TF-Inception features): ``--n`` generated images against all real images of the
data (partition ``all``). With ``--curve 10,20,40`` it also evaluates at those training minutes
(with ``--curve-n`` images, fewer than the final count, so those FIDs sit higher: FID is biased
upward for small N) and draws the FID-versus-time curve.

    python benchmarks/bench_quality.py --data CELEBA_DIR --preset sngan-celeba64 --minutes 60 --curve 10,20,30,45
    python benchmarks/bench_quality.py --data CELEBA_DIR --preset dcgan-celeba64 --minutes 60 train.batch_size=32

Prints one line per evaluation and a final JSON record; writes into ``--out``: the run folder
(checkpoints, samples, metrics.jsonl), ``quality.json`` and, with a curve, ``fid_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import add_data_option, require_data

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.metrics.evaluate import evaluate_checkpoint
from facegan.train import TrainingDiverged, TrainingInterrupted, build_trainer, resume_trainer
from facegan.utils import cpu_name

REPO = Path(__file__).resolve().parents[1]


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return cpu_name()


def plot_curve(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for n in sorted({p["n"] for p in points}):
        pts = [p for p in points if p["n"] == n]
        ax.plot([p["minutes"] for p in pts], [p["fid"] for p in pts], "o-", label=f"FID, {n} samples")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True)
    add_data_option(ap)
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    ap.add_argument("--curve", default="", help="also evaluate at these training minutes (comma-separated)")
    ap.add_argument("--curve-n", type=int, default=2000, help="generated images for the curve's points")
    ap.add_argument("--n", type=int, default=10000, help="generated images for the final FID/KID")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="", help="output folder (default runs/quality-PRESET)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    require_data(args)

    out = Path(args.out or REPO / "runs" / f"quality-{args.preset}")
    run = out / "run"
    cfg = get_preset(args.preset)
    cfg = apply_overrides(cfg, {"data.path": str(Path(args.data).resolve()), "data.partition": "all",
                                "train.steps": 10 ** 8, "train.device": args.device,
                                "train.sample_every": 500, "train.checkpoint_every": 500})
    cfg = apply_overrides(cfg, list(args.overrides))
    data = load_dataset(cfg.data, progress=sys.stderr.isatty())
    marks = sorted({float(m) for m in args.curve.split(",") if m.strip()} | {args.minutes})
    marks = [m for m in marks if m <= args.minutes]
    points: list[dict] = []
    if args.resume:
        tr = resume_trainer(run, data, cfg=None, progress=sys.stderr.isatty())
        prev = out / "quality.json"
        if prev.exists():
            points = json.loads(prev.read_text()).get("points", [])
    else:
        if run.exists():
            print(f"bench_quality: {run} exists; use --resume or another --out", file=sys.stderr)
            return 2
        tr = build_trainer(cfg, data, run, progress=sys.stderr.isatty())
    dev = device_name(str(tr.device))
    print(f"# {args.preset} on {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"precision={tr.precision}, {len(data)} images at {cfg.data.resolution}px, budget {args.minutes:g} min",
          flush=True)
    done = {p["minutes"] for p in points}
    for m in marks:
        if m in done:
            continue
        tr.cfg = apply_overrides(tr.cfg, {"train.time_budget": m * 60.0})
        tr.logger = type(tr.logger)(tr.run_dir, tensorboard=False)
        try:
            tr.train(10 ** 8)
        except TrainingDiverged as e:
            print(f"bench_quality: {e}", file=sys.stderr)
            break
        except TrainingInterrupted as e:
            print(f"bench_quality: {e}; continue with --resume --out {out}", file=sys.stderr)
            return 130
        n = args.n if m == args.minutes else args.curve_n
        t0 = time.time()
        rec = evaluate_checkpoint(run / "checkpoints" / "latest.pt", str(Path(args.data).resolve()), n=n,
                                  metrics=("fid", "kid"), partition="all", device=str(tr.device),
                                  progress=True)  # a bar on a terminal, periodic lines in a log
        point = {"minutes": m, "train_s": round(tr.elapsed, 1), "step": tr.step, "n": n,
                 "fid": round(rec["fid"], 2), "kid_mean": round(rec["kid_mean"], 4),
                 "kid_std": round(rec["kid_std"], 4), "eval_s": round(time.time() - t0, 1)}
        points.append(point)
        print(f"{args.preset}: {m:g} min ({point['step']} G steps, {point['train_s']:.0f} s trained): "
              f"FID {point['fid']:.2f}, KID {point['kid_mean']:.4f} ± {point['kid_std']:.4f} "
              f"({n} samples vs {rec['n_real']} real; eval {point['eval_s']:.0f} s)", flush=True)
        summary = {"preset": args.preset, "device": dev, "torch": torch.__version__, "bf16": tr.precision == "bf16",
                   "images": len(data), "resolution": cfg.data.resolution, "protocol": rec["protocol"],
                   "config": tr.cfg.to_dict(), "points": points}
        (out / "quality.json").write_text(json.dumps(summary, indent=2) + "\n")
    if len(points) > 1:
        plot_curve(points, out / "fid_curve.png", f"{args.preset} on {dev}")
    samples = sorted((run / "samples").glob("step_*.png"))
    if samples:
        print(f"sample grid: {samples[-1]}")
    print(json.dumps(points[-1] if points else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
