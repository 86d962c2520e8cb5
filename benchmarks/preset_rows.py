"""One labelled row of samples per run: what several presets draw after the same budget.

Each run's EMA generator draws ``--n`` images from the same seed; each row is titled with the
run's preset, its generator step and, when the run came from ``bench_quality.py`` (a
``quality.json`` beside the run folder), its final FID with the sample count.

    python benchmarks/preset_rows.py RUNS/*/run --out docs/quality-presets-60min.png
"""

from __future__ import annotations

import argparse
import json
import sys

from facegan.errors import UserError
from facegan.files import atomic_write
from facegan.sampling import generate_images, load_generator, make_grid


def row_title(loaded) -> str:
    """'preset, step N, FID x (n samples)' from the checkpoint and, when the run folder has
    one beside it, the benchmark record."""
    title = f"{loaded.config.preset}, step {loaded.step:,}"
    rec = loaded.run_dir.parent / "quality.json" if loaded.run_dir else None
    if rec and rec.exists():
        pts = json.loads(rec.read_text()).get("points", [])
        if pts:
            title += f", FID {pts[-1]['fid']:.1f} ({pts[-1]['n']:,} samples)"
    return title


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders or checkpoints")
    ap.add_argument("--n", type=int, default=10, help="images per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", default="", help="comma list, one per run: put before each row's title")
    ap.add_argument("--title", action="append", default=[],
                    help="a row's whole title instead of its preset and step (repeat, one per run)")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args(argv)
    if args.title and len(args.title) != len(args.runs):
        print(f"preset_rows: {len(args.title)} --title for {len(args.runs)} runs", file=sys.stderr)
        return 2
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else [""] * len(args.runs)
    if len(labels) != len(args.runs):
        print(f"preset_rows: --labels has {len(labels)} names for {len(args.runs)} runs", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for i, (r, label) in enumerate(zip(args.runs, labels)):
        try:
            loaded = load_generator(r)
        except UserError as e:
            print(f"preset_rows: {e}", file=sys.stderr)
            return 2
        imgs = generate_images(loaded.generator, args.n, seed=args.seed, labels=loaded.labels)  # uint8
        title = args.title[i] if args.title else row_title(loaded)
        rows.append((f"{label}: {title}" if label else title, make_grid(imgs, nrow=args.n)))

    w, h = rows[0][1].size
    fig, axes = plt.subplots(len(rows), 1, figsize=(w / 100, len(rows) * (h / 100 + 0.3)), dpi=100,
                             squeeze=False)
    for ax, (title, img) in zip(axes[:, 0], rows):
        ax.imshow(img)
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))  # never a half-written PNG
    plt.close(fig)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
