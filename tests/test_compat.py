"""Behaviour kept across refactors: the fixtures in tests/fixtures/v0 were written by an earlier
facegan (the presets' resolved configs, three tiny checkpoints at step 3 and the pixels they and
their resumed step-5 runs sample). Each must still load, sample the same pixels and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facegan.config import PRESETS, Config, get_preset
from facegan.sampling import generate_images, load_generator

FIX = Path(__file__).parent / "fixtures" / "v0"
RUNS = ["uncond", "cond", "cls"]


def test_every_preset_resolves_to_the_same_config_field_by_field():
    """Every earlier preset is still there with the same values; a field added since holds its
    default in them, a value that keeps the earlier behaviour (new recipes are new presets)."""
    before = json.loads((FIX / "presets_resolved.json").read_text())
    assert set(before) <= set(PRESETS)
    defaults = Config().to_dict()
    for name, fields in before.items():
        now = get_preset(name).to_dict()
        for section, values in now.items():
            if not isinstance(values, dict):
                assert values == fields[section], name
                continue
            for key, value in values.items():
                expected = fields[section].get(key, defaults[section][key])
                assert value == expected, f"{name}: {section}.{key}"


@pytest.mark.parametrize("run", RUNS)
def test_old_checkpoint_samples_the_same_pixels(run):
    pixels = np.load(FIX / "pixels.npz")
    lg = load_generator(FIX / f"{run}.pt")
    assert lg.step == 3
    np.testing.assert_array_equal(generate_images(lg.generator, 8, seed=0, labels=lg.labels).numpy(), pixels[run])


@pytest.mark.parametrize("run", RUNS)
def test_old_checkpoint_resumes_to_the_same_weights(run, tmp_path):
    out = tmp_path / "resumed"
    r = subprocess.run([sys.executable, "-m", "facegan", "train", "--resume", str(FIX / f"{run}.pt"),
                        "--out", str(out), "--steps", "5", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lg = load_generator(out)
    assert lg.step == 5
    pixels = np.load(FIX / "pixels.npz")
    np.testing.assert_array_equal(generate_images(lg.generator, 8, seed=0, labels=lg.labels).numpy(),
                                  pixels[f"{run}_resumed5"])
