"""facegan serve end to end in a real headless browser: Playwright driving Debian's Chromium
(through executable_path; nothing downloads a browser). Opens the page, checks the grid shows
real images, clicks a face, morphs with the slider, edits with a direction slider, downloads a
PNG and checks it decodes, and saves a screenshot.

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

from test_web import class_run, plain_run, write_directions  # noqa: E402,F401  (fixtures)

from facegan.sampling import generate_images, load_generator  # noqa: E402
from facegan.web import bind  # noqa: E402
from facegan.web.app import Server  # noqa: E402
from facegan.web.engine import Batcher, ModelHolder  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    for name in (os.environ.get("FACEGAN_CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium executable on PATH (Debian: apt-get install -y chromium; or set "
                "FACEGAN_CHROMIUM); the HTTP-level tests in test_web.py still run")


@contextlib.contextmanager
def running(run: Path):
    """The real app on uvicorn, on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    holder = ModelHolder(run, device="cpu", reload=False)
    server = Server(holder, Batcher(holder), run_label=str(run))
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
