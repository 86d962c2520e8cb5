"""preset auto (the default): a recipe for the hardware, DiffAugment for a small data set, said
in one line; the docs' table agrees with the code's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from facegan.config import (
    AUTO_HIGH_RES,
    AUTO_PRESETS,
    HARDWARE,
    HIGH_RES,
    PRESETS,
    SHORT_RUN,
    SHORT_RUN_WIDTH,
    SMALL_DATA,
    SMALL_DATA_AUGMENT,
    apply_overrides,
    auto_data_settings,
    auto_preset,
    auto_time_settings,
    get_preset,
)
from facegan.errors import UserError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "presets.md"


def test_every_hardware_has_a_preset():
    assert set(AUTO_PRESETS) == set(HARDWARE)
    for hw in HARDWARE:
        cfg, why = auto_preset(hw)
        assert cfg.preset in PRESETS and why.startswith(cfg.preset)
    assert get_preset("auto").preset == "auto"
    with pytest.raises(UserError, match="auto, "):
        get_preset("nope")


def test_a_cpu_at_128_px_takes_the_narrow_128_px_preset():
    for hw in HARDWARE:
        low, _ = auto_preset(hw, 64)
        high, why = auto_preset(hw, HIGH_RES)
        if hw == "gpu":
            assert high.preset == low.preset  # width is cheap on a GPU
        else:
            assert high.preset == "wgangp-ln-celeba128" and high.data.resolution == 128
            assert high.model.g_width < low.model.g_width and "128 px" in why
        assert auto_preset(hw, 2 * HIGH_RES)[0].preset == high.preset


def test_small_data_gets_diffaugment_unless_the_user_chose():
    extra, why = auto_data_settings(SMALL_DATA - 1, given=[])
    assert extra == {"train.augment": SMALL_DATA_AUGMENT} and f"{SMALL_DATA - 1:,}" in why
    assert auto_data_settings(SMALL_DATA, given=[]) == ({}, "")
    assert auto_data_settings(10, given=["train.augment"]) == ({}, "")


def test_a_short_run_on_a_cpu_without_bf16_gets_narrower_nets():
    widths = {"model.g_width": SHORT_RUN_WIDTH, "model.d_width": SHORT_RUN_WIDTH}
    extra, why = auto_time_settings("cpu", 64, SHORT_RUN, given=[])
    assert extra == widths and f"{SHORT_RUN_WIDTH} wide" in why and f"{SHORT_RUN / 60:g} minutes" in why
    assert auto_time_settings("cpu", 64, 600.0, given=["train.g_lr"])[0] == widths
    # The narrower nets are a valid form of the preset auto takes there.
    cfg = apply_overrides(auto_preset("cpu")[0], extra).validate()
    assert cfg.model.g_width == cfg.model.d_width == SHORT_RUN_WIDTH < auto_preset("cpu")[0].model.g_width
    nothing = ({}, "")
    assert auto_time_settings("cpu", 64, SHORT_RUN + 1, given=[]) == nothing  # longer: the wider nets
    assert auto_time_settings("cpu", 64, 0.0, given=[]) == nothing  # no budget: steps say nothing of time
    assert auto_time_settings("cpu-bf16", 64, 600.0, given=[]) == nothing
    assert auto_time_settings("gpu", 64, 600.0, given=[]) == nothing
    assert auto_time_settings("cpu", HIGH_RES, 600.0, given=[]) == nothing  # the 128 px preset is narrow
    for key in ("model.g_width", "d_width"):  # dotted or bare, the user's width wins
        assert auto_time_settings("cpu", 64, 600.0, given=[key]) == nothing


def test_auto_reads_the_time_budget_from_the_users_settings():
    from facegan.train.start import new_run_config

    short, why = new_run_config(get_preset("auto"), {"data.path": "builtin", "train.precision": "fp32",
                                                     "train.time_budget": 600.0})
    assert short.preset == AUTO_PRESETS["cpu"][0] and short.model.g_width == SHORT_RUN_WIDTH
    assert short.train.time_budget == 600.0 and "10 minutes" in why
    long, why = new_run_config(get_preset("auto"), {"data.path": "builtin", "train.precision": "fp32",
                                                    "train.time_budget": 3600.0})
    assert long.model.g_width == get_preset(AUTO_PRESETS["cpu"][0]).model.g_width and "wide, since" not in why
    mine, _ = new_run_config(get_preset("auto"), {"data.path": "builtin", "train.precision": "fp32",
                                                  "train.time_budget": 600.0, "model.d_width": 32})
    assert (mine.model.g_width, mine.model.d_width) == (get_preset(AUTO_PRESETS["cpu"][0]).model.g_width, 32)


def test_docs_table_agrees_with_the_code():
    text = DOCS.read_text()
    for hw, (name, _) in AUTO_PRESETS.items():
        assert re.search(rf"\|\s*`{re.escape(hw)}`[^|\n]*\|\s*`{re.escape(name)}`\s*\|", text), hw
    for hw, (name, _) in AUTO_HIGH_RES.items():
        assert re.search(rf"\|\s*`{re.escape(hw)}`, {HIGH_RES} px and above[^|\n]*\|\s*`{re.escape(name)}`\s*\|",
                         text), hw
    assert f"{SMALL_DATA:,}" in text and SMALL_DATA_AUGMENT in text
    assert f"`train.time_budget` of {SHORT_RUN / 60:g} minutes or less" in text
    assert f"`model.g_width={SHORT_RUN_WIDTH} model.d_width={SHORT_RUN_WIDTH}`" in text


def _train(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "facegan", "train", "--data", "builtin", "--steps", "1",
                           "--resolution", "16", "--no-progress", "--out", str(tmp_path / "run"),
                           "model.g_width=4", "model.d_width=4", "model.latent_dim=8", "train.batch_size=8",
                           *args], capture_output=True, text=True, timeout=300)


def test_auto_is_the_default_and_says_what_it_chose(tmp_path):
    from facegan.checkpoint import load_checkpoint

    r = _train(tmp_path, "--max-images", "100", "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "preset auto chose" in x]
    # fp32 asked for: the recipe of a CPU without fast bf16, and 100 images get DiffAugment.
    name = AUTO_PRESETS["cpu"][0]
    assert len(lines) == 1 and name in lines[0] and "DiffAugment" in lines[0] and "100 images" in lines[0]
    cfg = load_checkpoint(tmp_path / "run").get("config")
    assert cfg.preset == name and cfg.train.augment == SMALL_DATA_AUGMENT and cfg.train.precision == "fp32"


def test_the_users_settings_win_over_auto(tmp_path):
    from facegan.checkpoint import load_checkpoint

    r = _train(tmp_path, "--max-images", "100", "train.augment=translation", "train.g_lr=1e-3")
    assert r.returncode == 0, r.stderr
    assert "DiffAugment" not in r.stderr
    cfg = load_checkpoint(tmp_path / "run").get("config")
    assert cfg.train.augment == "translation" and cfg.train.g_lr == 1e-3


def test_auto_keeps_settings_made_on_its_config(tmp_path):
    """The Python API's way: settings applied to get_preset("auto") itself are the user's as
    much as overrides are; the recipe auto chooses keeps them."""
    import json

    from facegan import end_run, start_run

    mine = {"data.path": "builtin", "data.resolution": 16, "data.max_images": 64, "train.steps": 3,
            "train.batch_size": 8, "train.precision": "fp32", "train.device": "cpu",
            "model.g_width": 8, "model.d_width": 8}
    cfg = apply_overrides(get_preset("auto"), mine)
    trainer = start_run(cfg, tmp_path / "run", overrides={"train.seed": 5}, progress=False)
    try:
        got = trainer.cfg
        assert got.preset == AUTO_PRESETS["cpu"][0]  # the recipe was chosen ...
        assert got.train.g_lr == get_preset(AUTO_PRESETS["cpu"][0]).train.g_lr
        assert (got.data.resolution, got.data.max_images, got.train.steps, got.train.batch_size,
                got.model.g_width, got.model.d_width, got.train.seed) == (16, 64, 3, 8, 8, 8, 5)  # ... around them
        assert got.data.path == "builtin" and len(trainer.data) == 64
        # Before any step the folder is a run: its config.json is there for a loop of one's own.
        assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["g_width"] == 8
    finally:
        end_run(trainer)
