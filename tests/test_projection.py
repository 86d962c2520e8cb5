"""GAN inversion (facegan.projection, `facegan project`) and editing / morphing projected faces
from latent files (`facegan edit --latent`, `facegan morph --from --to`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import facegan

from facegan import projection as P
from facegan.config import DataConfig
from facegan.data.transforms import decode_image
from facegan.errors import UserError
from facegan.labels import LabelSpec
from facegan.sampling import generate, latents, load_generator

# A 16 px WGAN-GP on the built-in faces, trained just long enough (high learning rates) that
# different latents draw visibly different images: the projection test needs that.
RUN = {"data.resolution": 16, "data.max_images": 256, "model.latent_dim": 16, "model.g_width": 8,
       "model.d_width": 8, "train.batch_size": 16, "train.n_samples": 4, "train.steps": 60,
       "train.log_every": 30, "train.sample_every": 1000, "train.checkpoint_every": 1000,
       "train.n_critic": 1, "train.g_lr": 2e-3, "train.d_lr": 2e-3, "train.ema_decay": 0.9}
ENCODER_STEPS = 60
STEPS = 100


@pytest.fixture(scope="module")
def one_thread():
    # Tiny networks: one thread is faster than two contending for small convolutions.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def proj(tmp_path_factory, one_thread):
    """The tiny run, three of its own faces G(z*) as PNGs, and their projections (saved)."""
    import facegan

    tmp = tmp_path_factory.mktemp("projection")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGAN_CACHE", str(tmp / "cache"))
        cfg = facegan.apply_overrides(facegan.get_preset("demo"), RUN)
        run = facegan.train(cfg, tmp / "run", progress=False)
        lg = load_generator(run)
        z_true = latents(3, lg.generator.latent_dim, seed=123)
        faces = generate(lg.generator, z_true, lg.labels.empty(3))
        pngs = []
        for i, im in enumerate(faces):
            pngs.append(tmp / f"face{i}.png")
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(pngs[-1])
        results = facegan.project(lg, pngs, steps=STEPS, encoder_steps=ENCODER_STEPS, progress=False)
        out = tmp / "out"
        for r in results:
            P.save_projection(r, out)
        yield {"run": run, "lg": lg, "z": z_true, "faces": faces, "pngs": pngs,
               "results": results, "out": out, "tmp": tmp,
               "env": {**os.environ, "FACEGAN_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}}


def _main(capsys, *args):
    """The CLI in this process: (exit status, stdout, the stderr lines)."""
    from facegan.commands import main

    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, [ln for ln in cap.err.strip().splitlines() if ln.strip()]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same uint8 image up to one level (a batch of another size may round differently)."""
    return int((a.int() - b.int()).abs().max()) <= 1


def _one_line_error(capsys, *args) -> str:
    code, _, lines = _main(capsys, *args)
    assert code == 2 and lines and lines[-1].startswith("facegan: error: "), lines
    assert not any("Traceback" in ln for ln in lines), lines
    return lines[-1]


# ---- metrics --------------------------------------------------------------------------------------

def test_psnr_and_ssim_by_hand():
    a = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    b = a + 10  # MSE 100: PSNR = 10 log10(255^2 / 100)
    assert P.psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 100), abs=1e-9)
    assert P.psnr(a, a) == float("inf")
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    assert P.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    scores = []
    for sigma in (5, 20, 60):
        noisy = (img.double() + sigma * torch.randn(img.shape, generator=g, dtype=torch.float64))
        scores.append(P.ssim(img, noisy.clamp(0, 255).round().to(torch.uint8)))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    # constant images: only the luminance term, (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = (0.01 * 255) ** 2
    assert P.ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1), rel=1e-9)


def test_preprocess_is_the_training_decoder(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(arr).save(path)
    cfg = DataConfig(path="builtin", resolution=16, crop="auto")
    u8, f = P.preprocess(Image.open(path), cfg)
    want = torch.from_numpy(decode_image(path.read_bytes(), "center", 16).copy()).permute(2, 0, 1)
    assert u8.dtype == torch.uint8 and tuple(u8.shape) == (3, 16, 16) and torch.equal(u8, want)
    assert f.dtype == torch.float32 and float(f.min()) >= -1 and float(f.max()) <= 1
    assert torch.equal(P.load_photo(path, cfg).target, want)
    # 'auto' is the CelebA face box only for a photo framed as CelebA's aligned images are
    celeba = DataConfig(path=str(tmp_path / "not-here"), resolution=16, crop="auto")
    assert P.photo_crop(celeba, (178, 218)) == "celeba" and P.photo_crop(celeba, (44, 30)) == "center"
    assert P.photo_crop(cfg, (178, 218)) == "center"  # trained on the built-in faces
    assert P.photo_crop(cfg, (44, 30), crop="none") == "none"
    # the alignment hook runs first, on the decoded photo
    flipped = P.load_photo(path, cfg, align=lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert torch.equal(flipped.target, P.preprocess(Image.fromarray(arr[:, ::-1].copy()), cfg)[0])


# ---- projection -----------------------------------------------------------------------------------

def test_projecting_the_generators_own_faces_recovers_them(proj):
    lg, faces = proj["lg"], proj["faces"]
    rand = generate(lg.generator, latents(32, lg.generator.latent_dim, seed=7), lg.labels.empty(32))
    for res, face in zip(proj["results"], faces):
        best_random = max(P.psnr(r, face) for r in rand)
        print(f"{res.name}: projection {res.psnr:.1f} dB, encoder guess {res.guess_psnr:.1f} dB, "
              f"best of 32 random latents {best_random:.1f} dB, SSIM {res.ssim:.4f}")
        assert torch.equal(res.target, face)  # a 16 px PNG is taken as it is
        assert res.psnr > best_random + 10 and res.psnr > 35, (res.psnr, best_random)
        assert res.psnr > res.guess_psnr and res.ssim > 0.95
        assert res.feature_distance is not None and 0 <= res.feature_distance < 0.05
        assert res.latent.dtype == torch.float32 and tuple(res.latent.shape) == (16,)
        assert torch.equal(generate(lg.generator, res.latent[None], lg.labels.empty(1))[0], res.image)


def test_the_encoder_is_cached_per_checkpoint_step(proj, tmp_path, capsys, one_thread):
    alone = tmp_path / "ck" / "latest.pt"  # outside a run: encoder.pt beside it
    alone.parent.mkdir()
    shutil.copy(proj["run"] / "checkpoints" / "latest.pt", alone)
    lg = load_generator(alone)
    cache = tmp_path / "ck" / "encoder.pt"
    enc, trained = P.encoder_for(lg, steps=20)
    assert trained and cache.is_file() and "none cached yet" in capsys.readouterr().err
    saved = torch.load(cache, weights_only=True)
    assert saved["checkpoint_step"] == lg.step and saved["training"]["steps"] == 20
    again, trained = P.encoder_for(lg, steps=20)
    assert not trained and "encoder: read" in capsys.readouterr().err
    for k, v in enc.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    later = dataclasses.replace(lg, step=lg.step + 5)  # the run trained on: another checkpoint
    _, trained = P.encoder_for(later, steps=20)
    assert trained and f"the cached one is for step {lg.step}" in capsys.readouterr().err
    assert torch.load(cache, weights_only=True)["checkpoint_step"] == lg.step + 5
    assert P.encoder_for(later, steps=20, progress=False)[1] is False
    assert P.encoder_for(later, steps=21, progress=False)[1] is True  # other settings
    cache.write_bytes(b"not a torch file")
    assert P.encoder_for(later, steps=21, progress=False)[1] is True  # damaged: trained again
    assert P.encoder_for(later, steps=21, progress=False)[1] is False


def test_a_conditional_run_needs_the_photos_labels(proj):
    spec = LabelSpec("attr", ("Male", "Smiling"), (5, 5), 10)
    lg = dataclasses.replace(proj["lg"], labels=spec)
    with pytest.raises(UserError, match="conditional.*--attr"):
        P.project(lg, proj["pngs"][:1], progress=False)


def test_cli_project_writes_four_files_per_photo(proj, tmp_path):
    photo = tmp_path / "holiday.jpg"  # not square, not 16 px: center crop and resize
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "D"
    r = facegan("project", proj["run"], proj["pngs"][0], photo, "--out", out, "--steps", 20,
                "--encoder-steps", 20, "--no-align", env=proj["env"])
    assert r.returncode == 0, r.stderr
    assert "encoder: training it" in r.stderr and "projection: step" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}{ext}" for n in ("face0", "holiday") for ext in (".latent.npy", ".crop.png", ".png", ".json"))
    z = np.load(out / "face0.latent.npy", allow_pickle=False)
    assert z.shape == (16,) and z.dtype == np.float32
    doc = json.loads((out / "holiday.json").read_text())
    assert doc["psnr"] > 0 and 0 < doc["ssim"] <= 1 and doc["crop"] == "center"
    assert doc["steps"] == 20 and set(doc["seconds"]) == {"encoder_guess", "optimisation"}
    assert Image.open(out / "holiday.png").size == (3 * 18 + 2, 18 + 2)  # photo, crop, projection
    assert "face0: PSNR" in r.stdout


def test_cli_project_bad_photos(proj, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", proj["env"]["FACEGAN_CACHE"])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(proj["pngs"][0].read_bytes()[:120])
    out = tmp_path / "D"
    run, good = proj["run"], proj["pngs"][0]
    cases = [((good, text), "notes.jpg' is not an image"), ((tmp_path / "gone.png",), "gone.png' does not exist"),
             ((good, truncated), "cut.png' is damaged or truncated"),
             ((good, good), "would both write face0.png")]
    for photos, needle in cases:
        assert needle in _one_line_error(capsys, "project", run, *photos, "--out", out)
        assert not out.exists()  # nothing written, not even the folder
    line = _one_line_error(capsys, "project", run, good, "--out", out, "--class", "cat", "--no-align")
    assert "unconditional" in line and not out.exists()
    # Aligning needs a face in the run's training images: the tiny run's 16 px drawn faces
    # have none that the detector finds, which is one line too, naming the way out.
    pytest.importorskip("facenet_pytorch")
    line = _one_line_error(capsys, "project", run, good, "--out", out)
    assert "--no-align" in line and not out.exists()


def test_cli_project_aligns_a_photo_to_the_runs_template(celeba_dir, tmp_path):
    """A CelebA face turned and shifted inside a larger photo is found, aligned to the run's
    template (mean landmarks of its training crops, kept in RUN/face_template.json) and
    projected; the aligned crop matches the training crop of the same image."""
    pytest.importorskip("facenet_pytorch")
    import facegan as fg
    from facegan.align import detect_faces

    cfg = fg.apply_overrides(fg.get_preset("wgangp-ln-celeba64"), [
        f"data.path={celeba_dir}", "data.max_images=64", "data.partition=all", "model.g_width=4",
        "model.d_width=4", "model.latent_dim=8", "train.batch_size=8", "train.steps=1", "train.device=cpu"])
    env = {**os.environ, "FACEGAN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGAN_CACHE", env["FACEGAN_CACHE"])
        run = fg.train(cfg, tmp_path / "run", progress=False)
    src = Image.open(celeba_dir / "img_align_celeba" / "000001.jpg").convert("RGB")
    photo = Image.new("RGB", (400, 360), (90, 120, 150))
    photo.paste(src.resize((src.width * 2, src.height * 2)).rotate(12, expand=False), (90, 50))
    photo.save(tmp_path / "holiday.jpg")
    out = tmp_path / "D"
    r = facegan("project", run, tmp_path / "holiday.jpg", "--out", out, "--steps", 2, "--encoder-steps", 2,
                env=env)
    assert r.returncode == 0, r.stderr
    template = json.loads((run / "face_template.json").read_text())
    assert template["resolution"] == 64 and len(template["landmarks"]) == 5
    # The side-by-side PNG: photo, aligned crop, projection; the crop has the face where the
    # training crops have it (its eyes within a few pixels of the template's).
    strip = Image.open(out / "holiday.png")
    crop = strip.crop((2 + 66, 2, 2 + 66 + 64, 2 + 64)).resize((256, 256), Image.BICUBIC)  # cell 1, padding 2
    faces = detect_faces(crop)
    assert faces, "no face in the aligned crop"
    eyes = faces[0].landmarks[:2] / 4.0
    assert np.abs(eyes - np.asarray(template["landmarks"])[:2]).max() < 4.0


# ---- edit and morph a projected face ----------------------------------------------------------------

def test_edit_and_morph_from_latent_files(proj, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", proj["env"]["FACEGAN_CACHE"])
    run, out = proj["run"], proj["out"]
    a, b = out / "face0.latent.npy", out / "face1.latent.npy"
    assert _main(capsys, "directions", run, "--unsupervised", 2)[0] == 0
    tile = lambda im, r_, c_: im[2 + 18 * r_: 18 + 18 * r_, 2 + 18 * c_: 18 + 18 * c_].astype(int)
    strip = lambda name: np.asarray(Image.open(out / f"{name}.png"))  # photo | crop | projection
    crop = lambda name: np.asarray(Image.open(out / f"{name}.crop.png")).astype(int)
    for name in ("face0", "face1"):
        assert np.array_equal(crop(name), tile(strip(name), 0, 1))
    # By default an edit keeps the photo's detail: strength 0 (the middle column) is the photo's
    # crop itself; with --no-detail it is the projection.
    code, stdout, _ = _main(capsys, "edit", run, "--latent", a, "--latent", b, "--attr", "sefa_0",
                            "--strength", "-2:2", "--steps", 3, "--out", tmp_path / "edit.png")
    assert code == 0 and "2 rows x 3 columns" in stdout and "each photo's own detail kept" in stdout
    grid = np.asarray(Image.open(tmp_path / "edit.png"))
    assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 3)
    assert np.array_equal(tile(grid, 0, 1), crop("face0")) and np.array_equal(tile(grid, 1, 1), crop("face1"))
    code, stdout, _ = _main(capsys, "edit", run, "--latent", a, "--latent", b, "--attr", "sefa_0",
                            "--strength", "-2:2", "--steps", 3, "--out", tmp_path / "bare.png", "--no-detail")
    assert code == 0 and "the projections alone" in stdout
    bare = np.asarray(Image.open(tmp_path / "bare.png"))
    assert np.abs(tile(bare, 0, 1) - tile(strip("face0"), 0, 2)).max() <= 1
    assert np.abs(tile(bare, 1, 1) - tile(strip("face1"), 0, 2)).max() <= 1
    # the edit's own change is the same with and without the detail (up to clipping at 0 / 255)
    for col in (0, 2):
        with_detail = tile(grid, 0, col) - crop("face0")
        without = tile(bare, 0, col) - tile(bare, 0, 1)
        inside = (tile(grid, 0, col) > 0) & (tile(grid, 0, col) < 255)
        assert np.abs(with_detail - without)[inside].max() <= 2
    code, stdout, _ = _main(capsys, "morph", run, "--from", a, "--to", b, "--steps", 4,
                            "--out", tmp_path / "morph.png", "--gif", tmp_path / "morph.gif")
    assert code == 0 and "1 rows x 4 steps" in stdout and (tmp_path / "morph.gif").is_file()
    assert "the photos' own detail kept" in stdout
    frames = np.asarray(Image.open(tmp_path / "morph.png"))
    assert frames.shape == (18 + 2, 4 * 18 + 2, 3)
    assert np.array_equal(tile(frames, 0, 0), crop("face0")) and np.array_equal(tile(frames, 0, 3), crop("face1"))
    code, stdout, _ = _main(capsys, "morph", run, "--from", a, "--to", b, "--steps", 4,
                            "--out", tmp_path / "morph-bare.png", "--no-detail")
    assert code == 0 and "projections alone" in stdout
    frames = np.asarray(Image.open(tmp_path / "morph-bare.png"))
    assert np.abs(tile(frames, 0, 0) - tile(strip("face0"), 0, 2)).max() <= 1
    assert np.abs(tile(frames, 0, 3) - tile(strip("face1"), 0, 2)).max() <= 1
    # A latent without its crop beside it (copied alone): that row is the projection, and the
    # summary says so.
    shutil.copy(a, tmp_path / "alone.latent.npy")
    code, stdout, _ = _main(capsys, "edit", run, "--latent", tmp_path / "alone.latent.npy", "--latent", b,
                            "--attr", "sefa_0", "--strength", "-2:2", "--steps", 3, "--out", tmp_path / "mixed.png")
    assert code == 0 and "kept for 1 of 2 rows" in stdout
    mixed = np.asarray(Image.open(tmp_path / "mixed.png"))
    assert np.abs(tile(mixed, 0, 1) - tile(strip("face0"), 0, 2)).max() <= 1
    assert np.array_equal(tile(mixed, 1, 1), crop("face1"))
    # a crop that is not this model's size, or not a PNG: one line naming it and the way out
    Image.new("RGB", (8, 8)).save(tmp_path / "small.crop.png")
    shutil.copy(a, tmp_path / "small.latent.npy")
    line = _one_line_error(capsys, "edit", run, "--latent", tmp_path / "small.latent.npy", "--attr", "sefa_0",
                           "--out", tmp_path / "x.png")
    assert "small.crop.png" in line and "8x8" in line and "16x16" in line and "--no-detail" in line
    (tmp_path / "small.crop.png").write_bytes(b"not a png at all")
    line = _one_line_error(capsys, "morph", run, "--from", tmp_path / "small.latent.npy", "--to", b,
                           "--out", tmp_path / "x.png")
    assert "small.crop.png" in line and "not a PNG image" in line
    assert "--no-detail concerns projected photos" in _one_line_error(
        capsys, "edit", run, "--attr", "sefa_0", "--no-detail", "--out", tmp_path / "x.png")
    assert "--no-detail concerns projected photos" in _one_line_error(
        capsys, "morph", run, "--no-detail", "--out", tmp_path / "x.png")
    # wrong latent files: one line naming the file and what is wrong
    np.save(tmp_path / "short.npy", np.zeros(5, np.float32))
    np.save(tmp_path / "ints.npy", np.zeros(16, np.int64))
    line = _one_line_error(capsys, "edit", run, "--latent", tmp_path / "short.npy", "--attr", "sefa_0",
                           "--out", tmp_path / "x.png")
    assert "short.npy' has shape (5,)" in line and "(16,)" in line
    line = _one_line_error(capsys, "morph", run, "--from", a, "--to", tmp_path / "ints.npy",
                           "--out", tmp_path / "x.png")
    assert "--to" in line and "int64" in line
    (tmp_path / "text.npy").write_text("hello")
    assert "not a .npy file" in _one_line_error(capsys, "morph", run, "--from", tmp_path / "text.npy",
                                                    "--to", b, "--out", tmp_path / "x.png")
    assert "go together" in _one_line_error(capsys, "morph", run, "--from", a, "--out", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_latent_api_edit_and_morph(proj):
    lg = proj["lg"]
    g, d = lg.generator, lg.generator.latent_dim
    z = P.load_latent(proj["out"] / "face0.latent.npy", d)
    assert torch.equal(z, proj["results"][0].latent)
    c = P.latent_labels(proj["out"] / "face0.latent.npy", lg.labels)  # unconditional: width 0
    v = torch.nn.functional.normalize(torch.randn(d, generator=torch.Generator().manual_seed(0)), dim=0)
    frames = P.edit_latent_images(g, z[None], v, torch.tensor([-2.0, 0.0, 2.0]), c[None])
    assert tuple(frames.shape) == (1, 3, 3, 16, 16) and _close(frames[0, 1], proj["results"][0].image)
    assert not torch.equal(frames[0, 0], frames[0, 2])
    b = proj["results"][1].latent
    m = P.morph_latent_images(g, z, b, steps=5, spherical=True)
    assert tuple(m.shape) == (5, 3, 16, 16)
    assert _close(m[0], proj["results"][0].image) and _close(m[-1], proj["results"][1].image)
    # with the photos: the ends are the photos' crops, the frames between carry (1 - t)^2 of
    # the first photo's detail and t^2 of the second's
    pa, pb = (P.latent_photo(proj["out"] / f"face{i}.latent.npy", 16) for i in (0, 1))
    assert torch.equal(pa, proj["results"][0].target) and torch.equal(pb, proj["results"][1].target)
    md = P.morph_latent_images(g, z, b, steps=5, spherical=True, photo_a=pa, photo_b=pb)
    assert torch.equal(md[0], pa) and torch.equal(md[-1], pb)
    da, db = P.photo_detail(pa, m[0]), P.photo_detail(pb, m[-1])
    assert torch.equal(md[2], P.keep_detail(m[2], 0.25 * da + 0.25 * db))
    only_a = P.morph_latent_images(g, z, b, steps=5, spherical=True, photo_a=pa)
    assert torch.equal(only_a[0], pa) and torch.equal(only_a[-1], m[-1])
    # an edit with the photo: strength 0 is the photo; elsewhere the edit's change on it
    e = P.edit_latent_images(g, z[None], v, torch.tensor([-2.0, 0.0, 2.0]), c[None], photos=pa[None])
    assert torch.equal(e[0, 1], pa)
    assert torch.equal(e[0, 0], P.keep_detail(frames[0, 0], P.photo_detail(pa, frames[0, 1])))
    assert torch.equal(P.edit_latent_images(g, z[None], v, torch.tensor([1.0]), c[None], photos=[None]),
                       P.edit_latent_images(g, z[None], v, torch.tensor([1.0]), c[None]))
    # the file beside the latent: None when absent
    assert P.latent_photo(proj["tmp"] / "nowhere.latent.npy", 16) is None


def test_keep_detail_adds_what_the_projection_missed_and_clips():
    photo = torch.tensor([[[10, 250]], [[0, 128]], [[255, 3]]], dtype=torch.uint8)  # (3, 1, 2)
    proj = torch.tensor([[[20, 240]], [[5, 128]], [[250, 0]]], dtype=torch.uint8)
    d = P.photo_detail(photo, proj)
    assert d.dtype == torch.float32 and d.tolist() == [[[-10, 10]], [[-5, 0]], [[5, 3]]]
    assert torch.equal(P.keep_detail(proj, d), photo)
    edited = torch.tensor([[[5, 250]], [[100, 0]], [[252, 200]]], dtype=torch.uint8)
    assert P.keep_detail(edited, d).tolist() == [[[0, 255]], [[95, 0]], [[255, 203]]]
    assert P.keep_detail(edited, 0.5 * d).tolist() == [[[0, 255]], [[98, 0]], [[254, 202]]]
    with pytest.raises(ValueError, match="differ in shape"):
        P.photo_detail(photo, proj[:, :, :1])


def test_the_command_line_defaults_are_the_librarys():
    from facegan.commands import project as cmd

    assert (cmd.DEFAULT_STEPS, cmd.DEFAULT_ENCODER_STEPS, cmd.FEATURES, cmd.DEFAULT_FEATURES) == (
        P.DEFAULT_STEPS, P.DEFAULT_ENCODER_STEPS, P.FEATURES, P.DEFAULT_FEATURES)


# ---- the latent prior and the feature losses -----------------------------------------------------

def test_the_prior_is_zero_in_the_band_of_random_latents_and_a_wall_outside():
    d = 128
    sd = (2 / d) ** 0.5
    unit = torch.nn.functional.normalize(torch.randn(1, d, generator=torch.Generator().manual_seed(0)), dim=1)

    def at(k: float, **kw) -> float:  # a latent with |z|^2 / D = 1 + k sd
        return float(P.prior_penalty(unit * ((1 + k * sd) * d) ** 0.5, **kw))

    assert at(0) == 0 and at(1.9) == 0 and at(-1.9) == 0
    assert 0 < at(2.2) < at(3) and 0 < at(-2.2)
    assert at(2.2, width=3.0) == 0  # the band is the width asked for
    # most latents drawn from N(0, I) are inside it (about 95% within 2 standard deviations)
    z = torch.randn(4000, d, generator=torch.Generator().manual_seed(1))
    inside = float((P.prior_penalty(z) == 0).float().mean())
    assert 0.9 < inside < 0.99, inside


def test_a_start_outside_the_band_is_scaled_onto_its_edge():
    d = 128
    half = P.DEFAULT_PRIOR_WIDTH * (2 / d) ** 0.5
    unit = torch.nn.functional.normalize(torch.randn(3, d, generator=torch.Generator().manual_seed(0)), dim=1)
    z = unit * (torch.tensor([0.2, 1.0, 3.0]) * d).sqrt()[:, None]  # |z|^2 / D = 0.2, 1, 3
    b = P.into_band(z)
    assert torch.allclose(b.square().mean(1), torch.tensor([1 - half, 1.0, 1 + half]), atol=1e-5)
    assert torch.equal(b[1], z[1])  # inside: untouched
    assert torch.allclose(torch.nn.functional.cosine_similarity(b, z), torch.ones(3), atol=1e-6)
    assert float(P.prior_penalty(b).max()) < 1e-10


def test_the_default_prior_brings_a_latent_back_into_the_band():
    from facegan.config import ModelConfig
    from facegan.models import NetSpec, build_networks

    torch.manual_seed(0)
    g, _ = build_networks(ModelConfig(latent_dim=32, g_width=8, d_width=4), NetSpec(16))
    g.eval().requires_grad_(False)
    c = torch.zeros(2, 0)
    z0 = 2.0 * torch.randn(2, 32, generator=torch.Generator().manual_seed(3))  # |z|^2 / D near 4
    with torch.no_grad():
        target = g(z0, c)  # the pixels would keep z0 where it is
    band = 1 + P.DEFAULT_PRIOR_WIDTH * (2 / 32) ** 0.5
    kept = P.optimise_latent(g, target, z0, c, steps=60, prior_weight=0.0)
    pulled = P.optimise_latent(g, target, z0, c, steps=60)
    assert bool((kept.square().mean(1) > 2.5).all())
    assert bool((pulled.square().mean(1) < band + 0.3).all()), pulled.square().mean(1)


def test_cli_project_with_the_inception_features(proj, tmp_path, capsys, monkeypatch):
    from facegan.metrics import load_inception

    try:
        load_inception(None)
    except UserError as e:
        pytest.skip(f"no FID Inception weights: {e}")
    monkeypatch.setenv("FACEGAN_CACHE", proj["env"]["FACEGAN_CACHE"])
    out = tmp_path / "D"
    code, stdout, _ = _main(capsys, "project", proj["run"], proj["pngs"][0], "--out", out, "--steps", 20,
                            "--encoder-steps", ENCODER_STEPS, "--no-align", "--features", "inception")
    assert code == 0 and "feature distance" in stdout
    doc = json.loads((out / "face0.json").read_text())
    assert doc["features"] == "inception" and 0 <= doc["feature_distance"] < 1
    assert doc["psnr"] > doc["guess_psnr"]


def test_load_features_refuses_an_unknown_network(proj):
    # A demo run's built-in faces carry attributes, so the classifier is a valid choice there
    # (tests/test_cli_edit_project.py trains it); an unknown name is refused.
    with pytest.raises(UserError, match="--features must be one of"):
        P.load_features(proj["lg"], "vgg")


def test_latent_source_note_names_another_run_or_step(tmp_path):
    """NAME.json says which generator a latent belongs to; an edit or morph with another one
    is warned, in one line, and one with its own says nothing."""
    import json
    from types import SimpleNamespace as At

    from facegan.projection import latent_source_note

    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "latest.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    lat = tmp_path / "me.latent.npy"
    assert latent_source_note(lat, At(run_dir=run, checkpoint=ckpt, step=40)) is None  # nothing beside it says
    doc = {"run": str(run.resolve()), "checkpoint": str(ckpt.resolve()), "checkpoint_step": 40}
    (tmp_path / "me.json").write_text(json.dumps(doc))
    assert latent_source_note(lat, At(run_dir=run, checkpoint=ckpt, step=40)) is None
    drifted = latent_source_note(lat, At(run_dir=run, checkpoint=ckpt, step=80))
    assert "projected at step 40 of this run" in drifted and "step 80" in drifted
    other = latent_source_note(lat, At(run_dir=tmp_path / "other", checkpoint=tmp_path / "other" / "x.pt", step=40),
                               "--from")
    assert other.startswith(f"facegan: warning: --from '{lat}' was projected with {run.resolve()}, not this model")
    assert "\n" not in other
