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

With ``--against-tutorial`` it trains the preset (``--preset``, default the one preset auto
picks for this CPU) and the tutorial-style WGAN-GP loop of ``reference_wgangp.py``
(wgangp-celeba64's networks at the preset's resolution: fp32, 5 critic steps, a PIL decode per
image access) side by side on the CPU: two processes at once, each with half the cores, for
the same ``--minutes`` of training on the same images. Both are then evaluated alike (``--n``
images each, default 2000: facegan's EMA generator, the tutorial's plain one); it prints both
FIDs and KIDs, their FID ratio and the steps each took, and writes ``against_tutorial.json`` and
``against_tutorial.png`` (a labelled row of samples from each). key=value overrides apply to
both sides (the tutorial takes its networks' shape, batch size and critic steps from them).

    python benchmarks/bench_quality.py --data CELEBA_DIR --against-tutorial --minutes 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_data_option, require_data
from reference_wgangp import run_reference

from facegan.config import AUTO_PRESETS, apply_overrides, get_preset
from facegan.data import load_dataset, resolve_crop
from facegan.data.sources import list_source
from facegan.labels import UNCONDITIONAL
from facegan.metrics.evaluate import PROTOCOL, TrainingEvaluator, evaluate_checkpoint, generate_uint8
from facegan.models import build_networks
from facegan.runtime import cpu_has_fast_bf16, cpu_name
from facegan.sampling import load_generator, make_grid
from facegan.train import TrainingDiverged, TrainingInterrupted, build_trainer, resume_trainer

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


TUTORIAL = "wgangp-celeba64"  # the networks and recipe of reference_wgangp.py


def _facegan_side(cfg, run: Path, threads: int, start, results) -> None:
    torch.set_num_threads(threads)
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), run, progress=False)
    start.wait()
    tr.train(10 ** 8)  # until cfg.train.time_budget is spent
    results.put(("facegan", {"steps": tr.step, "train_s": round(tr.elapsed, 1), "precision": tr.precision}))


def _tutorial_side(cfg, files: list[Path], crop: str, out: Path, threads: int, start, results) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    g, d = build_networks(cfg.model, cfg.data.resolution)
    start.wait()
    times = run_reference(files, g, d, 10 ** 8, latent_dim=cfg.model.latent_dim, batch_size=cfg.train.batch_size,
                          critic_iters=cfg.train.n_critic, size=cfg.data.resolution, crop=crop,
                          time_budget=cfg.train.time_budget)["step_times"]
    torch.save(g.state_dict(), out)
    results.put(("tutorial", {"steps": len(times), "train_s": round(sum(times), 1), "precision": "fp32"}))


def side_by_side(sides: list[tuple]) -> tuple[dict, str]:
    """Run each (function, args) in its own process, all starting to train together. Returns
    their records by name and '', or {} and the name of the side that failed first (the
    others are then stopped)."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(len(sides)), ctx.Queue()
    procs = [ctx.Process(target=fn, args=(*args, start, results), name=fn.__name__.strip("_").replace("_", " "))
             for fn, args in sides]
    for p in procs:
        p.start()
    failed = ""
    while any(p.is_alive() for p in procs):
        failed = next((p.name for p in procs if p.exitcode), "")
        if failed:
            for p in procs:
                p.terminate()
            break
        time.sleep(0.5)
    for p in procs:
        p.join()
    failed = failed or next((p.name for p in procs if p.exitcode), "")
    return ({} if failed else dict(results.get(timeout=30) for _ in procs)), failed


def plot_rows(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """One labelled row of images (uint8 (N, 3, R, R)) per (title, images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [(title, make_grid(imgs, nrow=len(imgs))) for title, imgs in rows]
    w, h = grids[0][1].size
    fig, axes = plt.subplots(len(grids), 1, figsize=(max(w / 100, 4), len(grids) * (h / 100 + 0.3)), dpi=100,
                             squeeze=False)
    for ax, (title, grid) in zip(axes[:, 0], grids):
        ax.imshow(grid)
        ax.set_title(title, fontsize=8, loc="left")
        ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def against_tutorial(args) -> int:
    # Both sides train on the CPU, so the preset is what preset auto picks for a run there.
    preset = args.preset or AUTO_PRESETS["cpu-bf16" if cpu_has_fast_bf16() else "cpu"][0]
    out = Path(args.out or REPO / "runs" / f"against-tutorial-{preset}")
    run, tutorial_pt = out / "run", out / "tutorial_generator.pt"
    if run.exists():
        print(f"bench_quality: {run} exists; use another --out", file=sys.stderr)
        return 2
    base = {"data.path": str(Path(args.data).resolve()), "data.partition": "all", "train.steps": 10 ** 8,
            "train.device": "cpu", "train.time_budget": args.minutes * 60.0,
            "train.sample_every": 500, "train.checkpoint_every": 500}
    cfg = apply_overrides(apply_overrides(get_preset(preset), base), list(args.overrides))
    tcfg = replace(apply_overrides(apply_overrides(get_preset(TUTORIAL), base), list(args.overrides)),
                   data=cfg.data)
    data = load_dataset(cfg.data, progress=sys.stderr.isatty())  # decoded here once: the facegan side reads the cache
    listing = list_source(cfg.data).head(cfg.data.max_images)
    if listing.kind not in ("folder", "celeba"):
        print(f"bench_quality: --against-tutorial needs an image folder or a CelebA folder, not a {listing.kind}",
              file=sys.stderr)
        return 2
    files = [Path(listing.identity["path"]) / name for name in listing.names]
    threads = max(1, (os.cpu_count() or 2) // 2)
    print(f"# {preset} against a tutorial WGAN-GP loop ({TUTORIAL} nets, fp32) on {cpu_name()}, torch "
          f"{torch.__version__}, {threads} threads each, {len(data)} images at {cfg.data.resolution}px, "
          f"{args.minutes:g} min each", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    crop = resolve_crop(cfg.data, listing.kind)  # the tutorial frames the faces as facegan's data does
    trained, failed = side_by_side([(_facegan_side, (cfg, run, threads)),
                                    (_tutorial_side, (tcfg, files, crop, tutorial_pt, threads))])
    if failed:
        print(f"bench_quality: the {failed} failed (its traceback is above); stopped the other side", file=sys.stderr)
        return 1

    loaded = load_generator(run / "checkpoints" / "latest.pt", ema=True)
    g, _ = build_networks(tcfg.model, tcfg.data.resolution)
    g.load_state_dict(torch.load(tutorial_pt, weights_only=True))
    sides = {"facegan": (f"facegan {preset} (EMA)", loaded.generator, loaded.labels),
             "tutorial": ("tutorial WGAN-GP loop", g, UNCONDITIONAL)}
    ev = TrainingEvaluator(cfg.data, n=args.n, metrics=("fid", "kid"), progress=True)
    records, rows = {}, []
    for side, (name, gen, labels) in sides.items():
        m = ev(gen, labels)
        rec = records[side] = {"name": name, **trained[side], "fid": round(m["fid"], 2),
                               "kid_mean": round(m["kid_mean"], 4), "kid_std": round(m["kid_std"], 4),
                               "model": (cfg if side == "facegan" else tcfg).to_dict()["model"]}
        print(f"{name}: {rec['steps']} G steps in {rec['train_s']:.0f} s, FID {rec['fid']:.2f}, "
              f"KID {rec['kid_mean']:.4f} ± {rec['kid_std']:.4f} ({args.n} samples vs {len(data)} real)", flush=True)
        rows.append((f"{name}: {rec['steps']:,} G steps, FID {rec['fid']:.1f}",
                     generate_uint8(gen, 8, 0, labels)))
    ratio = round(records["tutorial"]["fid"] / max(records["facegan"]["fid"], 1e-9), 2)
    print(f"FID tutorial / facegan: {ratio:.2f}x", flush=True)
    plot_rows(rows, out / "against_tutorial.png")
    summary = {"cpu": cpu_name(), "torch": torch.__version__, "threads_per_side": threads, "minutes": args.minutes,
               "images": len(data), "resolution": cfg.data.resolution, "n": args.n, "protocol": PROTOCOL,
               "fid_ratio": ratio, **records}
    (out / "against_tutorial.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("fid_ratio", "facegan", "tutorial")}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", help="required, except with --against-tutorial")
    add_data_option(ap)
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    ap.add_argument("--curve", default="", help="also evaluate at these training minutes (comma-separated)")
    ap.add_argument("--curve-n", type=int, default=2000, help="generated images for the curve's points")
    ap.add_argument("--n", type=int, help="generated images for the final FID/KID (default 10000; with "
                    "--against-tutorial 2000 a side)")
    ap.add_argument("--against-tutorial", action="store_true",
                    help="train the preset and a tutorial-style WGAN-GP loop side by side, compare their FIDs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="", help="output folder (default runs/quality-PRESET)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    require_data(args)
    if args.against_tutorial:
        if args.curve or args.resume:
            ap.error("--against-tutorial takes no --curve or --resume")
        args.n = args.n or 2000
        return against_tutorial(args)
    if not args.preset:
        ap.error("--preset is required (except with --against-tutorial)")
    args.n = args.n or 10000

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
