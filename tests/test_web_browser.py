"""facegan serve end to end in a real headless browser: Playwright driving Debian's Chromium
(through executable_path; nothing downloads a browser). Opens the page, checks the grid shows
real images, clicks a face, morphs with the slider, edits with a direction slider, downloads a
PNG and checks it decodes, and saves a screenshot. Brings a photo to the page (a generated one,
taken as it is; and a CelebA face, aligned, when ../shared/data and facenet-pytorch are there),
edits, morphs and downloads its projection.

Skips, saying why, only when Playwright or a Chromium executable is missing (.ci/run installs
both); the HTTP-level tests in test_web.py run regardless.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("uvicorn", reason="facegan serve needs the [serve] extra (uvicorn)")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright is not installed (pip install -e '.[dev]')")

from conftest import SHARED_DATA  # noqa: E402
from test_web import class_run, plain_run, write_directions  # noqa: E402,F401  (fixtures)
from test_web_project import photo_bytes, png_pixels  # noqa: E402

from facegan.sampling import generate_images, load_generator  # noqa: E402
from facegan.web import bind  # noqa: E402
from facegan.web.app import Server  # noqa: E402
from facegan.web.engine import Batcher, ModelHolder  # noqa: E402
from facegan.web.projector import ProjectorSettings  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    for name in (os.environ.get("FACEGAN_CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium executable on PATH (Debian: apt-get install -y chromium; or set "
                "FACEGAN_CHROMIUM); the HTTP-level tests in test_web.py still run")


@contextlib.contextmanager
def running(run: Path, projection: ProjectorSettings | None = None):
    """The real app on uvicorn, on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    holder = ModelHolder(run, device="cpu", reload=False)
    server = Server(holder, Batcher(holder), run_label=str(run), projection=projection)
    sock = bind("127.0.0.1", 0)
    userver = uvicorn.Server(uvicorn.Config(server.app, log_level="warning", access_log=False))
    thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not userver.started:
        assert time.monotonic() - t0 < 30, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        userver.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_server(plain_run, tmp_path):
    """(url, run folder): a copy of the tiny run, with two attribute directions."""
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    write_directions(run, load_generator(run).generator.latent_dim)
    with running(run) as url:
        yield url, run


@contextlib.contextmanager
def browser_page(errors: list):
    exe = chromium_path()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Console errors too: a failed request or a blocked resource (the page's policy
            # allows nothing from elsewhere) shows up there.
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page
        finally:
            browser.close()


GRID_READY = ("() => { const i = [...document.querySelectorAll('#grid img')];"
              " return i.length === 16 && i.every(e => e.complete && e.naturalWidth > 0); }")


def natural_widths(page, selector: str) -> list[int]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)")


def test_page_in_a_real_browser(live_server, tmp_path):
    url, run = live_server
    errors = []
    with browser_page(errors) as page:
        page.goto(url)
        # The grid: 16 faces, each a decoded image (naturalWidth 16: the model's size).
        page.wait_for_function(GRID_READY, timeout=30_000)
        assert natural_widths(page, "#grid img") == [16] * 16
        seeds = [int(s) for s in page.eval_on_selector_all("#grid figure",
                                                           "els => els.map(e => e.dataset.seed)")]
        assert len(set(seeds)) == 16
        assert "step 2" in page.inner_text("#model-line")

        # Click a face: it opens large with its seed and the command that draws it again.
        page.click("#grid figure:nth-child(3)")
        page.wait_for_function(f"() => document.getElementById('big-seed').textContent === '{seeds[2]}'")
        page.wait_for_function(
            f"() => document.getElementById('command').textContent.includes('--seed {seeds[2]} ')")
        assert f"facegan sample {run} --n 1 --seed {seeds[2]} --out" in page.inner_text("#command")
        assert "selected" in page.get_attribute("#grid figure:nth-child(3)", "class")

        # Morph: A is the first face, B the clicked one; the slider redraws the frame live.
        page.click("#set-b")
        page.wait_for_function(f"() => document.getElementById('seed-b').textContent === '{seeds[2]}'")
        page.wait_for_function("() => document.getElementById('morph-img').naturalWidth > 0")
        before = page.get_attribute("#morph-img", "data-want")
        page.eval_on_selector("#morph-t", "e => { e.value = 0.9; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(
            "() => { const i = document.getElementById('morph-img');"
            " return i.dataset.want.includes('t=0.90') && i.src === i.dataset.blob && i.complete"
            " && i.naturalWidth > 0; }", timeout=20_000)
        after = page.get_attribute("#morph-img", "data-want")
        assert before != after and f"seed2={seeds[2]}" in after
        assert page.inner_text("#morph-t-value") == "0.90"
        page.wait_for_function("() => document.getElementById('strip').naturalWidth > 16")

        # A direction slider edits the selected face.
        page.eval_on_selector("input[data-direction=Smiling]",
                              "e => { e.value = 2.5; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(
            "() => document.getElementById('big').dataset.want.includes('edit=Smiling%3A2.5')")
        assert "Smiling 2.5" in page.inner_text("#big-edit")
        page.click("#reset-edits")

        # Download the face as PNG: it decodes, and it is the face of that seed.
        with page.expect_download() as info:
            page.click("#download")
        d = info.value
        assert d.suggested_filename == f"facegan-seed{seeds[2]}.png"
        path = tmp_path / d.suggested_filename
        d.save_as(path)
        png = np.asarray(Image.open(path).convert("RGB"))
        want = generate_images(load_generator(run).generator, 1, seed=seeds[2])[0]
        np.testing.assert_array_equal(png, want.permute(1, 2, 0).numpy())

        # The run's sample grids and loss curves, from the run folder.
        page.wait_for_function("() => document.getElementById('samples-img').naturalWidth > 0")
        page.wait_for_function("() => document.getElementById('loss-img').naturalWidth > 0")
        assert "step 2" in page.inner_text("#samples-caption")

        # New faces: new seeds, real images again.
        page.click("#new-faces")
        page.wait_for_function(
            f"() => !document.querySelector('#grid figure[data-seed=\"{seeds[0]}\"]')"
            " && [...document.querySelectorAll('#grid img')].every(e => e.naturalWidth > 0)",
            timeout=30_000)
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        assert Image.open(io.BytesIO(shot.read_bytes())).size[0] == 1200
        if os.environ.get("FACEGAN_TEST_SCREENSHOTS"):  # e.g. kept as a CI artifact
            Path(os.environ["FACEGAN_TEST_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["FACEGAN_TEST_SCREENSHOTS"]) / "serve.png")
        assert "error" not in (page.get_attribute("#status", "class") or "")
    assert errors == []


def test_class_selector_redraws_the_same_faces(class_run):
    errors = []
    with running(class_run) as url, browser_page(errors) as page:
        page.goto(url)
        page.wait_for_function(GRID_READY, timeout=30_000)
        assert page.eval_on_selector_all("#class-select option", "os => os.map(o => o.value)") == [
            "", "cat", "dog"]
        seeds = page.eval_on_selector_all("#grid figure", "els => els.map(e => e.dataset.seed)")
        before = page.eval_on_selector_all("#grid img", "els => els.map(e => e.dataset.want)")
        assert not any("class=" in u for u in before)
        page.select_option("#class-select", "dog")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#grid img')].every(e => e.dataset.want.includes('class=dog')"
            " && e.src === e.dataset.blob && e.complete && e.naturalWidth > 0)", timeout=30_000)
        # The same seeds, now as dogs; the open face's command says so.
        assert page.eval_on_selector_all("#grid figure", "els => els.map(e => e.dataset.seed)") == seeds
        page.wait_for_function("() => document.getElementById('command').textContent.includes('--class dog')")
        assert page.eval_on_selector("#strip", "e => e.dataset.want").count("class=dog") == 1
    assert errors == []


# ---- bring your photo ---------------------------------------------------------------------------

@pytest.fixture
def photo_server(plain_run, tmp_path):
    """(url, run folder): a copy of the tiny run with two directions, projecting in a few steps."""
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    write_directions(run, load_generator(run).generator.latent_dim)
    with running(run, ProjectorSettings(steps=6, encoder_steps=4)) as url:
        yield url, run


BIG_READY = ("() => { const i = document.getElementById('big'); return i.dataset.want.includes(WANT)"
             " && i.src === i.dataset.blob && i.complete && i.naturalWidth > 0; }")


def big_ready(page, want: str, timeout: int = 30_000) -> None:
    page.wait_for_function(BIG_READY.replace("WANT", repr(want)), timeout=timeout)


def shown_pixels(page, selector: str) -> np.ndarray:
    """The RGB pixels an <img> of the page shows (the blob it was given), read in the page."""
    flat = page.eval_on_selector(selector, "async e => { const d = await imagePixels(e.blob);"
                                           " return [d.width, d.height, Array.from(d.data)]; }")
    w, h, data = flat
    return np.asarray(data, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]


def drawn(page, selector: str, want: str, how: str, timeout: int = 30_000) -> None:
    """Wait until the <img> shows the image of a URL containing ``want``, drawn ``how``
    ('with-detail': a photo's detail added in the page; 'as-drawn': the server's pixels)."""
    page.wait_for_function(
        f"() => {{ const i = document.querySelector({selector!r}); return i.dataset.want.includes({want!r})"
        f" && i.dataset.drawn === {how!r} && i.src === i.dataset.blob && i.complete && i.naturalWidth > 0; }}",
        timeout=timeout)


def fetched_pixels(page, url: str, path: str) -> np.ndarray:
    r = page.request.get(url.rstrip("/") + path)
    assert r.ok, r.text()
    return np.asarray(Image.open(io.BytesIO(r.body())).convert("RGB"))


def bring(page, photo: Path, n: int) -> None:
    """Give the page ``photo``, its ``n``-th, and wait until its projection is listed."""
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_function(f"() => document.querySelectorAll('#photo-list figure').length === {n}",
                           timeout=120_000)


def test_bring_your_photo(photo_server, tmp_path):
    url, run = photo_server
    errors, answers = [], []
    photo = tmp_path / "me.png"
    photo.write_bytes(photo_bytes("PNG", (60, 45), seed=3))
    with browser_page(errors) as page:
        page.on("response", lambda r: answers.append(r.status) if "/api/project" in r.url else None)
        page.goto(url)
        page.wait_for_function(GRID_READY, timeout=30_000)
        if page.is_enabled("#align"):
            page.uncheck("#align")  # a generated picture has no face to find: take it as it is
        page.set_input_files("#photo-input", str(photo))
        # The first photo waits for the projector to be prepared (in memory); the page says so
        # and sends the photo again when the server says.
        page.wait_for_function(
            "() => document.getElementById('photo-progress').textContent.includes('preparing the projector')",
            timeout=30_000)
        page.wait_for_function("() => document.getElementById('photo-psnr').textContent.includes('dB')",
                               timeout=120_000)
        assert answers[0] == 503 and answers[-1] == 200
        assert natural_widths(page, "#photo-result img") == [16, 16]
        assert page.inner_text("#photo-crop-caption") == "your photo, as cropped"
        assert "PSNR" in page.inner_text("#photo-psnr")

        # The open face is the photo: the server draws the projection from its latent (the
        # same pixels as the projection shown), and the page adds back the photo's own detail,
        # what the projection missed, so the face shown is the crop itself.
        drawn(page, "#big", "z=", "with-detail")
        assert page.is_checked("#keep-detail")
        assert page.inner_text("#big-seed") == "photo 1" and page.inner_text("#big-kind") == "your"
        plain_src = page.get_attribute("#big", "data-want")
        projected = png_pixels(page.get_attribute("#photo-proj", "src")).astype(int)
        crop = png_pixels(page.get_attribute("#photo-crop", "src")).astype(int)
        np.testing.assert_array_equal(fetched_pixels(page, url, plain_src), projected)
        np.testing.assert_array_equal(shown_pixels(page, "#big"), crop)
        assert "kept nothing" in page.inner_text("#command") and "own detail" in page.inner_text("#command")

        # A direction slider edits it: the edit's change, applied to the photo.
        page.eval_on_selector("input[data-direction=Smiling]",
                              "e => { e.value = 2.5; e.dispatchEvent(new Event('input')); }")
        drawn(page, "#big", "edit=Smiling%3A2.5", "with-detail")
        edited_src = page.get_attribute("#big", "data-want")
        edited = fetched_pixels(page, url, edited_src).astype(int)
        assert np.abs(edited - projected).max() > 0
        shown = shown_pixels(page, "#big")
        assert np.abs(shown - np.clip(edited + crop - projected, 0, 255)).max() <= 1

        # Download PNG: the image shown, a PNG at the model's size; the large one decodes.
        page.wait_for_function("() => document.getElementById('download').href.startsWith('blob:')")
        with page.expect_download() as info:
            page.click("#download")
        d = info.value
        assert d.suggested_filename == "facegan-photo-Smiling+2.5.png"
        path = tmp_path / d.suggested_filename
        d.save_as(path)
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (16, 16)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), shown)
        with page.expect_download() as info:
            page.click("#download-large")
        d = info.value
        d.save_as(tmp_path / "large.png")
        with Image.open(tmp_path / "large.png") as im:
            assert im.format == "PNG" and im.size == (512, 512) and d.suggested_filename.endswith("-512.png")

        # Without the detail: the server's edited projection, and its own download.
        page.uncheck("#keep-detail")
        drawn(page, "#big", "edit=Smiling%3A2.5", "as-drawn")
        np.testing.assert_array_equal(shown_pixels(page, "#big"), edited)
        assert "/api/image.png" in page.get_attribute("#download", "href")
        with page.expect_download() as info:
            page.click("#download")
        info.value.save_as(tmp_path / "bare.png")
        with Image.open(tmp_path / "bare.png") as im:
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), edited)
        page.check("#keep-detail")

        # The photo is face A of the morph, a random face B; the slider moves between them, the
        # photo's detail fading out, (1 - t)^2 of it at t.
        assert page.inner_text("#seed-a") == "photo 1" and "z=" in page.get_attribute("#morph-a", "data-want")
        drawn(page, "#morph-a", "z=", "with-detail")
        np.testing.assert_array_equal(shown_pixels(page, "#morph-a"), crop)
        page.eval_on_selector("#morph-t", "e => { e.value = 0.3; e.dispatchEvent(new Event('input')); }")
        drawn(page, "#morph-img", "t=0.30", "with-detail")
        frame_src = page.get_attribute("#morph-img", "data-want")
        assert "z=" in frame_src and "seed2=" in frame_src
        frame = fetched_pixels(page, url, frame_src).astype(int)
        expect = np.clip(np.round(frame + 0.49 * (crop - projected)), 0, 255)
        assert np.abs(shown_pixels(page, "#morph-img") - expect).max() <= 1
        drawn(page, "#strip", "z=", "with-detail")
        assert "error" not in (page.get_attribute("#status", "class") or "")
    # The 503 of "preparing" is logged by the browser as a failed resource; nothing else failed.
    assert [e for e in errors if "status of 503" not in e] == []


def celeba_test_image() -> Path:
    """A CelebA image from the test partition (2) of ../shared/data/celeba-10k's partition file;
    that copy puts every image in partition 0, so then the last one listed (the tiny run never
    trains on CelebA, so any is a face it has not seen). Skips when the data is absent."""
    root = SHARED_DATA / "celeba-10k"
    images = root / "img_align_celeba"
    if not images.is_dir():
        pytest.skip("../shared/data/celeba-10k is absent (only present in CI and dev machines)")
    names = []
    part = root / "list_eval_partition.txt"
    if part.is_file():
        rows = [ln.split() for ln in part.read_text().splitlines() if len(ln.split()) == 2]
        names = [n for n, p in rows if p == "2"] or [n for n, _ in rows[-1:]]
    names = [n for n in names if (images / n).is_file()] or sorted(p.name for p in images.glob("*.jpg"))[-1:]
    if not names:
        pytest.skip("no CelebA image found in ../shared/data/celeba-10k")
    return images / names[0]


def test_bring_a_celeba_face_aligned_and_morph_to_a_second_photo(photo_server, tmp_path):
    pytest.importorskip("facenet_pytorch", reason="face alignment needs the [align] extra")
    face = celeba_test_image()
    url, run = photo_server
    errors = []
    second = tmp_path / "second.webp"
    second.write_bytes(photo_bytes("WEBP", (50, 50), seed=4))
    with browser_page(errors) as page:
        page.goto(url)
        page.wait_for_function(GRID_READY, timeout=30_000)
        assert page.is_checked("#align") and page.is_enabled("#align")  # aligning is the default
        bring(page, face, 1)
        assert page.inner_text("#photo-crop-caption") == "your photo, aligned"
        # The tiny run's training images show no face: framed as CelebA's, and the page says so.
        assert "CelebA" in page.inner_text("#photo-notes")
        assert "dB" in page.inner_text("#photo-psnr")
        big_ready(page, "z=")
        # A second photo (taken as it is) becomes B: the morph goes from one photo to the other.
        page.uncheck("#align")
        bring(page, second, 2)
        assert page.inner_text("#seed-a") == "photo 1" and page.inner_text("#seed-b") == "photo 2"
        drawn(page, "#morph-img", "z2=", "with-detail")
        assert "z=" in page.get_attribute("#morph-img", "data-want")
        assert page.inner_text("#big-seed") == "photo 2"
    assert [e for e in errors if "status of 503" not in e] == []
