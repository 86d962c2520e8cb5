"""A run folder has one trainer at a time, and a full disk is a one-line error that keeps the
last good checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facegan.checkpoint import load_checkpoint
from facegan.config import get_preset
from facegan.errors import UserError
from facegan.files import FolderLock
from facegan.train import end_run, start_run, train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the run lock needs fcntl")

TINY = ["data.path=builtin", "data.resolution=16", "model.g_width=8", "model.d_width=8",
        "train.batch_size=8", "train.n_critic=1"]
CLI_TINY = ["--data", "builtin", "--resolution", "16", "model.g_width=8", "model.d_width=8",
            "train.batch_size=8", "train.n_critic=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-step run (copied per test by ``run``)."""
    run = tmp_path_factory.mktemp("lock") / "run"
    train(get_preset("wgangp-celeba64"), run, overrides=[*TINY, "train.steps=2"], progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every file of the run folder (but the lock file) by relative path -> its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _cli(*args: str, env_extra: dict | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom facegan.commands import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=600)


# ---- one trainer per run folder -----------------------------------------------------------------

def test_a_second_trainer_on_a_held_run_is_refused_and_writes_nothing(run):
    before = _snapshot(run)
    holder = FolderLock(run).acquire()  # another open file description: another holder
    try:
        # In this process, the holder is an earlier trainer not ended: the message says how to end it.
        with pytest.raises(UserError) as e:
            start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
        msg = str(e.value)
        assert f"{run} is held by an earlier trainer in this process" in msg
        assert "facegan.end_run(trainer)" in msg and "\n" not in msg
        # A new run into the folder is refused the same way.
        with pytest.raises(UserError, match="held by an earlier trainer in this process"):
            start_run(get_preset("wgangp-celeba64"), run, overrides=[*TINY, "train.steps=4"],
                      progress=False)
        # And through the command: one line, exit status 2.
        r = _cli("train", "--resume", str(run), "--steps", "4", "--no-progress")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert lines[-1] == (f"facegan: error: {run} is being trained by another facegan process "
                             f"(PID {os.getpid()}); wait for it to finish or stop it, or train into "
                             "another folder with --out"), r.stderr
        assert "Traceback" not in r.stderr
    finally:
        holder.release()
    assert _snapshot(run) == before  # no metrics line, no checkpoint, no log line


def test_a_held_empty_folder_is_refused_and_kept(tmp_path):
    folder = tmp_path / "fresh"
    folder.mkdir()
    holder = FolderLock(folder).acquire()
    try:
        with pytest.raises(UserError, match="held by an earlier trainer in this process"):
            start_run(get_preset("wgangp-celeba64"), folder, overrides=[*TINY, "train.steps=2"],
                      progress=False)
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # the holder's, untouched
    finally:
        holder.release()
    # A start that fails on its own removes the folder it made, lock file and all.
    with pytest.raises(UserError, match="does not exist"):
        start_run(get_preset("wgangp-celeba64"), tmp_path / "new",
                  overrides=[*TINY, f"data.path={tmp_path / 'missing'}"], progress=False)
    assert not (tmp_path / "new").exists()


def test_the_lock_is_held_while_training_and_dropped_by_end_run(run):
    trainer = start_run(None, None, resume=run, overrides={"steps": 3}, progress=False)
    try:
        with pytest.raises(UserError, match="held by an earlier trainer in this process"):
            start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
        trainer.train(3)
    finally:
        end_run(trainer)
    again = start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
    end_run(again)


def test_a_trainer_ended_by_with_or_dropped_unended_frees_its_folder(run):
    import gc

    with start_run(None, None, resume=run, overrides={"steps": 3}, progress=False) as trainer:
        trainer.train_step()
        trainer.save()
    assert trainer.run_lock is None
    # A notebook's trainer, never ended and then dropped: collecting it drops the lock.
    trainer = start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
    del trainer
    gc.collect()
    end_run(start_run(None, None, resume=run, overrides={"steps": 5}, progress=False))


def test_a_killed_holder_leaves_no_stale_lock(run):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from facegan.train import start_run
            trainer = start_run(None, None, resume={str(run)!r}, overrides={{"steps": 9}}, progress=False)
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"\(PID {holder.pid}\)"):
            start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (run / ".lock").exists()  # the file stays; the lock died with the process
    trainer = start_run(None, None, resume=run, overrides={"steps": 3}, progress=False)
    try:
        trainer.train(3)
    finally:
        end_run(trainer)
    assert load_checkpoint(run)["step"] == 3


def test_readers_work_beside_a_trainer(run, tmp_path):
    from facegan import load_generator
    from facegan.commands import main

    trainer = start_run(None, None, resume=run, overrides={"steps": 3}, progress=False)
    try:
        with pytest.raises(UserError, match="held by an earlier trainer in this process"):
            start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
        # Readers never take the lock.
        g = load_generator(run)
        assert g is not None
        out = tmp_path / "grid.png"
        assert main(["sample", str(run), "--n", "4", "--out", str(out)]) == 0
        assert out.stat().st_size > 0
        trainer.train(3)
        assert main(["sample", str(run), "--n", "4", "--out", str(out)]) == 0
    finally:
        end_run(trainer)


# ---- a full disk --------------------------------------------------------------------------------

def _no_temp_files(run: Path) -> None:
    left = [str(p) for p in run.rglob("*.tmp")]
    assert not left, left


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("what", ["checkpoint", "metrics", "samples", "loss.png"])
def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(run, monkeypatch, what):
    import torch
    from PIL import Image

    good = (run / "checkpoints" / "latest.pt").read_bytes()
    trainer = start_run(None, None, resume=run, overrides={"steps": 4, "train.checkpoint_every": 1,
                                                           "train.log_every": 1,
                                                           "train.sample_every": 1},
                        progress=False)
    real_save = torch.save

    def torch_save_half(obj, f, *a, **k):  # a few bytes land, then the disk is full
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04" * 64)
        _enospc()

    def image_save_half(self, fp, *a, **k):
        if str(fp).endswith(".tmp"):
            Path(fp).write_bytes(b"\x89PNG" * 16)
        _enospc()

    if what == "checkpoint":
        monkeypatch.setattr(torch, "save", torch_save_half)
        path = run / "checkpoints" / "latest.pt"
    elif what == "metrics":
        monkeypatch.setattr(sys.modules["facegan.train.logger"], "append_jsonl", _enospc)
        path = run / "metrics.jsonl"
    elif what == "samples":
        monkeypatch.setattr(Image.Image, "save", image_save_half)
        path = run / "samples" / "step_000003.png"
    else:
        import matplotlib.figure

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", image_save_half)
        path = run / "loss.png"
    try:
        with pytest.raises(UserError) as e:
            trainer.train(4)
    finally:
        end_run(trainer)
        monkeypatch.setattr(torch, "save", real_save)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot write {path}: the disk is full ("), msg
    assert " free); the last good checkpoint (step " in msg
    assert msg.endswith(f"is kept; free space and resume with facegan train --resume {run}"), msg
    _no_temp_files(run)
    if what == "checkpoint":
        assert (run / "checkpoints" / "latest.pt").read_bytes() == good
        assert "(step 2)" in msg
    ck = load_checkpoint(run)
    assert ck["step"] in (2, 3)
    # The lock went with end_run: the run resumes once there is space.
    again = start_run(None, None, resume=run, overrides={"steps": 4}, progress=False)
    end_run(again)


def test_a_file_size_limit_on_the_cli_is_one_line_and_keeps_the_checkpoint(run):
    good = (run / "checkpoints" / "latest.pt").read_bytes()
    limit = len(good) // 2  # room for logs, samples and loss.png, not for a checkpoint
    assert all(p.stat().st_size < limit for p in run.rglob("*") if p.is_file() and p.suffix != ".pt")
    prelude = f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """
    r = _cli("train", "--resume", str(run), "--steps", "4", "--no-progress", prelude=prelude)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("facegan: error:")]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    assert line.startswith(f"facegan: error: cannot write {run / 'checkpoints' / 'latest.pt'}: "), line
    assert " free); the last good checkpoint (step 2) is kept; free space and resume with " \
           f"facegan train --resume {run}" in line, line
    assert (run / "checkpoints" / "latest.pt").read_bytes() == good
    assert load_checkpoint(run)["step"] == 2
    _no_temp_files(run)


def test_a_new_run_that_cannot_write_its_first_checkpoint_says_so(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "save", _enospc)
    with pytest.raises(UserError) as e:
        start_run(get_preset("wgangp-celeba64"), tmp_path / "run", overrides=[*TINY, "train.steps=2"],
                  progress=False)
    msg = str(e.value)
    assert msg.startswith(f"cannot write {tmp_path / 'run' / 'checkpoints' / 'latest.pt'}: the disk is full")
    assert msg.endswith("no checkpoint was written; free space and start the run again")
    _no_temp_files(tmp_path / "run")
    # The lock was dropped: the same folder starts once there is space.
    monkeypatch.undo()
    trainer = start_run(get_preset("wgangp-celeba64"), tmp_path / "run",
                        overrides=[*TINY, "train.steps=2"], progress=False)
    end_run(trainer)


def test_a_resume_into_another_folder_is_a_run_at_once_or_nothing(run, tmp_path, monkeypatch):
    """Resumed into a new --out, the folder gets its checkpoint before the first step; a full
    disk there fails the start, which takes the new folder back (no half-written run)."""
    import torch

    other = tmp_path / "elsewhere"
    monkeypatch.setattr(torch, "save", _enospc)
    with pytest.raises(UserError) as e:
        start_run(None, other, resume=run, overrides=["train.steps=4"], progress=False)
    assert str(e.value).endswith(f"nothing was kept in {other}; free space and resume again")
    assert not other.exists()
    monkeypatch.undo()
    trainer = start_run(None, other, resume=run, overrides=["train.steps=4"], progress=False)
    try:
        assert load_checkpoint(other)["step"] == 2 and (other / "config.json").is_file()
    finally:
        end_run(trainer)


def test_append_jsonl_leaves_no_torn_line(tmp_path):
    from facegan.files import append_jsonl, read_jsonl

    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 1})
    code = textwrap.dedent(f"""
        import resource, signal
        from facegan.files import append_jsonl
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        size = {path.stat().st_size}
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 5, size + 5))
        try:
            append_jsonl({str(path)!r}, {{"step": 2, "pad": "x" * 100}})
        except OSError as e:
            print(e.errno)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == str(errno.EFBIG), r.stderr
    append_jsonl(path, {"step": 3})
    assert [rec["step"] for rec in read_jsonl(path)] == [1, 3]


def test_a_home_folder_tilde_from_python_is_the_home_folder(tmp_path, monkeypatch):
    from facegan.checkpoint import resolve_checkpoint

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run = train(get_preset("wgangp-celeba64"), "~/runs/x", overrides=[*TINY, "train.steps=1"], progress=False)
    assert run == tmp_path / "runs" / "x" and not (tmp_path / "~").exists()
    assert resolve_checkpoint("~/runs/x") == tmp_path / "runs" / "x" / "checkpoints" / "latest.pt"


def test_continuing_a_run_in_its_own_folder_from_an_earlier_checkpoint_is_refused(tmp_path):
    run = train(get_preset("wgangp-celeba64"), tmp_path / "run",
                overrides=[*TINY, "train.steps=4", "train.keep_every=2"], progress=False)
    before = _snapshot(run)
    early = run / "checkpoints" / "step_000002.pt"
    with pytest.raises(UserError) as e:
        start_run(None, None, resume=early, overrides={"steps": 6}, progress=False)
    assert str(e.value) == (f"{run} has trained to step 4; continuing it from {early} (step 2) would "
                            "overwrite the steps after that; continue from it in a new folder: "
                            f"facegan train --resume {early} --out NEW_RUN_DIR")
    assert _snapshot(run) == before  # the later steps, checkpoints and log kept
    end_run(start_run(None, tmp_path / "branch", resume=early, overrides={"steps": 6}, progress=False))
    end_run(start_run(None, None, resume=run / "checkpoints" / "step_000004.pt", overrides={"steps": 6},
                      progress=False))  # the step the run has reached: nothing is lost
