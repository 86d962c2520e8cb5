"""The ``facegan`` command: thin subcommands that parse, validate, build and call the library.

A user mistake raises UserError, printed as one line ``facegan: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


# ---- train ----------------------------------------------------------------------------------

DEFAULT_PRESET = "wgangp-celeba64"


def _rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


_ENV = None  # this process's DistEnv once started (facegan.train.distributed)


def _start_processes(cfg):
    """Join the torchrun job this process belongs to (a no-op outside torchrun)."""
    global _ENV
    from .train.distributed import init_from_env

    _ENV = init_from_env(cfg.train.device)
    return _ENV


def _load_data_ranked(env, cfg, run_dir: Path):
    """The data on every rank: rank 0 first (it decodes the images and writes the decoded
    cache), then the others, which read that cache."""
    data = env.agree(lambda: _load_data(cfg, run_dir), main_only=True)
    others = env.agree(lambda: None if env.is_main else _load_data(cfg, run_dir))
    return data if env.is_main else others


def _info(*args, **kwargs) -> None:
    """print(), on rank 0 only: a torchrun job says each thing once."""
    if _rank() == 0:
        print(*args, **kwargs)


def _option_overrides(args) -> dict:
    """The config values given as train options (--steps, --data, ...), typed, by config key."""
    quick = {
        "data.path": args.data, "train.steps": args.steps, "train.batch_size": args.batch_size,
        "data.resolution": args.resolution, "data.max_images": args.max_images,
        "data.partition": args.partition, "data.crop": args.crop, "train.device": args.device,
        "train.precision": args.precision, "train.eval_every": args.eval_every,
        "train.eval_n": args.eval_n, "train.seed": args.seed,
        "train.tensorboard": True if args.tensorboard else None,
        "data.condition": args.condition,
    }
    return {k: v for k, v in quick.items() if v is not None}


def _apply_args(cfg, args):
    """``cfg`` with the train options and key=value overrides applied, data.path made absolute."""
    from .config import apply_overrides

    cfg = apply_overrides(cfg, _option_overrides(args))
    cfg = apply_overrides(cfg, list(args.overrides) + list(args.set or []))
    return _absolute_data_path(cfg)


def _absolute_data_path(cfg):
    # The run folder outlives the shell it was started from: a relative path would break
    # 'facegan train --resume' (and evaluation) anywhere else.
    from dataclasses import replace

    path = cfg.data.path
    if path.strip() == "builtin" or not path.strip():
        return cfg
    return replace(cfg, data=replace(cfg.data, path=os.path.abspath(os.path.expanduser(path))))


def _check_data_path(path: str, stored: str | None = None) -> None:
    """UserError unless ``path`` exists; ``stored``: the path as the resumed run recorded it."""
    if path == "builtin" or Path(path).expanduser().exists():
        return
    if stored is not None:
        where = "" if Path(stored).is_absolute() else f" (relative to where it started; here: {Path.cwd()})"
        raise UserError(f"the run's data path '{stored}' does not exist{where}; point the run at "
                        "its images with --data PATH")
    raise UserError(f"data path '{path}' does not exist; give an image folder, a .zip, a CelebA "
                    "folder (with img_align_celeba/), or 'builtin'")


def _make_out_dir(path: Path, option: str) -> bool:
    """Create the output folder given as ``option``; True when this call created it.

    Any reason it cannot be a folder we write into is a one-line UserError naming ``option``.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} '{path}' is a file, not a folder; give {option} a folder name")
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder '{path}' ({e.strerror or e}); give {option} "
                        "a folder in a writable place") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into '{path}' (permission denied); give {option} a folder "
                        "in a writable place")
    return not existed


def _check_out_file(path: str | None, option: str, image: bool = True) -> None:
    """Refuse an output file name that cannot be written, before any work is done."""
    if not path:
        return
    from .sampling import image_format

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} '{p}' is a folder; give {option} a file name such as "
                        f"{p / ('grid.png' if image else 'morph.gif')}")
    if image:
        image_format(p)
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {option} '{p}': '{folder}' is a file, not a folder; give "
                        f"{option} another path")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {option} '{p}' ({e.strerror or e}); give {option} a path in "
                        "a writable place") from None


def _load_data(cfg, run_dir: Path):
    from .data import SkippedFilesWarning, load_dataset

    _check_data_path(cfg.data.path)
    with warnings.catch_warnings():
        # Replaced by the one line below, which names the file holding the list.
        warnings.simplefilter("ignore", SkippedFilesWarning)
        data = load_dataset(cfg.data, progress=sys.stderr.isatty())
    if data.skipped and _rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{name}\t{why}\n" for name, why in data.skipped)
        from .utils import atomic_write_text

        atomic_write_text(run_dir / "skipped_files.txt", lines)
        name, why = data.skipped[0]
        _info(f"facegan: warning: skipped {len(data.skipped)} unreadable image(s) (first: {name}: "
              f"{why}); list in {run_dir / 'skipped_files.txt'}", file=sys.stderr)
    return data


def _check_evaluation(cfg, inception: str | None) -> None:
    """Before anything trains: --eval-every needs the Inception weights; load them once now
    (a few seconds) so a missing extra or a wrong file fails here, not at the first evaluation."""
    if not cfg.train.eval_every:
        if inception:
            raise UserError("--inception is used only for evaluation during training; add "
                            "--eval-every N, or drop --inception")
        return
    from .metrics import load_inception

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            load_inception(inception, device="cpu")
    except UserError as e:
        raise UserError(f"--eval-every {cfg.train.eval_every} needs the FID Inception weights: {e}; "
                        "or train without --eval-every") from None


def _make_evaluator(cfg, inception: str | None = None):
    if not cfg.train.eval_every:
        return None
    from .metrics import TrainingEvaluator
    from .sampling import pick_device

    return TrainingEvaluator(cfg.data, n=cfg.train.eval_n, device=pick_device(cfg.train.device),
                             inception=inception)


def _run(trainer, until: int, run_dir: Path) -> int:
    from .train import TrainingDiverged, TrainingInterrupted

    t0 = time.time()
    try:
        trainer.train(until)
    except TrainingInterrupted as e:
        _info(f"facegan: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as e:
        _info(f"facegan: error: {e}", file=sys.stderr)
        if trainer.dist.enabled:
            trainer.dist.barrier()  # every rank leaves after rank 0 has said why
        return EXIT_DIVERGED
    _info(f"trained to step {trainer.step} in {time.time() - t0:.0f} s; run folder: {run_dir} "
          f"(samples/, loss.png, metrics.jsonl, checkpoints/latest.pt)")
    return 0


def _resume_source(args):
    """--resume RUN_DIR or a checkpoint file -> (loaded checkpoint, run folder to continue in).

    A checkpoint inside RUN/checkpoints/ continues RUN; any other checkpoint file needs --out.
    """
    from .checkpoint import LATEST, load_checkpoint

    ckpt = load_checkpoint(args.resume)
    path = ckpt["path"]  # RUN/checkpoints/latest.pt for a run folder, else the file given
    home = None
    if path.parent.name == "checkpoints":
        home = path.parent.parent
    elif path.resolve().parent.name == "checkpoints":
        home = path.resolve().parent.parent
    if args.out:
        run_dir = Path(args.out)
        same = home is not None and run_dir.resolve() == home.resolve()
        if not same and (run_dir / "checkpoints" / LATEST).exists():
            raise UserError(f"'{run_dir}' already holds a run; give --out a new folder to continue "
                            f"{args.resume} in")
        return ckpt, run_dir
    if home is None:
        raise UserError(f"'{args.resume}' is not inside a run folder (RUN/checkpoints/); continue "
                        f"it in a new run folder with --resume {args.resume} --out NEW_RUN_DIR")
    return ckpt, home


def cmd_resume(args) -> int:
    from .checkpoint import LATEST
    from .config import validate
    from .train import resume_trainer
    from .train.resume import check_resume_changes, describe_changes

    ckpt, run_dir = _resume_source(args)
    old = ckpt["config"]
    if args.preset is not None and args.preset != old.preset:
        raise UserError(f"--preset cannot change when resuming (this run is '{old.preset}'); drop "
                        "--preset, or start a new run with --out NEW_RUN_DIR")
    step = int(ckpt.get("step", 0))
    cfg = _apply_args(old, args)
    given = [o.split("=", 1)[0].strip() for o in [*args.overrides, *(args.set or [])]]
    spent = float(ckpt.get("elapsed", 0.0))
    if (cfg.train.time_budget and spent >= cfg.train.time_budget
            and not {"train.time_budget", "time_budget"} & set(given)):
        # The budget ended the earlier run (the demo's, say); resuming means training on.
        _info(f"facegan: the run's time budget ({cfg.train.time_budget:g} s) is spent; training on "
              "without one (set train.time_budget=SECONDS for a new budget)", file=sys.stderr)
        cfg = _replace_train(cfg, time_budget=0.0)
    changes = check_resume_changes(old, cfg)
    validate(cfg)
    if cfg.train.steps <= step:
        told = (f"past --steps {cfg.train.steps}" if cfg.train.steps < step
                else f"the end of its {cfg.train.steps} steps")
        raise UserError(f"the run in {run_dir} is already at step {step}, {told}; nothing was "
                        f"changed; to train further pass --steps N with N above {step} (the run's "
                        "total number of steps)")
    if args.data is None and not {"data.path", "path"} & set(given):
        _check_data_path(cfg.data.path, stored=old.data.path)
    env = _start_processes(cfg)
    env.agree(lambda: _check_evaluation(cfg, args.inception), main_only=True)
    created = env.agree(lambda: _make_out_dir(run_dir, "--out"), main_only=True)
    try:
        data = _load_data_ranked(env, cfg, run_dir)
    except UserError:
        if env.is_main:
            _remove_if_empty(run_dir, created)
        raise
    # The fingerprint is of the decoded content, so a fresh copy of the same files (new
    # mtimes) is not "different data"; a re-pointed data.path is reported below instead.
    if data.fingerprint != ckpt.get("data_fingerprint") and cfg.data.path == old.data.path:
        _info("facegan: warning: the data differs from the data this run started with", file=sys.stderr)
    trainer = env.agree(lambda: resume_trainer(
        run_dir, data, cfg, evaluator=_make_evaluator(cfg, args.inception) if env.is_main else None,
        progress=not args.no_progress, ckpt=ckpt, dist=env))
    src = "" if ckpt["path"].name == LATEST and not args.out else f" from {ckpt['path']}"
    trainer.logger.event(f"resumed at step {trainer.step}{src}")
    if changes:
        trainer.logger.event(f"step {trainer.step}: config changed on resume: {describe_changes(changes)}")
        _info(f"facegan: changed from step {trainer.step}: {describe_changes(changes)}", file=sys.stderr)
    _print_labels(trainer)
    _info(f"resuming {run_dir} at step {trainer.step} of {cfg.train.steps}", file=sys.stderr)
    return _run(trainer, cfg.train.steps, run_dir)


def _print_labels(trainer) -> None:
    """The class / attribute balance, before training (the same numbers: RUN/labels.json)."""
    spec = trainer.label_spec
    if spec is not None:
        _info(f"labels ({trainer.cfg.data.condition}): {spec.describe()}", file=sys.stderr)
        trainer.logger.event(f"labels ({trainer.cfg.data.condition}): {spec.describe()}")


def _replace_train(cfg, **fields):
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **fields))


def _remove_if_empty(folder: Path, created: bool) -> None:
    # A failed start leaves no empty run folder behind (when this command made it).
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def cmd_profile(args) -> int:
    """train --profile N: build the run in memory, profile N steps, print; write nothing."""
    import tempfile

    from .config import get_preset, validate
    from .train import build_trainer
    from .train.profile import profile_steps

    if args.profile < 1:
        raise UserError(f"--profile takes a number of steps >= 1, got {args.profile}")
    if args.resume:
        raise UserError("--profile builds a fresh run in memory; drop --resume (give the run's "
                        "--preset and options instead)")
    if not args.data:
        raise UserError("--data PATH is required: an image folder, a .zip, a CelebA folder, or 'builtin'")
    cfg = _apply_args(get_preset(args.preset or DEFAULT_PRESET), args)
    cfg = _replace_train(cfg, eval_every=0, tensorboard=False)
    validate(cfg)
    with tempfile.TemporaryDirectory(prefix="facegan-profile-") as tmp:
        data = _load_data(cfg, Path(tmp))
        trainer = build_trainer(cfg, data, tmp, progress=False)
        print(f"profiling {cfg.preset} on {len(data)} images ({cfg.data.resolution}px), "
              f"{args.profile} step(s) after 1 warm-up step; nothing is written", file=sys.stderr)
        print(profile_steps(trainer, args.profile))
    return 0


def cmd_train(args) -> int:
    from .checkpoint import LATEST
    from .config import get_preset, validate
    from .train import build_trainer

    if args.profile is not None:
        return cmd_profile(args)
    if args.resume:
        return cmd_resume(args)
    if not args.out:
        raise UserError("--out RUN_DIR is required (or --resume RUN_DIR to continue a run)")
    if not args.data:
        raise UserError("--data PATH is required: an image folder, a .zip, a CelebA folder, or 'builtin'")
    run_dir = Path(args.out)
    if (run_dir / "checkpoints" / LATEST).exists():
        raise UserError(f"'{run_dir}' already holds a run; continue it with --resume {run_dir} "
                        "or choose a new --out")
    cfg = _apply_args(get_preset(args.preset or DEFAULT_PRESET), args)
    validate(cfg)
    env = _start_processes(cfg)
    env.agree(lambda: _check_evaluation(cfg, args.inception), main_only=True)
    created = env.agree(lambda: _make_out_dir(run_dir, "--out"), main_only=True)
    try:
        data = _load_data_ranked(env, cfg, run_dir)
        trainer = env.agree(lambda: build_trainer(
            cfg, data, run_dir, evaluator=_make_evaluator(cfg, args.inception) if env.is_main else None,
            progress=not args.no_progress, dist=env))
    except UserError:
        if env.is_main:
            _remove_if_empty(run_dir, created)
        raise
    _print_labels(trainer)
    trainer.logger.event(f"start: preset {cfg.preset}, {len(data)} images from {cfg.data.path} "
                         f"({data.source}), {len(data.skipped)} skipped, device {trainer.device}, "
                         f"precision {trainer.precision}")
    trainer.save()  # step 0: a NaN before the first periodic checkpoint still leaves one
    _info(f"training {cfg.preset} on {len(data)} images ({cfg.data.resolution}px) for "
          f"{cfg.train.steps} generator steps on {trainer.device}; run folder: {run_dir}", file=sys.stderr)
    return _run(trainer, cfg.train.steps, run_dir)


# ---- demo -----------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from .config import apply_overrides, get_preset, validate
    from .sampling import generate_images, morph, save_gif, save_grid
    from .train import build_trainer

    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        # Never delete a finished run (its checkpoint may be the only copy).
        if (out / "checkpoints" / "latest.pt").exists():
            raise UserError(f"'{out}' already holds a demo run; pass --out NEW_FOLDER for a fresh "
                            f"one, or continue it: facegan train --resume {out} --steps N")
        raise UserError(f"'{out}' exists and is not empty; pass --out NEW_FOLDER")
    cfg = get_preset("demo")
    changes = {k: v for k, v in {"train.steps": args.steps, "train.device": args.device}.items() if v is not None}
    if args.steps is not None:
        changes["train.time_budget"] = 0.0  # asked for a number of steps: no time limit
    cfg = apply_overrides(cfg, changes)
    validate(cfg)
    created = _make_out_dir(out, "--out")
    t0 = time.time()
    print("facegan demo: drawing the built-in face set (cached after the first run)...", file=sys.stderr)
    try:
        data = _load_data(cfg, out)
        trainer = build_trainer(cfg, data, out, progress=not args.no_progress)
    except UserError:
        _remove_if_empty(out, created)
        raise
    trainer.save()
    budget = (f" or {cfg.train.time_budget / 60:g} minutes, whichever comes first"
              if cfg.train.time_budget else "")
    print(f"facegan demo: training {cfg.train.steps} WGAN-GP steps{budget}, on {len(data)} faces at "
          f"{cfg.data.resolution}px ({trainer.device}, precision {trainer.precision})...", file=sys.stderr)
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

def _sample_labels(lg, args, n: int):
    """(labels (n, K) or None, nrow, row names) for --class / --attr / --grid-by-class.

    --grid-by-class: ``n`` columns, one row per class (or attribute setting), column j using
    the same latent in every row (z is repeated row after row below).
    """
    from .sampling import attr_labels, class_labels, grid_rows, parse_attr_setting

    spec = lg.label_spec
    chosen = [o for o, v in (("--class", args.cls), ("--attr", args.attr),
                             ("--grid-by-class", args.grid_by_class)) if v]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)} cannot be combined; give one of them")
    if args.cls:
        return class_labels(spec, args.cls, n), args.nrow, None
    if args.attr:
        return attr_labels(spec, parse_attr_setting(spec, args.attr), n, seed=args.seed), args.nrow, None
    if args.grid_by_class:
        if spec is None:
            raise UserError("this model is unconditional (trained without labels); drop --grid-by-class")
        rows, names = grid_rows(spec)
        return rows.repeat_interleave(n, dim=0), n, names  # (rows * n, K), row after row
    return None, args.nrow, None


def cmd_sample(args) -> int:
    from .sampling import generate_by_label_rows, generate_images, load_generator, save_grid, save_individual

    n = args.n if args.n is not None else (8 if args.grid_by_class else 64)
    if n < 1:
        raise UserError("--n must be at least 1")
    out = args.out or (None if args.png_dir else "samples.png")
    _check_out_file(out, "--out")
    if args.png_dir:
        _make_out_dir(Path(args.png_dir), "--png-dir")
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    labels, nrow, row_names = _sample_labels(lg, args, n)
    if row_names is None:
        imgs = generate_images(lg.generator, n, seed=args.seed, batch_size=args.batch_size,
                               labels=labels)
    else:
        imgs = generate_by_label_rows(lg.generator, labels.view(len(row_names), n, -1)[:, 0],
                                      n, seed=args.seed, batch_size=args.batch_size)
    written = []
    if args.png_dir:
        written.append(f"{len(save_individual(imgs, args.png_dir))} PNGs in {args.png_dir}")
    if out:
        save_grid(imgs, out, nrow=nrow)
        written.append(out)
    print(f"step {lg.step} ({'EMA' if lg.has_ema and not args.no_ema else 'raw'} generator): "
          f"wrote {', '.join(written)}")
    if row_names is not None:
        print("rows: " + "; ".join(f"{i + 1}: {name}" for i, name in enumerate(row_names)))
    return 0


def cmd_morph(args) -> int:
    from .sampling import load_generator, morph, save_gif, save_grid

    _check_out_file(args.out, "--out")
    if args.gif:
        if Path(args.gif).suffix.lower() != ".gif":
            raise UserError(f"--gif '{args.gif}' must be a .gif file name, e.g. morph.gif")
        _check_out_file(args.gif, "--gif", image=False)
    if bool(args.from_class) != bool(args.to_class):
        raise UserError("--from-class and --to-class go together: give both, e.g. --from-class cat "
                        "--to-class dog")
    lg = load_generator(args.run, device=args.device, ema=not args.no_ema)
    if args.from_class:
        from .sampling import morph_classes

        if args.slerp:
            raise UserError("--slerp interpolates the noise; a class morph keeps the noise fixed "
                            "and blends the labels: drop --slerp")
        frames = morph_classes(lg.generator, lg.label_spec, args.from_class, args.to_class,
                               rows=args.rows, steps=args.steps, seed=args.seed)
        how = f"{args.from_class} -> {args.to_class} at fixed noise"
    else:
        frames = morph(lg.generator, rows=args.rows, steps=args.steps, seed=args.seed, spherical=args.slerp)
        how = "slerp" if args.slerp else "lerp"
    save_grid(frames.flatten(0, 1), args.out, nrow=frames.shape[1])
    msg = f"wrote {args.out} ({args.rows} rows x {args.steps} steps, {how})"
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
        print(f"{name:{max(map(len, PRESETS))}s}  {PRESET_HELP.get(name, '')}")
    print("\noverride any field as key=value, e.g. train.g_lr=2e-4 model.d_norm=layer; keys:")
    print("  " + " ".join(k for k in all_keys() if "." in k))
    return 0


# ---- serve -----------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    from .web import serve  # lazily: Starlette and uvicorn are the optional [serve] extra

    return serve(args.run, host=args.host, port=args.port, device=args.device,
                 max_wait=args.max_wait, max_batch=args.max_batch, reload=not args.no_reload)


# ---- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import RESOLUTIONS

    p = argparse.ArgumentParser(prog="facegan", description="Train, sample and evaluate face GANs.")
    p.add_argument("--version", action="version", version=f"facegan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a GAN (or --resume one)",
                       description="Train a GAN. Overrides: any config key as key=value after the options.")
    t.add_argument("--data", help="image folder, .zip, CelebA folder, or 'builtin'")
    t.add_argument("--preset", help=f"recipe (facegan presets lists them; default {DEFAULT_PRESET})")
    t.add_argument("--out", help="run folder to create (with --resume CHECKPOINT.pt: the folder to "
                   "continue in)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint "
                   "(or from a checkpoint file); options and overrides given with it change the run "
                   "from that step on (e.g. train.g_lr=5e-5), except model.* and data.* other than "
                   "data.path")
    t.add_argument("--steps", type=int, help="total generator steps of the run")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--resolution", type=int, choices=RESOLUTIONS,
                   help=f"image size in pixels: {', '.join(map(str, RESOLUTIONS))}")
    t.add_argument("--max-images", type=int, help="use only the first N images")
    t.add_argument("--partition", choices=["train", "valid", "test", "all"], help="CelebA partition")
    t.add_argument("--crop", choices=["auto", "center", "celeba", "none"])
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    t.add_argument("--seed", type=int)
    t.add_argument("--eval-every", type=int, help="FID/KID every N steps (needs facegan[metrics] "
                   "or --inception)")
    t.add_argument("--eval-n", type=int, help="generated images per evaluation (default 2000)")
    t.add_argument("--inception", metavar="PATH", help="Inception weights for --eval-every: "
                   "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or NVIDIA's "
                   "inception-2015-12-05.pt (default: the facegan[metrics] file)")
    t.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard")
    t.add_argument("--condition", metavar="SPEC", help="labels for conditional training "
                   "(data.condition): 'folders' (one class per sub-folder), 'Male,Smiling' "
                   "(CelebA attributes), 'classes:Male,Smiling' (their combinations as classes)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--profile", type=int, metavar="N", help="profile N training steps of this "
                   "configuration and print where the time goes (kernel vs wall time, top "
                   "operators); writes nothing, needs no --out")
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
    s.add_argument("--n", type=int, help="images (default 64); with --grid-by-class, columns "
                   "(default 8)")
    s.add_argument("--out", help="grid image, .png or .jpg (default samples.png)")
    s.add_argument("--png-dir", help="also write one PNG per image here")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nrow", type=int)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    s.add_argument("--device", default="auto")
    s.add_argument("--class", dest="cls", metavar="NAME", help="conditional model: every image "
                   "of this class")
    s.add_argument("--attr", metavar="A=0|1,...", help="conditional model: fix these attributes "
                   "(e.g. Male=0,Smiling=1); the others are drawn per image from their rates in "
                   "the training data")
    s.add_argument("--grid-by-class", action="store_true", help="conditional model: one row per "
                   "class (or attribute setting: every combination up to 4 attributes, else each "
                   "attribute alone), the same noise down each column")
    s.set_defaults(func=cmd_sample)

    m = sub.add_parser("morph", help="latent interpolation between random faces")
    m.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    m.add_argument("--out", default="morph.png", help="grid image, .png or .jpg")
    m.add_argument("--gif", help="also write an animated GIF of the first row")
    m.add_argument("--steps", type=int, default=10)
    m.add_argument("--rows", type=int, default=4)
    m.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--fps", type=int, default=10)
    m.add_argument("--from-class", metavar="NAME", help="conditional model: morph from this class "
                   "to --to-class at fixed noise (one latent per row)")
    m.add_argument("--to-class", metavar="NAME")
    m.add_argument("--no-ema", action="store_true")
    m.add_argument("--device", default="auto")
    m.set_defaults(func=cmd_morph)

    pr = sub.add_parser("presets", help="list the presets and config keys")
    pr.add_argument("--show", metavar="NAME", help="print one preset's full config as JSON")
    pr.set_defaults(func=cmd_presets)

    sv = sub.add_parser("serve", help="explore a trained model in the browser (needs facegan[serve])",
                        description="Serve a web page for a run: faces by seed, morphs, conditions, "
                        "attribute directions, and the run's samples and curves while it trains.")
    sv.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, "
                    "this machine only; 0.0.0.0 makes the page reachable from other machines)")
    sv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    sv.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sv.add_argument("--max-wait", type=float, default=3.0, metavar="SECONDS", help="refuse (503) a "
                    "request that would wait longer than this (default 3)")
    sv.add_argument("--max-batch", type=int, default=32, help="images per generator pass (default 32)")
    sv.add_argument("--no-reload", action="store_true", help="keep the model loaded at start "
                    "(default: load a newer checkpoint of a run that is still training)")
    sv.set_defaults(func=cmd_serve)

    from .directions_cli import register as register_directions  # directions, edit

    register_directions(sub)

    from .metrics.cli import register as register_metrics

    register_metrics(sub)
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """facegan's own warnings (their text starts 'facegan: ') as one line, like its errors;
    anyone else's as Python prints them."""
    text = str(message)
    if text.startswith("facegan: "):
        if not text.startswith("facegan: warning: "):
            text = "facegan: warning: " + text[len("facegan: "):]
        return text + "\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options too (train --steps 3 k=v --out R k2=v2):
    # argparse alone takes one run of positionals only.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    warnings.formatwarning = _format_warning
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        # Under torchrun each rank meets the same mistake: rank 0 says it, the others only
        # when the error is theirs alone (see DistEnv.agree).
        if _rank() == 0 or getattr(e, "rank_only", False):
            print(f"facegan: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("facegan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.formatwarning = _python_format_warning
        if _ENV is not None:
            from .train.distributed import shutdown

            shutdown(_ENV)


if __name__ == "__main__":
    sys.exit(main())
