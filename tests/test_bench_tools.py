"""The benchmark helpers: one labelled row of samples per run (docs figures), and bench_quality's
comparison with a tutorial-style loop."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.train import build_trainer

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.n_samples=4", "train.device=cpu"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = apply_overrides(get_preset("wgangp-ln-celeba64"), [*TINY, f"data.path={folder}"])
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "q" / "run", progress=False)
    tr.train(3)  # a real run folder: config.json beside checkpoints/latest.pt
    return tmp_path / "q" / "run"


def test_preset_rows_titles_each_row_with_preset_step_and_fid(run, tmp_path):
    rows = _load("preset_rows")
    from facegan.sampling import load_generator

    loaded = load_generator(run)
    assert rows.row_title(loaded) == "wgangp-ln-celeba64, step 3"
    (run.parent / "quality.json").write_text(json.dumps({"points": [{"fid": 123.456, "n": 10000}]}))
    assert rows.row_title(loaded) == "wgangp-ln-celeba64, step 3, FID 123.5 (10,000 samples)"

    one, three = tmp_path / "one.png", tmp_path / "three.png"
    assert rows.main([str(run), "--n", "5", "--out", str(one)]) == 0
    assert rows.main([str(run)] * 3 + ["--n", "5", "--out", str(three)]) == 0
    h1, h3 = Image.open(one).size[1], Image.open(three).size[1]
    assert h3 > 2.5 * h1  # one row per run
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_preset_rows_refuses_a_missing_run_in_one_line(tmp_path, capsys):
    rows = _load("preset_rows")
    assert rows.main([str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("preset_rows: ") and "\n" not in err
    assert not (tmp_path / "x.png").exists()
    # --title, when given, names every row.
    assert rows.main([str(tmp_path / "nope"), "--title", "a", "--title", "b", "--out", str(tmp_path / "x.png")]) == 2
    assert "2 --title for 1 runs" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quality_against_tutorial_trains_both_and_compares_their_fids(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_quality.py"), "--data", str(folder),
                           "--against-tutorial", "--minutes", "0.05", "--n", "64", "--out", str(out), *TINY],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((out / "against_tutorial.json").read_text())
    for side in ("facegan", "tutorial"):
        assert math.isfinite(rec[side]["fid"]) and rec[side]["steps"] > 0
        assert f"FID {rec[side]['fid']:.2f}" in proc.stdout
    assert rec["tutorial"]["model"]["g_width"] == 4  # the overrides shape both sides' networks
    assert rec["threads_per_side"] >= 1 and rec["minutes"] == 0.05
    assert "FID tutorial / facegan" in proc.stdout
    w, h = Image.open(out / "against_tutorial.png").size
    assert 0.22 < h / w < 0.45  # two labelled rows of 8 faces (one row would be half as high)


def test_bench_projection_tiny(tmp_path):
    """The projection benchmark on a tiny run that kept 4 of its 10 images unseen: every method's
    row, the stage shares, the grid; a run that saw all its images is refused in one line."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    cfg = apply_overrides(get_preset("wgangp-ln-celeba64"), [*TINY, f"data.path={folder}", "data.max_images=6"])
    run = tmp_path / "run"
    build_trainer(cfg, load_dataset(cfg.data, progress=False), run, progress=False).train(2)
    script = str(REPO / "benchmarks" / "bench_projection.py")
    common = ["--data", str(folder), "--no-align", "--n-own", "3", "--random", "16", "--steps", "3"]
    proc = subprocess.run([sys.executable, script, str(run), *common, "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "b" / "projection.json").read_text())
    assert res["real"]["n"] == 4 and "the 4 of 10 images the run did not train on" in res["real"]["rule"]
    assert [r["method"] for r in res["real"]["rows"]] == ["random-best", "encoder", "optimised",
                                                           "optimised, pixels only"]
    for r in res["real"]["rows"]:
        assert math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and r["feature_distance"] >= 0
    assert set(res["stages_seconds_per_photo"]) == {"alignment", "encoder guess", "optimisation"}
    assert res["own"]["n"] == 3 and math.isfinite(res["own"]["optimised"]["psnr"])
    assert Image.open(tmp_path / "b" / "projection.png").size[0] > 4 * 16
    # A run that trained on every image has none to hold out.
    cfg = apply_overrides(get_preset("wgangp-ln-celeba64"), [*TINY, f"data.path={folder}"])
    build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "all", progress=False).train(1)
    proc = subprocess.run([sys.executable, script, str(tmp_path / "all"), *common, "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--max-images" in proc.stderr and "Traceback" not in proc.stderr


def test_small_folder_critic_gap_by_fifth(tmp_path):
    """The overfitting signal small_folder prints: the mean logged real/fake gap over each fifth
    of the training records (evaluation records ignored)."""
    sf = _load("small_folder")
    recs = [{"kind": "train", "step": i, "wasserstein": float(i // 2)} for i in range(10)]
    recs.insert(3, {"kind": "eval", "step": 3, "fid": 100.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert sf.critic_gaps(tmp_path) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sf.critic_gaps(tmp_path, parts=2) == [pytest.approx(0.8), pytest.approx(3.2)]  # 0,0,1,1,2 and 2,3,3,4,4
