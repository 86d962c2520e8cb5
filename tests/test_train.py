"""Integration: a few training steps on tiny data, resume equality, NaN stop, outputs on disk."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.checkpoint import load_checkpoint
from facegan.config import PRESETS, apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.labels import UNCONDITIONAL
from facegan.train import TrainingDiverged, build_trainer, resume_trainer

TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.log_every=1", "train.sample_every=2", "train.checkpoint_every=2",
        "train.n_samples=4", "train.device=cpu"]


@pytest.fixture
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(24):
        arr = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    return folder


def tiny_cfg(preset, folder, *extra):
    return apply_overrides(get_preset(preset), TINY + [f"data.path={folder}", *extra])


def labelled_data_for(preset, tmp_path, tiny_folder):
    """Tiny data a preset can train on: the unlabelled folder, or, for a conditional preset,
    class sub-folders ('folders') or a tiny CelebA layout with its attributes."""
    condition = get_preset(preset).data.condition
    if not condition:
        return tiny_folder
    if condition == "folders":
        root = tmp_path / "classes"
        for i, img in enumerate(sorted(tiny_folder.glob("*.png"))):
            (root / ("a" if i % 2 else "b")).mkdir(parents=True, exist_ok=True)
            (root / ("a" if i % 2 else "b") / img.name).write_bytes(img.read_bytes())
        return root
    from test_labels import make_celeba_attrs

    make_celeba_attrs(tmp_path / "celeba", n=16)
    return tmp_path / "celeba"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_a_few_steps(tmp_path, tiny_folder, preset):
    cfg = tiny_cfg(preset, labelled_data_for(preset, tmp_path, tiny_folder), "train.n_critic=2")
    data = load_dataset(cfg.data, progress=False)
    run = tmp_path / "run"
    tr = build_trainer(cfg, data, run, progress=False)
    before = [p.detach().clone() for p in tr.G.parameters()]
    rec = tr.train(2)
    assert tr.step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters()))
    assert math.isfinite(rec["d_loss"]) and math.isfinite(rec["g_loss"])
    for f in ("config.json", "metrics.jsonl", "loss.png", "samples/step_000002.png", "checkpoints/latest.pt",
              "train.log"):
        assert (run / f).exists(), f
    assert json.loads((run / "config.json").read_text())["preset"] == preset
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    assert {"d_loss", "g_loss", "wasserstein", "img_per_s"} <= set(lines[0])
    # A penalty is logged exactly when the recipe has one (and on its lazy steps only).
    assert ("gp" in lines[0]) == (cfg.loss.gp_weight > 0 and cfg.loss.reg_every == 1)
    if cfg.data.condition:
        assert (run / "labels.json").exists()
        assert ("ac_real" in lines[0]) == (cfg.model.d_cond == "ac")
    if preset == "wgan-clip-celeba64":
        assert max(p.abs().max().item() for p in tr.D.parameters()) <= 0.01 + 1e-7


def _final_weights(run):
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    return ck


@pytest.mark.parametrize("precision,extra", [
    ("fp32", []), ("bf16", []),
    # augmentation draws from its own stream and the lazy penalty counts critic steps: both
    # must continue exactly where they stopped
    ("fp32", ["train.augment=color,rotation,translation,cutout", "loss.reg_every=3"]),
    # the cool-down follows the run's steps (train.steps), not the steps of one sitting
    ("fp32", ["train.steps=6", "train.cooldown=0.5"]),
    ("fp32", ["train.augment=translation", "loss.name=bce", "loss.gp_weight=0", "loss.r1_weight=1",
              "loss.reg_every=4", "model.d_norm=none"]),
    # the critic's minibatch standard deviation, with the lazy penalty through its groups
    ("bf16", ["model.d_norm=layer", "model.d_mbstd=4", "loss.reg_every=2"]),
    # R3GAN's recipe: normalisation-free nets, relativistic pairing (a real batch in the
    # generator step too), lazy R1 + R2, and every schedule changing across the resume.
    ("bf16", ["model.arch=nfresnet", "model.g_norm=none", "model.d_norm=none", "loss.name=relativistic",
              "loss.gp_weight=0", "loss.r1_weight=1", "loss.r2_weight=1", "loss.reg_every=2",
              "loss.gamma_anneal=0.1", "train.anneal_kimg=0.05", "train.lr_anneal=0.25",
              "train.beta2_end=0.99", "train.ema_kimg=0.02"]),
    # one backward for both nets, with the lazy penalty on its steps
    ("bf16", ["train.n_critic=1", "train.simultaneous=true", "model.d_norm=layer", "loss.reg_every=2"]),
])
def test_resume_gives_identical_weights(tmp_path, tiny_folder, precision, extra):
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=2", f"train.precision={precision}", *extra)
    data = load_dataset(cfg.data, progress=False)
    a = tmp_path / "a"
    build_trainer(cfg, data, a, progress=False).train(6)
    b = tmp_path / "b"
    build_trainer(cfg, data, b, progress=False).train(3)  # 24 images / batch 8: crosses an epoch
    tr = resume_trainer(b, data, progress=False)
    assert tr.step == 3
    tr.train(6)
    ca, cb = _final_weights(a), _final_weights(b)
    for key in ("G", "D", "G_ema"):
        for k in ca[key]:
            torch.testing.assert_close(ca[key][k], cb[key][k], rtol=0, atol=0, msg=f"{key}.{k}")
    torch.testing.assert_close(ca["opt_d"]["state"][0]["exp_avg"], cb["opt_d"]["state"][0]["exp_avg"], rtol=0, atol=0)
    steps_b = [json.loads(x)["step"] for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert steps_b == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("standing", [0, 20])
def test_checkpoints_hold_the_ema_generators_standing_statistics(tmp_path, tiny_folder, standing):
    # batch 8: 20 samples are 3 batches; 0 copies the live generator's statistics
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, f"train.standing_stats={standing}")
    data = load_dataset(cfg.data, progress=False)
    build_trainer(cfg, data, tmp_path / "run", progress=False).train(2)
    ck = _final_weights(tmp_path / "run")
    g, ema = ck["G"], ck["G_ema"]
    keys = [k for k in g if k.endswith("running_mean")]
    assert keys
    for k in keys:
        tracked = k.replace("running_mean", "num_batches_tracked")
        if standing:
            assert int(ema[tracked]) == 3
            assert not torch.allclose(ema[k], g[k]), k
        else:
            assert torch.equal(ema[k], g[k]) and torch.equal(ema[tracked], g[tracked])


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_folder):
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1")
    data = load_dataset(cfg.data, progress=False)
    run = tmp_path / "run"
    tr = build_trainer(cfg, data, run, progress=False)
    tr.train(2)
    good = {k: v.clone() for k, v in tr.G.state_dict().items()}
    with torch.no_grad():
        for p in tr.D.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged at step 3"):
        tr.train(4)
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 2
    for k, v in good.items():
        torch.testing.assert_close(ck["G"][k], v)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_divergence_advice_offers_fp32_only_to_a_run_not_in_it(tmp_path, tiny_folder, precision):
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1", f"train.precision={precision}")
    data = load_dataset(cfg.data, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU that emulates it warns that it is slower
        tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    assert tr.precision == precision
    tr.train(1)
    with torch.no_grad():
        for p in tr.D.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rates") as e:
        tr.train(3)
    assert ("train.precision=fp32" in str(e.value)) == (precision != "fp32")


def test_nan_found_with_deferred_reads_names_the_step_and_keeps_a_good_checkpoint(tmp_path, tiny_folder):
    # Losses are read once per log window (5 steps) and before each checkpoint (every 4): a NaN
    # at step 6 is found at step 8, before that checkpoint is written; step 4's stays.
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1", "train.log_every=5",
                   "train.checkpoint_every=4", "train.sample_every=100")
    data = load_dataset(cfg.data, progress=False)
    run = tmp_path / "run"
    tr = build_trainer(cfg, data, run, progress=False)
    plain_step = tr.train_step

    def poisoned_step():
        if tr.step == 5:
            with torch.no_grad():
                for p in tr.D.parameters():
                    p.fill_(float("nan"))
        return plain_step()

    tr.train_step = poisoned_step
    with pytest.raises(TrainingDiverged, match="diverged at step 6 .*last good checkpoint \\(step 4\\)"):
        tr.train(20)
    assert tr.step == 8
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 4 and all(torch.isfinite(v).all() for v in ck["D"].values())
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5]  # the window holding the NaN is never logged


def test_fewer_images_than_a_batch_trains_with_the_batch_clamped(tmp_path, tiny_folder, capsys):
    cfg = tiny_cfg("demo", tiny_folder, "train.batch_size=64")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "r", progress=False)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and f"train.batch_size={len(data)}" in err
    assert tr.batch_size == len(data) < 64
    tr.train(2)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["train"]["batch_size"] == len(data)


def test_tensorboard_logging(tmp_path, tiny_folder):
    pytest.importorskip("tensorboard")
    cfg = tiny_cfg("demo", tiny_folder, "train.tensorboard=true", "train.n_critic=1")
    data = load_dataset(cfg.data, progress=False)
    build_trainer(cfg, data, tmp_path / "run", progress=False).train(2)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_celeba_few_steps(tmp_path, celeba_dir):
    cfg = apply_overrides(get_preset("wgangp-celeba64"),
                          TINY + [f"data.path={celeba_dir}", "data.max_images=64", "data.resolution=32",
                                  "train.n_critic=2"])
    data = load_dataset(cfg.data, progress=False)
    assert len(data) == 64 and data.source == "celeba" and data.labels.shape == (64, 40)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    rec = tr.train(2)
    assert math.isfinite(rec["wasserstein"])
    assert (tmp_path / "run" / "samples" / "step_000002.png").exists()


def test_eval_hook_logs_quality_and_keeps_best(tmp_path, tiny_folder):
    fids = iter([30.0, 20.0, 25.0])
    calls = []

    def fake_eval(g, labels):
        assert labels == UNCONDITIONAL  # the run's spec, to draw a conditional model's labels
        calls.append(g.training)
        return {"fid": next(fids), "kid_mean": 0.01, "kid_std": 0.001, "n": 8}

    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1", "train.eval_every=1")
    data = load_dataset(cfg.data, progress=False)
    run = tmp_path / "run"
    tr = build_trainer(cfg, data, run, evaluator=fake_eval, progress=False)
    tr.train(3)
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "eval"]
    assert [(r["step"], r["fid"]) for r in evals] == [(1, 30.0), (2, 20.0), (3, 25.0)]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == 2 and best["best_fid"] == 20.0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["best_fid"] == 20.0
    assert calls == [False, False, False]  # the EMA generator, in eval mode


def test_time_budget_ends_the_run_like_its_last_step(tmp_path, tiny_folder):
    cfg = tiny_cfg("demo", tiny_folder, "train.time_budget=0.5", "train.sample_every=1000",
                   "train.checkpoint_every=1000")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "r", progress=False)
    tr.train(10 ** 6)
    assert 1 <= tr.step < 10 ** 6 and tr.elapsed >= 0.5
    ck = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert ck["step"] == tr.step
    assert (tmp_path / "r" / "samples" / f"step_{tr.step:06d}.png").exists()
    assert "time budget of 0.5 s reached" in (tmp_path / "r" / "train.log").read_text()


def test_an_unconditional_trainer_holds_the_unconditional_spec_and_width_zero_labels(tmp_path, tiny_folder):
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    assert tr.label_spec == UNCONDITIONAL and tr.label_dim == 0
    x, c = tr._real_batch()
    assert x.shape == (8, 3, 16, 16) and c.shape == (8, 0)
    assert tr._fake_labels().shape == (8, 0) and tr.fixed_c.shape == (4, 0)
    out = tr._critic(x, c)  # the critic's one call site: always (scores, aux or None)
    assert isinstance(out, tuple) and out[0].shape == (8,) and out[1] is None
    tr.train(2)
    # The checkpoint format is unchanged: an unconditional run stores labels None, width 0.
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ck["labels"] is None and ck["label_dim"] == 0 and ck["label_draw"] is None
    assert "labels" not in json.loads((tmp_path / "run" / "config.json").read_text())
    assert not (tmp_path / "run" / "labels.json").exists()


def test_trainer_refuses_labels_that_do_not_match_their_spec(tmp_path, tiny_folder):
    from facegan.labels import LabelSpec
    from facegan.train import Trainer

    cfg = tiny_cfg("wgangp-celeba64", tiny_folder)
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    spec = LabelSpec("attr", ("a", "b"), (1, 2), len(data))
    args = (cfg, tr.G, tr.D, None, tr.opt_g, tr.opt_d, tr.loss, data, tmp_path / "x", tr.device)
    with pytest.raises(ValueError, match=r"labels of shape \(24, 3\).*width 2"):
        Trainer(*args, labels=torch.zeros(len(data), 3), label_spec=spec)
    with pytest.raises(ValueError, match=r"labels of shape \(24, 0\).*width 2"):
        Trainer(*args, label_spec=spec)  # a conditional spec needs its labels


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_trainer_computes_in_its_precision(tmp_path, tiny_folder, precision, dtype):
    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, f"train.precision={precision}")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    a = torch.randn(4, 4)
    # fp32 turns autocast off, so the trainer's fp32 stays fp32 inside someone else's bf16 region.
    with torch.autocast("cpu", dtype=torch.bfloat16), tr._autocast():
        assert (a @ a).dtype == dtype


# ---- start_run / train: the one way a run starts ----------------------------------------------

def test_train_then_resume_through_start_run(tmp_path, tiny_folder):
    from facegan.train import end_run, start_run, train

    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1")
    run = train(cfg, tmp_path / "run", overrides=["train.steps=2"], progress=False)
    assert run == tmp_path / "run"
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["step"] == 2 and ck["config"].train.steps == 2
    assert "start: preset wgangp-celeba64, 24 images" in (run / "train.log").read_text()
    # A resume goes on from the checkpoint's config, with the overrides a resume may change.
    trainer = start_run(None, None, resume=run, overrides={"steps": 4, "train.g_lr": 5e-5}, progress=False)
    try:
        assert trainer.step == 2 and trainer.run_dir == run
        assert trainer.cfg.train.steps == 4 and trainer.opt_g.param_groups[0]["lr"] == 5e-5
        assert trainer.cfg.model == ck["config"].model
    finally:
        end_run(trainer)
    log = (run / "train.log").read_text()
    assert "resumed at step 2" in log and "train.g_lr 0.0001 -> 5e-05" in log


def test_a_failed_start_leaves_no_run_folder(tmp_path, tiny_folder):
    from facegan.errors import UserError
    from facegan.train import start_run

    cfg = tiny_cfg("wgangp-celeba64", tiny_folder, f"data.path={tmp_path / 'missing'}")
    with pytest.raises(UserError, match="does not exist"):
        start_run(cfg, tmp_path / "new" / "run", progress=False)
    assert not (tmp_path / "new" / "run").exists()


def test_resume_refuses_another_preset_and_reached_steps(tmp_path, tiny_folder):
    from facegan.errors import UserError
    from facegan.train import end_run, start_run, train

    run = train(tiny_cfg("wgangp-celeba64", tiny_folder, "train.n_critic=1", "train.steps=1"),
                tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="--preset cannot change when resuming"):
        start_run(None, None, resume=run, preset="demo", progress=False)
    # The command line that started a run with --preset auto resumes it: auto chose its preset.
    resumed = start_run(None, None, resume=run, preset="auto", overrides=["steps=2"], progress=False)
    try:
        assert resumed.cfg.preset == "wgangp-celeba64" and resumed.step == 1
    finally:
        end_run(resumed)
    with pytest.raises(UserError, match="already at step 1"):
        start_run(None, None, resume=run, progress=False)
    with pytest.raises(UserError, match="cannot change model.g_width"):
        start_run(None, None, resume=run, overrides=["model.g_width=8", "steps=3"], progress=False)
    # A seed on resume would change nothing but the progress grids' faces: refused, not ignored.
    with pytest.raises(UserError, match=r"cannot change train.seed \(0 -> 5: the run's random streams go on"):
        start_run(None, None, resume=run, overrides=["seed=5", "steps=3"], progress=False)


def test_the_training_clock_waits_for_queued_steps_before_each_pause_and_counts_no_pause(tmp_path, tiny_folder):
    # On a GPU the host runs ahead of the queued steps: the clock waits for them before every
    # pause (here a recorder stands in for torch.cuda.synchronize), so the time budget and the
    # logged rates count training alone, and the pauses themselves (samples here) count nothing.
    import time

    cfg = tiny_cfg("demo", tiny_folder, "train.log_every=3", "train.sample_every=5",
                   "train.checkpoint_every=4", "train.keep_every=6", "train.time_budget=0")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "r", progress=False)
    events = []
    tr._sync_clock = lambda: events.append(("sync", tr.step))
    write_samples, save, flush = tr.write_samples, tr.save, tr._flush_window

    def slow_samples(*a, **k):
        events.append(("pause", tr.step))
        time.sleep(0.2)
        return write_samples(*a, **k)

    def recorded(fn):
        def call(*a, **k):
            events.append(("pause", tr.step))
            return fn(*a, **k)
        return call

    tr.write_samples, tr.save, tr._flush_window = slow_samples, recorded(save), recorded(flush)
    t0 = time.perf_counter()
    tr.train(10)
    wall = time.perf_counter() - t0
    paused = sorted({s for kind, s in events if kind == "pause"})
    assert paused == [3, 4, 5, 6, 8, 9, 10]
    assert sorted(s for kind, s in events if kind == "sync") == paused  # one wait before each
    for i, (kind, s) in enumerate(events):
        if kind == "pause":
            assert ("sync", s) in events[:i]
    assert wall - tr.elapsed >= 0.4  # the two slow sample grids (steps 5 and 10) are not training
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r.get("kind") == "train"]
    steps = [r["step"] for r in recs]
    windows = [b - a for a, b in zip([0, *steps], steps)]
    # Each window's rate is over its training time: together they add up to the clock's.
    assert sum(n / r["steps_per_s"] for n, r in zip(windows, recs)) == pytest.approx(tr.elapsed, rel=0.05)


def test_a_loop_of_ones_own_saves_standing_statistics_and_never_a_diverged_model(tmp_path, tiny_folder):
    cfg = tiny_cfg("demo", tiny_folder, "train.standing_stats=16", "model.g_norm=batch")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "r", progress=False)
    tr.train_step()
    tr.train_step()
    tr.save()
    ck = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    saved = {k: v for k, v in ck["G_ema"].items() if k.endswith("running_mean")}
    live = dict(tr.G.named_buffers())
    assert saved and all(not torch.equal(v, live[k]) for k, v in saved.items())  # not the copied ones
    tr._ema_stats_step = None
    tr.refresh_ema_stats()  # what train() writes at this step
    ema = dict(tr.G_ema.named_buffers())
    for k, v in saved.items():
        torch.testing.assert_close(v, ema[k])
    # Non-finite weights: nothing written, the last checkpoint kept.
    before = (tmp_path / "r" / "checkpoints" / "latest.pt").read_bytes()
    tr.train_step()
    with torch.no_grad():
        next(tr.G.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"diverged by step 3 \(weights are not finite\); the last "
                                               r"checkpoint .* is kept; lower the learning rates"):
        tr.save()
    assert (tmp_path / "r" / "checkpoints" / "latest.pt").read_bytes() == before


def test_a_resumed_runs_tensorboard_drops_the_steps_logged_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from facegan.train.logger import RunLogger

    log = RunLogger(tmp_path, tensorboard=True)
    for step in (10, 20, 30):
        log.metrics({"kind": "train", "step": step, "d_loss": float(step)})
    log.truncate_after(10)  # killed after step 30, resumed from the checkpoint of step 10
    for step in (20, 30):
        log.metrics({"kind": "train", "step": step, "d_loss": -float(step)})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/d_loss")] == [(10, 10.0), (20, -20.0), (30, -30.0)]


def test_evaluations_at_different_sample_counts_are_separate_series():
    from facegan.train.logger import eval_series

    recs = [{"step": 10, "fid": 90.0, "eval_n": 50}, {"step": 20, "fid": 40.0, "n": 1000},
            {"step": 20, "fid": 80.0, "eval_n": 50}, {"step": 5, "fid": 99.0}]
    assert [(n, [r["step"] for r in rs]) for n, rs in eval_series(recs)] == [(50, [10, 20]), (1000, [20]),
                                                                           (None, [5])]
