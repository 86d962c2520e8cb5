"""The Python API given natural-but-wrong inputs from a notebook: a LoadedGenerator where a
network is taken, wrong shapes, dtypes and counts, ``~`` in paths, a call inside
``torch.no_grad()``. Each gets the right result or a one-line error naming the fix, never a
deep torch / PIL / pathlib traceback. Tiny: 16 px, width 4, a few steps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_evaluate import _tiny_cfg, fake_net, run_dir  # noqa: F401  (fixtures)

import facegan
from facegan.errors import UserError
from facegan.labels import UNCONDITIONAL, Condition, LabelSpec, parse_condition
from facegan.models import DCGANGenerator
from facegan.runtime import resolve_device, resolve_precision
from facegan.sampling import LoadedGenerator, generate, generate_images, latents, load_generator, save_grid

SPEC_C = LabelSpec("class", ("cat", "dog", "fox"), (10, 30, 60), 100)
SPEC_A = LabelSpec("attr", ("Male", "Smiling"), (90, 10), 100)


def _g(label_dim: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    return DCGANGenerator(latent_dim=8, resolution=16, width=4, label_dim=label_dim,
                          cond="concat" if label_dim else None).eval()


def _loaded(g: torch.nn.Module, spec: LabelSpec = UNCONDITIONAL) -> LoadedGenerator:
    return LoadedGenerator(g, _tiny_cfg(), 0, None, Path("x.pt"), False, spec)


# ---- sampling ---------------------------------------------------------------------------------

def test_a_loaded_generator_is_taken_where_a_network_is():
    g = _g(3)
    lg = _loaded(g, SPEC_C)
    z = latents(4, 8, seed=1)
    assert torch.equal(generate(lg, z, SPEC_C.draw(4, seed=1)), generate(g, z, SPEC_C.draw(4, seed=1)))
    # generate_images draws a LoadedGenerator's labels from its spec when none are given
    assert torch.equal(generate_images(lg, 4, seed=2), generate_images(g, 4, seed=2, labels=SPEC_C))


def test_a_conditional_generator_without_labels_says_to_pass_them():
    g = _g(3)
    with pytest.raises(UserError, match=r"conditional.*labels=lg\.labels"):
        generate_images(g, 4)
    with pytest.raises(UserError, match=r"conditional.*float \(N, 3\).*got NoneType"):
        generate(g, latents(4, 8, seed=0), None)
    # unconditional: c=None means no labels
    u = _g()
    assert torch.equal(generate(u, latents(2, 8, seed=0), None), generate(u, latents(2, 8, seed=0),
                                                                            torch.zeros(2, 0)))


@pytest.mark.parametrize("kw,err,match", [
    ({"batch_size": -1}, UserError, "batch_size.*at least 1, got -1"),
    ({"batch_size": 0}, UserError, "batch_size.*at least 1, got 0"),
    ({"n": -1}, UserError, "n must be at least 0, got -1"),
    ({"n": 2.5}, TypeError, "n must be a whole number.*2.5"),
    ({"seed": None}, TypeError, "seed must be a whole number.*None"),
])
def test_generate_images_counts(kw, err, match):
    args = {"n": 2, **kw}
    with pytest.raises(err, match=match):
        generate_images(_g(), args.pop("n"), **args)


def test_latents_counts_and_seed():
    with pytest.raises(UserError, match="n must be at least 0, got -3"):
        latents(-3, 8, seed=0)
    with pytest.raises(TypeError, match="seed must be a whole number"):
        latents(2, 8, seed=None)
    with pytest.raises(TypeError, match="dim.*must be a whole number.*got a LoadedGenerator"):
        latents(2, _loaded(_g()), seed=0)
    assert latents(0, 8, seed=0).shape == (0, 8)


def test_latents_of_the_wrong_shape_or_dtype():
    g = _g()
    with pytest.raises(UserError, match=r"z must be float \(N, 8\).*got \(8,\)"):
        generate(g, torch.randn(8), torch.zeros(1, 0))
    with pytest.raises(UserError, match=r"z must be float \(N, 8\).*got \(2, 5\)"):
        generate(g, torch.randn(2, 5), torch.zeros(2, 0))
    with pytest.raises(UserError, match="z must be float.*torch.int64"):
        generate(g, torch.ones(2, 8, dtype=torch.long), torch.zeros(2, 0))
    with pytest.raises(TypeError, match="z must be a torch tensor"):
        generate(g, np.zeros((2, 8), dtype=np.float32), torch.zeros(2, 0))
    with pytest.raises(UserError, match=r"2 latents but 3 label rows"):
        generate(g, torch.randn(2, 8), torch.zeros(3, 0))
    z = latents(3, 8, seed=0)
    want = generate(g, z, None)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):  # cast to the generator's dtype
        assert int((generate(g, z.to(dtype), None).int() - want.int()).abs().max()) <= 8


def test_a_generator_in_train_mode_samples_in_eval_mode_and_stays_in_train_mode():
    g = _g().train()
    stats = {k: v.clone() for k, v in g.state_dict().items() if "running" in k}
    z = latents(6, 8, seed=0)
    a = generate(g, z, None, batch_size=6)
    b = generate(g, z, None, batch_size=2)
    assert g.training
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in stats.items())  # running stats kept
    assert int((a.int() - b.int()).abs().max()) <= 1  # not the batch's statistics
    assert torch.equal(a, generate(g.eval(), z, None))


def test_save_grid_checks_its_images_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    imgs = generate(_g(), latents(4, 8, seed=0), None)
    assert save_grid(imgs, "~/grid.png") == tmp_path / "grid.png" and (tmp_path / "grid.png").is_file()
    floats = generate(_g(), latents(4, 8, seed=0), None, uint8=False)
    with pytest.raises(UserError, match=r"uint8 \(N, 3, H, W\) in 0\.\.255.*generate\(\.\.\., uint8=True\)"):
        save_grid(floats, tmp_path / "f.png")
    with pytest.raises(UserError, match="no images"):
        save_grid(imgs[:0], tmp_path / "e.png")
    with pytest.raises(UserError, match=r"uint8 \(N, 3, H, W\).*got \(3, 16, 16\)"):
        save_grid(imgs[0], tmp_path / "one.png")
    with pytest.raises(UserError, match="nrow.*at least 1, got -2"):
        save_grid(imgs, tmp_path / "n.png", nrow=-2)
    assert not list(tmp_path.glob("[fen]*.png"))


def test_load_generator_leaves_the_global_random_state_alone(run_dir):
    before = torch.get_rng_state()
    load_generator(run_dir)
    assert torch.equal(torch.get_rng_state(), before)


def test_load_generator_on_a_missing_gpu_is_a_user_error(run_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="no CUDA GPU"):
        load_generator(run_dir, device=torch.device("cuda"))


# ---- labels -----------------------------------------------------------------------------------

def test_parse_condition_takes_a_class_index_a_dict_and_a_loaded_generator():
    assert parse_condition(SPEC_C, cls=0) == Condition(cls="cat")
    assert parse_condition(SPEC_C, cls=2) == Condition(cls="fox")
    with pytest.raises(UserError, match=r"class index 3 .*0\.\.2.*cat, dog, fox"):
        parse_condition(SPEC_C, cls=3)
    with pytest.raises(UserError, match="unconditional.*drop --class"):
        parse_condition(UNCONDITIONAL, cls=0)
    assert parse_condition(SPEC_A, attr={"Smiling": 1}) == parse_condition(SPEC_A, attr="Smiling=1")
    assert parse_condition(SPEC_A, attr={"Male": False, "Smiling": True}).attrs == (("Male", 0.0),
                                                                                   ("Smiling", 1.0))
    with pytest.raises(UserError, match="NAME=0 or NAME=1"):
        parse_condition(SPEC_A, attr={"Male": 2})
    with pytest.raises(TypeError, match="attr takes"):
        parse_condition(SPEC_A, attr=["Male"])
    with pytest.raises(TypeError, match="cls takes"):
        parse_condition(SPEC_C, cls=1.0)
    assert parse_condition(_loaded(_g(3), SPEC_C), cls="dog") == Condition(cls="dog")
    with pytest.raises(TypeError, match="LabelSpec.*NoneType"):
        parse_condition(None, cls="dog")


def test_unknown_names_and_negative_counts_in_labels():
    with pytest.raises(UserError, match="unknown class 'wolf'; this model has: cat, dog, fox"):
        SPEC_C.one_hot("wolf", 2)
    other = LabelSpec("class", ("cat", "wolf"), (1, 1), 2)
    with pytest.raises(UserError, match="unknown class 'wolf'; this model has: cat, dog, fox"):
        parse_condition(other, cls="wolf").labels(SPEC_C, 2)
    with pytest.raises(UserError, match="unknown attribute 'Bald'; this model has: Male, Smiling"):
        Condition(attrs=(("Bald", 1.0),)).labels(SPEC_A, 2)
    with pytest.raises(UserError, match="at least 0.*got -1"):
        SPEC_C.draw(-1)
    with pytest.raises(UserError, match="at least 0.*got -1"):
        UNCONDITIONAL.draw(-1)


# ---- runtime ----------------------------------------------------------------------------------

def test_devices_as_strings_and_unavailable_gpus():
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    assert resolve_precision("fp32", "cpu") == "fp32"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device(torch.device("cuda"))
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


# ---- projection -------------------------------------------------------------------------------

@pytest.fixture
def lg_and_photo(run_dir, tmp_path):
    lg = load_generator(run_dir)
    face = generate(lg.generator, latents(1, lg.generator.latent_dim, seed=3), lg.labels.empty(1))[0]
    path = tmp_path / "me.png"
    Image.fromarray(face.permute(1, 2, 0).numpy()).save(path)
    return lg, path


FAST = {"steps": 2, "encoder_steps": 2, "features": "none", "progress": False}


def test_project_takes_one_path_and_expands_home(lg_and_photo, monkeypatch):
    lg, path = lg_and_photo
    monkeypatch.setenv("HOME", str(path.parent))
    (one,) = facegan.project(lg, str(path), **FAST)
    (two,) = facegan.project(lg, "~/me.png", **FAST)
    assert one.name == two.name == "me" and torch.equal(one.latent, two.latent)
    (pil,) = facegan.project(lg, Image.open(path), **FAST)  # a PIL image alone, too
    assert pil.latent.shape == (lg.generator.latent_dim,)


def test_project_refuses_what_is_not_a_photo(lg_and_photo):
    lg, _ = lg_and_photo
    for bad in (torch.zeros(3, 16, 16), np.zeros((16, 16, 3)), [torch.zeros(3, 16, 16)]):
        with pytest.raises(TypeError, match="photos are image files"):
            facegan.project(lg, bad, **FAST)
    with pytest.raises(TypeError, match="steps must be a whole number.*2.5"):
        facegan.project(lg, ["x.png"], **{**FAST, "steps": 2.5})


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_project_inside_no_grad(lg_and_photo, mode):
    lg, path = lg_and_photo
    with mode():
        (p,) = facegan.project(lg, [path], **FAST)
    assert torch.isfinite(p.latent).all()


def test_load_latent_takes_a_loaded_generator_and_refuses_a_text_dim(tmp_path, monkeypatch):
    lg = _loaded(_g())
    np.save(tmp_path / "a.latent.npy", np.zeros(8, dtype=np.float32))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert facegan.load_latent("~/a.latent.npy", lg).shape == (8,)
    with pytest.raises(TypeError, match="latent_dim must be .*int.*'64'"):
        facegan.load_latent(tmp_path / "a.latent.npy", "64")
    with pytest.raises(UserError, match=r"has shape \(8,\), but this generator's latent is \(64,\)"):
        facegan.load_latent(tmp_path / "a.latent.npy", 64)


# ---- evaluation -------------------------------------------------------------------------------

def test_evaluate_warns_by_default(fake_net, run_dir):
    with pytest.warns(UserWarning, match="FID on 20 generated .* unreliable"):
        facegan.evaluate(run_dir, "builtin", n=20, metrics=["fid"], progress=False)


def test_evaluate_refuses_a_loaded_generator_and_a_fractional_n(run_dir):
    lg = load_generator(run_dir)
    with pytest.raises(TypeError, match="run folder or checkpoint path.*lg.checkpoint"):
        facegan.evaluate(lg, "builtin", n=20)
    with pytest.raises(TypeError, match="n must be a whole number.*2.5"):
        facegan.evaluate(run_dir, "builtin", n=2.5)
    assert os.path.isdir(run_dir)
