"""``facegan directions`` and ``facegan edit``: latent directions of a trained generator.

``facegan directions RUN --data CELEBA [--attrs A,B] [--keep A] [--n 10000]`` (InterFaceGAN),
``facegan directions RUN --unsupervised K [--data CELEBA]`` (SeFa), then
``facegan edit RUN --attr Smiling --strength -3:3 --n 8 [--steps 7] --out edit.png`` (or
``--latent NAME.latent.npy`` for a photo put into the latent space by ``facegan project``).
User mistakes raise :class:`UserError` (one line, exit 2); nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..errors import UserError
from ..files import WriteFailed
from .common import add_device, add_no_ema, add_run, add_seed, check_count, check_out_file, info
from .sample import MAX_SAMPLES, add_truncation

# The built-in drawn faces (``--data builtin``, as ``facegan train`` takes it) carry attribute
# labels (facegan.data.synthetic.LABEL_NAMES), so they train a classifier as CelebA does.
BUILTIN = "builtin"
# Faces `directions` scores at once: their latents and scores are held in memory together.
# InterFaceGAN itself used 500,000; the default is 10,000.
MAX_SCORED = 1_000_000
# Classifier training epochs: 10 (the default) already fits CelebA; more only costs time.
MAX_EPOCHS = 1000


def register(subparsers) -> None:
    """Add ``directions`` and ``edit`` to the main parser's subparsers."""
    p = subparsers.add_parser(
        "directions", help="find latent directions (attributes) of a trained generator",
        description="InterFaceGAN: score --n generated faces with an attribute classifier trained "
                    "on the real labelled images of --data, fit a linear boundary in latent space "
                    "to the most and least confident --ratio of them, and save its unit normal. "
                    "--unsupervised K: SeFa's K closed-form directions instead (named by the "
                    "attribute they move most when --data is given). Saved (merged) in "
                    "RUN/directions.json.")
    add_run(p)
    p.add_argument("--data", metavar="PATH", help="labelled real images: a CelebA folder with "
                   "list_attr_celeba.txt, or 'builtin' for the built-in drawn faces and their "
                   "attributes (preprocessed as the run's training data)")
    p.add_argument("--attrs", metavar="A,B,...", help="attributes to find (default: all the "
                   "data has)")
    p.add_argument("--keep", metavar="A,B", help="make each direction orthogonal to these "
                   "attributes' directions, so an edit leaves them unchanged")
    p.add_argument("--unsupervised", type=int, metavar="K", help="SeFa: the K strongest "
                   "directions of the generator's first layer (no labels needed)")
    p.add_argument("--n", type=int, default=10000, help="generated faces to score (default "
                   f"%(default)s, at most {MAX_SCORED:,})")
    p.add_argument("--ratio", type=float, default=0.02, help="share of most and least confident "
                   "faces used, each side (default %(default)s)")
    add_seed(p, "faces to score")
    p.add_argument("--epochs", type=int, default=10, help="classifier training epochs, when it is "
                   f"not cached yet (default %(default)s, 1 to {MAX_EPOCHS})")
    add_device(p)
    add_no_ema(p)
    p.set_defaults(func=cmd_directions)

    e = subparsers.add_parser(
        "edit", help="move faces along a latent direction (one row per face)",
        description="One row per face, the same face moving along the direction from the low to "
                    "the high --strength (z + a * direction). Needs RUN/directions.json (facegan "
                    "directions).")
    add_run(e)
    e.add_argument("--attr", required=True, metavar="NAME", help="a direction in directions.json "
                   "(e.g. Smiling, sefa_0)")
    e.add_argument("--strength", default="-3:3", metavar="LOW:HIGH", help="range of a: LOW:HIGH, "
                   "or one number S for -S:S (default %(default)s)")
    e.add_argument("--latent", action="append", metavar="FILE", help="a projected face "
                   "(NAME.latent.npy from facegan project) instead of random ones; repeat for "
                   "several rows (--n and --seed then pick nothing); the edits keep the photo's "
                   "own detail from NAME.crop.png beside it")
    e.add_argument("--no-detail", action="store_true", help="with --latent: edit the projection "
                   "alone, without the photo's detail (what the generator draws)")
    e.add_argument("--n", type=int, default=8, help="faces, one per row (default %(default)s; "
                   f"--n x --steps at most {MAX_SAMPLES:,} images)")
    e.add_argument("--steps", type=int, default=7, help="columns from LOW to HIGH (default "
                   "%(default)s)")
    add_seed(e, "faces")
    e.add_argument("--out", default="edit.png", help="image, .png or .jpg (default %(default)s)")
    add_no_ema(e)
    add_device(e)
    add_truncation(e)
    e.set_defaults(func=cmd_edit)
    # '--strength -3:3' must read -3:3 as the value: argparse takes a word that starts with '-'
    # for an option unless it looks like a negative number, and its test accepts only plain
    # numbers (-3, -.5) before Python 3.13. This parser has no option that starts with a digit,
    # so a '-' followed by a digit is always a value here.
    e._negative_number_matcher = re.compile(r"^-\.?\d")


def _check_run(run: str) -> None:
    from ..checkpoint import resolve_checkpoint

    resolve_checkpoint(run)  # UserError: missing path / no checkpoint in the folder


def _check_attribute_labels(data: str, given: str) -> None:
    """Refuse --data without attribute labels now, not after its images are decoded: the
    classifier learns attributes (CelebA's list_attr_celeba.txt, or the built-in faces' own),
    and `directions` reads the data without a condition, so class sub-folders give it none."""
    if data == BUILTIN:
        return
    from ..data.sources import CELEBA_ATTR, celeba_attributes_file

    if celeba_attributes_file(data) is not None:
        return
    try:
        folders = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(data))
    except OSError:  # a zip (its sub-folders are not looked into) or an unreadable folder
        folders = False
    why = " (class sub-folders are not attributes)" if folders else ""
    raise UserError(f"--data '{given}' has no attribute labels{why}: give a CelebA folder with "
                    f"{CELEBA_ATTR} or --data builtin; without labels, drop --data and use "
                    "--unsupervised K (SeFa); to steer by class, train with --condition folders "
                    "and use facegan sample --class NAME or facegan morph --from-class A "
                    "--to-class B")


def _check_writable(path: Path) -> None:
    """Refuse a directions.json that cannot be written before the work, not after it (the
    directions found would be lost)."""
    from ..files import can_create_files_in

    if path.exists() and not path.is_file():
        raise UserError(f"cannot write {path}: it is a folder, not a file; move it away (the "
                        "directions are saved there), then run again")
    error = can_create_files_in(path.parent)
    if error is not None:
        raise UserError(f"cannot write {path}: {(error.strerror or str(error)).lower()} in "
                        f"{path.parent}; make that folder writable (or copy the run to a writable "
                        "place), then run again")


def cmd_directions(args) -> int:
    import dataclasses

    from ..data.sources import absolute_path
    from ..directions import (
        direction_entry,
        directions_path,
        interfacegan_boundary,
        load_directions,
        name_sefa_directions,
        orthogonalize,
        parse_names,
        save_directions,
        score_latents,
        sefa,
    )
    from ..sampling import latents, load_generator

    attrs = parse_names(args.attrs, "--attrs")
    keep = parse_names(args.keep, "--keep")
    data = absolute_path(args.data or "")  # 'builtin' (as train takes it) kept, '' if not given
    if args.unsupervised is not None:
        if attrs or keep:
            raise UserError("--unsupervised finds directions without labels; drop --attrs/--keep "
                            "(or drop --unsupervised for InterFaceGAN directions)")
        if args.unsupervised < 1:
            raise UserError(f"--unsupervised K needs K >= 1, got {args.unsupervised}")
    elif not data:
        raise UserError("--data CELEBA_FOLDER (or --data builtin for the built-in faces) is "
                        "required to find attribute directions (the classifier learns from its "
                        "labels); or --unsupervised K for SeFa")
    if not 0 < args.ratio <= 0.5:
        raise UserError(f"--ratio must be in (0, 0.5], got {args.ratio}")
    check_count(args.n, "--n", MAX_SCORED, "the generated faces' latents and scores are held in "
                "memory together", minimum=2)
    if args.unsupervised is None:
        # InterFaceGAN keeps the --ratio most and least confident faces, at least 5 a side:
        # said now, not after the classifier's training and the scoring.
        side = max(5, int(round(args.n * args.ratio)))
        if 2 * side > args.n:
            raise UserError(f"--n {args.n} is too few: InterFaceGAN keeps the {side} most and "
                            f"{side} least confident faces (--ratio {args.ratio:g}, at least 5 a "
                            f"side); give --n {2 * side} or more")
    if data:
        if args.epochs < 1:
            raise UserError(f"--epochs must be at least 1 (passes of the classifier over the "
                            f"labelled images), got {args.epochs}; the default is 10")
        check_count(args.epochs, "--epochs", MAX_EPOCHS, "the classifier is trained once and "
                    "cached; 10, the default, already fits CelebA")
    if data and data != BUILTIN and not Path(data).exists():
        raise UserError(f"--data '{args.data}' does not exist; give the CelebA folder (with "
                        "img_align_celeba/ and list_attr_celeba.txt), or 'builtin' for the "
                        "built-in faces")
    if data:
        _check_attribute_labels(data, args.data)
    _check_run(args.run)
    _check_writable(directions_path(args.run))
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    g = lg.generator
    d = int(g.latent_dim)
    if args.unsupervised is not None and args.unsupervised > d:
        # Before the classifier's training (with --data), not after it.
        raise UserError(f"--unsupervised K must be between 1 and the latent size {d}, got "
                        f"{args.unsupervised}")
    if directions_path(args.run).is_file():
        # Refuse a damaged file or one for another latent size now, not after the work.
        old = load_directions(args.run)
        if old["z_dim"] != d:
            raise UserError(f"'{directions_path(args.run)}' holds directions for z_dim {old['z_dim']}, "
                            f"but this generator's latent has {d}; move the file away first")
    clf = None
    if data:
        from ..metrics.classifier import classifier_for_data

        dcfg = dataclasses.replace(lg.config.data, path=data, condition="")
        # The classifier's own seed stays 0: --seed picks the latents, and must not make the
        # cached classifier train again.
        clf = classifier_for_data(dcfg, epochs=args.epochs, seed=0,
                                  device=next(g.parameters()).device, progress=True,
                                  require=attrs + keep)
        for a in attrs + keep:
            if a not in clf.names:
                raise UserError(f"unknown attribute '{a}'; the data has: {', '.join(clf.names)}")
        shown = list(dict.fromkeys(attrs + keep))
        print(f"classifier held-out accuracy ({clf.info.get('heldout_rule', 'held-out images')}, "
              f"{clf.info.get('n_heldout', '?')} images): mean {100 * clf.accuracy['mean']:.1f}% over "
              f"{len(clf.names)} attributes" + (f"; {clf.describe(shown)}" if shown else ""),
              file=sys.stderr)

    new: dict[str, dict] = {}
    if args.unsupervised is not None:
        vecs, vals = sefa(g, args.unsupervised)
        if clf is None:
            named = [(f"sefa_{i}", None, v) for i, v in enumerate(vecs)]
        else:
            named = [(f"sefa_{i}_{a}", delta, v) for i, (a, delta, v) in
                     enumerate(name_sefa_directions(g, clf, vecs, labels=lg.labels, seed=args.seed))]
        for (name, delta, v), ev in zip(named, vals.tolist()):
            new[name] = direction_entry(v, "sefa", None)
            moved = ("" if delta is None else f", moves its attribute's probability by {delta:+.2f} "
                     f"over -3..3 (classifier held-out accuracy {clf.describe([name.split('_', 2)[2]])})")
            print(f"{name}: eigenvalue {ev:.4g}{moved}")
    else:
        # Default: every attribute the data has (with --keep, each made orthogonal to the kept).
        names = list(dict.fromkeys(attrs or clf.names))
        names += [k for k in keep if k not in names]
        z = latents(args.n, d, args.seed)
        print(f"scoring {args.n} generated faces with the classifier...", file=sys.stderr, flush=True)
        probs = score_latents(g, clf, z, lg.labels.draw(args.n, args.seed))
        bounds = {a: interfacegan_boundary(z, probs[:, clf.index(a)], ratio=args.ratio,
                                           seed=args.seed) for a in names}
        for a in names:
            b = bounds[a]
            kept = [k for k in keep if k != a]
            if kept:
                v = orthogonalize(b.normal, [bounds[k].normal for k in kept], a, kept)
                acc = b.accuracy_of(v)
            else:
                v, acc = b.normal, b.accuracy
            new[a] = direction_entry(v, "interfacegan", acc, kept)
            share = float((probs[:, clf.index(a)] > 0.5).float().mean())
            extra = (f", orthogonal to {', '.join(kept)} (boundary alone {100 * b.accuracy:.1f}%)"
                     if kept else "")
            print(f"{a}: validation accuracy {100 * acc:.1f}%{extra}; {100 * share:.1f}% of the "
                  "generated faces have it")
            why = weak_direction(acc, len(b.y_val) // 2, share)
            if why:
                print(f"facegan: warning: {a}: {why}; this direction may not edit {a}: raise --n "
                      f"(now {args.n:,})", file=sys.stderr)
    try:
        path = save_directions(args.run, d, new)
    except WriteFailed as e:
        # Checked before the work, but the folder can change (or the disk fill) meanwhile.
        raise UserError(f"{e}; the directions above are not saved: make room or make the folder "
                        "writable, then run facegan directions again") from None
    print(f"wrote {len(new)} direction(s) to {path}; try: facegan edit {args.run} --attr "
          f"{next(iter(new))} --strength -3:3 --n 8 --out edit.png")
    return 0


# Below these, an InterFaceGAN direction is mostly noise: chance is 50%, and well-separated
# attributes validate at 90% and more (docs/directions.md).
WEAK_ACCURACY = 0.75
MIN_VALIDATION = 20  # faces a side


def weak_direction(accuracy: float, val_per_side: int, share: float) -> str:
    """Why a fitted direction is unreliable, in words ('' when it is not): validated on few
    faces, near chance, or fitted where the classifier finds the attribute on no generated face
    (or on all), so that the two sides differ in its confidence only."""
    why = []
    if val_per_side < MIN_VALIDATION:
        why.append(f"validated on {val_per_side} face(s) a side")
    if accuracy < WEAK_ACCURACY:
        why.append(f"validation accuracy {100 * accuracy:.1f}% (50% is chance)")
    if share in (0.0, 1.0):
        why.append(f"{'none' if share == 0 else 'all'} of the generated faces have it by the classifier")
    return "; ".join(why)


def cmd_edit(args) -> int:
    import torch

    from ..directions import edit_images, get_direction, load_directions, parse_strength
    from ..sampling import check_truncation, load_generator, save_grid

    truncation = check_truncation(args.truncation)
    lo, hi = parse_strength(args.strength)
    if args.latent and truncation is not None:
        raise UserError("--truncation picks random faces; --latent gives the faces: drop --truncation")
    if args.no_detail and not args.latent:
        raise UserError("--no-detail concerns projected photos (--latent); random faces have no "
                        "photo: drop --no-detail")
    if args.n < 1:
        raise UserError("--n must be at least 1")
    if args.steps < 2:
        raise UserError("--steps must be at least 2 (the two ends of --strength)")
    _check_grid(len(args.latent) if args.latent else args.n, args.steps,
                "--latent" if args.latent else "--n")
    check_out_file(args.out, "--out")
    _check_run(args.run)
    doc = load_directions(args.run)
    v = get_direction(doc, args.attr, args.run)
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    if int(lg.generator.latent_dim) != v.numel():
        raise UserError(f"the direction '{args.attr}' has length {v.numel()} but this generator's "
                        f"latent has {lg.generator.latent_dim}; run facegan directions {args.run} again")
    strengths = torch.linspace(lo, hi, args.steps)
    if args.latent:
        from ..projection import edit_latent_images, latent_labels, latent_photo, latent_source_note, load_latent

        d = int(lg.generator.latent_dim)
        z = torch.stack([load_latent(f, d) for f in args.latent])
        for f in args.latent:
            if note := latent_source_note(f, lg):
                info(note)
        c = torch.stack([latent_labels(f, lg.labels) for f in args.latent])
        rows = len(args.latent)
        photos = [None] * rows if args.no_detail else \
            [latent_photo(f, int(lg.generator.resolution)) for f in args.latent]
        frames = edit_latent_images(lg.generator, z, v, strengths, c, photos=photos)
        detail = _detail_note(sum(p is not None for p in photos), rows)
    else:
        frames = edit_images(lg.generator, v, strengths, args.n, labels=lg.labels, seed=args.seed,
                             truncation=truncation)
        rows = args.n
    save_grid(frames.flatten(0, 1), args.out, nrow=args.steps)
    note = f"; {detail}" if args.latent else "" if truncation is None else f", truncation {truncation:g}"
    print(f"wrote {args.out} ({rows} rows x {args.steps} columns: {args.attr} from {lo:g} to {hi:g}{note})")
    return 0


def _check_grid(rows: int, steps: int, row_option: str) -> None:
    """Refuse an edit grid of more than :data:`MAX_SAMPLES` images (rows x ``--steps``), as
    ``facegan sample`` refuses more: they are drawn and held in memory together. Blames the
    larger of the two, with the most it may be given the other."""
    if rows * steps <= MAX_SAMPLES:
        return
    held = f"at most {MAX_SAMPLES:,} images, as in facegan sample"
    if rows > steps and steps <= MAX_SAMPLES:
        check_count(rows, row_option, MAX_SAMPLES // steps, f"an edit of {steps} columns (--steps) "
                    f"draws and holds {row_option} x {steps} images in memory together, {held}")
    check_count(rows, row_option, MAX_SAMPLES // 2, f"an edit draws and holds {row_option} x "
                f"--steps images in memory together, {held}, and --steps is at least 2")
    check_count(steps, "--steps", MAX_SAMPLES // rows, f"an edit of {rows:,} row(s) draws and holds "
                f"{rows:,} x --steps images in memory together, {held}", minimum=2)


def _detail_note(kept: int, faces: int) -> str:
    """What the summary line says of the photos' detail: kept for ``kept`` of ``faces``."""
    if kept == faces:
        return "the photo's own detail kept" if faces == 1 else "each photo's own detail kept"
    if kept == 0:
        return "the projection alone (no photo detail)" if faces == 1 else \
            "the projections alone (no photo detail)"
    return f"the photo's detail kept for {kept} of {faces} rows (the others have no NAME.crop.png)"
