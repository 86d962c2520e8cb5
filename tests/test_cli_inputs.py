"""Inputs of sample, morph, edit and directions a newcomer gets wrong: --png-dir names that
several seeds share, a --fps no GIF plays, an overflowing --strength, a run folder directions
cannot write into, class sub-folders given as --data, and the subcommands' --help."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import train_tiny_in_process

from facegan import commands as cli
from facegan.directions import parse_strength
from facegan.errors import UserError
from facegan.sampling import generate_images, load_generator, save_individual


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-step tiny unconditional run, trained in this process."""
    return train_tiny_in_process(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def bare(run, tmp_path) -> Path:
    """A folder of its own holding the run's checkpoint: directions.json goes beside it."""
    b = tmp_path / "bare"
    b.mkdir()
    (b / "latest.pt").write_bytes((run / "checkpoints" / "latest.pt").read_bytes())
    return b


def call(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    got = capsys.readouterr()
    return code, got.out, got.err


def one_error_line(code: int, err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert lines and lines[-1].startswith("facegan: error: "), err
    return lines[-1]


# ---- sample --png-dir: names by seed ----------------------------------------------------------

def test_png_dir_names_carry_the_seed_so_calls_with_other_seeds_add_to_the_folder(run, tmp_path, capsys):
    pd = tmp_path / "pd"
    for seed in (5, 6, 5):  # the same seed again rewrites the same images
        code, out, err = call(capsys, "sample", run, "--n", 3, "--png-dir", pd, "--seed", seed,
                              "--device", "cpu")
        assert code == 0, err
    names = sorted(p.name for p in pd.iterdir())
    assert names == [f"seed{s}_{i:05d}.png" for s in (5, 6) for i in range(3)]
    g = load_generator(run).generator
    for seed in (5, 6):
        got = np.stack([np.asarray(Image.open(pd / f"seed{seed}_{i:05d}.png")) for i in range(3)])
        want = generate_images(g, 3, seed=seed).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(got, want)
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    assert "seed{SEED}_{INDEX}.png" in " ".join(capsys.readouterr().out.split())


def test_save_individual_keeps_its_old_names_without_a_seed(tmp_path):
    imgs = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    paths = save_individual(torch.from_numpy(imgs), tmp_path / "a")
    assert [p.name for p in paths] == ["sample_00000.png", "sample_00001.png"]
    paths = save_individual(torch.from_numpy(imgs), tmp_path / "b", seed=12)
    assert [p.name for p in paths] == ["seed12_00000.png", "seed12_00001.png"]


# ---- morph --fps ----------------------------------------------------------------------------------

def test_morph_refuses_an_fps_gifs_cannot_play_and_takes_50(run, tmp_path, capsys):
    out, gif = tmp_path / "m.png", tmp_path / "m.gif"
    for fps in (51, 60, 101, 1000):
        code, _, err = call(capsys, "morph", run, "--fps", fps, "--gif", gif, "--out", out,
                            "--rows", 1, "--steps", 2)
        line = one_error_line(code, err)
        assert f"--fps {fps}" in line and "50" in line and "GIF" in line
        assert not out.exists() and not gif.exists()
    # the fastest a GIF plays: a 20 ms delay per frame
    code, _, err = call(capsys, "morph", run, "--fps", 50, "--gif", gif, "--out", out,
                        "--rows", 1, "--steps", 3, "--device", "cpu")
    assert code == 0, err
    assert Image.open(gif).info["duration"] == 20


# ---- edit --strength ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["1e309", "-1e309:1", "0:1e400", "1e39"])
def test_parse_strength_calls_an_overflowing_number_not_finite(text):
    with pytest.raises(UserError, match="finite") as e:
        parse_strength(text)
    assert "LOW must be below HIGH" not in str(e.value)


def test_edit_strength_overflow_is_one_line_about_finite_numbers(run, tmp_path, capsys):
    out = tmp_path / "e.png"
    code, _, err = call(capsys, "edit", run, "--attr", "x", "--strength", "1e309", "--out", out)
    line = one_error_line(code, err)
    assert "--strength '1e309'" in line and "finite" in line and "LOW must be below" not in line
    assert not out.exists()


# ---- directions: a run folder that cannot take directions.json ------------------------------------

def test_directions_refuses_an_unwritable_target_before_the_work(bare, capsys):
    (bare / "directions.json").mkdir()  # even root cannot write a file over a folder
    code, out, err = call(capsys, "directions", bare, "--unsupervised", 2)
    line = one_error_line(code, err)
    assert "cannot write" in line and "directions.json" in line and "folder" in line
    assert "sefa_" not in out  # refused before the directions were found and shown


def test_directions_probes_the_folder_before_the_work(bare, capsys, monkeypatch):
    import facegan.files

    monkeypatch.setattr(facegan.files, "can_create_files_in",
                        lambda folder: PermissionError(errno.EACCES, "Permission denied"))
    code, out, err = call(capsys, "directions", bare, "--unsupervised", 2)
    line = one_error_line(code, err)
    assert f"cannot write {bare / 'directions.json'}" in line and "permission denied" in line
    assert "writable" in line and "sefa_" not in out
    assert not list(bare.glob(".directions.json*"))


def test_directions_failing_at_the_write_is_one_line(bare, capsys, monkeypatch):
    import facegan.files

    def refuse(path, text):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(facegan.files, "atomic_write_text", refuse)
    code, out, err = call(capsys, "directions", bare, "--unsupervised", 2)
    line = one_error_line(code, err)
    assert f"cannot write {bare / 'directions.json'}: Permission denied" in line
    assert "not saved" in line and "sefa_0" in out
    assert not (bare / "directions.json").exists()


# ---- directions --data with class sub-folders -------------------------------------------------------

def test_directions_advice_for_class_sub_folders_is_one_directions_can_follow(bare, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "animals"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / cls / f"{i}.png")
    for extra in ((), ("--unsupervised", 2)):
        code, out, err = call(capsys, "directions", bare, "--data", data, *extra)
        line = one_error_line(code, err)
        assert "no attribute labels" in line and "class sub-folders" in line
        assert "data.condition=folders" not in line  # directions cannot set it
        assert "--unsupervised K" in line and "--data builtin" in line and "--condition folders" in line
        assert "sefa_" not in out and not (bare / "directions.json").exists()


# ---- --help descriptions ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sample", "morph"])
def test_sample_and_morph_help_start_with_the_main_help_line(name):
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    one_liner = next(c.help for c in sub._choices_actions if c.dest == name)
    parser = sub.choices[name]
    assert parser.description == one_liner[0].upper() + one_liner[1:] + "."
    assert parser.description in parser.format_help()
