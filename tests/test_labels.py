"""Labels for conditional training: data.condition -> LabelSpec and c, the AC loss, the
conditional trainer (plumbing, resume, class balance) and sampling helpers."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facegan.checkpoint import load_checkpoint, save_checkpoint
from facegan.config import DataConfig, apply_overrides, get_preset
from facegan.data import CELEBA_ATTRIBUTES, load_dataset, resolve_labels
from facegan.data.labels import folder_of
from facegan.errors import UserError
from facegan.labels import UNCONDITIONAL, Condition, LabelSpec, parse_condition
from facegan.losses import ac_loss
from facegan.sampling import generate_by_label_rows, generate_images, load_generator, morph_classes, morph_labels
from facegan.train import build_trainer, resume_trainer
from facegan.train.batches import ClassBalancedSampler

TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.batch_size=8", "train.log_every=1", "train.sample_every=2", "train.checkpoint_every=2",
        "train.n_samples=4", "train.device=cpu", "train.n_critic=2"]


def make_classes(root: Path, classes=(("cat", 40, 12), ("dog", 210, 12)), size=20) -> Path:
    """One sub-folder per class of flat-ish images: (name, grey level, count)."""
    rng = np.random.default_rng(0)
    for name, level, count in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            arr = np.clip(rng.normal(level, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:03d}.png")
    return root


def make_celeba_attrs(root: Path, n=16, seed=0) -> np.ndarray:
    """A tiny CelebA layout (as tests/test_data.py builds), attribute table (n, 40) of 1/-1."""
    rng = np.random.default_rng(seed)
    imgs = root / "img_align_celeba"
    imgs.mkdir(parents=True)
    table = rng.choice([-1, 1], size=(n, 40))
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)).save(imgs / f"{i + 1:06d}.jpg")
    rows = [f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in table[i]) for i in range(n)]
    (root / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n")
    return table


def load(path, **kw):
    kw.setdefault("resolution", 16)
    return load_dataset(DataConfig(path=str(path), **kw), progress=False)


# --------------------------------------------------------------------------------------------
# data.condition -> labels

def test_classes_from_folders(tmp_path):
    root = make_classes(tmp_path / "animals", (("dog", 200, 3), ("cat", 30, 5)))
    data = load(root)
    spec, c = resolve_labels("folders", data)
    assert spec.kind == "class" and spec.names == ("cat", "dog") and spec.counts == (5, 3)
    assert c.shape == (8, 2) and c.dtype == torch.float32
    expected = torch.tensor([0 if n.startswith("cat/") else 1 for n in data.names])
    torch.testing.assert_close(c.argmax(1), expected)
    torch.testing.assert_close(c.sum(1), torch.ones(8))


@pytest.mark.parametrize("wrapped", [False, True])
def test_classes_from_a_zip_match_the_folder(tmp_path, wrapped):
    root = make_classes(tmp_path / "animals", (("cat", 30, 3), ("dog", 200, 4)))
    z = tmp_path / "animals.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            arc = p.relative_to(root.parent if wrapped else root).as_posix()
            zf.write(p, arc)
    spec_z, c_z = resolve_labels("folders", load(z))
    spec_f, c_f = resolve_labels("folders", load(root))
    assert spec_z == spec_f and spec_z.names == ("cat", "dog")
    torch.testing.assert_close(c_z, c_f)


def test_folder_of_unwraps_zip_wrappers_only():
    assert folder_of(["a/cat/1.jpg", "a/dog/2.jpg"], "zip") == ["cat", "dog"]
    assert folder_of(["a/cat/1.jpg", "a/dog/2.jpg"], "folder") == ["a", "a"]
    # one class folder in a zip is that class, not a wrapper
    assert folder_of(["cat/1.jpg", "cat/2.jpg"], "zip") == ["cat", "cat"]
    assert folder_of(["1.jpg", "cat/2.jpg"], "folder") == [None, "cat"]


def test_folder_condition_errors(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (20, 20)).save(flat / "a.png")
    make_classes(flat, (("cat", 30, 2),))
    with pytest.raises(UserError, match="not in a class sub-folder.*'a.png'"):
        resolve_labels("folders", load(flat))
    one = make_classes(tmp_path / "one", (("cat", 30, 2),))
    with pytest.raises(UserError, match="only one class folder \\('cat'\\)"):
        resolve_labels("folders", load(one))
    with pytest.raises(UserError, match="has none"):
        resolve_labels("Male", load(one))


def test_celeba_attributes_and_combination_classes(tmp_path):
    table = make_celeba_attrs(tmp_path)
    data = load(tmp_path)
    i_m, i_s = CELEBA_ATTRIBUTES.index("Male"), CELEBA_ATTRIBUTES.index("Smiling")
    spec, c = resolve_labels("Male, Smiling", data)
    assert spec.kind == "attr" and spec.names == ("Male", "Smiling")
    want = torch.tensor((table[:, [i_m, i_s]] > 0).astype(np.float32))
    torch.testing.assert_close(c, want)
    assert spec.counts == tuple(int(v) for v in want.sum(0))

    spec, c = resolve_labels("classes:Male,Smiling", data)
    assert spec.kind == "class"
    present = sorted({(int(m > 0), int(s > 0)) for m, s in table[:, [i_m, i_s]]})
    assert list(spec.names) == [f"Male={m},Smiling={s}" for m, s in present]
    for row, (m, s) in zip(c, table[:, [i_m, i_s]]):
        assert spec.names[int(row.argmax())] == f"Male={int(m > 0)},Smiling={int(s > 0)}"
    assert sum(spec.counts) == len(data)


def test_unknown_attribute_lists_the_ones_that_exist(tmp_path):
    make_celeba_attrs(tmp_path, n=4)
    with pytest.raises(UserError) as e:
        resolve_labels("Male,Beard", load(tmp_path))
    msg = str(e.value)
    assert "unknown attribute 'Beard'" in msg and "No_Beard" in msg and "\n" not in msg
    with pytest.raises(UserError, match="unknown attribute 'Smile'"):
        resolve_labels("classes:Smile", load(tmp_path))


def test_builtin_attributes():
    data = load_dataset(DataConfig(path="builtin", resolution=16, max_images=32), progress=False)
    spec, c = resolve_labels("glasses,smiling", data)
    torch.testing.assert_close(c, data.labels[:, [data.label_names.index("glasses"),
                                                   data.label_names.index("smiling")]])


def test_unconditional_is_width_zero(tmp_path):
    spec, c = resolve_labels("", load(make_classes(tmp_path / "a")))
    assert spec == UNCONDITIONAL and c.shape == (24, 0)


# --------------------------------------------------------------------------------------------
# AC loss

def test_ac_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # -log softmax at the labelled class, averaged over the two rows
    lse0 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0))
    lse1 = math.log(2 * math.exp(0.5) + math.exp(3.0))
    want = ((lse0 - 2.0) + (lse1 - 0.5)) / 2
    classes = LabelSpec("class", ("a", "b", "c"), (1, 1, 0), 2)
    torch.testing.assert_close(ac_loss(logits, one_hot, classes), torch.tensor(want))

    attrs = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))
    terms = [-(y * math.log(sig(x)) + (1 - y) * math.log(1 - sig(x)))
             for row_x, row_y in zip(logits.tolist(), attrs.tolist()) for x, y in zip(row_x, row_y)]
    attributes = LabelSpec("attr", ("a", "b", "c"), (1, 0, 2), 2)
    torch.testing.assert_close(ac_loss(logits, attrs, attributes), torch.tensor(sum(terms) / 6))
    with pytest.raises(ValueError, match="unconditional"):
        ac_loss(logits, attrs, UNCONDITIONAL)


# --------------------------------------------------------------------------------------------
# Training with labels

def cond_cfg(root, *extra, preset="wgangp-celeba64"):
    return apply_overrides(get_preset(preset), TINY + [f"data.path={root}", "data.condition=folders",
                                                       "model.d_cond=ac", *extra])


def test_trainer_batches_carry_the_real_labels(tmp_path):
    root = make_classes(tmp_path / "animals")
    cfg = cond_cfg(root, "data.hflip=false")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    by_name = {n: (0 if n.startswith("cat/") else 1) for n in data.names}
    for _ in range(4):  # crosses an epoch: 24 images, batch 8
        state = tr.batches.state_dict()
        x, c = tr._real_batch()
        tr.batches.load_state_dict(state)
        idx, _ = tr.batches.next()
        assert c.shape == (8, 2)
        torch.testing.assert_close(c.argmax(1), torch.tensor([by_name[data.names[i]] for i in idx]))
        # the dark class is cats: labels really belong to their images
        torch.testing.assert_close(x.mean((1, 2, 3)) > 0, c.argmax(1) == 1)
    fake_c = tr._fake_labels()
    assert fake_c.shape == (8, 2) and torch.equal(fake_c.sum(1), torch.ones(8))


@pytest.mark.parametrize("extra", [
    [],
    ["train.class_balance=true", "model.g_cond=cbn", "train.augment=translation"],
    ["model.d_cond=projection", "loss.name=hinge", "loss.gp_weight=0", "model.d_sn=true",
     "model.d_norm=none"],
])
def test_conditional_resume_gives_identical_weights(tmp_path, extra):
    root = make_classes(tmp_path / "animals", (("cat", 40, 14), ("dog", 210, 10)))
    cfg = cond_cfg(root, *extra)
    data = load_dataset(cfg.data, progress=False)
    a, b = tmp_path / "a", tmp_path / "b"
    build_trainer(cfg, data, a, progress=False).train(6)
    build_trainer(cfg, data, b, progress=False).train(3)
    tr = resume_trainer(b, data, progress=False)
    assert tr.step == 3
    tr.train(6)
    ca, cb = load_checkpoint(a / "checkpoints" / "latest.pt"), load_checkpoint(b / "checkpoints" / "latest.pt")
    for key in ("G", "D", "G_ema"):
        for k in ca[key]:
            torch.testing.assert_close(ca[key][k], cb[key][k], rtol=0, atol=0, msg=f"{key}.{k}")
    assert ca["labels"] == cb["labels"] == {"kind": "class", "names": ["cat", "dog"],
                                             "counts": [14, 10], "total": 24}
    assert ca["label_dim"] == 2
    lines = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    has_ac = cfg.model.d_cond == "ac"
    assert ("ac_real" in lines[0]) == has_ac and ("ac_fake" in lines[0]) == has_ac
    labels_json = json.loads((b / "labels.json").read_text())
    assert labels_json["balance"]["counts"] == {"cat": 14, "dog": 10}
    assert json.loads((b / "config.json").read_text())["labels"]["names"] == ["cat", "dog"]


def test_class_balanced_sampler_balances_and_resumes():
    y = torch.tensor([0] * 30 + [1] * 3 + [2] * 7)
    s = ClassBalancedSampler(y, 6, seed=1)
    seen = torch.cat([s.next()[0] for _ in range(10)])  # 60 draws = 20 rounds of 3 classes
    torch.testing.assert_close(torch.bincount(y[seen], minlength=3), torch.tensor([20, 20, 20]))
    state = s.state_dict()
    after = [s.next()[0] for _ in range(5)]
    t = ClassBalancedSampler(y, 6, seed=99)
    t.load_state_dict(state)
    for want in after:
        torch.testing.assert_close(t.next()[0], want, rtol=0, atol=0)


def test_class_balance_needs_class_labels(tmp_path):
    make_celeba_attrs(tmp_path / "celeba")
    cfg = apply_overrides(get_preset("wgangp-celeba64"),
                          TINY + [f"data.path={tmp_path / 'celeba'}", "data.condition=Male",
                                  "train.class_balance=true"])
    with pytest.raises(UserError, match="class_balance needs class labels"):
        build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)


def test_celeba_attribute_training_and_sampling(tmp_path):
    make_celeba_attrs(tmp_path / "celeba")
    cfg = apply_overrides(get_preset("cwgangp-celeba64"),
                          TINY + [f"data.path={tmp_path / 'celeba'}", "data.condition=Male,Smiling"])
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    rec = tr.train(2)
    assert math.isfinite(rec["ac_real"]) and math.isfinite(rec["ac_fake"])
    lg = load_generator(tmp_path / "run", device="cpu")
    assert lg.labels.kind == "attr" and lg.labels.names == ("Male", "Smiling")
    imgs = generate_images(lg.generator, 5, seed=0, labels=lg.labels)  # the data's rates
    assert imgs.shape == (5, 3, 16, 16)


def test_v1_checkpoint_loads_as_unconditional(tmp_path):
    root = make_classes(tmp_path / "animals")
    cfg = apply_overrides(get_preset("wgangp-celeba64"), TINY + [f"data.path={root}"])
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    state = tr.state_dict()
    for k in ("labels", "label_dim", "label_draw"):
        state.pop(k)
    import facegan.checkpoint as ck

    old = ck.FORMAT
    ck.FORMAT = "facegan-checkpoint-v1"
    try:
        save_checkpoint(tmp_path / "v1.pt", state)
    finally:
        ck.FORMAT = old
    assert torch.load(tmp_path / "v1.pt", weights_only=True)["format"] == "facegan-checkpoint-v1"
    lg = load_generator(tmp_path / "v1.pt", device="cpu")
    assert lg.labels == UNCONDITIONAL and lg.labels.dim == 0
    assert generate_images(lg.generator, 2).shape == (2, 3, 16, 16)


# --------------------------------------------------------------------------------------------
# Sampling helpers

SPEC_C = LabelSpec("class", ("cat", "dog", "fox"), (10, 30, 60), 100)
SPEC_A = LabelSpec("attr", ("Male", "Smiling"), (90, 10), 100)


def test_label_helpers():
    torch.testing.assert_close(SPEC_C.one_hot("dog", 2), torch.tensor([[0.0, 1, 0], [0, 1, 0]]))
    with pytest.raises(UserError, match="unknown class 'cow'; this model has: cat, dog, fox"):
        parse_condition(SPEC_C, cls="cow")
    with pytest.raises(UserError, match="unconditional.*drop --class"):
        parse_condition(UNCONDITIONAL, cls="cat")
    with pytest.raises(UserError, match="unknown attribute 'Bald'.*Male, Smiling"):
        parse_condition(SPEC_A, attr="Bald=1")
    with pytest.raises(UserError, match="NAME=0 or NAME=1"):
        parse_condition(SPEC_A, attr="Male=2")
    with pytest.raises(UserError, match="attribute labels.*use --attr"):
        parse_condition(SPEC_A, cls="Male")
    cond = parse_condition(SPEC_A, attr="Smiling=1")
    assert cond == Condition(attrs=(("Smiling", 1.0),)) and cond.cli_options() == " --attr Smiling=1"
    c = cond.labels(SPEC_A, 2000, seed=0)
    assert torch.equal(c[:, 1], torch.ones(2000))
    assert abs(c[:, 0].mean().item() - 0.9) < 0.03  # unspecified: the data's rate
    freq = SPEC_C.draw(4000, seed=1).mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.3, 0.6]), atol=0.03, rtol=0)
    assert UNCONDITIONAL.draw(3, seed=1).shape == (3, 0)
    rows, names = SPEC_A.grid_rows()
    assert names == ["Male=0,Smiling=0", "Male=0,Smiling=1", "Male=1,Smiling=0", "Male=1,Smiling=1"]
    torch.testing.assert_close(rows, torch.tensor([[0.0, 0], [0, 1], [1, 0], [1, 1]]))


def test_generate_images_draws_labels_from_the_spec_for_a_seed():
    from facegan.models import DCGANGenerator
    from facegan.sampling import generate, latents

    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=6, resolution=16, width=4, label_dim=3, cond="concat").eval()
    imgs = generate_images(g, 5, seed=4, labels=SPEC_C, batch_size=2)
    want = generate(g, latents(5, 6, 4), SPEC_C.draw(5, seed=4), batch_size=5)
    assert imgs.dtype == torch.uint8 and imgs.shape == (5, 3, 16, 16)
    assert torch.equal(imgs, want)
    assert not torch.equal(imgs, generate_images(g, 5, seed=4, labels=SPEC_C.one_hot("cat", 5)))
    floats = generate(g, latents(5, 6, 4), SPEC_C.draw(5, seed=4), uint8=False)
    assert floats.dtype == torch.float32 and float(floats.abs().max()) <= 1.0
    assert generate(g, latents(0, 6, 4), torch.zeros(0, 3)).shape == (0, 3, 16, 16)
    with pytest.raises(UserError, match="5 latents but 4 label rows"):
        generate(g, latents(5, 6, 4), SPEC_C.draw(4))
    with pytest.raises(UserError, match="unknown class 'cow'"):
        morph_classes(g, SPEC_C, "cat", "cow")
    with pytest.raises(UserError, match="unconditional.*drop --from-class"):
        morph_classes(g, UNCONDITIONAL, "cat", "dog")


def test_grid_rows_share_the_noise_and_morph_ends_at_the_classes(tmp_path):
    root = make_classes(tmp_path / "animals")
    cfg = cond_cfg(root, "model.g_cond=cbn")
    build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False).train(2)
    lg = load_generator(tmp_path / "run", device="cpu")
    g, spec = lg.generator, lg.labels
    rows, names = spec.grid_rows()
    grid = generate_by_label_rows(g, rows, 3, seed=5, batch_size=2)
    assert grid.shape == (6, 3, 16, 16) and names == ["cat", "dog"]
    for r, name in enumerate(names):
        torch.testing.assert_close(grid[3 * r:3 * r + 3],
                                   generate_images(g, 3, seed=5, labels=spec.one_hot(name, 3)))
    assert not torch.equal(grid[:3], grid[3:])  # the label matters
    frames = morph_classes(g, spec, "cat", "dog", rows=3, steps=4, seed=5)
    assert frames.shape == (3, 4, 3, 16, 16)
    torch.testing.assert_close(frames[:, 0], grid[:3])  # same latents, ends at the classes
    torch.testing.assert_close(frames[:, -1], grid[3:])


def test_an_attribute_morph_moves_the_set_attributes_and_keeps_the_others():
    spec = LabelSpec("attr", ("Male", "Smiling", "Young"), (5, 5, 5), 10)
    seen = []

    class Recorder(torch.nn.Module):
        latent_dim, label_dim, resolution = 6, 3, 16

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, c):
            seen.append(c.clone())
            return torch.zeros(z.shape[0], 3, 16, 16)

    ends = [parse_condition(spec, attr=a).labels(spec, 4, seed=7) for a in ("Smiling=0", "Smiling=1")]
    frames = morph_labels(Recorder(), *ends, steps=5, seed=7)
    assert frames.shape == (4, 5, 3, 16, 16)
    c = torch.cat(seen).view(4, 5, 3)
    torch.testing.assert_close(c[:, :, 1], torch.linspace(0, 1, 5).expand(4, 5))  # Smiling 0 -> 1
    assert torch.equal(c[:, :1, [0, 2]].expand(4, 5, 2), c[:, :, [0, 2]])  # the others fixed per row
    with pytest.raises(UserError, match="attribute labels .*use --from-attr"):
        morph_classes(Recorder(), spec, "Male", "Young")


# --------------------------------------------------------------------------------------------
# Does conditioning work? A tiny model learns red vs blue.

@pytest.mark.slow
@pytest.mark.parametrize("preset,steps,extra", [
    ("cwgangp-animals64", 600, []),
    ("projection-celeba64", 400, []),
])
def test_conditional_model_draws_the_asked_class(tmp_path, preset, steps, extra):
    rng = np.random.default_rng(0)
    root = tmp_path / "rb"
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for i in range(64):
            arr = np.clip(rng.normal(colour, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    cfg = apply_overrides(get_preset(preset), [
        "data.resolution=16", "model.latent_dim=16", "model.g_width=16", "model.d_width=16",
        "train.batch_size=32", "train.device=cpu", "train.log_every=50", "train.sample_every=100000",
        "train.checkpoint_every=100000", "train.n_samples=4", "train.augment=", "train.ema_decay=0",
        "data.condition=folders", f"data.path={root}", *extra])
    tr = build_trainer(cfg, load_dataset(cfg.data, progress=False), tmp_path / "run", progress=False)
    tr.train(steps)
    g = tr.sample_generator.eval()
    for name, sign in (("red", 1), ("blue", -1)):
        imgs = generate_images(g, 64, seed=1, labels=tr.label_spec.one_hot(name, 64)).float()
        # the fixed classifier: red if the mean red channel beats the mean blue one
        redder = imgs[:, 0].mean((1, 2)) > imgs[:, 2].mean((1, 2))
        accuracy = (redder == (sign > 0)).float().mean().item()
        assert accuracy >= 0.9, f"{name}: {accuracy:.2f} of samples look {name} (chance 0.5)"


def test_real_celeba_condition(celeba_dir):
    data = load_dataset(DataConfig(path=str(celeba_dir), resolution=16, max_images=300), progress=False)
    spec, c = resolve_labels("classes:Male,Smiling", data)
    assert spec.names == ("Male=0,Smiling=0", "Male=0,Smiling=1", "Male=1,Smiling=0", "Male=1,Smiling=1")
    i = data.label_names.index("Male")
    male = sum(n for name, n in zip(spec.names, spec.counts) if name.startswith("Male=1"))
    assert male == int(data.labels[:, i].sum())
    assert 0.2 < male / 300 < 0.7  # CelebA is about 42% male


def test_ac_weight_enters_both_losses(tmp_path):
    root = make_classes(tmp_path / "animals")
    cfg = cond_cfg(root, "loss.gp_weight=0", "train.augment=", "train.precision=fp32")
    data = load_dataset(cfg.data, progress=False)
    tr = build_trainer(cfg, data, tmp_path / "run", progress=False)
    # With the adversarial losses zeroed, the critic's only gradient is lambda * dL_AC(real).
    import dataclasses

    tr.loss = dataclasses.replace(tr.loss, ac_weight=0.5, d_loss=lambda r, f: 0 * (r.sum() + f.sum()),
                                  g_loss=lambda f: 0 * f.sum())
    tr.opt_d = torch.optim.SGD(tr.D.parameters(), lr=0.0)
    state = tr.batches.state_dict()
    stats = tr.critic_step()
    tr.batches.load_state_dict(state)
    x, c = tr._real_batch()
    _, aux = tr.D(x, c)
    head = next(tr.D.ac.parameters())  # the AC head's weight
    want = torch.autograd.grad(0.5 * F.cross_entropy(aux, c.argmax(1)), head)[0]
    torch.testing.assert_close(head.grad, want)
    torch.testing.assert_close(stats["ac_real"], F.cross_entropy(aux, c.argmax(1)).detach())
    cfg0 = apply_overrides(cfg, ["loss.ac_weight=0"])
    tr0 = build_trainer(cfg0, data, tmp_path / "run0", progress=False)
    assert "ac_real" not in tr0.critic_step() and "ac_fake" not in tr0.generator_step()
