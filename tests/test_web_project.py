"""facegan serve's "bring your photo" over HTTP (Starlette's TestClient): POST /api/project
turns a photo into a latent that every image endpoint takes as z=; hostile uploads are refused
(400 / 413) and the server keeps serving; latents are checked strictly; the projector is
prepared in memory in the worker (503 meanwhile) and nothing is written; a busy worker refuses
a photo at once."""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.errors import UserError

pytest.importorskip("starlette", reason="facegan serve needs the [serve] extra (starlette)")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (in the [dev] extra)")

from conftest import SHARED_DATA
from test_web import (  # noqa: F401  (fixtures)
    Gate,
    TestClient,
    class_run,
    decode,
    plain_run,
    wait_until,
    write_directions,
)

from facegan import projection
from facegan.sampling import load_generator, to_uint8
from facegan.web import upload as U
from facegan.web.app import Server
from facegan.web.engine import Batcher, ModelHolder
from facegan.web.projector import Projector, ProjectorSettings

# A few steps: the tests check the plumbing, not the quality of a projection.
SETTINGS = ProjectorSettings(steps=6, encoder_steps=4)


def make_client(run, settings=SETTINGS, align_available=False, **batcher_args) -> tuple[TestClient, Server]:
    holder = ModelHolder(run, device="cpu", reload=False)
    batcher = Batcher(holder, **batcher_args)
    projector = Projector(holder, batcher, settings, align_available=align_available)
    server = Server(holder, batcher, run_label=str(run), projector=projector)
    return TestClient(server.app), server


def photo_bytes(fmt: str = "PNG", size=(40, 30), seed: int = 0) -> bytes:
    """A small smooth colour photo (gradients and blobs), encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    arr = np.stack([np.sin(6 * x + rng.uniform(0, 6)) + np.cos(5 * y * rng.uniform(0.5, 2)) for _ in range(3)], -1)
    arr = ((arr - arr.min()) / (np.ptp(arr) + 1e-9) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def post(client: TestClient, body, **params):
    return client.post("/api/project", params=params, content=body,
                       headers={"content-type": "application/octet-stream"})


def project_when_ready(client: TestClient, body: bytes, timeout: float = 120.0, **params):
    """POST the photo, asking again while the projector is being prepared (as the page does)."""
    t0 = time.monotonic()
    while True:
        r = post(client, body, **params)
        if r.status_code != 503 or "preparing the projector" not in r.json()["error"]:
            return r
        assert int(r.headers["retry-after"]) >= 1
        assert time.monotonic() - t0 < timeout, "the projector was never ready"
        time.sleep(0.1)


def png_pixels(data_url: str) -> np.ndarray:
    head, b64 = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    return decode(base64.b64decode(b64))


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def run_copy(plain_run, tmp_path) -> Path:
    """A copy of the tiny run with two attribute directions."""
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    write_directions(run, load_generator(run).generator.latent_dim)
    return run


@pytest.fixture
def no_temp_files(monkeypatch):
    """Any temporary file made while it is active fails the test (an upload must stay in memory)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was made")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)


# ---- a photo, projected and then drawn, edited and morphed by its latent ----------------------

def test_a_photo_becomes_a_latent_that_every_image_endpoint_takes(run_copy, no_temp_files):
    before = listing(run_copy)
    client, server = make_client(run_copy)
    info = client.get("/api/info").json()
    assert info["projection"]["state"] == "idle" and info["limits"]["upload_bytes"] == 10 * 2**20
    # The first photo starts preparing the projector (no RUN/encoder.pt): 503 with the time left.
    body = photo_bytes()
    r = post(client, body, align=0)
    assert r.status_code == 503 and r.headers["retry-after"], r.text
    assert "preparing the projector" in r.json()["error"] and "about" in r.json()["error"]
    r = project_when_ready(client, body, align=0)
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["aligned"] is False and any("alignment off" in n for n in ans["notes"])
    z = torch.from_numpy(np.frombuffer(base64.urlsafe_b64decode(ans["latent"] + "=" * (-len(ans["latent"]) % 4)),
                                       dtype="<f4").copy())
    assert z.shape == (8,) and ans["latent_dim"] == 8 and ans["labels"] == []
    crop, proj = png_pixels(ans["crop"]), png_pixels(ans["projection"])
    assert crop.shape == proj.shape == (16, 16, 3)
    # The crop is the photo preprocessed as the training images were; the scores compare the two.
    want_crop = projection.preprocess(Image.open(io.BytesIO(body)), load_generator(run_copy).config.data)[0]
    np.testing.assert_array_equal(crop, want_crop.permute(1, 2, 0).numpy())
    as_t = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)
    assert ans["psnr"] == pytest.approx(projection.psnr(as_t(proj), as_t(crop)), abs=1e-9)
    assert ans["ssim"] == pytest.approx(projection.ssim(as_t(proj), as_t(crop)), abs=1e-9)
    assert client.get("/api/info").json()["projection"]["state"] == "ready"

    # The latent draws the projection's very pixels; a plain face of a latent has no seed command.
    r = client.get("/api/image.png", params={"z": ans["latent"]})
    assert r.status_code == 200 and "x-facegan-command" not in r.headers and "x-facegan-seed" not in r.headers
    face = decode(r.content)
    np.testing.assert_array_equal(face, proj)
    # Truncation concerns drawing a seed's latent: a given latent is used as it is.
    np.testing.assert_array_equal(decode(client.get("/api/image.png", params={
        "z": ans["latent"], "truncation": 0.5}).content), face)
    # Padding is optional.
    padded = ans["latent"] + "=" * (-len(ans["latent"]) % 4)
    np.testing.assert_array_equal(decode(client.get("/api/image.png", params={"z": padded}).content), face)

    # An edit moves it exactly as it moves a seed's face: G(z + s v).
    vecs = write_directions(run_copy, 8)
    r = client.get("/api/image.png", params={"z": ans["latent"], "edit": "Smiling:3,Male:-1.5"})
    edited = decode(r.content)
    assert np.abs(edited.astype(int) - face).max() > 0
    g = load_generator(run_copy).generator
    with torch.inference_mode():
        want = to_uint8(g((z + 3 * vecs["Smiling"] - 1.5 * vecs["Male"])[None], torch.zeros(1, 0)))[0]
    np.testing.assert_array_equal(edited, want.permute(1, 2, 0).numpy())

    # Morphs: to a seed's face and from one, ends included; the strip too.
    seed_face = decode(client.get("/api/image.png?seed=5").content)
    for t, end in ((0, face), (1, seed_face)):
        r = client.get("/api/image.png", params={"z": ans["latent"], "seed2": 5, "t": t})
        assert np.abs(decode(r.content).astype(int) - end).max() <= 1
        r = client.get("/api/image.png", params={"seed": 5, "z2": ans["latent"], "t": 1 - t})
        assert np.abs(decode(r.content).astype(int) - end).max() <= 1
    r = client.get("/api/strip.png", params={"z": ans["latent"], "z2": ans["latent"], "steps": 3})
    strip = decode(r.content)
    assert r.status_code == 200 and strip.shape == (20, 3 * 18 + 2, 3)
    np.testing.assert_array_equal(strip[2:18, 2:18], face)

    # The download: the edited projection, large, named after the photo and its edits.
    r = client.get("/api/image.png", params={"z": ans["latent"], "edit": "Smiling:3", "size": 64,
                                             "download": 1})
    assert r.headers["content-disposition"] == 'attachment; filename="facegan-photo-Smiling+3.0.png"'
    assert decode(r.content).shape == (64, 64, 3)

    # Nothing was written into the run folder: no encoder.pt, no face template.
    after = listing(run_copy)
    after.pop("directions.json")
    before.pop("directions.json")
    assert after == before


def test_a_cached_encoder_is_read_and_used_at_once(run_copy):
    lg = load_generator(run_copy)
    projection.encoder_for(lg, steps=SETTINGS.encoder_steps, progress=False)  # as `facegan project` leaves it
    cached = run_copy / projection.ENCODER_FILE
    stamp = cached.stat().st_mtime_ns
    client, _ = make_client(run_copy)
    r = post(client, photo_bytes("JPEG", (64, 48)), align=0)
    assert r.status_code == 200, r.text  # no "preparing": the cached encoder matched
    assert r.json()["encoder"] == "read from the run's encoder.pt"
    assert cached.stat().st_mtime_ns == stamp
    # Another setting than the cached one's: trained in memory, the file left as it was.
    client, _ = make_client(run_copy, ProjectorSettings(steps=2, encoder_steps=3))
    assert post(client, photo_bytes(), align=0).status_code == 503
    assert project_when_ready(client, photo_bytes(), align=0).status_code == 200
    assert cached.stat().st_mtime_ns == stamp


# ---- hostile uploads --------------------------------------------------------------------------

def bomb_png(side: int = 10_000) -> bytes:
    """A side x side 1-bit PNG: 100 megapixels in a few kilobytes."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_hostile_uploads_are_refused_and_the_server_keeps_serving(run_copy, monkeypatch):
    client, server = make_client(run_copy)
    assert project_when_ready(client, photo_bytes(), align=0).status_code == 200  # prepared
    decoded = []
    real_decode = U.decode_photo
    monkeypatch.setattr(U, "decode_photo", lambda data: decoded.append(len(data)) or real_decode(data))

    bomb = bomb_png()
    assert len(bomb) < 100_000
    jpeg = photo_bytes("JPEG", (256, 256))  # its first half: the header and part of the scan
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    cases = [
        (bomb, 400, "megapixels"),  # refused from its header: never decoded
        (b"just some notes, not a photo\n" * 20, 400, "not a JPEG, PNG or WebP image"),
        (gif.getvalue(), 400, "not a JPEG, PNG or WebP image"),
        (jpeg[: len(jpeg) // 2], 400, "damaged or truncated"),
        (b"", 400, "no photo in the request"),
    ]
    for body, status, needle in cases:
        r = client.post("/api/project", params={"align": 0}, content=body,
                        headers={"content-type": "image/jpeg"})  # the type a client claims counts for nothing
        assert r.status_code == status, (needle, r.text)
        assert needle in r.json()["error"], r.json()
        assert "\n" not in r.json()["error"]
    assert decoded == [len(jpeg) // 2]  # only the truncated JPEG got as far as decoding

    # 50 MB: refused by its Content-Length before a byte is read.
    r = post(client, b"\0" * (50 * 2**20), align=0)
    assert r.status_code == 413 and "more than the 10 MB" in r.json()["error"]
    # A chunked body (no Content-Length) is counted as it streams in.
    sent = []

    def chunks():
        for _ in range(12):
            sent.append(1)
            yield b"\0" * 2**20

    r = post(client, chunks(), align=0)
    assert r.status_code == 413 and "more than the 10 MB" in r.json()["error"]
    assert len(sent) <= 12

    # Still serving: faces, and photos.
    assert client.get("/api/image.png?seed=1").status_code == 200
    assert post(client, photo_bytes("WEBP", (30, 40), seed=2), align=0).status_code == 200
    assert post(client, jpeg, align=0).status_code == 200


# ---- latents in the image endpoints ------------------------------------------------------------

def latent_text(values) -> str:
    return base64.urlsafe_b64encode(np.asarray(values, dtype="<f4").tobytes()).decode().rstrip("=")


GOOD = latent_text(np.linspace(-1, 1, 8))


@pytest.mark.parametrize("query, needle", [
    ({"z": latent_text(np.zeros(7))}, "has 38 characters"),  # 8 values: 43
    ({"z": latent_text(np.zeros(9))}, "has 48 characters"),
    ({"z": GOOD[:-1] + "+"}, "base64url"),
    ({"z": GOOD[:-1] + "!"}, "base64url"),
    ({"z": GOOD + "==="}, "base64url"),
    ({"z": latent_text([np.nan] + [0] * 7)}, "not finite"),
    ({"z": latent_text([np.inf] + [0] * 7)}, "not finite"),
    ({"z": latent_text([1e6] + [0] * 7)}, "magnitude 1e+06"),
    ({"z": latent_text([-16.5] + [0] * 7)}, "within +-16"),
    ({"z": "A" * 9000}, "too long"),
    ({"z": GOOD, "seed": 3}, "not both"),
    ({"seed": 3, "z2": latent_text(np.zeros(3)), "t": 0.5}, "'z2' has"),
    ({"z": GOOD, "seed2": 2, "z2": GOOD}, "not both"),
    ({"z": GOOD, "z2": GOOD[:-2] + "AA", "interp": "cubic"}, "must be one of"),
])
def test_bad_latents_get_400(plain_run, query, needle):
    client, server = make_client(plain_run)
    r = client.get("/api/image.png", params=query)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    strip = {k: v for k, v in query.items() if k != "t"}
    if "seed2" not in strip and "z2" not in strip:
        strip["seed2"] = 1
    r = client.get("/api/strip.png", params=strip)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert server.batcher.forward_calls == 0  # refused before any generation
    assert client.get("/api/image.png", params={"z": GOOD}).status_code == 200


# ---- the worker: busy, conditions, alignment ---------------------------------------------------

def test_a_busy_worker_refuses_a_photo_at_once(run_copy):
    client, server = make_client(run_copy, max_wait=3.0)
    b = server.batcher
    assert project_when_ready(client, photo_bytes(), align=0).status_code == 200
    b.unit_cost["project_step"] = 1.0  # a photo now costs about 6 s of steps: one is enough
    gate = Gate(b)
    with client, ThreadPoolExecutor(4) as pool:
        face = pool.submit(client.get, "/api/image.png?seed=1")
        assert gate.entered.wait(20)  # the worker is busy generating
        first = pool.submit(post, client, photo_bytes(seed=1), align=0)
        wait_until(lambda: len(b._tasks) == 1)
        t0 = time.monotonic()
        r = post(client, photo_bytes(seed=2), align=0)
        assert time.monotonic() - t0 < 2.0  # at once, not after the photo ahead
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "photo ahead would take about" in r.json()["error"], r.json()
        # An image request is still admitted: it waits for one step of the photo, not all of it.
        later = pool.submit(client.get, "/api/image.png?seed=2")
        wait_until(lambda: len(b._queue) == 1)
        gate.release.set()
        assert face.result(30).status_code == 200 and later.result(30).status_code == 200
        assert first.result(60).status_code == 200
    assert b._tasks == [] and b.unit_cost["project_step"] < 1.0  # re-measured as it ran


def test_a_conditional_run_projects_with_the_photos_labels(class_run):
    client, _ = make_client(class_run)
    r = post(client, photo_bytes(), align=0)
    assert r.status_code == 400 and "class=NAME" in r.json()["error"]
    r = project_when_ready(client, photo_bytes(), align=0, **{"class": "dog"})
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["labels"] == [0.0, 1.0] and ans["label_names"] == ["cat", "dog"]
    face = decode(client.get("/api/image.png", params={"z": ans["latent"], "class": "dog"}).content)
    np.testing.assert_array_equal(face, png_pixels(ans["projection"]))


def test_aligning_needs_a_face(run_copy):
    pytest.importorskip("facenet_pytorch", reason="face alignment needs the [align] extra")
    client, server = make_client(run_copy, align_available=None)
    assert client.get("/api/info").json()["projection"]["align_available"] is True
    # Aligning is the default. The tiny run's training images show no face, so the template
    # is CelebA's framing (computed in memory, not written); a photo with no face is a 400.
    r = project_when_ready(client, photo_bytes(size=(64, 64)))
    assert r.status_code == 400 and "no face found" in r.json()["error"] and "align=0" in r.json()["error"]
    assert not (run_copy / projection.TEMPLATE_FILE).exists()
    assert post(client, photo_bytes(), align=0).status_code == 200
    celeba = SHARED_DATA / "celeba-10k" / "img_align_celeba" / "000001.jpg"
    if not celeba.is_file():
        pytest.skip("../shared/data/celeba-10k is absent: the aligned face is not checked")
    r = post(client, celeba.read_bytes())
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["aligned"] is True and any("CelebA" in n for n in ans["notes"])
    assert png_pixels(ans["crop"]).shape == (16, 16, 3)


def test_wait_estimates_count_a_running_task(plain_run):
    """An image request behind a projection waits for one of its steps; a photo behind it for
    all of them."""
    from facegan.web.engine import Task

    holder = ModelHolder(plain_run, device="cpu", reload=False)
    b = Batcher(holder, overhead=0.01, per_row=0.002)
    b.unit_cost.update(project_step=0.05, crop=0.01)
    release = threading.Event()

    def work():
        yield "crop"
        assert release.wait(20)
        for _ in range(9):
            yield "project_step"
        return "done"

    task = b.submit_task(Task(work(), {"crop": 1, "project_step": 10}))
    wait_until(lambda: task.done.get("crop") == 1)  # the worker now waits inside a project_step
    # The running step is one of the ten left, counted once (not again as "what runs now").
    assert b.task_backlog() == pytest.approx(10 * 0.05, abs=0.01)
    # An image waits for what is left of the running step, its own batch and one more step.
    assert 0.012 + 0.05 - 1e-3 <= b.estimate(1) <= 0.012 + 2 * 0.05 + 1e-3
    release.set()
    assert task.future.result(20) == "done"
    assert b.task_backlog() == pytest.approx(0.0, abs=1e-6)
    b.stop()


def test_a_photo_whose_client_left_frees_the_worker(run_copy):
    """Over a real connection (uvicorn): a client that gives up on a long projection gets its
    task cancelled within a moment, and the worker serves faces again."""
    uvicorn = pytest.importorskip("uvicorn")
    import httpx

    from facegan.web import bind

    projection.encoder_for(load_generator(run_copy), steps=SETTINGS.encoder_steps, progress=False)
    holder = ModelHolder(run_copy, device="cpu", reload=False)
    batcher = Batcher(holder)
    server = Server(holder, batcher, projection=ProjectorSettings(steps=100_000, encoder_steps=4))
    sock = bind("127.0.0.1", 0)
    userver = uvicorn.Server(uvicorn.Config(server.app, log_level="warning", access_log=False))
    thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: userver.started)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{base}/api/project?align=0", content=photo_bytes(), timeout=1.5)
        wait_until(lambda: not batcher._tasks, timeout=10)  # given up, not run to its end
        assert httpx.get(f"{base}/api/image.png?seed=1", timeout=10).status_code == 200
    finally:
        userver.should_exit = True
        thread.join(10)
        sock.close()


def test_the_page_projects_with_the_critic_or_pixels_only():
    from facegan.web.projector import ProjectorSettings

    assert ProjectorSettings(features="none").features == "none"
    for name in ("inception", "classifier", "vgg"):
        with pytest.raises(UserError, match="critic or none"):
            ProjectorSettings(features=name)
