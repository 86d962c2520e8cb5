"""``facegan sample`` and ``facegan morph``: images from a run folder or a checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import (
    add_device,
    add_no_ema,
    add_run,
    add_seed,
    check_batch_size,
    check_count,
    check_out_file,
    info,
    make_out_dir,
)

TRUNCATION_HELP = ("the truncation trick: draw each latent value from N(0, 1) cut to [-T, T]; "
                   "less variety, more typical faces (1.0 mild, 0.5 strong; default: none). "
                   "Labels are not changed")


def add_truncation(parser) -> None:
    """``--truncation T`` (shared by sample, morph and edit)."""
    parser.add_argument("--truncation", type=float, metavar="T", help=TRUNCATION_HELP)


# Images per `facegan sample` call: they are generated and held in memory together, and a grid
# of 10,000 is already 100 x 100 images. More: several calls with different --seed.
MAX_SAMPLES = 10_000
# Frames per `facegan morph` call (--rows x --steps; --steps alone with --from/--to): they are
# held in memory together and written as one grid (and GIF); a GIF of 2,000 frames is over
# three minutes at 10 fps, and its grid 2,000 images.
MAX_MORPH_FRAMES = 2_000
MORPH_WHY = "the frames one morph makes, held in memory and written as one grid"
# A GIF stores each frame's delay in 1/100 s, and browsers and most players show a delay under
# 2/100 s as about 1/10 s: 50 fps (a 20 ms delay) is the fastest a GIF reliably plays, a higher
# --fps plays slower (and from 101 on the stored delay rounds to 0).
MAX_GIF_FPS = 50


def register(sub) -> None:
    """Add ``sample`` and ``morph`` to the main parser's subparsers."""
    s = sub.add_parser("sample", help="sample images from a run folder or checkpoint",
                       description="Sample images from a run folder or checkpoint.")
    add_run(s)
    s.add_argument("--n", type=int, help=f"images (default 64; at most {MAX_SAMPLES:,} per call, "
                   "more with several calls and different --seed); with --grid-by-class, columns "
                   "(default 8)")
    s.add_argument("--out", help="grid image, .png or .jpg (default samples.png)")
    s.add_argument("--png-dir", help="also write one PNG per image here, named seed{SEED}_"
                   "{INDEX}.png (e.g. seed0_00000.png), so calls with different --seed add to the "
                   "folder")
    add_seed(s, "faces")
    s.add_argument("--nrow", type=int, help="images per row of the grid (default: a near-square grid; "
                   "--grid-by-class puts --n in each row)")
    s.add_argument("--batch-size", type=int, default=256, help="images the generator draws at once; "
                   "lower it if memory runs short (the images do not change) (default %(default)s)")
    add_no_ema(s)
    add_device(s)
    s.add_argument("--class", dest="cls", metavar="NAME", help="conditional model: every image "
                   "of this class")
    s.add_argument("--attr", metavar="A=0|1,...", help="conditional model: fix these attributes "
                   "(e.g. Male=0,Smiling=1); the others are drawn per image from their rates in "
                   "the training data")
    s.add_argument("--grid-by-class", action="store_true", help="conditional model: one row per "
                   "class (or attribute setting: every combination up to 4 attributes, else each "
                   "attribute alone), the same noise down each column")
    add_truncation(s)
    s.set_defaults(func=cmd_sample)

    m = sub.add_parser("morph", help="latent interpolation between random faces",
                       description="Latent interpolation between random faces.")
    add_run(m)
    m.add_argument("--out", default="morph.png", help="grid image, .png or .jpg (default "
                   "%(default)s)")
    m.add_argument("--gif", help="also write an animated GIF of the first row")
    m.add_argument("--steps", type=int, default=10, help="images from one face to the other, "
                   f"both ends included, 2 or more (default %(default)s; --rows x --steps at most "
                   f"{MAX_MORPH_FRAMES:,})")
    m.add_argument("--rows", type=int, default=4, help="morphs, one per grid row, each between two "
                   "random faces (default %(default)s)")
    m.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    add_seed(m, "faces")
    m.add_argument("--fps", type=int, default=10, help="frames per second of the --gif, 1 to "
                   f"{MAX_GIF_FPS} (default %(default)s)")
    m.add_argument("--from-class", metavar="NAME", help="conditional model: morph from this class "
                   "to --to-class at fixed noise (one latent per row)")
    m.add_argument("--to-class", metavar="NAME", help="the class --from-class morphs to")
    m.add_argument("--from-attr", metavar="A=0|1,...", help="attribute-conditional model: morph "
                   "from these attributes to --to-attr at fixed noise (those neither sets stay drawn "
                   "per row), e.g. --from-attr Smiling=0 --to-attr Smiling=1")
    m.add_argument("--to-attr", metavar="A=0|1,...", help="the attributes --from-attr morphs to")
    m.add_argument("--from", dest="from_latent", metavar="A.latent.npy", help="morph from this "
                   "projected face (facegan project) to --to, one row (--rows and --seed then "
                   "pick nothing)")
    m.add_argument("--to", dest="to_latent", metavar="B.latent.npy", help="the projected face "
                   "--from morphs to")
    m.add_argument("--no-detail", action="store_true", help="with --from/--to: morph the "
                   "projections alone, without the photos' own detail (NAME.crop.png beside each)")
    add_no_ema(m)
    add_device(m)
    add_truncation(m)
    m.set_defaults(func=cmd_morph)


def cmd_sample(args) -> int:
    from ..labels import parse_condition
    from ..sampling import (
        check_truncation,
        generate_by_label_rows,
        generate_images,
        load_generator,
        save_grid,
        save_individual,
    )

    truncation = check_truncation(args.truncation)
    n = args.n if args.n is not None else (8 if args.grid_by_class else 64)
    if n < 1:
        raise UserError("--n must be at least 1")
    if n > MAX_SAMPLES:
        raise UserError(f"--n {n:,} is more than the {MAX_SAMPLES:,} images one sample call makes "
                        "(they are held in memory together); ask for fewer, or run several "
                        "calls with different --seed")
    check_batch_size(args.batch_size)
    if args.nrow is not None and args.nrow < 1:
        raise UserError(f"--nrow must be at least 1 (images per grid row), got {args.nrow}")
    out = args.out or (None if args.png_dir else "samples.png")
    check_out_file(out, "--out")
    if args.png_dir:
        make_out_dir(Path(args.png_dir), "--png-dir")
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    spec = lg.labels
    chosen = [o for o, v in (("--class", args.cls), ("--attr", args.attr),
                             ("--grid-by-class", args.grid_by_class)) if v]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)} cannot be combined; give one of them")
    row_names = None
    if args.grid_by_class:
        if not spec.conditional:
            raise UserError("this model is unconditional (trained without labels); drop --grid-by-class")
        rows, row_names = spec.grid_rows()
        if len(rows) * n > MAX_SAMPLES:
            raise UserError(f"--grid-by-class with --n {n} makes {len(rows)} x {n} = {len(rows) * n:,} "
                            f"images, more than the {MAX_SAMPLES:,} one sample call makes; give a "
                            f"smaller --n (at most {MAX_SAMPLES // len(rows):,} here)")
        # n columns, one row per label, column j the same latent in every row
        imgs = generate_by_label_rows(lg.generator, rows, n, seed=args.seed, batch_size=args.batch_size,
                                      truncation=truncation)
        nrow = n
    else:
        c = parse_condition(spec, args.cls, args.attr).labels(spec, n, seed=args.seed)
        imgs = generate_images(lg.generator, n, seed=args.seed, batch_size=args.batch_size, labels=c,
                               truncation=truncation)
        nrow = args.nrow
    written = []
    if args.png_dir:
        written.append(f"{len(save_individual(imgs, args.png_dir, seed=args.seed))} PNGs in "
                       f"{args.png_dir}")
    if out:
        save_grid(imgs, out, nrow=nrow)
        written.append(out)
    trunc = "" if truncation is None else f", truncation {truncation:g}"
    print(f"step {lg.step} ({'EMA' if lg.has_ema and not args.no_ema else 'raw'} generator{trunc}): "
          f"wrote {', '.join(written)}")
    if row_names is not None:
        print("rows: " + "; ".join(f"{i + 1}: {name}" for i, name in enumerate(row_names)))
    return 0


def cmd_morph(args) -> int:
    from ..labels import parse_condition
    from ..sampling import check_truncation, load_generator, morph, morph_classes, morph_labels, save_gif, save_grid

    truncation = check_truncation(args.truncation)
    if args.rows < 1:
        raise UserError(f"--rows must be at least 1 (rows of the grid), got {args.rows}")
    check_count(args.steps, "--steps", MAX_MORPH_FRAMES, MORPH_WHY, minimum=2)
    if not args.from_latent:  # --from/--to make one row whatever --rows says
        check_count(args.rows, "--rows", MAX_MORPH_FRAMES // 2, MORPH_WHY + ", at least 2 a row")
    if not args.from_latent and args.rows * args.steps > MAX_MORPH_FRAMES:
        raise UserError(f"--rows {args.rows:,} x --steps {args.steps:,} makes "
                        f"{args.rows * args.steps:,} frames, more than {MAX_MORPH_FRAMES:,} "
                        f"({MORPH_WHY}); give fewer --rows or --steps (at most "
                        f"{MAX_MORPH_FRAMES // args.rows:,} steps with {args.rows:,} rows)")
    if args.gif and args.fps < 1:
        raise UserError(f"--fps must be at least 1 (frames per second of the GIF), got {args.fps}")
    if args.gif and args.fps > MAX_GIF_FPS:
        raise UserError(f"--fps {args.fps} is more than {MAX_GIF_FPS}: GIF players show frames "
                        f"faster than {MAX_GIF_FPS} per second slowly (about 10 per second); give "
                        f"--fps {MAX_GIF_FPS} or less")
    check_out_file(args.out, "--out")
    if args.gif:
        if Path(args.gif).suffix.lower() != ".gif":
            raise UserError(f"--gif '{args.gif}' must be a .gif file name, e.g. morph.gif")
        check_out_file(args.gif, "--gif", image=False)
    if bool(args.from_class) != bool(args.to_class):
        raise UserError("--from-class and --to-class go together: give both, e.g. --from-class cat "
                        "--to-class dog")
    if bool(args.from_attr) != bool(args.to_attr):
        raise UserError("--from-attr and --to-attr go together: give both, e.g. --from-attr Smiling=0 "
                        "--to-attr Smiling=1")
    if args.from_attr and (args.from_class or args.from_latent):
        raise UserError(f"--from-attr/--to-attr morph the attributes of random faces; drop "
                        f"{'--from-class/--to-class' if args.from_class else '--from/--to'}")
    if bool(args.from_latent) != bool(args.to_latent):
        raise UserError("--from and --to go together: give both, e.g. --from a.latent.npy --to "
                        "b.latent.npy")
    if args.from_latent and (args.from_class or truncation is not None):
        raise UserError(f"--from/--to morph two given faces; drop "
                        f"{'--from-class/--to-class' if args.from_class else '--truncation'}")
    if args.no_detail and not args.from_latent:
        raise UserError("--no-detail concerns projected photos (--from/--to); random faces have "
                        "no photo: drop --no-detail")
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    if args.from_latent:
        from ..projection import latent_labels, latent_photo, latent_source_note, load_latent, morph_latent_images

        d, r = int(lg.generator.latent_dim), int(lg.generator.resolution)
        a, b = load_latent(args.from_latent, d, "--from"), load_latent(args.to_latent, d, "--to")
        for f, opt in ((args.from_latent, "--from"), (args.to_latent, "--to")):
            if note := latent_source_note(f, lg, opt):
                info(note)
        ca = latent_labels(args.from_latent, lg.labels, "--from")
        cb = latent_labels(args.to_latent, lg.labels, "--to")
        pa, pb = (None, None) if args.no_detail else \
            (latent_photo(args.from_latent, r, "--from"), latent_photo(args.to_latent, r, "--to"))
        frames = morph_latent_images(lg.generator, a, b, steps=args.steps, ca=ca, cb=cb,
                                     spherical=args.slerp, photo_a=pa, photo_b=pb)[None]
        kept = (pa is not None) + (pb is not None)
        how = ("slerp" if args.slerp else "lerp") + f" from {Path(args.from_latent).name} to " \
            f"{Path(args.to_latent).name}; " + ("the photos' own detail kept" if kept == 2 else
                                                "the projections alone (no photo detail)" if kept == 0
                                                else "one photo's detail kept (the other has no NAME.crop.png)")
    elif args.from_attr:
        if args.slerp:
            raise UserError("--slerp interpolates the noise; an attribute morph keeps the noise fixed "
                            "and blends the labels: drop --slerp")
        ends = [parse_condition(lg.labels, attr=a, attr_opt=o).labels(lg.labels, args.rows, args.seed)
                for a, o in ((args.from_attr, "--from-attr"), (args.to_attr, "--to-attr"))]
        frames = morph_labels(lg.generator, *ends, steps=args.steps, seed=args.seed, truncation=truncation)
        how = f"{args.from_attr} -> {args.to_attr} at fixed noise"
    elif args.from_class:
        if args.slerp:
            raise UserError("--slerp interpolates the noise; a class morph keeps the noise fixed "
                            "and blends the labels: drop --slerp")
        frames = morph_classes(lg.generator, lg.labels, args.from_class, args.to_class,
                               rows=args.rows, steps=args.steps, seed=args.seed, truncation=truncation)
        how = f"{args.from_class} -> {args.to_class} at fixed noise"
    else:
        frames = morph(lg.generator, labels=lg.labels, rows=args.rows, steps=args.steps,
                       seed=args.seed, spherical=args.slerp, truncation=truncation)
        how = "slerp" if args.slerp else "lerp"
    if truncation is not None:
        how += f", truncation {truncation:g}"
    save_grid(frames.flatten(0, 1), args.out, nrow=frames.shape[1])
    msg = f"wrote {args.out} ({frames.shape[0]} rows x {args.steps} steps, {how})"
    if args.gif:
        save_gif(frames[0], args.gif, fps=args.fps)
        msg += f" and {args.gif}"
    print(msg)
    return 0
