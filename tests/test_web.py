"""facegan serve over HTTP (Starlette's TestClient): faces by seed that `facegan sample` draws
again, validation, no path from a request reaching the file system, conditions, direction
edits, batching of concurrent requests, refusal under load, and the command itself."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="facegan serve needs the [serve] extra (starlette)")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (in the [dev] extra)")
with warnings.catch_warnings():
    # Starlette 1.x would rather use the httpx2 fork; httpx works with every Starlette version.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from test_cli import TINY
from test_labels import make_celeba_attrs, make_classes

from facegan import commands as cli
from facegan.errors import UserError
from facegan.sampling import generate_images, latents, load_generator, to_uint8
from facegan.web import app as web_app
from facegan.web.app import Server
from facegan.web.engine import Batcher, ModelHolder

REPO = Path(__file__).resolve().parents[1]


def train(tmp: Path, data: Path, *options: str, overrides=()) -> Path:
    """A 2-step tiny run, trained in this process (no interpreter start-up)."""
    run = tmp / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEGAN_CACHE", str(tmp / "cache"))
        code = cli.main(["train", "--data", str(data), "--out", str(run), "--steps", "2",
                         "--no-progress", *options, *TINY, *overrides])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plain")
    return train(tmp, make_classes(tmp / "imgs", (("x", 100, 16),)), "--preset", "wgangp-celeba64")


@pytest.fixture(scope="module")
def class_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cls")
    data = make_classes(tmp / "animals", (("cat", 40, 8), ("dog", 210, 8)))
    return train(tmp, data, "--preset", "wgangp-celeba64", "--condition", "folders",
                 overrides=["model.d_cond=ac"])


@pytest.fixture(scope="module")
def attr_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("attr")
    make_celeba_attrs(tmp / "celeba", n=16)
    return train(tmp, tmp / "celeba", "--preset", "cwgangp-celeba64", "--condition", "Male,Smiling")


def client_for(run, **batcher_args) -> tuple[TestClient, Server]:
    holder = ModelHolder(run, device="cpu", reload=False)
    server = Server(holder, Batcher(holder, **batcher_args), run_label=str(run))
    return TestClient(server.app), server


def decode(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def sample_cli(command: str, out: Path) -> np.ndarray:
    """Run the `facegan sample ...` command the page shows (in this process), writing the
    one face as a PNG into ``out``; its pixels (H, W, 3)."""
    argv = shlex.split(command)
    assert argv[:2] == ["facegan", "sample"], command
    i = argv.index("--out")
    argv[i + 1] = str(out / "grid.png")
    assert cli.main(argv[1:] + ["--png-dir", str(out / "pngs"), "--device", "cpu"]) == 0
    (png,) = (out / "pngs").glob("*.png")
    return np.asarray(Image.open(png).convert("RGB"))


# ---- faces by seed --------------------------------------------------------------------------

def test_seeds_give_pngs_that_facegan_sample_draws_again(plain_run, tmp_path):
    client, server = client_for(plain_run)
    r = client.get("/api/seeds", params={"n": 5})
    assert r.status_code == 200
    seeds = r.json()["seeds"]
    assert len(set(seeds)) == 5 and all(0 <= s < 1_000_000 for s in seeds)
    g = load_generator(plain_run).generator
    for s in seeds[:3] + [0]:
        r = client.get("/api/image.png", params={"seed": s})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        px = decode(r.content)
        assert px.shape == (16, 16, 3)
        want = generate_images(g, 1, seed=s)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(px, want)
    # The command the page shows for a face, run as a user would, gives the same pixels.
    s = seeds[0]
    r = client.get("/api/image.png", params={"seed": s})
    cmd = r.headers["x-facegan-command"]
    assert f"--seed {s}" in cmd and "--n 1" in cmd
    np.testing.assert_array_equal(sample_cli(cmd, tmp_path), decode(r.content))
    # Two different seeds are two different faces; the same seed twice is the same face.
    a, b = (decode(client.get("/api/image.png", params={"seed": x}).content) for x in (1, 2))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0
    np.testing.assert_array_equal(a, decode(client.get("/api/image.png?seed=1").content))


def test_large_view_download_morph_and_strip(plain_run):
    client, _ = client_for(plain_run)
    r = client.get("/api/image.png", params={"seed": 7, "size": 128, "download": 1})
    assert r.status_code == 200 and decode(r.content).shape == (128, 128, 3)
    assert r.headers["content-disposition"] == 'attachment; filename="facegan-seed7.png"'
    # t = 0 and t = 1 of a morph are its two faces (lerp and slerp both pass through them).
    a = decode(client.get("/api/image.png?seed=3").content)
    b = decode(client.get("/api/image.png?seed=4").content)
    for interp in ("lerp", "slerp"):
        ends = [decode(client.get(f"/api/image.png?seed=3&seed2=4&t={t}&interp={interp}").content)
                for t in (0, 1)]
        assert np.abs(ends[0].astype(int) - a).max() <= 1
        assert np.abs(ends[1].astype(int) - b).max() <= 1
    mid_l = decode(client.get("/api/image.png?seed=3&seed2=4&t=0.5&interp=lerp").content)
    mid_s = decode(client.get("/api/image.png?seed=3&seed2=4&t=0.5&interp=slerp").content)
    assert np.abs(mid_l.astype(int) - mid_s).max() > 0  # the two paths differ in the middle
    r = client.get("/api/strip.png", params={"seed": 3, "seed2": 4, "steps": 5, "interp": "lerp"})
    assert r.status_code == 200
    strip = decode(r.content)
    assert strip.shape == (16 + 4, 5 * 18 + 2, 3)  # make_grid: one row, 2 px padding
    np.testing.assert_array_equal(strip[2:18, 2:18], a)


@pytest.mark.parametrize("query, needle", [
    ("/api/image.png", "'seed' is required"),
    ("/api/image.png?seed=-1", "out of range"),
    ("/api/image.png?seed=2147483648", "out of range"),
    ("/api/image.png?seed=abc", "must be an integer"),
    ("/api/image.png?seed=1&seed2=2&t=1.5", "out of range"),
    ("/api/image.png?seed=1&seed2=2&t=nan", "out of range"),
    ("/api/image.png?seed=1&seed2=2&interp=cubic", "must be one of"),
    ("/api/image.png?seed=1&size=4096", "out of range"),
    ("/api/image.png?seed=1&size=8", "out of range"),
    ("/api/image.png?seed=1&colour=red", "unknown parameter 'colour'"),
    ("/api/image.png?seed=1&class=cat", "unconditional"),
    ("/api/image.png?seed=1&edit=Smiling:1", "unknown direction 'Smiling'"),
    ("/api/image.png?seed=1&download=yes", "must be one of"),
    ("/api/strip.png?seed=1&seed2=2&steps=1", "out of range"),
    ("/api/strip.png?seed=1&seed2=2&steps=17", "out of range"),
    ("/api/strip.png?seed=1", "'seed2' is required"),
    ("/api/seeds?n=0", "out of range"),
    ("/api/seeds?n=65", "out of range"),
    ("/api/seeds?n=" + "9" * 3000, "too long"),
])
def test_bad_requests_get_400_with_a_message(plain_run, query, needle):
    client, server = client_for(plain_run)
    r = client.get(query)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert server.batcher.forward_calls == 0  # refused before any generation


# ---- the run folder's outputs ---------------------------------------------------------------

def test_run_outputs_listed_and_served_while_training(plain_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    client, _ = client_for(run)
    info = client.get("/api/run").json()
    ids = [f["id"] for f in info["files"]]
    assert "loss.png" in ids and {"step_000002.png"} <= set(ids)
    assert [r for r in info["metrics"]["train"]["step"]] == [1, 2]
    r = client.get("/api/run/files/step_000002.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (run / "samples" / "step_000002.png").read_bytes()
    # A run still training writes another grid and another metrics line: the next listing has them.
    shutil.copy(run / "samples" / "step_000002.png", run / "samples" / "step_000004.png")
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 4, "d_loss": 1.0, "g_loss": 2.0}) + "\n")
        f.write(json.dumps({"kind": "eval", "step": 4, "fid": 99.5, "kid_mean": 0.1}) + "\n")
    info = client.get("/api/run").json()
    assert "step_000004.png" in [f["id"] for f in info["files"]]
    assert info["metrics"]["train"]["step"][-1] == 4 and info["metrics"]["last"]["step"] == 4
    assert info["metrics"]["evals"] == [{"step": 4, "fid": 99.5, "kid_mean": 0.1, "kid_std": None,
                                         "n": None, "time": None}]


def test_no_path_from_a_request_reaches_the_file_system(plain_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    # Links planted in the run folder under served names are not served (they could point anywhere).
    (run / "samples" / "step_000099.png").symlink_to(secret)
    (run / "morph.png").symlink_to(secret)
    opened = []
    real = web_app.read_run_file
    monkeypatch.setattr(web_app, "read_run_file", lambda f: opened.append(f.path) or real(f))
    client, _ = client_for(run)
    ids = [f["id"] for f in client.get("/api/run").json()["files"]]
    assert "step_000099.png" not in ids and "morph.png" not in ids
    attempts = [
        "/api/run/files/..%2Fsecret.png", "/api/run/files/%2e%2e%2f%2e%2e%2fsecret.png",
        "/api/run/files/../../secret.png", f"/api/run/files/{secret}",
        f"/api/run/files/{str(secret).replace('/', '%2F')}", "/api/run/files/config.json",
        "/api/run/files/checkpoints/latest.pt", "/api/run/files/checkpoints%2Flatest.pt",
        "/api/run/files/samples/step_000002.png", "/api/run/files/samples%2Fstep_000002.png",
        "/api/run/files/step_000099.png", "/api/run/files/morph.png", "/api/run/files/loss.png%00",
        "/static/..%2F__init__.py", "/static/../app.py", "/static/%2Fetc%2Fpasswd",
        "/api/run/files/%5C..%5Csecret.png",
    ]
    for path in attempts:
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert b"secret" not in r.content and b"facegan-checkpoint" not in r.content
    assert opened == []  # nothing was even opened
    r = client.get("/api/run/files/loss.png")
    assert r.status_code == 200 and opened == [run / "loss.png"]
    # The page's own files come from the package, by name, and need nothing from elsewhere
    # (no CDN: the page works offline).
    for name in ("index.html", "app.js", "style.css"):
        text = client.get(f"/static/{name}" if name != "index.html" else "/").text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    assert client.get("/static/app.js").status_code == 200
    page = client.get("/")
    assert "<title>facegan</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_newer_checkpoint_is_loaded_and_the_page_told(plain_run, tmp_path, monkeypatch):
    from facegan.checkpoint import load_checkpoint, save_checkpoint
    from facegan.web import engine

    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    holder = ModelHolder(run, device="cpu", reload=True)
    client = TestClient(Server(holder, Batcher(holder)).app)
    first = client.get("/api/image.png?seed=4").content
    assert client.get("/api/info").json()["version"] == 0
    # Training goes on: a newer latest.pt replaces the old one (atomically, as the trainer does).
    ckpt = load_checkpoint(run)
    ckpt.pop("path")
    ckpt["step"] = 7
    ckpt["G_ema"] = {k: v + 0.05 if v.is_floating_point() else v for k, v in ckpt["G_ema"].items()}
    save_checkpoint(run / "checkpoints" / "latest.pt", ckpt)
    monkeypatch.setattr(engine, "RELOAD_CHECK_S", 0.0)
    listing = client.get("/api/run").json()  # the page polls this; it looks for a newer model
    assert listing["model_step"] == 7 and listing["model_version"] == 1
    info = client.get("/api/info").json()
    assert info["step"] == 7 and info["version"] == 1
    assert client.get("/api/image.png?seed=4").content != first
    # A damaged file keeps the model that works, and says why.
    (run / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    client.get("/api/run")
    info = client.get("/api/info").json()
    assert info["step"] == 7 and "could not reload" in info["reload_problem"]
    assert client.get("/api/image.png?seed=4").status_code == 200


def test_directions_written_while_serving_appear(plain_run, tmp_path, monkeypatch):
    from facegan.web import engine

    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    holder = ModelHolder(run, device="cpu", reload=True)
    client = TestClient(Server(holder, Batcher(holder)).app)
    assert client.get("/api/info").json()["directions"] == []
    write_directions(run, holder.model.latent_dim)  # `facegan directions RUN` ran meanwhile
    monkeypatch.setattr(engine, "RELOAD_CHECK_S", 0.0)
    assert client.get("/api/run").json()["model_version"] == 1
    assert [d["name"] for d in client.get("/api/info").json()["directions"]] == ["Smiling", "Male"]
    assert client.get("/api/image.png?seed=1&edit=Male:2").status_code == 200


def test_a_checkpoint_alone_serves_faces_its_directions_and_no_run_files(plain_run, tmp_path):
    alone = tmp_path / "alone.pt"
    shutil.copy(plain_run / "checkpoints" / "latest.pt", alone)
    write_directions(tmp_path, load_generator(alone).generator.latent_dim)  # beside the file
    client, _ = client_for(alone)
    assert [d["name"] for d in client.get("/api/info").json()["directions"]] == ["Smiling", "Male"]
    assert client.get("/api/run").json() == {
        "run_dir": None, "files": [], "metrics": {"train": {}, "evals": [], "last": None},
        "model_step": 2, "model_version": 0}
    assert client.get("/api/run/files/loss.png").status_code == 404
    assert client.get("/api/image.png?seed=1").status_code == 200


def test_loopback_server_answers_only_loopback_host_names(plain_run):
    holder = ModelHolder(plain_run, device="cpu", reload=False)
    app = Server(holder, allowed_hosts=["127.0.0.1", "localhost"]).app
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://localhost:8765").get("/api/info").status_code == 200
    # A web page on another name that resolves to 127.0.0.1 (DNS rebinding) gets nothing.
    assert TestClient(app, base_url="http://evil.example:8765").get("/api/info").status_code == 400


# ---- conditions and directions --------------------------------------------------------------

def test_class_selector_redraws_the_same_seed_and_matches_sample(class_run, tmp_path):
    client, _ = client_for(class_run)
    info = client.get("/api/info").json()
    assert info["labels"] == {"kind": "class", "names": ["cat", "dog"]}
    cat = client.get("/api/image.png?seed=11&class=cat")
    dog = client.get("/api/image.png?seed=11&class=dog")
    assert cat.status_code == dog.status_code == 200
    assert np.abs(decode(cat.content).astype(int) - decode(dog.content)).max() > 0
    assert "--class dog" in dog.headers["x-facegan-command"]
    np.testing.assert_array_equal(sample_cli(dog.headers["x-facegan-command"], tmp_path / "d"),
                                  decode(dog.content))
    # No condition: the label `facegan sample` draws for that seed.
    plain = client.get("/api/image.png?seed=11")
    np.testing.assert_array_equal(sample_cli(plain.headers["x-facegan-command"], tmp_path / "p"),
                                  decode(plain.content))
    r = client.get("/api/image.png?seed=11&class=cow")
    assert r.status_code == 400 and "unknown class 'cow'" in r.json()["error"]
    assert "cat, dog" in r.json()["error"]
    assert client.get("/api/image.png?seed=11&attr=Male=1").status_code == 400
    assert client.get("/api/strip.png?seed=1&seed2=2&steps=3&class=dog").status_code == 200


def test_attribute_selector_matches_sample_attr(attr_run, tmp_path):
    client, _ = client_for(attr_run)
    r = client.get("/api/image.png", params={"seed": 5, "attr": "Smiling=1,Male=0"})
    assert r.status_code == 200
    cmd = r.headers["x-facegan-command"]
    assert "--attr Male=0,Smiling=1" in cmd  # in the model's order
    np.testing.assert_array_equal(sample_cli(cmd, tmp_path), decode(r.content))
    other = client.get("/api/image.png", params={"seed": 5, "attr": "Smiling=1,Male=1"})
    assert np.abs(decode(other.content).astype(int) - decode(r.content)).max() > 0
    for bad, needle in (("Bald=1", "unknown attribute 'Bald'"), ("Male=2", "NAME=0 or NAME=1"),
                        ("Male=1,Male=0", "given twice")):
        r = client.get("/api/image.png", params={"seed": 5, "attr": bad})
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert client.get("/api/image.png?seed=5&class=Male").status_code == 400


def write_directions(run: Path, dim: int, **extra) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    vecs = {name: (v := torch.randn(dim, generator=g)) / v.norm() for name in ("Smiling", "Male")}
    doc = {"version": 1, "z_dim": dim, "directions": {
        n: {"vector": v.tolist(), "method": "interfacegan", "accuracy": 0.9, "kept": [n]}
        for n, v in vecs.items()}}
    doc.update(extra)
    (run / "directions.json").write_text(json.dumps(doc))
    return vecs


def test_direction_sliders_edit_the_face(plain_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    lg = load_generator(run)
    vecs = write_directions(run, lg.generator.latent_dim)
    client, _ = client_for(run)
    info = client.get("/api/info").json()
    assert [d["name"] for d in info["directions"]] == ["Smiling", "Male"]
    plain = decode(client.get("/api/image.png?seed=9").content)
    zero = client.get("/api/image.png?seed=9&edit=Smiling:0")
    np.testing.assert_array_equal(decode(zero.content), plain)  # strength 0 changes nothing
    edited = decode(client.get("/api/image.png?seed=9&edit=Smiling:3,Male:-1.5").content)
    assert np.abs(edited.astype(int) - plain).max() > 0
    z = latents(1, lg.generator.latent_dim, 9) + 3 * vecs["Smiling"] - 1.5 * vecs["Male"]
    with torch.inference_mode():
        want = to_uint8(lg.generator(z, torch.zeros(1, 0)))[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(edited, want)
    for bad, needle in (("Smiling:5.5", "out of range"), ("Smiling:inf", "out of range"),
                        ("Smiling", "NAME:STRENGTH"), ("Bald:1", "unknown direction 'Bald'"),
                        ("Smiling:1,Smiling:2", "given twice"), ("Smiling:x", "must be a number")):
        r = client.get("/api/image.png", params={"seed": 9, "edit": bad})
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    # A directions file for another latent size is reported, not used.
    write_directions(run, lg.generator.latent_dim + 1)
    info = client_for(run)[0].get("/api/info").json()
    assert info["directions"] == [] and "latent of" in info["directions_problem"]
    # A damaged one too, with the reason facegan.directions gives (the page still serves faces).
    (run / "directions.json").write_text(json.dumps({"version": 2, "z_dim": 3, "directions": {}}))
    client = client_for(run)[0]
    info = client.get("/api/info").json()
    assert info["directions"] == [] and "not a facegan directions file" in info["directions_problem"]
    assert client.get("/api/image.png?seed=9").status_code == 200


# ---- batching and refusal -------------------------------------------------------------------

class Gate:
    """Wraps a batcher's forward pass: counts calls; the first one waits until released."""

    def __init__(self, batcher: Batcher):
        self.calls, self.rows = 0, []
        self.entered, self.release = threading.Event(), threading.Event()
        real = batcher._forward

        def forward(m, z, c):
            self.calls += 1
            self.rows.append(z.shape[0])
            self.entered.set()
            assert self.release.wait(30)
            return real(m, z, c)

        batcher._forward = forward


def wait_until(cond, timeout=20.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_concurrent_requests_share_one_forward_pass(plain_run):
    client, server = client_for(plain_run)
    gate = Gate(server.batcher)
    with client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.get, "/api/image.png?seed=100")
        assert gate.entered.wait(20)  # the worker is busy with the first request
        rest = [pool.submit(client.get, f"/api/image.png?seed={100 + i}") for i in range(1, 8)]
        wait_until(lambda: len(server.batcher._queue) == 7)
        gate.release.set()
        replies = [first.result(30)] + [f.result(30) for f in rest]
    assert [r.status_code for r in replies] == [200] * 8
    assert gate.calls == 2 and gate.rows == [1, 7]  # 8 requests, 2 generator calls
    g = load_generator(plain_run).generator
    for i, r in enumerate(replies):
        np.testing.assert_array_equal(
            decode(r.content), generate_images(g, 1, seed=100 + i)[0].permute(1, 2, 0).numpy())


def test_overloaded_server_refuses_with_503(plain_run):
    client, server = client_for(plain_run, max_queue_rows=3, max_wait=2.0)
    gate = Gate(server.batcher)
    with client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.get, "/api/image.png?seed=1")
        assert gate.entered.wait(20)
        queued = [pool.submit(client.get, f"/api/image.png?seed={i}") for i in (2, 3, 4)]
        wait_until(lambda: len(server.batcher._queue) == 3)
        r = client.get("/api/image.png?seed=5")  # a fourth waiting image: the queue is full
        assert r.status_code == 503 and "busy" in r.json()["error"]
        gate.release.set()
        assert [f.result(30).status_code for f in [first, *queued]] == [200] * 4
    # Refused by time: when the measured cost says the wait would pass max_wait.
    client, server = client_for(plain_run, max_wait=0.5)
    server.batcher.per_row = 1.0
    r = client.get("/api/strip.png?seed=1&seed2=2&steps=8")
    assert r.status_code == 503 and "would wait about" in r.json()["error"]
    assert server.batcher.forward_calls == 0


def test_wait_estimate_counts_image_size(plain_run):
    holder = ModelHolder(plain_run, device="cpu", reload=False)
    b = Batcher(holder, overhead=0.01, per_row=0.002, per_pixel=1e-7, encode_threads=2)
    gen = 0.01 + 0.002  # one batch of one face
    assert b.estimate(1) == pytest.approx(gen)
    sizes = (64, 128, 256, 512, 1024)
    waits = [b.estimate(1, s * s) for s in sizes]
    assert waits == sorted(set(waits))  # strictly growing with the size
    for s, w in zip(sizes, waits):
        assert w == pytest.approx(gen + s * s * 1e-7 / 2)  # seconds per pixel, over 2 threads
    # Pixels admitted and not yet encoded are ahead of every later job that has pixels; a job
    # without (its PNG made at the model's size by the caller) waits for generation only.
    gate = Gate(b)
    z, c = latents(1, holder.model.latent_dim, 0), holder.model.labels.draw(1)
    big = b.submit(z, c, lambda imgs: ("done", imgs.shape), 1024 * 1024)
    assert gate.entered.wait(20)
    assert b.estimate(1, 64 * 64) > (1024 * 1024 + 64 * 64) * 1e-7 / 2
    assert b.estimate(1) < 0.05
    gate.release.set()
    assert big.result(20) == ("done", (1, 3, 16, 16))  # the finish ran on the job's images
    # Once encoded, its pixels are ahead of no one (the costs themselves were re-measured).
    assert b._pending_pixels == 0
    assert b.estimate(1, 64 * 64) - b.estimate(1) < 64 * 64 * 1e-7
    with pytest.raises(ValueError):
        b.submit(z, c, pixels=64 * 64)  # pixels without a finish to make them
    b.warm_up(repeats=1)  # measures this machine's cost per pixel (resize + PNG encode)
    assert 0 < b.per_pixel < 1e-4
    b.stop()


def test_flood_of_large_images_refused_at_once_small_ones_served(plain_run):
    # A 1024 x 1024 face is set to cost 1.8 s to resize and encode (one encode thread): within
    # max_wait = 5 s two fit, a third would wait 5.4 s. Generation is held by the gate, so
    # every request is admitted or refused before anything finishes: no timing in the outcome.
    per_pixel = 1.8 / 1024**2
    client, server = client_for(plain_run, max_wait=5.0, overhead=0.001, per_row=0.001,
                                per_pixel=per_pixel, encode_threads=1)
    b = server.batcher
    gate = Gate(b)
    with client, ThreadPoolExecutor(44) as pool:
        first = pool.submit(client.get, "/api/image.png?seed=0&size=1024")
        assert gate.entered.wait(20)
        flood = [pool.submit(client.get, f"/api/image.png?seed={i}&size=1024")
                 for i in range(1, 41)]
        wait_until(lambda: sum(f.done() for f in flood) == 39)  # answered while nothing ran
        assert gate.calls == 1 and not first.done()
        refused = [f for f in flood if f.done()]
        for r in (f.result() for f in refused):
            assert r.status_code == 503
            msg = r.json()["error"]
            assert "would wait about 5.4 s, counting the resizing of large images" in msg, msg
            assert "limit 5 s" in msg and "try again in 1 s" in msg
            assert r.headers["retry-after"] == "1"
        # Small images are still taken: one at the model's size waits only for generation,
        # a 64 px one for the two large encodes ahead (3.6 s) and its own.
        assert b.estimate(1, 1024 * 1024) == pytest.approx(5.4, abs=0.01)
        small = [pool.submit(client.get, "/api/image.png?seed=50"),
                 pool.submit(client.get, "/api/image.png?seed=51&size=64")]
        wait_until(lambda: len(b._queue) == 3)
        gate.release.set()
        served = [first.result(60), *(f.result(60) for f in flood if f not in refused),
                  *(f.result(60) for f in small)]
    assert len(served) == 4
    assert [r.status_code for r in served] == [200] * 4, [r.text for r in served]
    assert [decode(r.content).shape[0] for r in served] == [1024, 1024, 16, 64]
    assert gate.rows == [1, 3]  # the admitted large face and both small ones in one pass
    assert b._pending_pixels == 0  # every admitted pixel leaves the backlog once encoded


def test_worker_survives_abandoned_and_stale_requests(plain_run):
    from facegan.web.engine import Overloaded

    holder = ModelHolder(plain_run, device="cpu", reload=False)
    batcher = Batcher(holder, max_wait=0.2)
    gate = Gate(batcher)
    z = latents(1, holder.model.latent_dim, 0)
    c = holder.model.labels.draw(1)  # (1, 0): an unconditional model
    first = batcher.submit(z, c)
    assert gate.entered.wait(20)
    abandoned = batcher.submit(z, c)
    assert abandoned.cancel()  # its client went away
    stale = batcher.submit(z, c)
    time.sleep(0.5)  # longer than 2 * max_wait in the queue: answered "busy", not computed
    gate.release.set()
    assert first.result(20).shape == (1, 3, 16, 16)
    with pytest.raises(Overloaded, match="waited too long"):
        stale.result(20)
    assert batcher.submit(z, c).result(20).shape == (1, 3, 16, 16)  # the worker lives on
    assert gate.calls == 2
    batcher.stop()


# ---- the command ----------------------------------------------------------------------------

def test_serve_user_mistakes_are_one_line(tmp_path, capsys, monkeypatch, plain_run):
    assert cli.main(["serve", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facegan: error: ") and "does not exist" in err[0]
    for args, needle in ((["--port", "70000"], "--port 70000"), (["--max-wait", "0"], "--max-wait"),
                         (["--max-batch", "0"], "--max-batch"), (["--device", "tpu"], "unknown device"),
                         (["--project-steps", "-1"], "--project-steps")):
        assert cli.main(["serve", str(plain_run), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("facegan: error: ") and needle in err[0], err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        monkeypatch.setattr(Batcher, "warm_up", lambda self: None)
        assert cli.main(["serve", str(plain_run), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("facegan: error: port ") and "--port" in err[-1]
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the [serve] extra were missing
    assert cli.main(["serve", str(plain_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["facegan: error: facegan serve needs Starlette and uvicorn, which are not "
                   "installed; pip install 'facegan[serve]'"]


def test_serve_command_prints_url_and_stops_cleanly(plain_run):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for host, sig in (("0.0.0.0", signal.SIGINT), ("127.0.0.1", signal.SIGTERM)):
        p = subprocess.Popen([sys.executable, "-m", "facegan", "serve", str(plain_run),
                              "--port", "0", "--host", host], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = p.stdout.readline()
            assert line.startswith("facegan serve: http://127.0.0.1:"), line + p.stderr.read()
            url = line.split()[2]
            import httpx

            r = httpx.get(url + "api/image.png?seed=3", timeout=30)
            assert r.status_code == 200 and decode(r.content).shape == (16, 16, 3)
            p.send_signal(sig)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert p.returncode == 0, err
        assert "Traceback" not in err and "facegan serve: stopped" in out
        if host == "0.0.0.0":
            assert "facegan: warning: serving on 0.0.0.0" in err
        else:
            assert "warning" not in err


def test_bind_refuses_a_port_in_use():
    from facegan.web import bind

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(UserError, match="in use"):
            bind("127.0.0.1", busy.getsockname()[1])


def test_served_connections_send_without_nagle_delay():
    """Connections accepted from bind()'s socket have TCP_NODELAY, set by asyncio only when
    the listening socket says TCP; without it each keep-alive response's body waited ~40 ms
    for the client's delayed ACK of its headers."""
    import asyncio

    from facegan.web import bind

    sock = bind("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    seen = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            raw = transport.get_extra_info("socket")
            seen.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main():
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
