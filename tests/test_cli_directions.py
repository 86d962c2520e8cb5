"""`facegan directions` and `facegan edit` through the command line, and their user errors."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import TINY, assert_user_error, facegan
from test_labels import make_celeba_attrs


@pytest.fixture(scope="module")
def steer(tmp_path_factory):
    """A tiny unconditional run on a tiny CelebA layout (16 px), its own cache folder."""
    tmp = tmp_path_factory.mktemp("steer")
    env = {**os.environ, "FACEGAN_CACHE": str(tmp / "cache")}
    make_celeba_attrs(tmp / "celeba", n=24)
    run = tmp / "run"
    r = facegan("train", "--data", tmp / "celeba", "--preset", "wgangp-celeba64", "--out", run,
                "--steps", 2, "--no-progress", *TINY, env=env)
    assert r.returncode == 0, r.stderr
    return {"run": run, "data": tmp / "celeba", "env": env, "tmp": tmp}


def _doc(run):
    return json.loads((run / "directions.json").read_text())


def test_directions_interfacegan_keep_and_sefa_then_edit(tmp_path, steer):
    run, env = steer["run"], steer["env"]
    r = facegan("directions", run, "--data", steer["data"], "--attrs", "Male,Smiling", "--keep", "Male",
                "--n", 200, "--ratio", 0.05, "--epochs", 1, env=env)
    assert r.returncode == 0, r.stderr
    assert "classifier held-out accuracy" in r.stderr and "wrote 2 direction(s)" in r.stdout
    assert "training the attribute classifier once" in r.stderr
    # 200 faces at ratio 0.05 validate each boundary on 3 faces a side: said, with the fix.
    assert "facegan: warning: Male: validated on 3 face(s) a side" in r.stderr
    assert "this direction may not edit Male: raise --n (now 200)" in r.stderr
    doc = _doc(run)
    assert doc["version"] == 1 and doc["z_dim"] == 8
    male, smiling = doc["directions"]["Male"], doc["directions"]["Smiling"]
    assert male["method"] == "interfacegan" and male["kept"] == []
    assert smiling["kept"] == ["Male"] and 0.0 <= smiling["accuracy"] <= 1.0
    vm, vs = torch.tensor(male["vector"]), torch.tensor(smiling["vector"])
    torch.testing.assert_close(vs.norm(), torch.tensor(1.0))
    torch.testing.assert_close(vm @ vs, torch.tensor(0.0), atol=1e-6, rtol=0)
    # SeFa merges into the same file, named by the attribute each direction moves most.
    r = facegan("directions", run, "--data", steer["data"], "--unsupervised", 2, "--epochs", 1, env=env)
    assert r.returncode == 0, r.stderr
    assert "training the attribute classifier" not in r.stderr  # cached by the first call
    names = set(_doc(run)["directions"])
    sefa = sorted(n for n in names if n.startswith("sefa_"))
    assert {"Male", "Smiling"} <= names and len(sefa) == 2
    assert all(n.split("_", 2)[2] in r.stdout for n in sefa)
    # edit: one row per face, --steps columns, 16 px tiles with 2 px padding
    out = tmp_path / "edit.png"
    r = facegan("edit", run, "--attr", "Smiling", "--strength", "-2:2", "--n", 3, "--steps", 4,
                "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (4 * 18 + 2, 3 * 18 + 2)
    # the same face along a row: columns differ, rows start from different faces
    img = torch.from_numpy(np.array(Image.open(out))).float()
    tile = lambda r_, c_: img[2 + 18 * r_: 18 + 18 * r_, 2 + 18 * c_: 18 + 18 * c_]
    assert float((tile(0, 0) - tile(0, 3)).abs().mean()) > 0
    assert float((tile(0, 0) - tile(1, 0)).abs().mean()) > 0


def test_directions_unsupervised_without_data(tmp_path, steer):
    alone = tmp_path / "alone.pt"  # a checkpoint outside a run: directions.json beside it
    alone.write_bytes((steer["run"] / "checkpoints" / "latest.pt").read_bytes())
    r = facegan("directions", alone, "--unsupervised", 3, env=steer["env"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "directions.json").read_text())
    assert sorted(doc["directions"]) == ["sefa_0", "sefa_1", "sefa_2"]
    v = torch.tensor([doc["directions"][f"sefa_{i}"]["vector"] for i in range(3)])
    torch.testing.assert_close(v @ v.T, torch.eye(3), atol=1e-5, rtol=0)
    assert all(e["method"] == "sefa" and e["accuracy"] is None for e in doc["directions"].values())


def test_edit_and_directions_user_errors(tmp_path, steer, capsys, monkeypatch, cli_error):
    run = steer["run"]
    monkeypatch.setenv("FACEGAN_CACHE", steer["env"]["FACEGAN_CACHE"])
    out = tmp_path / "x.png"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "latest.pt").write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    line = cli_error("edit", bare, "--attr", "Smiling", "--out", out)
    assert "no directions.json" in line and "facegan directions" in line
    from facegan.commands import main

    assert main(["directions", str(bare), "--unsupervised", "1"]) == 0
    line = cli_error("edit", bare, "--attr", "Bald", "--out", out)
    assert "no direction 'Bald'" in line and "it has: sefa_0" in line
    for bad in ("3:-3", "a:b", "-3..3"):
        line = cli_error("edit", bare, "--attr", "sefa_0", "--strength", bad, "--out", out)
        assert "--strength" in line and "-3:3" in line
    assert "--steps" in cli_error("edit", bare, "--attr", "sefa_0", "--steps", 1, "--out", out)
    assert ".png" in cli_error("edit", bare, "--attr", "sefa_0", "--out", tmp_path / "x.gif")
    assert not out.exists()
    line = cli_error("directions", bare)
    assert "--data" in line and "--unsupervised" in line
    assert "does not exist" in cli_error("directions", bare, "--data", tmp_path / "nope")
    line = cli_error("directions", bare, "--data", steer["data"], "--attrs", "Male,Beard")
    assert "unknown attribute 'Beard'" in line and "No_Beard" in line
    assert "--unsupervised" in cli_error("directions", bare, "--unsupervised", 2, "--keep", "Male")
    assert "between 1 and" in cli_error("directions", bare, "--unsupervised", 99)
    assert "does not exist" in cli_error("directions", tmp_path / "nothing", "--unsupervised", 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "latest.pt").write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    (other / "directions.json").write_text(json.dumps({"version": 1, "z_dim": 5, "directions": {}}))
    assert "z_dim 5" in cli_error("directions", other, "--unsupervised", 1)
    # nothing half-written: the file holds only what succeeded
    assert sorted(json.loads((bare / "directions.json").read_text())["directions"]) == ["sefa_0"]


def test_strength_with_a_leading_minus_through_a_real_process(tmp_path, steer):
    # '--strength -1:1' is a value, not an option, on the real command line too.
    bare = tmp_path / "b"
    bare.mkdir()
    (bare / "latest.pt").write_bytes((steer["run"] / "checkpoints" / "latest.pt").read_bytes())
    assert facegan("directions", bare, "--unsupervised", 1, env=steer["env"]).returncode == 0
    assert_user_error(facegan("edit", bare, "--attr", "sefa_0", "--strength", "-3..3", "--out",
                              tmp_path / "e.png", env=steer["env"]), "--strength '-3..3'")


def test_a_weak_direction_is_named_with_each_reason():
    from facegan.commands.directions import weak_direction

    assert weak_direction(0.97, 150, 0.4) == ""
    assert weak_direction(0.6, 150, 0.4) == "validation accuracy 60.0% (50% is chance)"
    assert weak_direction(1.0, 2, 0.0) == ("validated on 2 face(s) a side; none of the generated faces "
                                            "have it by the classifier")
