"""What ``facegan fid`` / ``evaluate`` / ``nearest`` are given: 16-bit images, files that are not
statistics, data other than the run's, a run folder that takes no writes, contradicting options,
and verdicts from too few images. Fast: the tiny fake feature network of test_evaluate."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_evaluate import _tiny_cfg, fake_net, run_dir  # noqa: F401  (fixtures)

from facegan.checkpoint import save_checkpoint
from facegan.commands import main
from facegan.errors import UserError
from facegan.metrics import evaluate as ev
from facegan.metrics import nearest as nearest_mod
from facegan.metrics.features import FileImages
from facegan.models import build_networks


def _run(tmp_path, name="run", **data):
    """A run folder like test_evaluate's run_dir, with its own data settings."""
    cfg = _tiny_cfg()
    cfg.data.__dict__.update(data)
    torch.manual_seed(0)
    g, _ = build_networks(cfg.model, cfg.data.resolution)
    run = tmp_path / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json())
    save_checkpoint(run / "checkpoints" / "latest.pt",
                    {"config": cfg, "G": g.state_dict(), "G_ema": g.state_dict(), "step": 7})
    return run


def _grey_pngs(folder, n, bits, seed=0, size=(20, 24)):
    """n grey PNGs; the same pixel values, written with 8 or 16 bits a pixel (v * 257)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        v = rng.integers(0, 256, size, dtype=np.uint16)
        im = Image.fromarray(v.astype(np.uint8)) if bits == 8 else Image.fromarray(v * 257)
        im.save(folder / f"{i}.png")
    return folder


def _rgb_folder(folder, n, seed=0, size=(20, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def _warnings(err):
    return [ln for ln in err.splitlines() if ln.startswith("facegan: warning: ")]


# ---- 16-bit images --------------------------------------------------------------------------

def test_fid_reads_16_bit_pngs_as_training_does(fake_net, tmp_path, capsys):
    a = _grey_pngs(tmp_path / "a8", 6, bits=8)
    b = _grey_pngs(tmp_path / "b16", 6, bits=16)
    assert Image.open(b / "0.png").mode.startswith("I")  # really 16-bit on disk
    for i in range(6):
        np.testing.assert_array_equal(FileImages([b / f"{i}.png"])[0], FileImages([a / f"{i}.png"])[0])
    code, out, _ = _cli(capsys, "fid", a, b, "--json")
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(0.0, abs=1e-6)
    # --save-stats reads the files the same way.
    stats = tmp_path / "b16.npz"
    assert _cli(capsys, "fid", "--save-stats", stats, b)[0] == 0
    code, out, _ = _cli(capsys, "fid", a, stats, "--json")
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(0.0, abs=1e-6)


# ---- a statistics file that is none ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "npy", "empty"])
def test_fid_with_a_file_that_is_no_npz_says_so(tmp_path, cli_error, kind):
    a = _rgb_folder(tmp_path / "a", 3)
    junk = tmp_path / "junk.npz"
    if kind == "text":
        junk.write_text("these are not statistics\n")
    elif kind == "npy":
        with open(junk, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        junk.write_bytes(b"")
    line = cli_error("fid", a, junk)
    assert f"{junk} is not a statistics .npz written by facegan fid --save-stats" in line, line
    assert "pickle" not in line


# ---- evaluate: a run folder that takes no writes --------------------------------------------

def test_evaluate_prints_its_result_when_metrics_jsonl_cannot_be_written(fake_net, run_dir, capsys):
    (run_dir / "metrics.jsonl").mkdir()  # any write to it fails, even as root
    code, out, err = _cli(capsys, "evaluate", run_dir, "--data", "builtin", "--n", 20,
                          "--metrics", "kid")
    assert code == 0, err
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["kind"] == "eval" and "kid_mean" in rec
    warned = _warnings(err)
    assert len(warned) == 1 and "was not appended" in warned[0], err
    assert str(run_dir / "metrics.jsonl") in warned[0]


def test_evaluate_reports_the_record_before_warning_that_it_was_not_logged(fake_net, run_dir,
                                                                            monkeypatch):
    def read_only(path, record):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(ev, "append_jsonl", read_only)
    events = []
    rec = ev.evaluate_checkpoint(run_dir, "builtin", n=20, metrics=["kid"], progress=False,
                                 report=lambda r: events.append(("result", r)),
                                 warn=lambda m: events.append(("warning", m)))
    assert [e[0] for e in events] == ["result", "warning"] and events[0][1] == rec
    assert "Read-only file system" in events[1][1]
    # Without anyone to warn, the failure is a one-line error, not an OSError.
    with pytest.raises(UserError, match="Read-only file system"):
        ev.evaluate_checkpoint(run_dir, "builtin", n=20, metrics=["kid"], progress=False)


# ---- evaluate / nearest against other data --------------------------------------------------

def test_evaluate_against_other_data_warns_naming_both(fake_net, tmp_path, capsys, monkeypatch):
    faces = _rgb_folder(tmp_path / "faces", 12, seed=1)
    run = _run(tmp_path, path=str(faces))
    monkeypatch.chdir(tmp_path)
    # The run's own data, spelled another way: no warning.
    code, _, err = _cli(capsys, "evaluate", run, "--data", "faces/", "--n", 20, "--metrics", "kid")
    assert code == 0 and not _warnings(err), err
    other = _rgb_folder(tmp_path / "other", 12)
    code, out, err = _cli(capsys, "evaluate", run, "--data", other, "--n", 20, "--metrics", "kid")
    assert code == 0, err
    warned = _warnings(err)
    assert len(warned) == 1 and "not the data this run was trained on" in warned[0], err
    assert str(other) in warned[0] and str(faces) in warned[0], err
    # measured and logged all the same
    assert json.loads(out.strip().splitlines()[-1])["data"] == str(other)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_nearest_against_other_data_warns(run_dir, tmp_path, capsys):
    other = _rgb_folder(tmp_path / "other", 12)
    code, _, err = _cli(capsys, "nearest", run_dir, "--data", other, "--n", 2, "--no-inception",
                        "--out", tmp_path / "n.png")
    assert code == 0, err
    warned = _warnings(err)
    assert len(warned) == 1 and str(other) in warned[0] and "builtin" in warned[0], err


# ---- --data named as --data -----------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "nearest"])
@pytest.mark.parametrize("what", ["missing", "text_file"])
def test_bad_data_is_named_as_the_option(run_dir, tmp_path, cli_error, command, what):
    data = tmp_path / "nosuch"
    if what == "text_file":
        data = tmp_path / "notes.txt"
        data.write_text("not images\n")
    extra = ["--no-inception", "--out", tmp_path / "n.png"] if command == "nearest" else []
    line = cli_error(command, run_dir, "--data", data, *extra)
    assert "--data" in line and "data.path" not in line, line
    assert str(data) in line


# ---- nearest: options, medians, verdicts ----------------------------------------------------

def test_nearest_refuses_no_inception_with_inception(run_dir, tmp_path, cli_error):
    line = cli_error("nearest", run_dir, "--data", "builtin", "--no-inception",
                     "--inception", tmp_path / "x.pt", "--out", tmp_path / "n.png")
    assert "--no-inception" in line and "--inception" in line and "contradict" in line, line


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert nearest_mod._summary(torch.tensor([0.1, 0.3]))["median"] == pytest.approx(0.2)
    assert nearest_mod._summary(torch.tensor([4.0, 1.0, 3.0, 2.0]))["median"] == pytest.approx(2.5)
    assert nearest_mod._summary(torch.tensor([3.0, 1.0, 2.0]))["median"] == pytest.approx(2.0)


def _real_faces_as_samples(monkeypatch, copies=0):
    """A "generator" that returns the data's last images (outside the reference set), the
    first ``copies`` of them replaced by reference images."""
    from facegan.data import load_dataset

    data = load_dataset(_tiny_cfg().data, progress=False)

    def gen(g, n, seed, labels, batch_size=256):
        out = data.images[-n:].clone()
        out[:copies] = data.images[:copies]
        return out

    monkeypatch.setattr(ev, "generate_uint8", gen)


def test_nearest_verdict_from_few_images_carries_a_caveat(run_dir, tmp_path, capsys, monkeypatch):
    _real_faces_as_samples(monkeypatch)
    code, out, err = _cli(capsys, "nearest", run_dir, "--data", "builtin", "--n", 2,
                          "--no-inception", "--out", tmp_path / "n.png")
    assert code == 0, err
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("NO SIGN OF MEMORISATION"), out
    assert "TENTATIVE" in verdict and "2 generated, 2 held-out and 46 reference images" in verdict
    # The median of 2 values is their mean, not the smaller one.
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("pixel L1")]
    for row in rows:
        mean, median, low = map(float, row[-3:])
        assert median == pytest.approx(mean, abs=1e-4) and median > low, out


def test_nearest_verdict_without_caveat_when_counts_suffice(run_dir, tmp_path, monkeypatch):
    _real_faces_as_samples(monkeypatch)
    monkeypatch.setattr(nearest_mod, "MIN_VERDICT_SAMPLES", 8)
    monkeypatch.setattr(nearest_mod, "MIN_VERDICT_REFERENCE", 40)
    res = nearest_mod.nearest_check(run_dir, "builtin", n=8, holdout=8, out=tmp_path / "n.png",
                                    use_inception=False, progress=False)
    assert res["verdict"].startswith("NO SIGN") and "TENTATIVE" not in res["verdict"], res
    assert not res["verdict_tentative"]


def test_nearest_near_copy_needs_no_caveat_and_counts_in_the_singular(run_dir, tmp_path,
                                                                       monkeypatch):
    _real_faces_as_samples(monkeypatch, copies=1)
    res = nearest_mod.nearest_check(run_dir, "builtin", n=2, holdout=2, out=tmp_path / "n.png",
                                    use_inception=False, progress=False)
    assert res["verdict"].startswith("MEMORISATION SUSPECTED: 1 of 2 samples is a near-copy of a "
                                     "training image"), res["verdict"]
    assert "TENTATIVE" not in res["verdict"]


# ---- singular and plural --------------------------------------------------------------------

def test_nearest_says_1_image_not_1_images(tmp_path, capsys):
    run = _run(tmp_path, max_images=3)  # 2 held out, 1 left as the reference set
    code, out, err = _cli(capsys, "nearest", run, "--data", "builtin", "--n", 2, "--no-inception",
                          "--out", tmp_path / "n.png")
    assert code == 0, err
    assert "1 images" not in out and "reference set 1 image" in out, out


def test_evaluate_says_1_image_not_1_images(run_dir, tmp_path, cli_error):
    one = _rgb_folder(tmp_path / "one", 1)
    line = cli_error("evaluate", run_dir, "--data", one, "--n", 2)
    assert "gives 1 image " in line and "1 images" not in line, line
