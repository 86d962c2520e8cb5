"""Wrong values that used to end in a traceback, through the subprocess: each is now one line
``facegan: error: ...`` with exit status 2, said before anything is written (no run folder, no
output file left behind). And the one warning for bf16 on a CPU that only emulates it.

One tiny run (built-in faces, 16 px, widths 8) is trained once per module for the sample and
morph cases.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error

TINY = ["--data", "builtin", "--resolution", "16", "--max-images", "16", "--steps", "1",
        "--no-progress", "model.g_width=8", "model.d_width=8", "model.latent_dim=8",
        "train.batch_size=8", "train.n_samples=4"]

needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")


def facegan(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "facegan", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def tiny_run(tmp_path_factory, name: str, args: list[str]) -> Path:
    """`facegan train ARGS` into a fresh folder NAME*/run, for a module's fixture (module
    fixtures start before conftest's cache fixture, so the cache folder is passed here)."""
    root = tmp_path_factory.mktemp(name)
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path_factory.getbasetemp() / "facegan-cache")}
    r = facegan("train", *args, "--out", root / "run", cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return root / "run"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 1-step tiny run, trained once."""
    return tiny_run(tmp_path_factory, "hardening", TINY)


# ---- config values: refused by Config.validate, before the run folder is made -----------------

@pytest.mark.parametrize("bad,needles", [
    (["train.g_lr=-1"], ["train.g_lr must be >= 0", "got -1"]),
    (["train.d_lr=-0.5"], ["train.d_lr must be >= 0", "got -0.5"]),
    (["train.beta1=1.5"], ["train.beta1 must be in [0, 1)", "got 1.5"]),
    (["train.beta2=1"], ["train.beta2 must be in [0, 1)", "got 1"]),
    (["model.latent_dim=0"], ["model.latent_dim must be >= 1", "model.latent_dim=128"]),
    (["model.g_width=0"], ["model.g_width must be >= 1", "model.g_width=64"]),
    (["model.d_width=0"], ["model.d_width must be >= 1", "model.d_width=64"]),
    (["--max-images", "-1"], ["data.max_images must be >= 0", "got -1"]),
    (["--eval-every", "-1"], ["train.eval_every must be >= 0", "got -1"]),
    (["train.standing_stats=-1"], ["train.standing_stats must be >= 0", "got -1"]),
    (["--steps", "-5"], ["train.steps must be >= 0", "got -5"]),
    (["train.batch_size=0"], ["train.batch_size must be >= 1", "got 0"]),
    (["train.n_critic=0"], ["train.n_critic must be >= 1", "got 0"]),
])
def test_bad_config_value_is_one_line_and_leaves_no_run_folder(tmp_path, bad, needles):
    r = facegan("train", *TINY, *bad, "--out", tmp_path / "run", cwd=tmp_path)
    assert_user_error(r, *needles)
    assert leftovers(tmp_path) == []


# ---- sample --------------------------------------------------------------------------------

def test_sample_nrow_zero(run, tmp_path):
    r = facegan("sample", run, "--nrow", 0, "--out", tmp_path / "s.png", cwd=tmp_path)
    assert_user_error(r, "--nrow must be at least 1", "got 0")
    assert leftovers(tmp_path) == []


def test_sample_batch_size_zero(run, tmp_path):
    r = facegan("sample", run, "--batch-size", 0, "--out", tmp_path / "s.png", cwd=tmp_path)
    assert_user_error(r, "--batch-size must be at least 1", "got 0")
    assert leftovers(tmp_path) == []


def test_sample_more_than_the_bound(run, tmp_path):
    r = facegan("sample", run, "--n", 100_000_000, "--out", tmp_path / "s.png", cwd=tmp_path)
    assert_user_error(r, "--n 100,000,000", "10,000", "--seed")
    assert leftovers(tmp_path) == []
    # the bound is said in the help
    assert "10,000" in " ".join(facegan("sample", "--help", cwd=tmp_path).stdout.split())


@needs_proc
def test_sample_out_unwritable(run, tmp_path):
    r = facegan("sample", run, "--out", "/proc/x.png", cwd=tmp_path)
    assert_user_error(r, "--out", "/proc/x.png", "writable")
    assert not Path("/proc/x.png").exists() and leftovers(tmp_path) == []


# ---- morph ---------------------------------------------------------------------------------

@needs_proc
def test_morph_gif_unwritable(run, tmp_path):
    r = facegan("morph", run, "--out", tmp_path / "m.png", "--gif", "/proc/m.gif", cwd=tmp_path)
    assert_user_error(r, "--gif", "/proc/m.gif", "writable")
    assert leftovers(tmp_path) == []  # the PNG is not written either


def test_morph_rows_zero(run, tmp_path):
    r = facegan("morph", run, "--rows", 0, "--out", tmp_path / "m.png", cwd=tmp_path)
    assert_user_error(r, "--rows must be at least 1", "got 0")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fps", [0, -5])
def test_morph_fps_not_positive(run, tmp_path, fps):
    r = facegan("morph", run, "--fps", fps, "--out", tmp_path / "m.png", "--gif", tmp_path / "m.gif",
                cwd=tmp_path)
    assert_user_error(r, "--fps must be at least 1", f"got {fps}")
    assert leftovers(tmp_path) == []  # checked before the PNG is written


# ---- fid --save-stats --------------------------------------------------------------------------

@needs_proc
def test_fid_save_stats_unwritable(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    r = facegan("fid", imgs, "--save-stats", "/proc/x.npz", cwd=tmp_path)
    assert_user_error(r, "--save-stats", "/proc/x.npz", "writable")
    assert leftovers(tmp_path) == ["imgs"]


# ---- bf16 on a CPU that emulates it ----------------------------------------------------------

def test_bf16_on_a_cpu_without_native_bf16_warns_once(tmp_path):
    # The CPU's flags are read by runtime.cpu_has_fast_bf16; pretend they lack bf16.
    code = ("import sys, facegan.runtime as r; r.cpu_has_fast_bf16 = lambda: False; "
            "from facegan.commands import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "train", *TINY, "--precision", "bf16",
                        "--out", tmp_path / "run"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    said = [ln for ln in r.stderr.splitlines() if "precision=bf16" in ln]
    assert len(said) == 1, r.stderr
    assert said[0].startswith("facegan: warning: ") and "slower than fp32" in said[0], said[0]
    assert "Traceback" not in r.stderr and "warnings.warn" not in r.stderr, r.stderr


def test_bf16_warning_only_where_emulated(monkeypatch):
    from facegan import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_precision("bf16", cpu) == "bf16"
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
        assert runtime.resolve_precision("bf16", cpu, warn=False) == "bf16"  # a torchrun rank > 0
        assert runtime.resolve_precision("auto", cpu) == "fp32"
        assert runtime.resolve_precision("fp32", cpu) == "fp32"
    with pytest.warns(UserWarning, match="^facegan: precision=bf16 .* slower than fp32"):
        assert runtime.resolve_precision("bf16", cpu) == "bf16"



@pytest.mark.parametrize("capability,auto", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_gpu_precision_follows_the_cards_bf16_units(monkeypatch, capability, auto):
    """A V100 or T4 only emulates bf16 (torch.cuda.is_bf16_supported says yes to them): auto
    takes fp16 there and bf16 is refused by name; Ampere and later compute bf16 natively."""
    from facegan import runtime
    from facegan.errors import UserError

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = torch.device("cuda")
    assert runtime.resolve_precision("auto", gpu) == auto
    if auto == "fp16":
        with pytest.raises(UserError, match="this GPU has no bf16"):
            runtime.resolve_precision("bf16", gpu)
    else:
        assert runtime.resolve_precision("bf16", gpu) == "bf16"
