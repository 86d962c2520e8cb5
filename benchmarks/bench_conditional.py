"""Conditional and steering measurements for trained runs: three figures.

1. Conditional accuracy of a conditional run (``--cond-run``): the share of its images that
   the attribute classifier (trained on the real images; its held-out accuracy is printed
   too) assigns to the label the generator was asked for, per label value.
2. Intra-class FID / KID of that run: each label value's generated images against the real
   images with that value, next to the overall FID (all generated vs all real).
3. Edit metrics of the directions in an unconditional run's ``directions.json``
   (``--edit-run``): the classifier score of the edited attribute at strengths -3..3 (does it
   rise monotonically?), the mean absolute change of the other 39 attributes, and identity
   drift (Inception-feature distance between a face and its edit at +-3, against the distance
   between two random faces).

    python benchmarks/bench_conditional.py --data CELEBA_DIR \\
        --cond-run COND_RUN --edit-run EDIT_RUN --attrs Male,Smiling,Eyeglasses,Young

``--data`` defaults to the environment variable ``CELEBA_DIR``; it may name any labelled folder
facegan reads (CelebA, or class folders for a class-conditional run).

Real-image Inception features for the intra-class FID come from facegan's statistics cache
(computed once: 10,000 images take a while on a CPU), or from ``--real-stats FILE.npz``: a
statistics file written by facegan for the same images (it must hold the features of every
image, in the data's order: ``n`` equal to the number of images and ``feature_index``
0..n-1). Prints a table per part and writes all figures as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch
from _common import add_data_option, require_data

from facegan.data import load_dataset, resolve_labels
from facegan.directions import get_direction, load_directions
from facegan.files import atomic_write_text
from facegan.labels import CLASSES_PREFIX, FOLDERS
from facegan.metrics.classifier import classifier_for_data
from facegan.metrics.conditional import conditional_accuracy, edit_metrics, intra_class_fid
from facegan.runtime import cpu_name
from facegan.sampling import load_generator


def _classifier(lg, data: str, epochs: int):
    """The run's classifier: of its classes for a class-conditional run (folders or
    attribute combinations), else of all the data's attributes."""
    cond = lg.config.data.condition.strip() if lg.labels.conditional else ""
    classes = cond == FOLDERS or cond.startswith(CLASSES_PREFIX)
    dcfg = dataclasses.replace(lg.config.data, path=os.path.abspath(data),
                               condition=cond if classes else "")
    return classifier_for_data(dcfg, epochs=epochs, progress=True)


def _real_features(lg, data: str, net, real_stats_path: str | None):
    """(features float32 (N, 2048), the data set) for all images of the run's data (partition
    all, the run's crop and resolution)."""
    from facegan.metrics.stats import load_stats, real_stats

    dcfg = dataclasses.replace(lg.config.data, path=os.path.abspath(data), partition="all", hflip=False)
    real = load_dataset(dcfg, progress=False)
    if real_stats_path:
        st = load_stats(real_stats_path)
        n = len(real)
        if (st.features is None or st.n != n or len(st.features) != n
                or not np.array_equal(st.feature_index, np.arange(n))):
            sys.exit(f"--real-stats {real_stats_path}: needs the features of all {n} images in "
                     f"order (it has n={st.n}, {0 if st.features is None else len(st.features)} features)")
        return st.features, real
    st = real_stats(real, net, cache_dir=dcfg.cache_dir, progress=True)
    if st.features is None or len(st.features) != len(real):
        sys.exit("the real-image statistics hold a subset of the features; intra-class FID needs "
                 "all of them (data sets up to 10,000 images)")
    return st.features, real


def bench_conditional(args, net, out: dict) -> None:
    lg = load_generator(args.cond_run, device="cpu")
    spec = lg.labels
    if not spec.conditional:
        sys.exit(f"{args.cond_run} is not a conditional run")
    clf = _classifier(lg, args.data, args.epochs)
    t0 = time.time()
    acc = conditional_accuracy(lg.generator, spec, clf, n=args.n_acc, seed=args.seed)
    names = [n for n in spec.names if n in clf.names]
    print(f"\n== conditional run {args.cond_run} (step {lg.step}, condition "
          f"'{lg.config.data.condition}', preset {lg.config.preset})")
    print(f"classifier held-out accuracy: {clf.describe(names)} ({clf.info.get('n_heldout')} images, "
          f"{clf.info.get('heldout_rule')})")
    print(f"conditional accuracy ({args.n_acc} images per label value, {time.time() - t0:.0f} s):")
    for k, v in acc["per_label"].items():
        print(f"  asked {k:24s} classifier agrees {100 * v:5.1f}%")
    for k, v in acc.get("per_attribute", {}).items():
        print(f"  {k}: balanced accuracy {100 * v:.1f}%")
    out["conditional"] = {"run": str(args.cond_run), "step": lg.step,
                          "classifier_heldout_accuracy": {n: clf.accuracy[n] for n in names},
                          "accuracy": acc}
    if args.n_fid <= 0:
        return
    t0 = time.time()
    feats, real = _real_features(lg, args.data, net, args.real_stats)
    _, labels = resolve_labels(lg.config.data.condition, real)  # the run's c for each real image
    fid = intra_class_fid(lg.generator, spec, feats, labels, net, n=args.n_fid, seed=args.seed,
                          progress=True)
    print(f"intra-class FID / KID ({args.n_fid} generated per label value vs that value's real "
          f"images; {time.time() - t0:.0f} s):")
    for k, v in fid["per_class"].items():
        print(f"  {k:24s} FID {v['fid']:7.2f}  KID {v['kid_mean']:.4f} +- {v['kid_std']:.4f}  "
              f"(real {v['n_real']})")
    n_gen = args.n_fid * len(fid["per_class"])
    print(f"  mean intra-class FID {fid['mean_fid']:.2f}; overall FID (all {n_gen} generated vs all "
          f"{len(feats)} real) {fid['overall_fid']:.2f}")
    out["conditional"]["intra_class_fid"] = fid


def bench_edits(args, net, out: dict) -> None:
    lg = load_generator(args.edit_run, device="cpu")
    doc = load_directions(args.edit_run)
    clf = _classifier(lg, args.data, args.epochs)
    attrs = ([a.strip() for a in args.attrs.split(",") if a.strip()] if args.attrs
             else [a for a in doc["directions"] if a in clf.names])
    print(f"\n== edits of {args.edit_run} (step {lg.step}, preset {lg.config.preset}); strengths "
          f"-{args.strength:g}..{args.strength:g}, {args.n_edit} faces")
    print(f"classifier held-out accuracy: {clf.describe(attrs)}")
    print(f"{'direction':12s} {'kept':10s} {'val.acc':>7s}  {'p(attr) at each strength':44s} "
          f"{'mono':4s} {'|d attr|':>8s} {'|d others|':>10s} {'drift':>6s} {'random':>7s} {'ratio':>5s}")
    res = {}
    for a in attrs:
        e = doc["directions"][a]
        v = get_direction(doc, a, args.edit_run)
        watch = [w for w in dict.fromkeys(["Male", *e["kept"]]) if w != a and w in clf.names]
        m = edit_metrics(lg.generator, clf, v, a, labels=lg.labels, strength=args.strength, steps=7,
                         n=args.n_edit,
                         seed=args.seed, net=net, watch=watch)
        m.update(method=e["method"], kept=e["kept"], accuracy=e["accuracy"])
        res[a] = m
        acc = "-" if e["accuracy"] is None else f"{100 * e['accuracy']:.1f}%"
        curve = " ".join(f"{t:.2f}" for t in m["target"])
        drift = (f"{m['identity_drift']:6.2f} {m['random_pair_distance']:7.2f} {m['drift_ratio']:5.2f}"
                 if "identity_drift" in m else "")
        print(f"{a:12s} {','.join(e['kept']) or '-':10s} {acc:>7s}  {curve:44s} "
              f"{'yes' if m['monotonic'] else 'no':4s} {m['target_abs_change']:8.3f} "
              f"{m['others_change']:10.3f} {drift}")
        top = ", ".join(f"{k} {v:.3f}" for k, v in m["others_top"].items())
        watched = "".join(f"; {k} moves {v:.3f}" for k, v in m["watched"].items())
        print(f"{'':12s} others moving most: {top}{watched}")
    out["edits"] = {"run": str(args.edit_run), "step": lg.step, "strength": args.strength,
                    "n": args.n_edit, "directions": res}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(p)
    p.add_argument("--cond-run", help="a conditional run folder (attributes or classes)")
    p.add_argument("--edit-run", help="a run folder with directions.json")
    p.add_argument("--attrs", help="directions to measure (default: every attribute direction there)")
    p.add_argument("--n-acc", type=int, default=500, help="images per label value for accuracy")
    p.add_argument("--n-fid", type=int, default=1000, help="images per label value for intra-class "
                   "FID (0: skip FID)")
    p.add_argument("--n-edit", type=int, default=64, help="faces per direction for edit metrics")
    p.add_argument("--strength", type=float, default=3.0)
    p.add_argument("--real-stats", help="statistics .npz with the features of every real image")
    p.add_argument("--epochs", type=int, default=10, help="classifier epochs (when not cached)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_conditional.json")
    args = p.parse_args(argv)
    if not (args.cond_run or args.edit_run):
        p.error("give --cond-run and/or --edit-run")
    require_data(args)
    from facegan.metrics import load_inception

    out = {"device": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "data": str(args.data), "seed": args.seed}
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    t0 = time.time()
    net = load_inception(None, device="cpu") if (args.edit_run or args.n_fid > 0) else None
    if args.cond_run:
        bench_conditional(args, net, out)
    if args.edit_run:
        bench_edits(args, net, out)
    out["seconds"] = round(time.time() - t0, 1)
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {args.out} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
