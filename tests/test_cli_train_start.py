"""`facegan train` / `demo` through the subprocess: an --out
that holds someone's files or lies in the data, a stop signal in the first seconds (decoding,
the cache write, the first checkpoint), resume messages that name the fix and the right
folder, options silently accepted (--freeze-d without --init-from, an option and its key with
different values) and --steps 0.

Each mistake is one line ``facegan: error: ...``, exit 2, said before anything is written.
A stop is one ``facegan: stopped by ...`` line, exit 130, and leaves no temporary file, no
half-made run folder, and a run being resumed as it was.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stderr_watch import StderrWatch
from test_cli import assert_user_error

from facegan.commands.common import EXIT_INTERRUPTED

TINY = ["--resolution", "16", "--preset", "demo", "--no-progress", "model.g_width=4",
        "model.d_width=4", "model.latent_dim=8", "train.batch_size=8", "train.n_samples=4"]


def facegan(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "facegan", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def write_images(folder: Path, n: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (the lock file's PID left out) by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 2-step tiny run on 16 images, trained once: (run folder, its images)."""
    root = tmp_path_factory.mktemp("start")
    images = write_images(root / "imgs")
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path_factory.getbasetemp() / "facegan-cache")}
    r = facegan("train", "--data", images, "--out", root / "run", "--steps", 2, *TINY, env=env)
    assert r.returncode == 0, r.stderr
    return root / "run", images


@pytest.fixture
def run(base, tmp_path):
    copy = tmp_path / "r5"
    shutil.copytree(base[0], copy)
    return copy


# ---- 1. --out: not someone's folder, not in the data ------------------------------------------

@pytest.fixture
def photos(tmp_path):
    """in/mixed/{cat,dog}/*.png, and notrun/, a folder of someone's photos."""
    for root in ("in/mixed", "notrun"):
        for k, sub in enumerate(("cat", "dog")):
            write_images(tmp_path / root / sub, n=8, seed=k)
    return tmp_path


def test_out_holding_other_files_is_refused_and_left_alone(photos):
    before = tree(photos / "notrun")
    r = facegan("train", "--data", "in/mixed", "--out", "notrun", "--steps", 1, *TINY, cwd=photos)
    assert_user_error(r, "--out 'notrun' is not empty and not a facegan run", "cat, dog",
                      "a new or empty folder", "--resume")
    assert tree(photos / "notrun") == before
    assert sorted(p.name for p in (photos / "notrun").iterdir()) == ["cat", "dog"]


@pytest.mark.parametrize("out, said", [
    ("in/mixed/run", "inside the data folder"),
    ("in/mixed", "is the data folder"),
])
def test_out_in_the_data_folder_is_refused(photos, out, said):
    before = tree(photos / "in")
    r = facegan("train", "--data", "in/mixed", "--out", out, "--steps", 1, *TINY, cwd=photos)
    assert_user_error(r, f"--out '{out}'", said, "give --out a folder outside the data")
    assert tree(photos / "in") == before
    assert not (photos / "in" / "mixed" / "run").exists()


def test_the_image_scanner_skips_run_folders_in_the_data(tmp_path, base):
    from facegan.config import DataConfig
    from facegan.data.sources import list_source

    data = tmp_path / "data"
    write_images(data / "faces", n=3)
    shutil.copytree(base[0], data / "faces" / "oldrun")  # samples/*.png, loss.png: not faces
    assert list(data.rglob("oldrun/samples/*.png")) and (data / "faces" / "oldrun" / "loss.png").exists()
    names = list_source(DataConfig(path=str(data))).names
    assert names == ["faces/00.png", "faces/01.png", "faces/02.png"]


# ---- 2. a stop signal in the first seconds ----------------------------------------------------

# Runs `facegan ARGS...` with one step of the start held (after a marker line on stderr) until
# the test's release file appears: 'decode' (the first image, in a decoding thread), 'cache'
# (the decoded-image cache's .npy, written to its temporary file) or 'checkpoint' (step 0's
# checkpoint, written to its temporary file).
HARNESS = r"""
import sys, time
from pathlib import Path

where, release = sys.argv[1], Path(sys.argv[2])


def hold():
    print("facegan-test: holding", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


if where == "decode":
    import facegan.data.dataset as ds
    real_decode, held = ds.decode_image, []

    def decode_image(*a, **k):
        if not held:
            held.append(1)
            hold()
        return real_decode(*a, **k)

    ds.decode_image = decode_image
elif where == "cache":
    import facegan.data.cache as cache
    real_npy = cache._save_npy

    def _save_npy(path, arr):
        real_npy(path, arr)
        hold()

    cache._save_npy = _save_npy
elif where == "checkpoint":
    import torch
    real_save = torch.save

    def save(*a, **k):
        real_save(*a, **k)
        hold()

    torch.save = save
from facegan.commands import main

sys.exit(main(sys.argv[3:]))
"""


def stop_while(where: str, sig: signal.Signals, args: list, cwd: Path, cache: Path):
    """Start the command, wait for the marker, send ``sig``, release the hold; returns
    (exit status, stderr)."""
    release = cwd / f"release-{where}"
    env = {**os.environ, "FACEGAN_CACHE": str(cache)}
    p = subprocess.Popen([sys.executable, "-c", HARNESS, where, str(release), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    watch = StderrWatch(p, "facegan-test: holding")
    try:
        watch.wait(timeout=240)
        p.send_signal(sig)
        release.touch()
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = watch.text(join=True)
    release.unlink(missing_ok=True)
    return p.returncode, err


def no_temp_files(*folders: Path) -> None:
    left = [str(p) for f in folders for p in f.rglob("*.tmp")]
    assert not left, left


def no_partial_cache_entries(cache: Path) -> None:
    data = cache / "data"
    arrays = list(data.glob("*.npy")) if data.is_dir() else []
    orphans = [str(a) for a in arrays if not (data / (a.name.split(".")[0] + ".json")).exists()]
    assert not orphans, orphans


def stopped_line(err: str, sig: signal.Signals) -> str:
    assert "Traceback" not in err, err
    said = [ln for ln in err.splitlines() if ln.startswith("facegan: ")]
    assert len(said) == 1 and said[0].startswith(f"facegan: stopped by {sig.name} "), err
    return said[0]


@pytest.mark.parametrize("where, sig", [
    ("decode", signal.SIGTERM),
    ("decode", signal.SIGINT),
    ("cache", signal.SIGTERM),
    ("checkpoint", signal.SIGTERM),
])
def test_a_stop_before_the_first_checkpoint_leaves_nothing(tmp_path, where, sig):
    data = write_images(tmp_path / "imgs")
    cache = tmp_path / "cache"
    code, err = stop_while(where, sig, ["train", "--data", data, "--out", "run", "--steps", 2,
                                        *TINY], tmp_path, cache)
    assert code == EXIT_INTERRUPTED, err
    line = stopped_line(err, sig)
    assert "before the first checkpoint; nothing was trained" in line, line
    assert "the run folder run it had made was removed" in line, line
    assert not (tmp_path / "run").exists()  # no train.log, .lock or empty folder
    no_temp_files(tmp_path, cache)
    no_partial_cache_entries(cache)
    # The same command then trains (nothing stale in the cache or the folder).
    r = facegan("train", "--data", data, "--out", "run", "--steps", 1, *TINY, cwd=tmp_path,
                env={**os.environ, "FACEGAN_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr


def test_sigterm_while_a_resume_decodes_leaves_the_run_as_it_was(tmp_path, run):
    before = tree(run)
    # A fresh cache, so the resume decodes its images again.
    code, err = stop_while("decode", signal.SIGTERM, ["train", "--resume", run, "--steps", 4],
                           tmp_path, tmp_path / "fresh-cache")
    assert code == EXIT_INTERRUPTED, err
    line = stopped_line(err, signal.SIGTERM)
    assert "at step 2; the checkpoint is kept" in line and f"--resume {run}" in line, line
    assert tree(run) == before
    no_temp_files(run, tmp_path / "fresh-cache")


def test_an_interrupted_start_in_an_existing_empty_folder_keeps_the_folder(tmp_path):
    data = write_images(tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    code, err = stop_while("checkpoint", signal.SIGTERM, ["train", "--data", data, "--out", "empty",
                                                          "--steps", 2, *TINY],
                           tmp_path, tmp_path / "cache")
    assert code == EXIT_INTERRUPTED, err
    assert "empty is left as it was" in stopped_line(err, signal.SIGTERM)
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_resume_removes_checkpoint_temp_files_a_killed_trainer_left(run):
    stale = run / "checkpoints" / ".latest.pt.k1ll3d.tmp"
    stale.write_bytes(b"")  # what kill -9 during a checkpoint write leaves
    r = facegan("train", "--resume", run, "--steps", 3)
    assert r.returncode == 0, r.stderr
    assert not stale.exists()
    no_temp_files(run)


# ---- 3. resume messages -------------------------------------------------------------------

def test_resume_on_other_data_says_the_fix(run, tmp_path):
    other = write_images(tmp_path / "other", n=8, seed=5)
    before = tree(run)
    r = facegan("train", "--resume", run, "--data", other, "--steps", 4)
    assert_user_error(r, "has 8 images but the run trained on 16", "give --data the run's images",
                      f"--init-from {run}", "--out NEW_RUN_DIR")
    assert tree(run) == before


def test_resume_at_its_end_names_the_run_not_the_new_out(run, tmp_path):
    r = facegan("train", "--resume", run, "--out", tmp_path / "r9", "--data", "builtin", "--steps", 2)
    assert_user_error(r, f"the run in {run} is already at step 2", "--steps N with N above 2")
    assert "r9" not in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r9").exists()


# ---- 4. options silently accepted ------------------------------------------------------------

def test_freeze_d_without_init_from_is_refused(tmp_path):
    r = facegan("train", "--data", "builtin", "--max-images", 16, "--out", "run", "--steps", 1,
                "--freeze-d", 1, *TINY, cwd=tmp_path)
    assert_user_error(r, "--freeze-d 1", "fine-tuning", "--init-from RUN")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, override, key", [
    (["--steps", "2"], "train.steps=5", "train.steps"),
    (["--batch-size", "8"], "batch_size=4", "train.batch_size"),
    (["--data", "builtin"], "data.path=elsewhere", "data.path"),
])
def test_an_option_and_its_key_with_different_values_are_refused(tmp_path, option, override, key):
    data = [] if option[0] == "--data" else ["--data", "builtin"]
    r = facegan("train", *data, "--out", "run", *TINY, *option, override, cwd=tmp_path)
    assert_user_error(r, f"{option[0]} {option[1]} and {override} both set {key}", "only one")
    assert list(tmp_path.iterdir()) == []
    # The same value twice is no conflict.
    from facegan.commands import build_parser
    from facegan.commands.train import overrides_of

    args = build_parser().parse_args(["train", "--steps", "2", "--data", "builtin", "train.steps=2",
                                      "data.path=builtin"])
    assert overrides_of(args)["train.steps"] == 2


def test_max_images_zero_is_said_in_the_help():
    text = " ".join(facegan("train", "--help").stdout.split())
    assert "use only the first N images (0: all of them" in text


# ---- 5. --steps 0 ----------------------------------------------------------------------------

def test_train_steps_zero_is_refused(tmp_path):
    r = facegan("train", "--data", "builtin", "--max-images", 16, "--out", "run", "--steps", 0,
                *TINY, cwd=tmp_path)
    assert_user_error(r, "--steps 0", "at least 1 step", "--steps N with N >= 1")
    assert list(tmp_path.iterdir()) == []


def test_demo_steps_zero_is_refused(tmp_path):
    r = facegan("demo", "--out", "d", "--steps", 0, cwd=tmp_path)
    assert_user_error(r, "--steps must be at least 1", "got 0")
    assert list(tmp_path.iterdir()) == []
