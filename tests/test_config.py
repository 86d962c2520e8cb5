import json

import pytest

from facegan.config import PRESETS, Config, apply_overrides, get_preset, validate
from facegan.errors import UserError


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_valid_and_round_trip(name):
    cfg = get_preset(name)
    validate(cfg)
    assert cfg.preset == name
    again = Config.from_json(cfg.to_json())
    assert again == cfg


def test_wgangp_preset_is_the_recipe():
    c = get_preset("wgangp-celeba64")
    assert (c.model.latent_dim, c.loss.gp_weight, c.train.n_critic, c.train.g_lr) == (128, 10.0, 5, 1e-4)
    assert (c.train.beta1, c.train.beta2, c.train.batch_size, c.model.d_norm) == (0.5, 0.9, 64, "instance")
    c = get_preset("wgangp-celeba128")
    assert (c.model.latent_dim, c.data.resolution, c.train.batch_size) == (200, 128, 128)
    c = get_preset("wgan-clip-celeba64")
    assert (c.loss.clip_value, c.train.optimizer, c.train.g_lr, c.loss.gp_weight) == (0.01, "rmsprop", 5e-5, 0)
    c = get_preset("dcgan-celeba64")
    assert (c.loss.name, c.train.beta2, c.model.d_norm, c.train.n_critic) == ("bce", 0.999, "batch", 1)
    assert c.loss.label_smoothing > 0


def test_overrides_dotted_bare_and_types():
    c = apply_overrides(get_preset("demo"), ["train.g_lr=3e-4", "batch_size=16", "hflip=false",
                                             "model.d_norm=none", "data.resolution=16"])
    assert c.train.g_lr == 3e-4 and c.train.batch_size == 16 and c.data.hflip is False
    assert c.model.d_norm == "none" and c.data.resolution == 16


def test_override_errors():
    with pytest.raises(UserError, match="unknown config key 'train.nope'"):
        apply_overrides(get_preset("demo"), ["train.nope=1"])
    with pytest.raises(UserError, match="bad value 'abc' for 'train.steps'"):
        apply_overrides(get_preset("demo"), ["train.steps=abc"])
    with pytest.raises(UserError, match="key=value"):
        apply_overrides(get_preset("demo"), ["steps"])
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_batch_norm_refused_in_gp_critic():
    cfg = apply_overrides(get_preset("wgangp-celeba64"), ["model.d_norm=batch"])
    with pytest.raises(UserError, match="batch norm in a WGAN-GP critic"):
        validate(cfg)


def test_from_dict_tolerates_unknown_and_missing_keys():
    d = json.loads(get_preset("demo").to_json())
    d["train"]["from_the_future"] = 1
    del d["model"]["d_dropout"]
    c = Config.from_dict(d)
    assert c.model.d_dropout == 0.0 and c.train.steps == get_preset("demo").train.steps


def test_every_choice_is_checked_by_validate_with_its_values_named():
    from dataclasses import fields

    from facegan.config import _SECTIONS, field_choices

    checked = 0
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            choices = field_choices(f"{section}.{f.name}")
            if choices is None:
                continue
            bad = 48 if isinstance(choices[0], int) else "nope"
            cfg = apply_overrides(get_preset("demo"), {f"{section}.{f.name}": bad})
            with pytest.raises(UserError) as err:
                cfg.validate()
            msg = str(err.value)
            assert str(bad) in msg and all(str(c) in msg for c in choices) and "\n" not in msg, msg
            checked += 1
    assert checked >= 10
    assert field_choices("train.precision") == ("auto", "fp32", "bf16", "fp16")
    assert field_choices("train.steps") is None


def test_presets_are_a_table_of_one_line_helps_and_overrides():
    from facegan.config import BUDGET

    for name, spec in PRESETS.items():
        assert spec.help and "\n" not in spec.help, name
        assert get_preset(name).preset == name
    ln = get_preset("wgangp-ln-celeba64")
    assert (ln.model.g_width, ln.model.d_width, ln.loss.reg_every, ln.train.n_critic) == (32, 32, 4, 1)
    assert PRESETS["projection-celeba64"].base is BUDGET


def test_parse_overrides_types_values_under_dotted_keys():
    from facegan.config import parse_overrides

    assert parse_overrides(["g_lr=2e-4", "train.steps=10", "hflip=off", "steps=12"]) == {
        "train.g_lr": 2e-4, "train.steps": 12, "data.hflip": False}
    with pytest.raises(UserError, match="bad value 'x' for 'steps'"):
        parse_overrides(["steps=x"])


def test_class_balance_needs_class_labels_from_the_condition():
    cfg = apply_overrides(get_preset("demo"), ["train.class_balance=true"])
    with pytest.raises(UserError, match="class_balance needs class labels"):
        cfg.validate()
    with pytest.raises(UserError, match="gives attributes"):
        apply_overrides(cfg, ["data.condition=Male"]).validate()
    apply_overrides(cfg, ["data.condition=folders"]).validate()
    apply_overrides(cfg, ["data.condition=classes:Male,Smiling"]).validate()


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_seed_outside_what_torch_takes_is_refused_in_one_line(seed):
    # torch.manual_seed aliases negative seeds onto large ones and overflows above 2**64.
    with pytest.raises(UserError, match="train.seed must be a whole number from 0 to"):
        apply_overrides(Config(), [f"train.seed={seed}"]).validate()
    apply_overrides(Config(), [f"train.seed={2**63 - 1}"]).validate()


@pytest.mark.parametrize("text", ["-1", str(2**64), "1.5"])
def test_seed_option_refuses_what_torch_cannot_take(text):
    import argparse

    from facegan.commands.common import seed_value

    with pytest.raises(argparse.ArgumentTypeError, match="whole number from 0 to"):
        seed_value(text)
    assert seed_value("0") == 0 and seed_value(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("overrides, key", [
    ({"train.steps": 3.5}, "train.steps"),  # would train 4 steps and never write the last checkpoint
    ({"train.steps": None}, "train.steps"),
    ({"train.batch_size": True}, "train.batch_size"),
    ({"data.cache_dir": 3}, "data.cache_dir"),
    ({"model.g_sn": 1}, "model.g_sn"),
])
def test_a_value_of_another_type_from_python_is_named_by_validate(overrides, key):
    with pytest.raises(UserError, match=rf"^{key} must be .*, got .*; e\.g\. {key}="):
        apply_overrides(get_preset("demo"), overrides).validate()


def test_python_values_made_their_fields_type_without_loss():
    from pathlib import Path

    cfg = apply_overrides(get_preset("demo"), {
        "data.hflip": "false",  # parsed as on the command line, not a truthy string
        "data.resolution": 16.0,  # a whole float, as JSON and YAML give
        "train.g_lr": "2e-4", "train.d_lr": 1, "data.path": Path("/some/folder")}).validate()
    assert cfg.data.hflip is False and cfg.data.resolution == 16 and type(cfg.data.resolution) is int
    assert cfg.train.g_lr == 2e-4 and type(cfg.train.d_lr) is float and cfg.data.path == "/some/folder"
    assert apply_overrides(get_preset("demo"), "train.steps=5").train.steps == 5  # one string alone
    with pytest.raises(UserError, match="bad value 'maybe' for 'data.hflip'"):
        apply_overrides(get_preset("demo"), {"data.hflip": "maybe"})
    with pytest.raises(TypeError, match="takes a Config first"):
        apply_overrides("demo", {})
    with pytest.raises(TypeError, match="mapping"):
        apply_overrides(get_preset("demo"), None)


@pytest.mark.parametrize("overrides, needle", [
    ({"train.time_budget": float("nan")}, "train.time_budget must be a number of seconds >= 0"),
    ({"train.time_budget": float("inf")}, "train.time_budget must be a number of seconds >= 0"),
    ({"train.n_samples": 0}, "train.n_samples must be >= 1"),
    ({"model.d_dropout": 1.5}, r"model.d_dropout must be in \[0, 1\)"),
])
def test_values_torch_or_the_loop_would_trip_on_are_refused(overrides, needle):
    with pytest.raises(UserError, match=needle):
        apply_overrides(get_preset("demo"), overrides).validate()
