"""The HTTP side: a Starlette app of a few JSON and PNG endpoints and the page's own assets.

Endpoints (every parameter checked by :mod:`.params`, a bad one answered 400 with
``{"error": message}``; a server too busy answers 503 with a message and a Retry-After):

- ``/``, ``/static/<name>``: the page (HTML, CSS, JS shipped in the package, read once).
- ``/api/info``: the model (resolution, latent size, step, labels, directions), the limits
  and the projector's state.
- ``/api/seeds?n=16``: n different fresh random seeds (below a million), 1 <= n <= 64.
- ``/api/image.png?seed=S|z=LATENT[&seed2=S2|&z2=LATENT2&t=0.3&interp=slerp]
  [&class=C|&attr=A=1,B=0][&edit=NAME:1.5,...][&size=256][&download=1]``: one face, a PNG;
  for a plain face of a seed (no morph, no edit) the header ``X-Facegan-Command`` holds the
  ``facegan sample`` command that draws the same pixels. ``z`` / ``z2``: a latent instead of a
  seed (base64url float32, as ``/api/project`` answers; see :mod:`.params`).
- ``/api/strip.png?seed=S|z=..&seed2=S2|z2=..&steps=8&interp=lerp[&class=..|&attr=..]``: the
  interpolation as one strip of frames.
- ``POST /api/project[?align=0|1][&class=C|&attr=..]``, the body a photo's bytes (JPEG, PNG or
  WebP, at most 10 MB and 40 megapixels; :mod:`.upload`): the photo projected into the
  model's latent space (:mod:`.projector`, in the batcher's worker). JSON: ``latent`` (for
  ``z=``), ``labels``, ``psnr``, ``ssim``, ``aligned``, ``notes``, and the ``crop`` matched
  and the ``projection`` as PNG data URLs. 413 for a larger body, 400 for a file that is not
  such an image, is damaged, or (aligning) shows no face, 503 while the projector is being
  prepared (once per model) or when the photos ahead would take longer than ``--max-wait``.
  Nothing of the photo is written or kept.
- ``/api/run``: the run folder's sample grids, curves and metrics summary.
- ``/api/run/files/<id>``: one of those files, by the id ``/api/run`` listed.
"""

from __future__ import annotations

import asyncio
import random
import shlex
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..projection import MAX_PHOTO_PIXELS
from ..sampling import make_grid
from . import params as P
from . import upload as U
from .engine import Batcher, ModelHolder, Overloaded, png_bytes, whole_seconds
from .projector import Projector, ProjectorFailed, ProjectorSettings
from .runfiles import MetricsCache, list_run_files, read_run_file

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
                ".png": "image/png", ".ico": "image/x-icon"}
RUN_FILE_TYPES = {".png": "image/png"}
# Images depend on the model version (in the page's URLs as v=...), so a repeated request, e.g.
# the morph slider moved back, can come from the browser's cache.
IMAGE_CACHE = "private, max-age=600"
_system_random = random.SystemRandom()
# The page loads nothing from anywhere else (no CDN; it works offline) and the browser holds it
# to that; images arrive as blob: URLs made from fetched PNGs.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
               "base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
# Photos decoded at once (each up to 40 megapixels: a second of a core and 120 MB); more wait.
DECODE_SLOTS = 2


def load_static() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type) for the page's files in facegan/web/static (read once)."""
    out = {}
    for f in resources.files("facegan.web").joinpath("static").iterdir():
        suffix = Path(f.name).suffix
        if f.is_file() and suffix in STATIC_TYPES:
            out[f.name] = (f.read_bytes(), STATIC_TYPES[suffix])
    return out


def error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Server:
    """The app's state: model holder, batcher, page assets, run files; :attr:`app` the ASGI app."""

    def __init__(self, holder: ModelHolder, batcher: Batcher | None = None, *,
                 run_label: str | None = None, request_timeout: float = 60.0,
                 allowed_hosts: list[str] | None = None, projector: Projector | None = None,
                 projection: ProjectorSettings | None = None):
        self.holder = holder
        self.batcher = batcher or Batcher(holder)
        self.projector = projector or Projector(holder, self.batcher, projection)
        self._decode_slots = anyio.CapacityLimiter(DECODE_SLOTS)
        self.static = load_static()
        lg = holder.model.loaded
        self.run_dir = lg.run_dir
        self.run_label = run_label or str(lg.run_dir or lg.checkpoint)
        self.metrics = MetricsCache(self.run_dir)
        self.request_timeout = request_timeout
        routes = [
            Route("/", self.index),
            Route("/static/{name:path}", self.static_file),
            Route("/api/info", self.info),
            Route("/api/seeds", self.seeds),
            Route("/api/image.png", self.image),
            Route("/api/strip.png", self.strip),
            Route("/api/project", self.project, methods=["POST"]),
            Route("/api/run", self.run_info),
            Route("/api/run/files/{name:path}", self.run_file),
        ]
        middleware = []
        if allowed_hosts:
            # Served on loopback, only requests addressed to loopback names are answered, so a
            # web site cannot reach this server by pointing a DNS name at 127.0.0.1.
            middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
        self.app = Starlette(routes=routes, middleware=middleware, lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app):
        yield
        self.batcher.stop()

    # ---- page ----
    async def index(self, request: Request) -> Response:
        body, ctype = self.static["index.html"]
        return Response(body, media_type=ctype, headers={"Cache-Control": "no-cache",
                                                         "Content-Security-Policy": PAGE_POLICY})

    async def static_file(self, request: Request) -> Response:
        # Looked up in the table read at start-up: the name never becomes a path.
        hit = self.static.get(request.path_params["name"])
        if hit is None:
            return error(404, "no such page asset")
        return Response(hit[0], media_type=hit[1], headers={"Cache-Control": "no-cache"})

    # ---- model ----
    async def info(self, request: Request) -> Response:
        m = self.holder.model
        spec = m.labels
        return JSONResponse({
            "run": self.run_label,
            "checkpoint": str(m.loaded.checkpoint),
            "step": m.loaded.step,
            "version": m.version,
            "resolution": m.resolution,
            "latent_dim": m.latent_dim,
            "ema": m.loaded.has_ema,
            "device": str(m.device),
            "preset": m.loaded.config.preset,
            "labels": {"kind": spec.kind, "names": list(spec.names)} if spec.conditional else None,
            "directions": [{"name": d.name, "method": d.method, "accuracy": d.accuracy}
                           for d in m.directions.values()],
            "directions_problem": m.directions_problem,
            "reload_problem": self.holder.reload_problem,
            "limits": {"seed_max": P.SEED_MAX, "strength_max": P.STRENGTH_MAX,
                       "max_faces": P.MAX_FACES, "strip_steps": list(P.STRIP_STEPS),
                       "max_size": P.MAX_SIZE, "max_wait_s": self.batcher.max_wait,
                       "upload_bytes": U.MAX_UPLOAD_BYTES, "upload_pixels": MAX_PHOTO_PIXELS,
                       "latent_max": P.LATENT_MAX},
            "projection": self.projector.status(m),
            "stats": {"forward_calls": self.batcher.forward_calls,
                      "images": self.batcher.rows_done},
        }, headers={"Cache-Control": "no-store"})

    async def seeds(self, request: Request) -> Response:
        try:
            P.check_names(request.query_params, {"n"})
            n = P.get_int(request.query_params, "n", 1, P.MAX_FACES, default=16)
        except P.BadRequest as e:
            return error(400, str(e))
        seeds = _system_random.sample(range(P.NEW_SEEDS_BELOW), n)  # n different faces
        return JSONResponse({"seeds": seeds},
                            headers={"Cache-Control": "no-store"})

    async def _render(self, parse) -> tuple[bytes, dict] | Response:
        """``parse()`` -> (z float (n, D), c float (n, K), opts, finish, pixels): ``finish``
        makes the PNG from the images uint8 (n, 3, R, R). With ``pixels`` > 0 (its output
        pixels: a resize to up to 1024 px takes a while) it runs in the batcher's encode
        threads, off the event loop and counted in the wait that decides a 503; with 0 here
        (a PNG at the model's size: well under a millisecond). Returns (PNG bytes, opts), or
        the 400 / 503 Response."""
        try:
            z, c, opts, finish, pixels = parse()
            if pixels:
                fut = self.batcher.submit(z, c, finish, pixels)
            else:
                fut = self.batcher.submit(z, c)
            result = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.request_timeout)
            return (result if pixels else finish(result)), opts
        except P.BadRequest as e:
            return error(400, str(e))
        except Overloaded as e:
            return error(503, str(e), e.retry_after)
        except asyncio.TimeoutError:
            return error(503, "server busy: generation timed out; try again shortly",
                         whole_seconds(self.batcher.max_wait))

    async def image(self, request: Request) -> Response:
        m = self.holder.model

        def parse():
            face, opts = P.parse_face(request.query_params, m)
            size = opts["size"]
            pixels = 0 if size == m.resolution else size * size
            return face.z[None], face.c[None], opts, lambda imgs: png_bytes(imgs[0], size), pixels

        result = await self._render(parse)
        if isinstance(result, Response):
            return result
        body, opts = result
        headers = {"Cache-Control": IMAGE_CACHE, "X-Facegan-Model-Version": str(m.version)}
        if opts["seed"] is not None:
            headers["X-Facegan-Seed"] = str(opts["seed"])
            if "t" not in opts and not opts["edits"]:
                # The command that draws this very face (a plain face of a seed; morphs, edits
                # and given latents have none).
                trunc = f" --truncation {opts['truncation']:g}" if opts.get("truncation") else ""
                headers["X-Facegan-Command"] = (f"facegan sample {shlex.quote(self.run_label)} --n 1 "
                                                f"--seed {opts['seed']}{opts['condition'].cli_options()}{trunc} "
                                                f"--out seed{opts['seed']}.png")
        if opts["download"]:
            name = "facegan-" + ("photo" if opts["seed"] is None else f"seed{opts['seed']}")
            if "t" in opts:
                to = "photo" if opts["seed2"] is None else opts["seed2"]
                name += f"-to-{to}-t{opts['t']:.2f}"
            for d, s in opts["edits"]:
                name += f"-{''.join(ch for ch in d if ch.isalnum())[:20]}{s:+.1f}"
            headers["Content-Disposition"] = f'attachment; filename="{name}.png"'
        return Response(body, media_type="image/png", headers=headers)

    async def strip(self, request: Request) -> Response:
        m = self.holder.model

        def parse():
            z, c, opts = P.parse_strip(request.query_params, m)
            return z, c, opts, lambda imgs: png_bytes(make_grid(imgs, nrow=imgs.shape[0])), 0

        result = await self._render(parse)
        if isinstance(result, Response):
            return result
        body, _ = result
        return Response(body, media_type="image/png", headers={"Cache-Control": IMAGE_CACHE})

    # ---- photos ----
    async def project(self, request: Request) -> Response:
        """A photo (the body) -> its projection (JSON). In order: the options (400), the body
        within its bound (413), the header's format and pixel count (400), the projector and
        the queue (503 at once: preparing, or busy), the full decode (400), then the
        projection in the worker, awaited (400 when aligning finds no face)."""
        m = self.holder.model
        t0 = time.monotonic()
        try:
            want_align, cond = P.parse_project(request.query_params, m, self.projector.align_available)
            align = want_align and self.projector.align_available
            notes = []
            if want_align and not align:
                notes.append("face alignment needs facenet-pytorch, which this server lacks (pip install "
                             "'facegan[align]'): the photo was taken as it is, cut by the run's crop")
            elif not align:
                notes.append("alignment off: the photo was taken as it is, cut by the run's crop")
            data = await U.read_body(request)
            U.check_photo(data)
            prep = await run_in_threadpool(self.projector.ready, m, align)
            self.batcher.admit_task()  # busy: refused before the decode is paid for
            photo = await anyio.to_thread.run_sync(U.decode_photo, data, limiter=self._decode_slots)
            del data
            labels = P.latent_labels(cond, m.labels)
            task = self.batcher.submit_task(self.projector.task(prep, m, photo, labels, align, tuple(notes)))
            del photo  # the task holds it until it ends, and nothing after
        except U.TooLarge as e:
            return error(413, str(e))
        except P.BadRequest as e:
            return error(400, str(e))
        except Overloaded as e:
            return error(503, str(e), e.retry_after)
        except ProjectorFailed as e:
            return error(500, str(e))
        timeout = self.request_timeout + 3 * self.batcher.until_done(task)
        fut = asyncio.wrap_future(task.future)
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=0.5)
                if done:
                    break
                if await request.is_disconnected():  # the person left: free the worker
                    task.cancel()
                    fut.cancel()  # its outcome, when the worker gets to it, is wanted by no one
                    return error(503, "the request was given up")
                if time.monotonic() - t0 > timeout:
                    task.cancel()
                    fut.cancel()
                    return error(503, "server busy: the projection took too long; try again shortly",
                                 whole_seconds(self.batcher.max_wait))
            answer = fut.result()
        except P.BadRequest as e:
            return error(400, str(e))
        except Overloaded as e:
            return error(503, str(e), e.retry_after)
        answer["seconds"] = round(time.monotonic() - t0, 2)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    # ---- run folder ----
    async def run_info(self, request: Request) -> Response:
        # A run still training: look for a newer checkpoint here too, so the page hears of it
        # even when nobody is generating (a thread: loading takes a moment).
        await run_in_threadpool(self.holder.maybe_reload)
        files = list_run_files(self.run_dir)
        listed = sorted(files.values(), key=lambda f: (f.kind != "curve", f.step or 0, f.id))
        return JSONResponse({
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "files": [{"id": f.id, "kind": f.kind, "step": f.step, "title": f.title,
                       "version": int(f.mtime * 1000)} for f in listed],
            "metrics": self.metrics.summary(),
            "model_step": self.holder.model.loaded.step,
            "model_version": self.holder.model.version,
        }, headers={"Cache-Control": "no-store"})

    async def run_file(self, request: Request) -> Response:
        # The id is only a key into a fresh listing of known outputs; '../x', '/etc/passwd' or
        # any other text that is not such an id is a 404 before anything is opened.
        f = list_run_files(self.run_dir).get(request.path_params["name"])
        if f is None:
            return error(404, "no such run file")
        try:
            body = read_run_file(f)
        except OSError:
            return error(404, "run file no longer there")
        return Response(body, media_type=RUN_FILE_TYPES.get(f.path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})
