"""Starting a run: the one sequence behind ``facegan train``, ``train --resume`` and ``demo``.

:func:`start_run` joins the torchrun job (if any), makes the run folder, loads the data on every
rank, checks what evaluation needs, builds the trainer (or restores it from a checkpoint, with
the changes a resume may make), records the start and, for a new run, saves step 0.
:func:`train` starts and trains to ``cfg.train.steps``. User mistakes raise
:class:`~facegan.errors.UserError` before anything is trained; a failed or interrupted start
leaves no run folder (nor anything it wrote into an existing one) behind, unless a checkpoint
is there to resume from.

One trainer per run folder: :func:`start_run` takes an OS lock on RUN/.lock (rank 0, under
torchrun) and :func:`end_run` drops it; a second trainer on the folder is refused, naming the
holder's PID, before it writes anything. The lock dies with its process (kill -9 included).
Readers (``sample``, ``evaluate``, ``serve``) never take it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import LATEST, checkpoint_home, load_checkpoint
from ..config import (
    AUTO,
    Config,
    all_keys,
    apply_overrides,
    auto_data_settings,
    auto_preset,
    auto_time_settings,
    get_preset,
    parse_overrides,
)
from ..data import DataWarning, ImageSet, SkippedFilesWarning, load_dataset
from ..data.sources import absolute_path, reading, scanned_folder
from ..errors import UserError, plural
from ..files import (
    LOCK_NAME,
    FolderBusy,
    FolderLock,
    WriteFailed,
    atomic_write_text,
    foreign_entries,
    make_out_dir,
)
from ..runtime import cpu_has_fast_bf16, resolve_device
from .build import build_trainer, resume_trainer
from .distributed import DistEnv, init_from_env, shutdown
from .resume import check_resume_changes, config_changes, describe_changes
from .trainer import Trainer, TrainingInterrupted

Overrides = Mapping[str, Any] | Iterable[str]  # typed values by key, or 'key=value' strings


def start_run(cfg: Config | None, out: str | os.PathLike | None, *,
              resume: str | os.PathLike | None = None, overrides: Overrides = (),
              preset: str | None = None, inception: str | None = None,
              progress: bool = True) -> Trainer:
    """A trainer ready for its first step, in its run folder.

    New run: ``cfg`` (with ``overrides`` applied) in the new folder ``out``; for preset
    ``auto`` (``get_preset("auto")``), settings made on ``cfg`` and ``overrides`` alike are
    kept over the recipe it chooses. Resume: ``cfg``
    None and ``resume`` a run folder or checkpoint; the checkpoint's config with ``overrides``
    applied (only what a resumed run may change), continued in the run's own folder (or in
    ``out``, which a checkpoint outside a run folder needs). ``preset``: the preset the caller
    asked for, refused when it is not the run's. ``inception``: Inception weights for
    ``train.eval_every`` (loaded once here, so a missing file fails before training).

    Under torchrun every process calls this; the trainer holds its place in the job
    (``trainer.dist``), which the caller ends with :func:`end_run` (this function ends it
    itself when the start fails).

    ``out`` must be new, empty or a facegan run folder without a checkpoint, and outside the
    data (:func:`check_out_folder`), checked before anything is written. A start that fails or
    is interrupted before a checkpoint is in the folder takes back what it wrote (the folder
    too, when it made it); an interrupt (Ctrl-C, or SIGTERM within
    :func:`facegan.errors.stop_signals_interrupt`) then raises :class:`TrainingInterrupted`
    saying what is left.
    """
    typed = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    ckpt, changes, notes, elsewhere = None, [], [], False
    if resume is not None:
        if cfg is not None:
            raise ValueError("start_run: give a config for a new run or resume=, not both")
        ckpt, run_dir = resume_source(resume, out)
        cfg, changes, notes = _resumed_config(ckpt, run_dir, typed, preset)
        home = checkpoint_home(ckpt["path"])
        elsewhere = home is None or not _same_file(run_dir, home)  # continued in another folder
        if elsewhere:
            check_out_folder(run_dir, cfg.data.path)
        else:
            _check_no_later_steps(run_dir, ckpt, resume)
    else:
        if cfg is None or out is None:
            raise ValueError("start_run: a new run needs a config and an output folder")
        run_dir = Path(out).expanduser()  # from Python no shell expands '~'
        if (run_dir / "checkpoints" / LATEST).exists():
            _probe_lock(run_dir)  # a run being trained there says so first
            raise UserError(f"'{run_dir}' already holds a run; continue it with --resume {run_dir} "
                            "or choose a new --out")
        if cfg.preset == AUTO:
            # What was set on the placeholder itself counts as given, as overrides do: auto's
            # choice never replaces it.
            set_on_cfg = {k: new for k, _, new in config_changes(get_preset(AUTO), cfg) if k != "preset"}
            typed = set_on_cfg | typed
        cfg, auto_why = new_run_config(cfg, typed)
        check_new_run(cfg)
        check_out_folder(run_dir, cfg.data.path)
    env = init_from_env(cfg.train.device)
    undo = _StartUndo(run_dir, main=env.is_main)
    trainer = None
    try:
        for note in notes:
            _info(env, note)
        auto = (auto_why, typed) if resume is None and auto_why is not None else None
        trainer = _start(env, cfg, run_dir, ckpt, inception, progress, auto, undo)
        try:
            if ckpt is not None:
                src = "" if ckpt["path"].name == LATEST and not out else f" from {ckpt['path']}"
                trainer.logger.event(f"resumed at step {trainer.step}{src}")
                if changes:
                    said = describe_changes(changes)
                    trainer.logger.event(f"step {trainer.step}: config changed on resume: {said}")
                    _info(env, f"facegan: changed from step {trainer.step}: {said}")
            _print_labels(env, trainer)
            if ckpt is None:
                data = trainer.data
                trainer.logger.event(f"start: preset {cfg.preset}, {plural(len(data), 'image')} from {cfg.data.path} "
                                     f"({data.source}), {len(data.skipped)} skipped, device "
                                     f"{trainer.device}, precision {trainer.precision}")
            if ckpt is None or elsewhere:
                # A checkpoint at once, so the folder is a run to --resume from the start (the
                # step-0 one: a NaN before the first periodic checkpoint still leaves one); a
                # failed write (a full disk) is then a failed start, which takes the folder back.
                trainer.save()
            if env.is_main:  # the folder is a run from here, for a loop of the caller's own too
                trainer.write_run_files()
        except WriteFailed as e:  # a full disk: say what is kept and how to go on
            if elsewhere:
                raise UserError(f"{e}; nothing was kept in {run_dir}; free space and resume again") from None
            raise trainer.write_failed(e) from None
    except BaseException as e:
        # What this start wrote goes, unless a checkpoint is there to resume from (then the
        # folder is a run that --resume continues); then its lock, then the job.
        undo.discard()
        if trainer is not None:
            trainer.run_lock = None  # released by discard
            end_run(trainer)
        else:
            shutdown(env)
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (see stop_signals_interrupt)
            step = (trainer.latest_step if trainer is not None and trainer.latest_step is not None
                    else int(ckpt.get("step", 0)) if ckpt is not None else 0)
            raise TrainingInterrupted(_stopped_while_starting(getattr(e, "signal_name", "SIGINT"),
                                                              undo.outcome, run_dir, step, resume,
                                                              out)) from None
        raise
    return trainer


def end_run(trainer: Trainer) -> None:
    """Drop the run folder's lock and leave the torchrun job the trainer belongs to (a no-op
    for a single process): :meth:`Trainer.close`, which leaving ``with start_run(...) as
    trainer:`` also calls."""
    trainer.close()


def train(cfg: Config | None, out: str | os.PathLike | None, *, resume: str | os.PathLike | None = None,
          overrides: Overrides = (), preset: str | None = None, inception: str | None = None,
          progress: bool = True) -> Path:
    """Start (:func:`start_run`, same arguments) and train to ``train.steps``; returns the run
    folder. ``TrainingInterrupted`` / ``TrainingDiverged`` propagate, after the last checkpoint
    was written. The caller's torch random state is as it was: the run seeds its own (from
    ``train.seed``, or the checkpoint's on resume)."""
    # A CUDA device's state only where the caller had already started CUDA: forking it would
    # otherwise start a context on a device the run may not use.
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        with start_run(cfg, out, resume=resume, overrides=overrides, preset=preset,
                       inception=inception, progress=progress) as trainer:
            trainer.train(trainer.cfg.train.steps)
    return trainer.run_dir


# ---- the steps ------------------------------------------------------------------------------

def new_run_config(cfg: Config, overrides: Mapping[str, Any]) -> tuple[Config, str | None]:
    """A new run's config: ``cfg`` with ``overrides`` (typed, by dotted key) applied, the data
    path made absolute, and preset ``auto`` replaced by the recipe for the hardware the run will
    train on. Returns (config, why auto chose its recipe; None for a named preset). What auto
    adds for the data's size comes once the data is loaded (:func:`auto_data`)."""
    auto_why = None
    if cfg.preset == AUTO:
        cfg, auto_why = _auto_recipe(apply_overrides(cfg, overrides), overrides)
    return absolute_data_path(apply_overrides(cfg, overrides)).validate(), auto_why


def _auto_recipe(cfg: Config, given: Iterable[str]) -> tuple[Config, str]:
    """preset auto, first half: the recipe for the hardware ``cfg`` (the placeholder with the
    user's overrides, whose keys are ``given``) would train on, and for its time budget. A CPU
    counts as having fast bf16 only when the run may use it (precision auto or bf16)."""
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        hardware = "gpu"
    elif cpu_has_fast_bf16() and cfg.train.precision in ("auto", "bf16"):
        hardware = "cpu-bf16"
    else:
        hardware = "cpu"
    chosen, why = auto_preset(hardware, cfg.data.resolution)
    extra, time_why = auto_time_settings(hardware, cfg.data.resolution, cfg.train.time_budget, given)
    if extra:
        chosen, why = apply_overrides(chosen, extra), f"{why}, {time_why}"
    return chosen, why


def auto_data(cfg: Config, n_images: int, why: str, given: Mapping[str, Any], env: DistEnv) -> Config:
    """preset auto, second half, once the data is loaded: settings for its size (``given``: the
    user's overrides, which it never replaces); says in one line (rank 0's) what was chosen and
    why."""
    extra, data_why = auto_data_settings(n_images, given)
    if extra:
        cfg = apply_overrides(cfg, extra).validate()
    _info(env, f"facegan: preset auto chose {why}{'; ' + data_why if data_why else ''}; "
               "--preset NAME chooses another (facegan presets lists them)")
    return cfg


def _start(env: DistEnv, cfg: Config, run_dir: Path, ckpt: dict | None, inception: str | None,
           progress: bool, auto: tuple[str, Mapping[str, Any]] | None, undo: _StartUndo) -> Trainer:
    # What this records in ``undo`` is what start_run takes back if the start fails.
    env.agree(lambda: check_evaluation(cfg, inception), main_only=True)
    undo.lock_existed = (run_dir / LOCK_NAME).exists()
    undo.created = bool(env.agree(lambda: make_out_dir(run_dir, "--out"), main_only=True))
    # Before anything is written: a second trainer on the folder changes nothing.
    undo.lock = env.agree(lambda: lock_run_folder(run_dir), main_only=True)
    if env.is_main:
        undo.before = {p.name for p in run_dir.iterdir()}  # what a failed start leaves
        _remove_stale_temp_files(run_dir)
    data = _load_data_ranked(env, cfg, run_dir)
    if auto is not None:
        cfg = auto_data(cfg, len(data), *auto, env=env)
    # The fingerprint is of the decoded content, so a fresh copy of the same files (new
    # mtimes) is not "different data"; a re-pointed data.path is reported as a change.
    if (ckpt is not None and data.fingerprint != ckpt.get("data_fingerprint")
            and cfg.data.path == ckpt["config"].data.path):
        _info(env, "facegan: warning: the data differs from the data this run started with")

    def build() -> Trainer:
        evaluator = make_evaluator(cfg, inception, progress=progress) if env.is_main else None
        if ckpt is None:
            return build_trainer(cfg, data, run_dir, evaluator=evaluator, progress=progress, dist=env)
        return resume_trainer(run_dir, data, cfg, evaluator=evaluator, progress=progress,
                              ckpt=ckpt, dist=env)

    trainer = env.agree(build)
    trainer.run_lock = undo.lock
    if ckpt is not None and _same_file(ckpt["path"], run_dir / "checkpoints" / LATEST):
        trainer.latest_step = trainer.step
    return trainer


def lock_run_folder(run_dir: Path) -> FolderLock:
    """Hold ``run_dir`` for this trainer (:class:`~facegan.files.FolderLock`); a UserError naming
    the holder when another process trains in it."""
    try:
        return FolderLock(run_dir).acquire()
    except FolderBusy as e:
        raise UserError(_busy_message(run_dir, e.pid)) from None


def _probe_lock(run_dir: Path) -> None:
    """UserError when another process holds ``run_dir``; keeps nothing. Rank 0 only (from
    torchrun's RANK, before the job is joined): the ranks' probes would meet each other."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    if FolderLock(run_dir).path.is_file():
        lock_run_folder(run_dir).release()


def _busy_message(run_dir: Path, pid: int | None) -> str:
    if pid == os.getpid():  # a notebook's earlier start_run, its trainer not ended
        return (f"{run_dir} is held by an earlier trainer in this process (started with start_run); "
                "end it with facegan.end_run(trainer) (or start it as 'with facegan.start_run(...) "
                "as trainer:'), or train into another folder")
    who = f"another facegan process (PID {pid})" if pid else "another facegan process"
    return (f"{run_dir} is being trained by {who}; wait for it to finish or stop it, or train "
            "into another folder with --out")


@dataclasses.dataclass
class _StartUndo:
    """What a start made in ``run_dir``, so that a failed or interrupted start takes it back:
    everything written after the lock was taken goes, the lock file too where this start made
    it, and the folder where this start made it -- unless a checkpoint is there (the run
    resumes from it, so the folder is kept as a run). ``outcome`` once discarded: 'kept',
    'removed' (the folder this start made) or 'left' (a folder that was there, as it was)."""

    run_dir: Path
    main: bool = True  # rank 0 (alone) touches the folder
    created: bool = False
    lock_existed: bool = True
    lock: FolderLock | None = None
    before: set[str] | None = None  # the folder's entries once the lock was held
    outcome: str | None = None

    def discard(self) -> str:
        if self.outcome is None:
            self.outcome = self._discard()
        return self.outcome

    def _discard(self) -> str:
        kept = (self.run_dir / "checkpoints" / LATEST).is_file()
        if self.main and not kept and self.before is not None:
            # This process held the lock since `before`: whatever appeared since is its own.
            with contextlib.suppress(OSError):
                for p in self.run_dir.iterdir():
                    if p.name not in self.before:
                        _remove_path(p)
        if self.lock is not None:
            self.lock.release(remove=not kept and not self.lock_existed)
            self.lock = None
        if kept:
            return "kept"
        if self.main and self.created:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty: this start made it
            return "left" if self.run_dir.exists() else "removed"
        return "removed" if self.created else "left"


def _remove_path(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Checkpoint temp files a killed trainer left (kill -9, a power cut); the folder's lock
    says no trainer writes there now."""
    for p in (run_dir / "checkpoints").glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


def _stopped_while_starting(name: str, outcome: str | None, run_dir: Path, step: int,
                            resume: str | os.PathLike | None, out: str | os.PathLike | None) -> str:
    """The one line for a start stopped by Ctrl-C or SIGTERM, saying what is left."""
    if outcome == "kept":
        return (f"stopped by {name} while starting, at step {step}; the checkpoint is kept, "
                f"continue with: facegan train --resume {run_dir}")
    if outcome == "removed":
        left = f"the run folder {run_dir} it had made was removed"
    elif run_dir.exists():
        left = f"{run_dir} is left as it was"
    else:
        left = "nothing was written"
    again = ("the same command" if resume is None
             else f"facegan train --resume {resume}" + (f" --out {out}" if out else ""))
    return (f"stopped by {name} before the first checkpoint; nothing was trained and {left}; "
            f"start again with {again}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def resume_source(resume: str | os.PathLike, out: str | os.PathLike | None) -> tuple[dict, Path]:
    """A run folder or a checkpoint file -> (loaded checkpoint, run folder to continue in).

    A checkpoint inside RUN/checkpoints/ continues RUN; any other checkpoint file needs ``out``.
    """
    ckpt = load_checkpoint(resume)
    home = checkpoint_home(ckpt["path"])  # RUN/checkpoints/latest.pt for a run folder
    if out:
        run_dir = Path(out).expanduser()
        same = home is not None and run_dir.resolve() == home.resolve()
        if not same and (run_dir / "checkpoints" / LATEST).exists():
            raise UserError(f"'{run_dir}' already holds a run; give --out a new folder to continue "
                            f"{resume} in")
        return ckpt, run_dir
    if home is None:
        raise UserError(f"'{resume}' is not inside a run folder (RUN/checkpoints/); continue "
                        f"it in a new run folder with --resume {resume} --out NEW_RUN_DIR")
    return ckpt, home


def _check_no_later_steps(run_dir: Path, ckpt: dict, resume: str | os.PathLike) -> None:
    """Continuing a run in its own folder from an earlier checkpoint of it (a kept
    step_XXXXXX.pt, best.pt) would overwrite the steps trained after it: latest.pt, the later
    kept checkpoints and the log. A UserError pointing at a new folder instead."""
    latest = run_dir / "checkpoints" / LATEST
    if not latest.is_file() or _same_file(Path(ckpt["path"]), latest):
        return
    reached = int(load_checkpoint(latest)["step"])
    if reached > int(ckpt["step"]):
        raise UserError(f"{run_dir} has trained to step {reached}; continuing it from {resume} (step "
                        f"{ckpt['step']}) would overwrite the steps after that; continue from it in a "
                        f"new folder: facegan train --resume {resume} --out NEW_RUN_DIR")


def _checkpoint_name(path: Path) -> str:
    """How to name a resumed checkpoint: its run folder for RUN/checkpoints/latest.pt, else
    the file."""
    home = checkpoint_home(path)
    return f"the run in {home}" if home is not None and path.name == LATEST else f"the checkpoint {path}"


def check_new_run(cfg: Config) -> None:
    """A new run's settings that validate but make no sense for one; UserError before
    anything is written."""
    t = cfg.train
    if t.steps < 1:
        raise UserError(f"--steps {t.steps} (train.steps) trains nothing: a new run needs at least "
                        "1 step; give --steps N with N >= 1")
    if t.freeze_d and not t.init_from.strip():
        raise UserError(f"--freeze-d {t.freeze_d} (train.freeze_d) is for fine-tuning: it keeps the "
                        "first critic stages of weights loaded with --init-from RUN fixed, and "
                        "without --init-from they are random; add --init-from RUN, or drop --freeze-d")


def check_out_folder(run_dir: Path, data_path: str) -> None:
    """Before anything is written: the run folder must be new, empty, or facegan's own (only
    what facegan writes in a run: see :data:`~facegan.files.RUN_ENTRIES`), and outside the
    folder the data is read from (the run's samples and plots would become training images)."""
    images = scanned_folder(data_path)
    if images is not None:
        out, src = os.path.realpath(run_dir), os.path.realpath(images)
        if out == src or out.startswith(src.rstrip(os.sep) + os.sep):
            where = "the data folder" if out == src else f"inside the data folder '{images}'"
            raise UserError(f"--out '{run_dir}' is {where}: the run's samples and plots would be "
                            "read as training images; give --out a folder outside the data")
    if run_dir.is_dir():
        foreign = foreign_entries(run_dir)
        if foreign:
            shown = ", ".join(foreign[:2]) + (f" and {len(foreign) - 2} more" if len(foreign) > 2 else "")
            raise UserError(f"--out '{run_dir}' is not empty and not a facegan run (it holds {shown}); "
                            "give --out a new or empty folder, or continue a run with --resume RUN_DIR")


def _resumed_config(ckpt: dict, run_dir: Path, overrides: Mapping[str, Any],
                    preset: str | None) -> tuple[Config, list, list[str]]:
    """The config a resumed run goes on with, its changes from the checkpoint's, and the
    lines to tell the user about them."""
    old: Config = ckpt["config"]
    # 'auto' chose the run's preset when it started; naming it again on resume changes nothing.
    if preset is not None and preset not in (AUTO, old.preset):
        raise UserError(f"--preset cannot change when resuming (this run is '{old.preset}'); drop "
                        "--preset, or start a new run with --out NEW_RUN_DIR")
    step = int(ckpt.get("step", 0))
    cfg = absolute_data_path(apply_overrides(old, overrides))
    keys = all_keys()
    given = {keys[k] for k in overrides}  # (section, field) of each value given
    spent = float(ckpt.get("elapsed", 0.0))
    notes = []
    if cfg.train.time_budget and spent >= cfg.train.time_budget and ("train", "time_budget") not in given:
        # The budget ended the earlier run (the demo's, say); resuming means training on.
        notes.append(f"facegan: the run's time budget ({cfg.train.time_budget:g} s) is spent; "
                     "training on without one (set train.time_budget=SECONDS for a new budget)")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, time_budget=0.0))
    changes = check_resume_changes(old, cfg)
    cfg.validate()
    if cfg.train.steps <= step:
        told = (f"past --steps {cfg.train.steps}" if cfg.train.steps < step
                else f"the end of its {cfg.train.steps} steps")
        raise UserError(f"{_checkpoint_name(ckpt['path'])} is already at step {step}, {told}; "
                        f"nothing was changed; to train further pass --steps N with N above {step} "
                        "(the run's total number of steps)")
    frozen = next((new for key, _, new in changes if key == "train.freeze_d"), 0)
    if frozen and not cfg.train.init_from.strip():
        raise UserError(f"--freeze-d {frozen} (train.freeze_d) is for fine-tuning a run started with "
                        f"--init-from RUN; this run was not; drop --freeze-d")
    if ("data", "path") not in given:
        check_data_path(cfg.data.path, stored=old.data.path)
    return cfg, changes, notes


def absolute_data_path(cfg: Config) -> Config:
    """``cfg`` with ``data.path`` and ``train.init_from`` absolute (``builtin`` and '' unchanged)."""
    # The run folder outlives the shell it was started from: a relative path would break
    # 'facegan train --resume' (and evaluation) anywhere else.
    if cfg.train.init_from.strip():
        source = absolute_path(cfg.train.init_from)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=source))
    path = cfg.data.path
    if path.strip() == "builtin" or not path.strip():
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=absolute_path(path)))


def check_data_path(path: str, stored: str | None = None) -> None:
    """UserError unless ``path`` exists; ``stored``: the path as the resumed run recorded it."""
    with reading(path):  # a folder above it that cannot be searched: one line, as list_source says
        if path == "builtin" or Path(path).expanduser().exists():
            return
    if stored is not None:
        where = "" if Path(stored).is_absolute() else f" (relative to where it started; here: {Path.cwd()})"
        raise UserError(f"the run's data path '{stored}' does not exist{where}; point the run at "
                        "its images with --data PATH")
    raise UserError(f"data path '{path}' does not exist; give an image folder, a .zip, a CelebA "
                    "folder (with img_align_celeba/), or 'builtin'")


def load_data(cfg: Config, run_dir: Path, env: DistEnv | None = None) -> ImageSet:
    """The run's images; unreadable files are skipped, listed in RUN/skipped_files.txt and
    reported in one warning line (by rank 0)."""
    env = env if env is not None else DistEnv()
    check_data_path(cfg.data.path)
    with warnings.catch_warnings():
        # Replaced by the one line below, which names the file holding the list.
        warnings.simplefilter("ignore", SkippedFilesWarning)
        if not env.is_main:  # the data's notes, said once (by rank 0), not once per process
            warnings.simplefilter("ignore", DataWarning)
        data = load_dataset(cfg.data, progress=sys.stderr.isatty())
    if data.skipped and env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # A file name that is not UTF-8 is written with its odd bytes as \x.. escapes.
        lines = "".join(f"{name}\t{why}\n".encode("utf-8", "backslashreplace").decode("utf-8")
                        for name, why in data.skipped)
        atomic_write_text(run_dir / "skipped_files.txt", lines)
        name, why = data.skipped[0]
        print(f"facegan: warning: skipped {len(data.skipped)} unreadable image(s) (first: {name}: "
              f"{why}); list in {run_dir / 'skipped_files.txt'}", file=sys.stderr)
    return data


def _load_data_ranked(env: DistEnv, cfg: Config, run_dir: Path) -> ImageSet:
    """The data on every rank: rank 0 first (it decodes the images and writes the decoded
    cache), then the others, which read that cache."""
    data = env.agree(lambda: load_data(cfg, run_dir, env), main_only=True)
    others = env.agree(lambda: None if env.is_main else load_data(cfg, run_dir, env))
    return data if env.is_main else others


def check_evaluation(cfg: Config, inception: str | None) -> None:
    """Before anything trains: ``train.eval_every`` needs the Inception weights; load them once
    now (a few seconds) so a missing extra or a wrong file fails here, not at the first
    evaluation."""
    if not cfg.train.eval_every:
        if inception:
            raise UserError("--inception is used only for evaluation during training; add "
                            "--eval-every N, or drop --inception")
        return
    from ..metrics import load_inception

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            load_inception(inception, device="cpu")
    except UserError as e:
        raise UserError(f"--eval-every {cfg.train.eval_every} needs the FID Inception weights: {e}; "
                        "or train without --eval-every") from None


def make_evaluator(cfg: Config, inception: str | None = None, progress: bool = False):
    """The FID/KID evaluator of ``train.eval_every`` (None when it is 0); ``progress``: it
    reports the features' progress on stderr (lines when stderr is not a terminal)."""
    if not cfg.train.eval_every:
        return None
    from ..metrics import TrainingEvaluator

    return TrainingEvaluator(cfg.data, n=cfg.train.eval_n, device=resolve_device(cfg.train.device),
                             inception=inception, progress=progress)


def _print_labels(env: DistEnv, trainer: Trainer) -> None:
    """The class / attribute balance, before training (the same numbers: RUN/labels.json)."""
    spec = trainer.label_spec
    if spec is not None and spec.conditional:
        line = f"labels ({trainer.cfg.data.condition}): {spec.describe()}"
        _info(env, line)
        trainer.logger.event(line)


def _info(env: DistEnv, message: str) -> None:
    """One line on stderr, from rank 0 only: a torchrun job says each thing once."""
    if env.is_main:
        print(message, file=sys.stderr)


__all__ = [
    "absolute_data_path",
    "check_data_path",
    "check_evaluation",
    "check_new_run",
    "check_out_folder",
    "end_run",
    "load_data",
    "make_evaluator",
    "resume_source",
    "start_run",
    "train",
]
