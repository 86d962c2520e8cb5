"""The ``facegan`` command: thin subcommands that parse, validate, build and call the library.

A user mistake raises UserError, printed as one line ``facegan: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


# ---- train ----------------------------------------------------------------------------------

def _config_from_args(args):
    from .config import apply_overrides, get_preset

    cfg = get_preset(args.preset)
    quick = {
        "data.path": args.data, "train.steps": args.steps, "train.batch_size": args.batch_size,
        "data.resolution": args.resolution, "data.max_images": args.max_images,
        "data.partition": args.partition, "data.crop": args.crop, "train.device": args.device,
        "train.precision": args.precision, "train.eval_every": args.eval_every,
        "train.eval_n": args.eval_n, "train.seed": args.seed,
    }
    cfg = apply_overrides(cfg, {k: v for k, v in quick.items() if v is not None})
    if args.tensorboard:
        cfg = apply_overrides(cfg, {"train.tensorboard": True})
    return apply_overrides(cfg, list(args.overrides) + list(args.set or []))


def _check_data_path(path: str) -> None:
    if path != "builtin" and not Path(path).exists():
        raise UserError(f"data path '{path}' does not exist; give an image folder, a .zip, a CelebA "
                        "folder (with img_align_celeba/), or 'builtin'")


def _load_data(cfg, run_dir: Path):
    from .data import load_dataset

    _check_data_path(cfg.data.path)
    data = load_dataset(cfg.data, progress=sys.stderr.isatty())
    if data.skipped:
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{name}\t{why}\n" for name, why in data.skipped)
        from .utils import atomic_write_text

        atomic_write_text(run_dir / "skipped_files.txt", lines)
        print(f"facegan: warning: skipped {len(data.skipped)} unreadable image(s); list in "
              f"{run_dir / 'skipped_files.txt'}", file=sys.stderr)
    return data


def _make_evaluator(cfg):
    if not cfg.train.eval_every:
        return None
    from .metrics import TrainingEvaluator
    from .sampling import pick_device

    return TrainingEvaluator(cfg.data, n=cfg.train.eval_n, device=pick_device(cfg.train.device))


def _run(trainer, until: int, run_dir: Path) -> int:
    from .train import TrainingDiverged, TrainingInterrupted

    t0 = time.time()
    try:
        trainer.train(until)
    except TrainingInterrupted as e:
        print(f"facegan: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as e:
        print(f"facegan: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    print(f"trained to step {trainer.step} in {time.time() - t0:.0f} s; run folder: {run_dir} "
          f"(samples/, loss.png, metrics.jsonl, checkpoints/latest.pt)")
    return 0


def cmd_train(args) -> int:
    from .checkpoint import LATEST, load_checkpoint
    from .config import apply_overrides, validate
    from .train import build_trainer, resume_trainer

    if args.resume:
        run_dir = Path(args.resume)
        ckpt = load_checkpoint(run_dir / "checkpoints" / LATEST if run_dir.is_dir() else run_dir)
        cfg = ckpt["config"]
        if run_dir.is_file():
            run_dir = run_dir.parent.parent
        changes = {k: v for k, v in {"data.path": args.data, "train.steps": args.steps,
                                     "train.device": args.device}.items() if v is not None}
        cfg = apply_overrides(cfg, changes)
        validate(cfg)
        data = _load_data(cfg, run_dir)
        if data.fingerprint != ckpt.get("data_fingerprint"):
            print("facegan: warning: the data differs from the data this run started with", file=sys.stderr)
        trainer = resume_trainer(run_dir, data, cfg, evaluator=_make_evaluator(cfg),
                                 progress=not args.no_progress)
        trainer.logger.event(f"resumed at step {trainer.step}")
        print(f"resuming {run_dir} at step {trainer.step} of {cfg.train.steps}", file=sys.stderr)
        return _run(trainer, cfg.train.steps, run_dir)

    if not args.out:
        raise UserError("--out RUN_DIR is required (or --resume RUN_DIR to continue a run)")
    if not args.data:
        raise UserError("--data PATH is required: an image folder, a .zip, a CelebA folder, or 'builtin'")
    run_dir = Path(args.out)
    if (run_dir / "checkpoints" / LATEST).exists():
        raise UserError(f"'{run_dir}' already holds a run; continue it with --resume {run_dir} "
                        "or choose a new --out")
    cfg = _config_from_args(args)
    validate(cfg)
    data = _load_data(cfg, run_dir)
    trainer = build_trainer(cfg, data, run_dir, evaluator=_make_evaluator(cfg), progress=not args.no_progress)
    trainer.logger.event(f"start: preset {cfg.preset}, {len(data)} images from {cfg.data.path} "
                         f"({data.source}), {len(data.skipped)} skipped, device {trainer.device}, "
                         f"bf16 {trainer.use_bf16}")
    trainer.save()  # step 0: a NaN before the first periodic checkpoint still leaves one
    print(f"training {cfg.preset} on {len(data)} images ({cfg.data.resolution}px) for "
          f"{cfg.train.steps} generator steps on {trainer.device}; run folder: {run_dir}", file=sys.stderr)
    return _run(trainer, cfg.train.steps, run_dir)


# ---- demo -----------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from .config import apply_overrides, get_preset, validate
    from .sampling import generate_images, morph, save_gif, save_grid
    from .train import build_trainer

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        cfg_file = out / "config.json"
        if not (cfg_file.exists() and json.loads(cfg_file.read_text()).get("preset") == "demo"):
            raise UserError(f"'{out}' exists and is not a facegan demo folder; pass --out NEW_FOLDER")
        for sub in ("checkpoints", "samples", "tensorboard"):
            shutil.rmtree(out / sub, ignore_errors=True)
        for f in ("metrics.jsonl", "train.log"):
            (out / f).unlink(missing_ok=True)
    cfg = get_preset("demo")
    changes = {k: v for k, v in {"train.steps": args.steps, "train.device": args.device}.items() if v is not None}
    cfg = apply_overrides(cfg, changes)
    validate(cfg)
    t0 = time.time()
    print("facegan demo: drawing the built-in face set (cached after the first run)...", file=sys.stderr)
    data = _load_data(cfg, out)
    trainer = build_trainer(cfg, data, out, progress=not args.no_progress)
    trainer.save()
    print(f"facegan demo: training {cfg.train.steps} WGAN-GP steps on {len(data)} faces at "
          f"{cfg.data.resolution}px ({trainer.device}, bf16 {trainer.use_bf16})...", file=sys.stderr)
    code = _run(trainer, cfg.train.steps, out)
    if code:
        return code
    g = trainer.sample_generator.eval()
    grid = save_grid(generate_images(g, 64, seed=cfg.train.seed), out / "samples.png", nrow=8)
    frames = morph(g, rows=6, steps=10, seed=cfg.train.seed + 7, spherical=True)
    mgrid = save_grid(frames.flatten(0, 1), out / "morph.png", nrow=frames.shape[1])
    gif = save_gif(frames[0], out / "morph.gif")
    print(f"\ndemo finished in {time.time() - t0:.0f} s:\n  samples:       {grid}\n"
          f"  loss curves:   {out / 'loss.png'}\n  interpolation: {mgrid}  (animated: {gif})\n"
          f"  progress:      {out / 'samples'}/step_*.png\n  checkpoint:    {out / 'checkpoints' / 'latest.pt'}\n"
          f"next: facegan sample {out} --n 64 --out grid.png")
    return 0


# ---- sample / morph -------------------------------------------------------------------------

def cmd_sample(args) -> int:
    from .sampling import generate_images, load_generator, save_grid, save_individual

    if args.n < 1:
        raise UserError("--n must be at least 1")
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    imgs = generate_images(lg.generator, args.n, seed=args.seed, batch_size=args.batch_size)
    written = []
    if args.png_dir:
        written.append(f"{len(save_individual(imgs, args.png_dir))} PNGs in {args.png_dir}")
    if args.out or not args.png_dir:
        out = args.out or "samples.png"
        save_grid(imgs, out, nrow=args.nrow)
        written.append(out)
    print(f"step {lg.step} ({'EMA' if lg.has_ema and not args.no_ema else 'raw'} generator): "
          f"wrote {', '.join(written)}")
    return 0


def cmd_morph(args) -> int:
    from .sampling import load_generator, morph, save_gif, save_grid

    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    frames = morph(lg.generator, rows=args.rows, steps=args.steps, seed=args.seed, spherical=args.slerp)
    save_grid(frames.flatten(0, 1), args.out, nrow=frames.shape[1])
    msg = f"wrote {args.out} ({args.rows} rows x {args.steps} steps, {'slerp' if args.slerp else 'lerp'})"
    if args.gif:
        save_gif(frames[0], args.gif, fps=args.fps)
        msg += f" and {args.gif}"
    print(msg)
    return 0


def cmd_presets(args) -> int:
    from .config import PRESET_HELP, PRESETS, all_keys, get_preset

    if args.show:
        print(get_preset(args.show).to_json())
        return 0
    for name in PRESETS:
        print(f"{name:20s} {PRESET_HELP.get(name, '')}")
    print("\noverride any field as key=value, e.g. train.g_lr=2e-4 model.d_norm=layer; keys:")
    print("  " + " ".join(k for k in all_keys() if "." in k))
    return 0


# ---- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="facegan", description="Train, sample and evaluate face GANs.")
    p.add_argument("--version", action="version", version=f"facegan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a GAN (or --resume one)",
                       description="Train a GAN. Overrides: any config key as key=value after the options.")
    t.add_argument("--data", help="image folder, .zip, CelebA folder, or 'builtin'")
    t.add_argument("--preset", default="wgangp-celeba64", help="recipe (facegan presets lists them)")
    t.add_argument("--out", help="run folder to create")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    t.add_argument("--steps", type=int, help="total generator steps of the run")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--resolution", type=int, choices=[16, 32, 64, 128, 256])
    t.add_argument("--max-images", type=int, help="use only the first N images")
    t.add_argument("--partition", choices=["train", "valid", "test", "all"], help="CelebA partition")
    t.add_argument("--crop", choices=["auto", "center", "celeba", "none"])
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    t.add_argument("--seed", type=int)
    t.add_argument("--eval-every", type=int, help="FID/KID every N steps (needs facegan[metrics])")
    t.add_argument("--eval-n", type=int, help="generated images per evaluation (default 2000)")
    t.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="train the small demo model on the built-in faces (CPU minutes)")
    d.add_argument("--out", default="facegan-demo")
    d.add_argument("--steps", type=int)
    d.add_argument("--device")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sample", help="sample images from a run folder or checkpoint")
    s.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", help="grid PNG (default samples.png)")
    s.add_argument("--png-dir", help="also write one PNG per image here")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nrow", type=int)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_sample)

    m = sub.add_parser("morph", help="latent interpolation between random faces")
    m.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    m.add_argument("--out", default="morph.png")
    m.add_argument("--gif", help="also write an animated GIF of the first row")
    m.add_argument("--steps", type=int, default=10)
    m.add_argument("--rows", type=int, default=4)
    m.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--fps", type=int, default=10)
    m.add_argument("--no-ema", action="store_true")
    m.add_argument("--device", default="auto")
    m.set_defaults(func=cmd_morph)

    pr = sub.add_parser("presets", help="list the presets and config keys")
    pr.add_argument("--show", metavar="NAME", help="print one preset's full config as JSON")
    pr.set_defaults(func=cmd_presets)

    from .metrics.cli import register as register_metrics

    register_metrics(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"facegan: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("facegan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
