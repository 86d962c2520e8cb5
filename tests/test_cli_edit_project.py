"""`facegan edit`, `directions`, `serve` and `project`: counts capped
before any work, the built-in faces' labels usable for directions and the classifier
feature loss, non-finite --max-wait refused, nothing left behind by a failed or stopped
projection, and messages that name the file at fault.

One tiny run on the built-in faces (16 px) is trained once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import TINY, assert_user_error, facegan
from test_labels import make_celeba_attrs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-step 16 px run on 64 built-in faces, with SeFa directions; its own cache folder."""
    tmp = tmp_path_factory.mktemp("edit")
    env = {**os.environ, "FACEGAN_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    run = tmp / "run"
    r = facegan("train", "--data", "builtin", "--preset", "demo", "--out", run, "--steps", 2,
                "--no-progress", *TINY, "data.max_images=64", env=env)
    assert r.returncode == 0, r.stderr
    r = facegan("directions", run, "--unsupervised", 2, env=env)
    assert r.returncode == 0, r.stderr
    return {"run": run, "env": env, "tmp": tmp}


def _photo(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
    return path


# ---- 1. edit: --n x --steps images capped as `sample` caps its images ----------------------------

def test_edit_grid_larger_than_sample_allows_is_refused_before_any_work(tiny, tmp_path, capsys, monkeypatch, cli_error):
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    import facegan.sampling as sampling

    run, out = tiny["run"], tmp_path / "edit.png"
    # 1,500 rows x 7 columns = 10,500 images, over the 10,000 a sample call makes.
    line = cli_error("edit", run, "--attr", "sefa_0", "--n", 1500, "--out", out)
    assert "--n 1,500 is more than 1,428" in line and "10,000" in line and "memory" in line
    line = cli_error("edit", run, "--attr", "sefa_0", "--steps", 1251, "--out", out)
    assert "--steps 1,251 is more than 1,250" in line and "8 row" in line
    # Refused before the generator is even loaded.
    monkeypatch.setattr(sampling, "load_generator", lambda *a, **k: pytest.fail("loaded"))
    assert "give a smaller --n" in cli_error("edit", run, "--attr", "sefa_0", "--n",
                                              100_000_000, "--out", out)
    assert "give a smaller --steps" in cli_error("edit", run, "--attr", "sefa_0",
                                                   "--steps", 100_000_000, "--out", out)
    latent = tmp_path / "a.latent.npy"
    np.save(latent, np.zeros(8, np.float32))
    line = cli_error("edit", run, "--attr", "sefa_0", "--latent", latent, "--steps",
                       100_000_000, "--out", out)
    assert "--steps 100,000,000 is more than 10,000" in line and "1 row" in line
    assert not out.exists()


# ---- 2. directions: every count checked before the classifier trains ------------------------------

def test_directions_counts_are_refused_before_the_classifier_trains(tiny, tmp_path, capsys, monkeypatch, cli_error):
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    import facegan.metrics.classifier as classifier

    monkeypatch.setattr(classifier, "classifier_for_data", lambda *a, **k: pytest.fail("trained"))
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    celeba = tmp_path / "celeba"
    make_celeba_attrs(celeba, n=24)
    for data in (celeba, "builtin"):
        line = cli_error("directions", run, "--data", data, "--attrs", "Smiling", "--epochs", 0)
        assert "--epochs must be at least 1" in line and "default is 10" in line
        assert "--epochs 5,000 is more than 1,000" in cli_error(
            "directions", run, "--data", data, "--epochs", 5000)
    # InterFaceGAN's 5 most and least confident faces a side need --n 10: said now, not after
    # the training and the scoring.
    line = cli_error("directions", run, "--data", celeba, "--n", 9)
    assert "--n 9 is too few" in line and "--n 10 or more" in line
    line = cli_error("directions", run, "--data", celeba, "--n", 100_000_000)
    assert "--n 100,000,000 is more than 1,000,000" in line
    # SeFa's K beyond the latent size: refused before the classifier that names them trains.
    line = cli_error("directions", run, "--data", celeba, "--unsupervised", 9)
    assert "between 1 and the latent size 8" in line
    assert (run / "directions.json").read_bytes() == (tiny["run"] / "directions.json").read_bytes()


def test_directions_epochs_zero_through_a_real_process(tiny, tmp_path):
    # No "training the attribute classifier..." then a traceback.
    celeba = tmp_path / "celeba"
    make_celeba_attrs(celeba, n=24)
    r = facegan("directions", tiny["run"], "--data", celeba, "--attrs", "Smiling", "--epochs", 0,
                env=tiny["env"])
    assert_user_error(r, "--epochs must be at least 1")
    assert "training the attribute classifier" not in r.stderr


# ---- 6. the built-in faces have attribute labels --------------------------------------------------

def test_directions_from_the_builtin_faces_then_edit(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    r = facegan("directions", run, "--data", "builtin", "--attrs", "smiling,glasses", "--keep",
                "smiling", "--n", 200, "--ratio", 0.05, "--epochs", 1, env=tiny["env"])
    assert r.returncode == 0, r.stderr
    assert "training the attribute classifier once" in r.stderr and "wrote 2 direction(s)" in r.stdout
    doc = json.loads((run / "directions.json").read_text())
    assert {"smiling", "glasses", "sefa_0"} <= set(doc["directions"])
    assert doc["directions"]["glasses"]["kept"] == ["smiling"]
    r = facegan("edit", run, "--attr", "glasses", "--n", 2, "--steps", 3, "--out", tmp_path / "e.png",
                env=tiny["env"])
    assert r.returncode == 0, r.stderr
    # An unknown name lists the built-in faces' attributes.
    r = facegan("directions", run, "--data", "builtin", "--attrs", "Smiling", "--epochs", 1,
                env=tiny["env"])
    assert_user_error(r, "unknown attribute 'Smiling'", "smiling", "black_hair")


def test_project_classifier_features_on_a_builtin_run(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    import facegan.metrics.classifier as classifier
    from facegan.commands import main

    real = classifier.classifier_for_data
    # One epoch, not the default 10: what is tested is that the labels are found and used.
    monkeypatch.setattr(classifier, "classifier_for_data", lambda *a, **k: real(*a, **{**k, "epochs": 1}))
    out = tmp_path / "D"
    code = main([str(a) for a in ("project", tiny["run"], _photo(tmp_path / "me.png"), "--out", out,
                                  "--no-align", "--features", "classifier", "--steps", 2,
                                  "--encoder-steps", 2, "--quiet")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "no labels" not in cap.err and "feature distance" in cap.out
    doc = json.loads((out / "me.json").read_text())
    assert doc["features"] == "classifier"
    # Which generator the latent belongs to, for edits and morphs to check.
    assert doc["run"] == str(tiny["run"].resolve()) and doc["checkpoint"].endswith("latest.pt")


def test_classifier_features_need_labelled_data_on_this_machine(tiny, tmp_path):
    """What a run trained elsewhere meets: its data folder not here, or no data path at all."""
    import dataclasses

    from facegan.errors import UserError
    from facegan.projection import load_features
    from facegan.sampling import load_generator

    lg = load_generator(tiny["run"])
    for path, needle in ((str(tmp_path / "gone"), "gone' is not on this machine"),
                         ("", "names none")):
        cfg = dataclasses.replace(lg.config, data=dataclasses.replace(lg.config.data, path=path))
        with pytest.raises(UserError, match="labelled training data") as e:
            load_features(dataclasses.replace(lg, config=cfg), "classifier")
        assert needle in str(e.value) and "--features critic" in str(e.value)


# ---- 3. serve: --max-wait must be a finite number -------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_serve_refuses_a_max_wait_that_is_not_finite(tiny, capsys, monkeypatch, value, cli_error):
    pytest.importorskip("starlette", reason="facegan serve needs the [serve] extra")
    pytest.importorskip("uvicorn", reason="facegan serve needs the [serve] extra")
    import facegan.web as web

    # Refused before the port is even bound (a bad option never serves).
    monkeypatch.setattr(web, "bind", lambda *a, **k: pytest.fail("bound a port"))
    line = cli_error("serve", tiny["run"], "--port", 0, f"--max-wait={value}")
    assert "--max-wait must be a positive number of seconds" in line and "--max-wait 3" in line


# ---- 4. project: nothing left behind ---------------------------------------------------------------

def test_project_leaves_no_folder_when_the_generator_cannot_load(tiny, tmp_path, capsys, monkeypatch, cli_error):
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    photo = _photo(tmp_path / "photo.jpg")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint\n")
    out = tmp_path / "D"
    line = cli_error("project", bad, photo, "--out", out / "sub")
    assert "not a readable facegan checkpoint" in line
    assert not out.exists()  # neither D/sub nor D, both made by this call
    if not torch.cuda.is_available():
        line = cli_error("project", tiny["run"], photo, "--out", out, "--device", "cuda")
        assert "no CUDA GPU" in line and not out.exists()
    # A folder that was there stays, with what was in it.
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    cli_error("project", bad, photo, "--out", out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_project_stopped_by_sigterm_cleans_up_like_ctrl_c(tiny, tmp_path):
    out = tmp_path / "D"
    p = subprocess.Popen([sys.executable, "-m", "facegan", "project", str(tiny["run"]),
                          str(_photo(tmp_path / "me.png")), "--out", str(out), "--no-align",
                          "--encoder-steps", "1000000", "--retrain-encoder"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tiny["env"])
    try:
        seen = ""
        while "encoder: training it" not in seen:  # the encoder's training has started
            line = p.stderr.readline()
            assert line, seen
            seen += line
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, seen + err
    assert err.strip().splitlines()[-1] == "facegan: interrupted" and "Traceback" not in err
    assert not out.exists()


# ---- 5. project: the photo without a face is named -------------------------------------------------

def test_project_names_the_photo_in_which_no_face_was_found(tiny, tmp_path, capsys, monkeypatch, cli_error):
    pytest.importorskip("facenet_pytorch")
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    # A template as a run of real faces keeps it (the drawn 16 px faces have none to find).
    (run / "face_template.json").write_text(json.dumps({"resolution": 16, "images": 1, "landmarks": [
        [5.5, 6.5], [10.5, 6.5], [8.0, 9.0], [6.0, 11.5], [10.0, 11.5]]}))
    out = tmp_path / "D"
    line = cli_error("project", run, _photo(tmp_path / "noface.png"),
                       _photo(tmp_path / "other.png", 1), "--out", out)
    assert "no face found in photo '" in line and "noface.png'" in line and "other.png" not in line
    assert "--no-align" in line and not out.exists()


# ---- 7. edit --latent: a damaged NAME.crop.png beside it ------------------------------------------

def test_edit_latent_with_a_damaged_crop_names_it_and_the_ways_out(tiny, tmp_path, capsys, monkeypatch, cli_error):
    monkeypatch.setenv("FACEGAN_CACHE", tiny["env"]["FACEGAN_CACHE"])
    latent = tmp_path / "A.latent.npy"
    np.save(latent, np.zeros(8, np.float32))
    crop = tmp_path / "A.crop.png"
    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (120, 80, 40)).save(good)
    out = tmp_path / "edit.png"
    for damage, why in ((b"not a png at all", "not a PNG image"),
                        (good.read_bytes()[:50], "damaged or truncated")):
        crop.write_bytes(damage)
        line = cli_error("edit", tiny["run"], "--latent", latent, "--attr", "sefa_0",
                           "--out", out)
        assert "A.crop.png' (the photo of --latent" in line and "is not a readable image" in line, line
        assert why in line and "--no-detail" in line and "facegan project" in line, line
        assert "send a photo" not in line
    assert not out.exists()
    # the way out it names works
    assert facegan("edit", tiny["run"], "--latent", latent, "--attr", "sefa_0", "--no-detail",
                   "--out", out, env=tiny["env"]).returncode == 0


# ---- 8. a latent of another generator ------------------------------------------------------------

def test_edit_and_morph_warn_when_a_latent_belongs_to_another_generator(tiny, tmp_path):
    latent = tmp_path / "A.latent.npy"
    np.save(latent, np.zeros(8, np.float32))
    doc = {"run": str(tmp_path / "another-run"), "checkpoint": str(tmp_path / "another-run" / "x.pt"),
           "checkpoint_step": 2}
    (tmp_path / "A.json").write_text(json.dumps(doc))
    r = facegan("edit", tiny["run"], "--latent", latent, "--attr", "sefa_0", "--out", tmp_path / "e.png",
                env=tiny["env"])
    assert r.returncode == 0, r.stderr
    assert f"facegan: warning: --latent '{latent}' was projected with {tmp_path / 'another-run'}" in r.stderr
    r = facegan("morph", tiny["run"], "--from", latent, "--to", latent, "--steps", 3,
                "--out", tmp_path / "m.png", env=tiny["env"])
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("was projected with") == 2 and "--to '" in r.stderr
    # Its own run's latent, at the checkpoint's step: no warning.
    doc["run"], doc["checkpoint"] = str(tiny["run"].resolve()), str(tiny["run"].resolve() / "checkpoints" / "latest.pt")
    (tmp_path / "A.json").write_text(json.dumps(doc))
    r = facegan("edit", tiny["run"], "--latent", latent, "--attr", "sefa_0", "--out", tmp_path / "e.png",
                env=tiny["env"])
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
