"""The truncation trick where latents are drawn (sampling, morph, edit, the CLI, the web page)
and improved precision / recall, the metric that measures its trade."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error, facegan, train_tiny_in_process

from facegan import commands as cli
from facegan import sampling
from facegan.directions import direction_entry, edit_images, save_directions
from facegan.errors import UserError
from facegan.metrics.evaluate import compute_metrics, parse_metrics
from facegan.metrics.precision_recall import knn_radii, precision_recall
from facegan.metrics.stats import FeatureStats
from facegan.models.dcgan import DCGANGenerator
from facegan.sampling import generate_images, latents, load_generator, morph

REPO = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "v0"


# ---- latents --------------------------------------------------------------------------------

def test_no_truncation_is_the_plain_normal_draw_bitwise():
    for seed in (0, 7, 123456):
        want = torch.randn(33, 8, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(latents(33, 8, seed), want)
        assert torch.equal(latents(33, 8, seed, truncation=None), want)
        assert torch.equal(latents(33, 8, seed, "cpu", None), want)  # positional device kept


@pytest.mark.parametrize("t", [0.1, 0.5, 0.7, 1.0, 2.0])
def test_truncated_latents_lie_in_the_box_and_repeat_per_seed(t):
    z = latents(500, 16, 3, truncation=t)
    assert z.shape == (500, 16) and z.dtype == torch.float32
    assert float(z.abs().max()) <= t
    assert torch.equal(z, latents(500, 16, 3, truncation=t))
    assert not torch.equal(z, latents(500, 16, 4, truncation=t))
    # Cut, not squeezed: the spread is that of N(0, 1) restricted to [-T, T].
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(t / math.sqrt(2))
    assert abs(float(z.std()) - math.sqrt(1 - 2 * t * phi / mass)) < 0.03


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, float("nan"), float("inf")])
def test_truncation_must_be_a_positive_number(bad):
    with pytest.raises(UserError, match=r"--truncation must be > 0, e\.g\. 0\.7; omit it for no truncation"):
        latents(2, 4, 0, truncation=bad)


def _spy(monkeypatch):
    """Record the (z, c) of every call of sampling.generate."""
    calls = []
    real = sampling.generate

    def spy(g, z, c, **kw):
        calls.append((z.clone(), c.clone()))
        return real(g, z, c, **kw)

    monkeypatch.setattr(sampling, "generate", spy)
    return calls


def test_conditional_sampling_truncates_z_and_keeps_the_labels(monkeypatch):
    lg = load_generator(FIX / "cond.pt")
    assert lg.labels.conditional
    pixels = np.load(FIX / "pixels.npz")["cond"]
    np.testing.assert_array_equal(generate_images(lg.generator, 8, seed=0, labels=lg.labels).numpy(), pixels)
    calls = _spy(monkeypatch)
    plain = generate_images(lg.generator, 8, seed=0, labels=lg.labels)
    cut = generate_images(lg.generator, 8, seed=0, labels=lg.labels, truncation=0.5)
    (z0, c0), (z1, c1) = calls
    assert torch.equal(c0, c1)  # the same labels
    assert torch.equal(z1, latents(8, lg.generator.latent_dim, 0, truncation=0.5))
    assert float(z1.abs().max()) <= 0.5 < float(z0.abs().max())
    assert not torch.equal(plain, cut)


def test_morph_and_edit_truncate_the_faces_they_draw(monkeypatch):
    g = DCGANGenerator(latent_dim=8, resolution=16, width=4).eval()
    calls = _spy(monkeypatch)
    morph(g, rows=2, steps=3, truncation=0.4)
    z = calls[-1][0]
    assert z.shape == (6, 8) and float(z.abs().max()) <= 0.4  # lerp between points of the box
    v = torch.zeros(8)
    v[0] = 1.0
    edit_images(g, v, torch.tensor([-1.0, 0.0, 1.0]), 3, truncation=0.4)
    z = calls[-1][0].view(3, 3, 8)
    torch.testing.assert_close(z[:, 1], latents(3, 8, 0, truncation=0.4))  # strength 0: the face drawn
    torch.testing.assert_close(z[:, 2] - z[:, 1], v.expand(3, 8))  # the edit itself is not cut


# ---- the command and the page -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-step tiny unconditional run (trained in this process), with one direction."""
    run = train_tiny_in_process(tmp_path_factory.mktemp("trunc"))
    save_directions(run, 8, {"d0": direction_entry(torch.eye(8)[0], "sefa", None)})
    return run


def test_cli_sample_truncation_and_its_one_line_errors(tiny_run, tmp_path):
    r = facegan("sample", tiny_run, "--n", 4, "--seed", 2, "--truncation", 0.5, "--out", tmp_path / "g.png",
                "--png-dir", tmp_path / "pngs", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "truncation 0.5" in r.stdout
    got = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "pngs").glob("*.png"))])
    want = generate_images(load_generator(tiny_run).generator, 4, seed=2, truncation=0.5)
    np.testing.assert_array_equal(got, want.permute(0, 2, 3, 1).numpy())
    for bad in ("0", "-1"):
        out = tmp_path / f"bad{bad}.png"
        r = facegan("sample", tiny_run, "--n", 4, "--truncation", bad, "--out", out)
        assert_user_error(r, "--truncation must be > 0", "omit it for no truncation")
        assert not out.exists()


def test_cli_morph_and_edit_take_truncation(tiny_run, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert cli.main(["morph", str(tiny_run), "--rows", "2", "--steps", "3", "--truncation", "0.7",
                     "--out", str(out), "--device", "cpu"]) == 0
    assert "truncation 0.7" in capsys.readouterr().out and out.exists()
    out = tmp_path / "e.png"
    assert cli.main(["edit", str(tiny_run), "--attr", "d0", "--n", "2", "--steps", "3", "--truncation", "1",
                     "--out", str(out), "--device", "cpu"]) == 0
    assert out.exists()
    for cmd in (["morph", str(tiny_run)], ["edit", str(tiny_run), "--attr", "d0"]):
        bad = tmp_path / "bad.png"
        assert cli.main([*cmd, "--truncation", "-1", "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("facegan: error: --truncation must be > 0"), err
        assert not bad.exists()


def test_web_truncation_parameter(tiny_run):
    pytest.importorskip("starlette", reason="facegan serve needs the [serve] extra (starlette)")
    pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")
    from test_web import client_for, decode

    client, server = client_for(tiny_run)
    g = load_generator(tiny_run).generator
    r = client.get("/api/image.png", params={"seed": 5, "truncation": 0.7})
    assert r.status_code == 200, r.text
    want = generate_images(g, 1, seed=5, truncation=0.7)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(decode(r.content), want)
    assert "--seed 5 --truncation 0.7 " in r.headers["X-Facegan-Command"]  # the command that draws it
    plain_r = client.get("/api/image.png", params={"seed": 5})
    assert "--truncation" not in plain_r.headers["X-Facegan-Command"]
    plain = decode(plain_r.content)
    assert np.abs(plain.astype(int) - want).max() > 0
    # empty = off; a morph and a strip take it too
    np.testing.assert_array_equal(decode(client.get("/api/image.png?seed=5&truncation=").content), plain)
    r = client.get("/api/image.png", params={"seed": 5, "seed2": 6, "t": 0, "truncation": 0.7})
    assert r.status_code == 200 and np.abs(decode(r.content).astype(int) - want).max() <= 1
    r = client.get("/api/strip.png", params={"seed": 5, "seed2": 6, "steps": 3, "interp": "lerp",
                                             "truncation": 0.7})
    assert r.status_code == 200
    np.testing.assert_array_equal(decode(r.content)[2:18, 2:18], want)
    calls = server.batcher.forward_calls
    for bad in ("-1", "0", "nan", "abc", "100"):
        r = client.get("/api/image.png", params={"seed": 5, "truncation": bad})
        assert r.status_code == 400, (bad, r.text)
        assert "truncation" in r.json()["error"]
    r = client.get("/api/strip.png", params={"seed": 5, "seed2": 6, "truncation": "-1"})
    assert r.status_code == 400
    assert server.batcher.forward_calls == calls  # refused before any generation


def test_page_truncation_field(tiny_run):
    pytest.importorskip("uvicorn", reason="facegan serve needs the [serve] extra (uvicorn)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    from test_web_browser import GRID_READY, browser_page, running

    errors = []
    with running(tiny_run) as url, browser_page(errors) as page:
        page.goto(url)
        page.wait_for_function(GRID_READY, timeout=30_000)
        page.fill("#truncation", "-1")
        page.dispatch_event("#truncation", "change")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('truncation must')")
        page.fill("#truncation", "0.5")
        page.dispatch_event("#truncation", "change")
        page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(e => "
                               "(e.dataset.want || '').includes('truncation=0.5') && e.complete && e.naturalWidth > 0)",
                               timeout=30_000)
        page.click("#grid figure:nth-child(2)")
        page.wait_for_function("() => document.getElementById('command').textContent.includes('--truncation 0.5')")
        assert "truncation=0.5" in page.get_attribute("#strip", "data-want")
    assert not errors, errors


# ---- precision and recall ---------------------------------------------------------------------

def brute_force_pr(gen: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """The definition, with every distance at once (float64)."""
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d = np.linalg.norm(gen[:, None].astype(np.float64) - real[None], axis=-1)  # (Ng, Nr)
    precision = (d <= radii(real)[None, :]).any(1).mean()
    recall = (d <= radii(gen)[:, None]).any(0).mean()
    return float(precision), float(recall)


@pytest.mark.parametrize("k", [1, 2])
def test_precision_recall_by_hand(k):
    # Real points 0, 1, 2 and 10, 11, 12: with k = 1 every radius is 1, the real manifold is
    # [-1, 3] u [9, 13]; with k = 2 it is [-2, 4] u [8, 14]. Generated 0.5, 1.5, 2.5, 5, 6:
    # 0.5, 1.5, 2.5 are inside, 5 and 6 are not -> precision 3/5. The generated balls
    # (k = 1: radius 1 each; k = 2: 2, 1, 2, 2.5, 3.5) reach 0, 1, 2 but none of 10, 11, 12
    # (6 + 3.5 < 10) -> recall 3/6.
    real = np.array([[0.0], [1], [2], [10], [11], [12]], np.float32)
    gen = np.array([[0.5], [1.5], [2.5], [5], [6]], np.float32)
    torch.testing.assert_close(knn_radii(torch.from_numpy(gen), k),
                               torch.tensor([1.0, 1, 1, 1, 1] if k == 1 else [2.0, 1, 2, 2.5, 3.5]))
    assert precision_recall(gen, real, k=k) == pytest.approx((0.6, 0.5))
    assert brute_force_pr(gen, real, k) == pytest.approx((0.6, 0.5))


def _blobs(n, rng, centres):
    return np.concatenate([rng.normal(size=(n, 2)) + c for c in centres]).astype(np.float32)


def test_identical_sets_and_one_collapsed_mode():
    rng = np.random.default_rng(0)
    real = _blobs(150, rng, [(-8, 0), (8, 0)])  # two well separated modes
    assert precision_recall(real, real) == (1.0, 1.0)
    collapsed = _blobs(300, rng, [(-8, 0)])  # every sample from one mode
    p, r = precision_recall(collapsed, real)
    assert p > 0.9 and 0.3 < r < 0.55, (p, r)
    # the other way round: the real data covers only one mode of the samples
    p2, r2 = precision_recall(real, collapsed)
    assert 0.3 < p2 < 0.55 and r2 > 0.9, (p2, r2)


def test_blocks_give_the_full_matrix_answer():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(120, 16)).astype(np.float32)
    gen = (0.8 * rng.normal(size=(90, 16)) + 0.3).astype(np.float32)
    want = brute_force_pr(gen, real, 3)
    assert 0 < want[0] < 1 and 0 < want[1] < 1  # a case where both are informative
    for block_bytes in (1, 4 * 120 * 7, 2**26):  # one row at a time, 7 rows, all at once
        assert precision_recall(gen, real, block_bytes=block_bytes) == pytest.approx(want, abs=1e-9)


def test_pr_in_the_metrics_registry():
    assert parse_metrics("fid,pr") == ["fid", "pr"]
    rng = np.random.default_rng(2)
    real = FeatureStats.from_features(rng.normal(size=(60, 32)).astype(np.float32))
    out = compute_metrics(["pr"], rng.normal(size=(40, 32)).astype(np.float32), real)
    assert set(out) == {"precision", "recall"} and all(0 <= v <= 1 for v in out.values())
    with pytest.raises(UserError, match="precision/recall"):
        compute_metrics(["pr"], real.features[:3], real)  # 3 samples: no 3rd neighbour
    no_features = FeatureStats(mu=real.mu, sigma=real.sigma, n=real.n)
    with pytest.raises(UserError, match="needs real features"):
        compute_metrics(["pr"], real.features, no_features)


# ---- the benchmark ------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_truncation_tiny(tiny_run, tmp_path):
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_truncation.py"), str(tiny_run),
                        "--data", str(tiny_run.parent / "imgs"), "--n", "32", "--values", "0.5,none",
                        "--out", str(out), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((out / "truncation.json").read_text())
    assert [x["truncation"] for x in rec["results"]] == [0.5, None]
    for x in rec["results"]:
        assert math.isfinite(x["fid"]) and 0 <= x["precision"] <= 1 and 0 <= x["recall"] <= 1
    assert "precision" in r.stdout and "none" in r.stdout
    w, h = Image.open(out / "truncation.png").size
    assert h > 0.1 * w  # two rows of 8 faces
