"""The command line through a subprocess: happy path and user mistakes (one line, exit 2)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.n_samples=4", "train.log_every=1", "train.sample_every=2",
        "train.checkpoint_every=2", "train.n_critic=1"]


def train_tiny_in_process(tmp: Path) -> Path:
    """A 2-step tiny unconditional run on 16 random 16 px images, trained in this process
    through the CLI (its own cache in ``tmp``): ``tmp/run``."""
    from facegan import commands as cli

    rng = np.random.default_rng(1)
    data = tmp / "imgs"
    data.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGAN_CACHE", str(tmp / "cache"))
        assert cli.main(["train", "--data", str(data), "--preset", "wgangp-celeba64", "--out", str(out),
                         "--steps", "2", "--no-progress", *TINY]) == 0
    return out


def facegan(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "facegan", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def assert_user_error(r, *needles):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("facegan: error: "), r.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(d / ("sub" if i % 2 else "") / f"{i}.jpg")
    return d


@pytest.fixture
def trained_run(tmp_path, images):
    run = tmp_path / "run"
    r = facegan("train", "--data", images, "--preset", "wgangp-celeba64", "--out", run, "--steps", 2,
                "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    return run


def test_train_sample_morph_resume(tmp_path, trained_run):
    run = trained_run
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "samples" / "step_000002.png").exists()
    # sample: a grid and one PNG per image, from the checkpoint file alone
    ck = tmp_path / "alone.pt"
    ck.write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    r = facegan("sample", ck, "--n", 6, "--out", tmp_path / "grid.png", "--png-dir", tmp_path / "pngs", "--seed", 3)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "grid.png").size[0] > 16
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 6
    assert Image.open(next((tmp_path / "pngs").glob("*.png"))).size == (16, 16)
    # morph with GIF, slerp
    r = facegan("morph", run, "--out", tmp_path / "m.png", "--gif", tmp_path / "m.gif", "--steps", 5,
                "--rows", 2, "--slerp")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "m.png").size == (5 * 18 + 2, 2 * 18 + 2)
    assert Image.open(tmp_path / "m.gif").n_frames == 8  # forth and back
    # resume to a larger total
    r = facegan("train", "--resume", run, "--steps", 4, "--no-progress")
    assert r.returncode == 0, r.stderr
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(x).get("kind") == "train"]
    assert steps == [1, 2, 3, 4]
    # refusing to overwrite a run
    r = facegan("train", "--data", run, "--out", run, *TINY)
    assert_user_error(r, "already holds a run", "--resume")


def test_corrupt_image_is_skipped_and_logged(tmp_path, images):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = tmp_path / "run"
    r = facegan("train", "--data", images, "--out", run, "--steps", 1, "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 unreadable" in r.stderr
    assert "broken.jpg" in (run / "skipped_files.txt").read_text()


@pytest.mark.parametrize("case", ["missing", "empty", "preset", "key", "value", "bn_gp"])
def test_bad_input_one_line_errors(tmp_path, images, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["train", "--out", tmp_path / "r", "--no-progress"]
    args = {
        "missing": (base + ["--data", tmp_path / "nope"], ["does not exist"]),
        "empty": (base + ["--data", empty], ["no images"]),
        "preset": (base + ["--data", images, "--preset", "bogus"], ["unknown preset 'bogus'"]),
        "key": (base + ["--data", images, "train.bogus=1"], ["unknown config key 'train.bogus'"]),
        "value": (base + ["--data", images, "train.steps=many"], ["bad value 'many'"]),
        "bn_gp": (base + ["--data", images, "model.d_norm=batch"], ["batch norm"]),
    }[case]
    r = facegan(*args[0])
    assert_user_error(r, *args[1])
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"hello, I am not a checkpoint")
    r = facegan("sample", bad, "--out", tmp_path / "x.png")
    assert_user_error(r, "not a readable facegan checkpoint", "not a PyTorch file")
    assert "Python objects" not in r.stderr
    assert not (tmp_path / "x.png").exists()
    import torch

    torch.save({"some": torch.zeros(2)}, tmp_path / "other.pt")
    assert_user_error(facegan("sample", tmp_path / "other.pt"), "not a facegan checkpoint")
    assert_user_error(facegan("morph", tmp_path / "missing_dir"), "does not exist")


def test_presets_listing():
    r = facegan("presets")
    assert r.returncode == 0 and "wgangp-celeba64" in r.stdout and "train.g_lr" in r.stdout
    r = facegan("presets", "--show", "wgangp-celeba128")
    assert json.loads(r.stdout)["model"]["latent_dim"] == 200


def test_a_closed_output_pipe_stops_quietly():
    # `facegan presets | head -1`: the reader has gone before facegan writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "facegan", "presets"], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert r.returncode == 1 and r.stderr == "", r.stderr


def test_time_budget_then_resume_trains_on(tmp_path, images):
    run = tmp_path / "run"
    r = facegan("train", "--data", images, "--preset", "demo", "--out", run, "--steps", 10 ** 6,
                "--no-progress", *TINY, "train.time_budget=0.5", "train.checkpoint_every=1000")
    assert r.returncode == 0, r.stderr
    step = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert 0 < step < 10 ** 6
    assert "time budget of 0.5 s reached" in (run / "train.log").read_text()
    # The budget is spent: resuming to more steps trains on without it, and says so.
    r = facegan("train", "--resume", run, "--steps", step + 2, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "time budget (0.5 s) is spent" in r.stderr
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step + 2
    assert json.loads((run / "config.json").read_text())["train"]["time_budget"] == 0


def test_demo_runs_tiny(tmp_path):
    out = tmp_path / "demo"
    r = facegan("demo", "--out", out, "--steps", 2, "--no-progress")
    assert r.returncode == 0, r.stderr
    for f in ("samples.png", "loss.png", "morph.png", "morph.gif", "checkpoints/latest.pt"):
        assert (out / f).exists(), f
    assert str(out / "samples.png") in r.stdout
    assert "budget" not in r.stderr  # --steps trains them all, without the time budget
    # A second demo into the same folder keeps the run and says how to continue it.
    r = facegan("demo", "--out", out, "--steps", 2, "--no-progress")
    assert_user_error(r, f"'{out}' already holds a demo run", f"facegan train --resume {out}")


def test_demo_says_when_its_budget_stopped_it(tmp_path, monkeypatch, capsys):
    import argparse

    from facegan import config
    from facegan.commands.train import cmd_demo

    demo = config.PRESETS["demo"]
    tiny = {"data.resolution": 16, "data.max_images": 64, "model.latent_dim": 8, "model.g_width": 4,
            "model.d_width": 4, "train.batch_size": 8, "train.steps": 10 ** 6, "train.time_budget": 1.0}
    monkeypatch.setitem(config.PRESETS, "demo", config.PresetSpec(demo.help, {**demo.settings(), **tiny}))
    out = tmp_path / "demo"
    assert cmd_demo(argparse.Namespace(out=str(out), steps=None, device=None, no_progress=True)) == 0
    err = capsys.readouterr().err
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert 0 < step < 10 ** 6
    line = next(ln for ln in err.splitlines() if "budget at step" in ln)
    assert line.startswith(f"facegan demo: stopped by the 1-second budget at step {step:,} of 1,000,000")
    assert re.search(r"about \d+ more minutes: facegan train --resume .*demo train.time_budget=0$", line)


def test_sigterm_writes_checkpoint_then_resume(tmp_path, images):
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "facegan", "train", "--data", str(images), "--out", str(run),
           "--steps", "100000", "--no-progress", *TINY, "train.checkpoint_every=100000",
           "train.sample_every=100000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "SIGTERM" in err and "--resume" in err and "Traceback" not in err
    import torch

    step = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"]
    assert step >= 3
    r = facegan("train", "--resume", run, "--steps", step + 1, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == step + 1


def test_option_choices_come_from_the_config():
    from facegan.commands import build_parser
    from facegan.config import field_choices

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    options = {"train": {"--precision": "train.precision", "--crop": "data.crop",
                         "--partition": "data.partition", "--resolution": "data.resolution"},
               "evaluate": {"--partition": "data.partition"}}
    for command, keys in options.items():
        actions = {s: a for a in sub.choices[command]._actions for s in a.option_strings}
        for option, key in keys.items():
            assert tuple(actions[option].choices) == field_choices(key), (command, option)
    assert "fp16" in field_choices("train.precision")


def test_every_option_of_every_command_has_a_help_line():
    import argparse

    from facegan.commands import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings[-1] if a.option_strings else a.metavar or a.dest}"
               for name, parser in sub.choices.items() for a in parser._actions
               if not a.help and a.help is not argparse.SUPPRESS]
    assert missing == []
    assert {"train", "demo", "sample", "morph", "edit", "serve", "evaluate"} <= set(sub.choices)


def test_help_says_what_a_one_number_strength_means():
    r = facegan("edit", "--help")
    assert r.returncode == 0
    assert "one number S for -S:S" in " ".join(r.stdout.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`--strength 3`, means `-3:3`" in readme


def test_a_run_the_time_budget_ended_early_says_so(tmp_path, capsys, monkeypatch):
    from facegan import commands as cli

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "builtin", "--preset", "demo", "--out", str(out), "--steps", "100000",
                     "--max-images", "64", "--no-progress", "train.time_budget=0.5", *TINY]) == 0
    err = capsys.readouterr().err
    m = re.search(r"facegan: stopped by the time budget \(train.time_budget=0.5 s of training\) at step "
                  rf"([\d,]+) of 100,000; train on with: facegan train --resume {re.escape(str(out))} ", err)
    assert m, err
    assert (out / "checkpoints" / "latest.pt").exists()
