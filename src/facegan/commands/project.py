"""``facegan project``: put real photos into a trained generator's latent space (GAN inversion).

``facegan project RUN PHOTO... --out DIR [--steps N] [--features critic|inception|classifier|none]
[--encoder-steps N] [--class C | --attr A=1,...] [--seed S]`` writes, per photo NAME,
``NAME.latent.npy``, ``NAME.crop.png``, ``NAME.png`` and ``NAME.json`` into DIR; ``facegan
edit --latent`` and ``facegan morph --from --to`` then use the latents (and the crops, for the
photo's own detail). Every photo is read and checked before
any work, so a bad one leaves nothing behind.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import UserError, stop_signals_interrupt
from .common import add_device, add_no_ema, add_run, add_seed, make_out_dir

# facegan.projection's defaults, written out so that building the parser imports nothing heavy
# (tests/test_projection.py checks they agree).
DEFAULT_STEPS = 300
DEFAULT_ENCODER_STEPS = 500
FEATURES = ("critic", "inception", "classifier", "none")
DEFAULT_FEATURES = "critic"


def register(sub) -> None:
    """Add ``project`` to the main parser's subparsers."""
    from ..config import field_choices

    p = sub.add_parser(
        "project", help="find the latent of real photos (GAN inversion), to edit or morph them",
        description="Find each photo's face and align it to the run's template (the mean landmarks "
                    "of its training crops; --no-align: crop the photo as the training images were), guess "
                    "its latent with an encoder trained once on the generator's samples (cached "
                    "in RUN/encoder.pt), then optimise the latent so the generator draws the "
                    "photo. Writes NAME.latent.npy, NAME.crop.png (the aligned crop, whose detail "
                    "edits and morphs keep), NAME.png (photo, crop, projection) and NAME.json (PSNR, SSIM, feature distance, seconds) per photo into --out.")
    add_run(p)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (.jpg, .png, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the outputs")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimisation steps per photo "
                   "(default %(default)s; 0: the encoder's guess alone)")
    p.add_argument("--features", default=DEFAULT_FEATURES, choices=FEATURES, help="feature loss: "
                   "the run's critic's intermediate features; the FID Inception's early blocks "
                   "(about 4x slower on a CPU); the attribute classifier's (needs the run's "
                   "labelled training data; trained once and cached); or none (pixels and the prior "
                   "only; default %(default)s)")
    p.add_argument("--encoder-steps", type=int, default=DEFAULT_ENCODER_STEPS, help="training "
                   "steps of the run's encoder when it is not cached for this checkpoint yet "
                   "(default %(default)s)")
    p.add_argument("--retrain-encoder", action="store_true", help="train the encoder again even "
                   "when RUN/encoder.pt matches")
    p.add_argument("--class", dest="cls", metavar="NAME", help="conditional model: the class of "
                   "the photos")
    p.add_argument("--attr", metavar="A=0|1,...", help="conditional model: the photos' attributes "
                   "(those not given are drawn with --seed)")
    p.add_argument("--crop", choices=field_choices("data.crop"), help="crop of the photos "
                   "(default: the run's data.crop; auto: the CelebA face box for a photo framed "
                   "like CelebA's aligned images, else the centre square)")
    p.add_argument("--no-align", action="store_true", help="take each photo as it is (cropped as the "
                   "training images were) instead of finding its face and aligning it to the run's "
                   "template (the mean eye, nose and mouth positions of its training images)")
    add_seed(p, "encoder, attributes not given and optimisation")
    add_no_ema(p)
    add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_project)


def cmd_project(args) -> int:
    from ..checkpoint import resolve_checkpoint
    from ..projection import output_names, read_photo

    if args.steps < 0:
        raise UserError(f"--steps must be at least 0, got {args.steps}")
    if args.encoder_steps < 1:
        raise UserError(f"--encoder-steps must be at least 1, got {args.encoder_steps}")
    resolve_checkpoint(args.run)  # UserError: missing path / no checkpoint in the folder
    names = output_names(args.photos)
    for photo in args.photos:  # untrusted files: every one checked before any work
        read_photo(photo)
    out = Path(args.out)
    # The first folder of --out that does not exist yet: this call makes it (and what is below
    # it), so on any failure or stop it is removed again, with what this call wrote there.
    made = _first_missing(out)
    written: list[Path] = []
    with stop_signals_interrupt():  # SIGTERM stops as Ctrl-C does: what was written is taken back
        try:
            make_out_dir(out, "--out")
            _project_into(args, out, names, written)
        except BaseException:
            _remove_written(written, out, made)
            raise
    return 0


def _project_into(args, out: Path, names: list[str], written: list[Path]) -> None:
    """Load, project and save into ``out`` (made already); every path written is appended
    to ``written`` as it is, so a failure can take it back."""
    from ..projection import face_aligner, project, save_projection
    from ..sampling import load_generator

    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    align = None if args.no_align else face_aligner(lg, progress=not args.quiet)
    results = project(lg, args.photos, cls=args.cls, attr=args.attr, steps=args.steps, align=align,
                      features=args.features, encoder_steps=args.encoder_steps, seed=args.seed,
                      crop=args.crop, retrain_encoder=args.retrain_encoder, progress=not args.quiet)
    lines = []
    for name, res in zip(names, results):
        # The four files of this photo, claimed before any is written (each is written whole).
        written += [out / f"{name}{ext}" for ext in (".latent.npy", ".crop.png", ".png", ".json")
                    if not (out / f"{name}{ext}").exists()]
        save_projection(res, out)
        fd = "" if res.feature_distance is None else f", feature distance {res.feature_distance:.4f}"
        lines.append(f"{name}: PSNR {res.psnr:.2f} dB, SSIM {res.ssim:.3f}{fd} (encoder guess "
                     f"{res.guess_psnr:.2f} dB) -> {out / (name + '.png')}")
    first = out / f"{names[0]}.latent.npy"
    print("\n".join(lines))
    print(f"wrote {len(results)} projection(s) to {out}; try: facegan edit {args.run} --latent "
          f"{first} --attr NAME, or facegan morph {args.run} --from {first} --to OTHER.latent.npy")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist; None if it does."""
    missing = None
    p = path.absolute()
    while not p.exists() and p != p.parent:
        missing, p = p, p.parent
    return missing


def _remove_written(written: list[Path], out: Path, made: Path | None) -> None:
    """Take back what a failed or stopped call wrote: its files, then the folders it made
    (``made`` and those below it down to ``out``), each only when empty."""
    for f in written:
        with contextlib.suppress(OSError):
            f.unlink(missing_ok=True)
    if made is None:
        return
    folder = out.absolute()
    while True:
        with contextlib.suppress(OSError):
            folder.rmdir()
        if folder == made or folder == folder.parent:
            break
        folder = folder.parent
