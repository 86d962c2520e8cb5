"""Conditional models through the command line: train --condition, sample --class / --attr /
--grid-by-class, morph --from-class, and the user mistakes (one line, exit 2)."""

import json

import pytest
from PIL import Image
from test_cli import TINY, assert_user_error, facegan
from test_labels import make_celeba_attrs, make_classes


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    root = make_classes(tmp / "animals", (("cat", 40, 10), ("dog", 210, 6)))
    run = tmp / "run"
    r = facegan("train", "--data", root, "--preset", "wgangp-celeba64", "--condition", "folders",
                "--out", run, "--steps", 2, "--no-progress", *TINY, "model.d_cond=ac")
    assert r.returncode == 0, r.stderr
    assert "labels (folders): 2 classes over 16 images: cat 10 (62.5%), dog 6 (37.5%)" in r.stderr
    return run


@pytest.fixture(scope="module")
def attr_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attr")
    make_celeba_attrs(tmp / "celeba", n=16)
    run = tmp / "run"
    r = facegan("train", "--data", tmp / "celeba", "--preset", "cwgangp-celeba64", "--condition",
                "Male,Smiling", "--out", run, "--steps", 2, "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    return run


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    root = make_classes(tmp / "imgs", (("x", 100, 16),))
    run = tmp / "run"
    r = facegan("train", "--data", root, "--preset", "wgangp-celeba64", "--out", run, "--steps", 2,
                "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    return run


def test_labels_json_and_sample_by_class(tmp_path, class_run):
    labels = json.loads((class_run / "labels.json").read_text())
    assert labels["kind"] == "class" and labels["names"] == ["cat", "dog"]
    assert labels["balance"]["counts"] == {"cat": 10, "dog": 6}
    r = facegan("sample", class_run, "--class", "dog", "--n", 4, "--out", tmp_path / "dog.png",
                "--png-dir", tmp_path / "dogs")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "dogs").glob("*.png"))) == 4
    r = facegan("sample", class_run, "--grid-by-class", "--n", 3, "--out", tmp_path / "grid.png",
                "--png-dir", tmp_path / "grid")
    assert r.returncode == 0, r.stderr
    assert "rows: 1: cat; 2: dog" in r.stdout
    # 2 rows x 3 columns of 16 px with 2 px padding
    assert Image.open(tmp_path / "grid.png").size == (3 * 18 + 2, 2 * 18 + 2)
    # one PNG per image of the grid (that rows share their noise: test_labels.py)
    pngs = sorted((tmp_path / "grid").glob("*.png"))
    assert len(pngs) == 6
    r = facegan("morph", class_run, "--from-class", "cat", "--to-class", "dog", "--rows", 2,
                "--steps", 3, "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert "cat -> dog at fixed noise" in r.stdout
    # plain sampling and morph draw labels from the data's frequencies
    assert facegan("sample", class_run, "--n", 2, "--out", tmp_path / "any.png").returncode == 0
    assert facegan("morph", class_run, "--rows", 2, "--steps", 2, "--out", tmp_path / "m2.png").returncode == 0


def test_sample_by_attribute(tmp_path, attr_run):
    r = facegan("sample", attr_run, "--attr", "Male=0,Smiling=1", "--n", 3, "--out", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    r = facegan("sample", attr_run, "--grid-by-class", "--n", 2, "--out", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert "rows: 1: Male=0,Smiling=0; 2: Male=0,Smiling=1; 3: Male=1,Smiling=0; 4: Male=1,Smiling=1" in r.stdout
    r = facegan("morph", attr_run, "--from-attr", "Smiling=0", "--to-attr", "Smiling=1", "--rows", 2,
                "--steps", 3, "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    assert "Smiling=0 -> Smiling=1 at fixed noise" in r.stdout
    assert Image.open(tmp_path / "m.png").size == (3 * 18 + 2, 2 * 18 + 2)
    assert_user_error(facegan("morph", attr_run, "--from-class", "a", "--to-class", "b", "--out",
                              tmp_path / "x.png"), "attribute labels", "use --from-attr")
    assert_user_error(facegan("morph", attr_run, "--from-attr", "Smiling=0", "--out", tmp_path / "x.png"),
                      "--from-attr and --to-attr go together")


def test_label_mistakes_are_one_line_errors(tmp_path, class_run, attr_run, plain_run):
    out = ["--out", tmp_path / "x.png"]
    assert_user_error(facegan("sample", class_run, "--class", "cow", *out),
                      "unknown class 'cow'", "cat, dog")
    assert_user_error(facegan("sample", attr_run, "--attr", "Bald=1", *out),
                      "unknown attribute 'Bald'", "Male, Smiling")
    assert_user_error(facegan("sample", attr_run, "--attr", "Male", *out), "NAME=0 or NAME=1")
    assert_user_error(facegan("sample", class_run, "--attr", "Male=1", *out), "class labels")
    assert_user_error(facegan("sample", attr_run, "--class", "cat", *out), "attribute labels")
    for opt in (["--class", "cat"], ["--attr", "Male=1"], ["--grid-by-class"]):
        assert_user_error(facegan("sample", plain_run, *opt, *out), "unconditional")
    assert_user_error(facegan("sample", class_run, "--class", "cat", "--grid-by-class", *out),
                      "cannot be combined")
    assert_user_error(facegan("morph", plain_run, "--from-class", "a", "--to-class", "b", *out),
                      "unconditional")
    assert_user_error(facegan("morph", class_run, "--from-class", "cat", *out), "--to-class")
    assert not (tmp_path / "x.png").exists()


def test_train_condition_mistakes(tmp_path):
    root = make_classes(tmp_path / "animals", (("cat", 40, 4), ("dog", 210, 4)))
    make_celeba_attrs(tmp_path / "celeba", n=8)
    base = ["--preset", "wgangp-celeba64", "--steps", 1, "--no-progress", *TINY]
    assert_user_error(facegan("train", "--data", tmp_path / "celeba", "--condition", "Male,Beard",
                              "--out", tmp_path / "r1", *base), "unknown attribute 'Beard'", "No_Beard")
    assert_user_error(facegan("train", "--data", root, "--condition", "Male", "--out", tmp_path / "r2",
                              *base), "has none")
    assert_user_error(facegan("train", "--data", tmp_path / "celeba", "--condition", "folders",
                              "--out", tmp_path / "r3", *base), "folders needs a folder or a zip")
    assert not (tmp_path / "r1").exists()
