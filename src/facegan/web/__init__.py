"""``facegan serve RUN``: explore a trained model in the browser.

Built on Starlette, served by uvicorn. The page needs a handful of JSON and PNG endpoints and
its own three files; Starlette is a small, well-kept ASGI toolkit that does exactly that
(routing, requests, responses, a test client) without the validation and OpenAPI layers of
FastAPI, which add dependencies (pydantic) and nothing this page uses. Being ASGI, requests
wait for the generator without holding a thread each, which is what lets the batcher
(:mod:`.engine`) merge many clients' requests into one forward pass. uvicorn is the reference
ASGI server, pure Python with optional speed-ups. Both come with the ``[serve]`` extra.

Layout: :mod:`.engine` (model, directions, batching, long tasks), :mod:`.params` (request
validation, latents and labels), :mod:`.upload` (a photo's bytes read and checked in memory),
:mod:`.projector` (photos projected into the latent space, as tasks of the batcher),
:mod:`.runfiles` (the run folder's outputs, by known names only), :mod:`.app` (the
endpoints), ``static/`` (the page: plain HTML, CSS, JavaScript; no CDN). This package imports
:mod:`facegan.sampling` for models and images and :mod:`facegan.projection` for photos,
nothing from training or evaluation.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import signal
import socket
import sys
import threading

from ..errors import UserError

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]
MISSING_EXTRA = ("facegan serve needs Starlette and uvicorn, which are not installed; "
                 "pip install 'facegan[serve]'")


def check_installed() -> None:
    """UserError (one line, with the pip command) when the [serve] extra is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(MISSING_EXTRA) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); UserError when it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host '{host}' is not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    # proto must say TCP (getaddrinfo's IPPROTO_TCP, not 0): asyncio turns Nagle's algorithm off
    # (TCP_NODELAY) only on connections accepted from such a socket. With it on, a response's
    # body waits for the client's delayed ACK of its headers: 40 ms on every keep-alive request.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UserError(f"port {port} is in use on {host}; pick another with --port N "
                            "(or --port 0 for any free one)") from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another "
                        "--host or --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"  # what a browser on this machine opens
    return f"http://{shown}:{port}/"


def _quiet_server_class():
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn's server, but a signal that stopped it is not raised again afterwards.

        uvicorn (0.29+) shuts down gracefully on SIGINT / SIGTERM and then re-raises the signal
        for programs that embed it; inside asyncio's runner that re-raise becomes a
        KeyboardInterrupt traceback. For this command a stop request is the normal way to end:
        it stops, says so, exits 0.
        """

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return QuietServer


def serve(run: str, *, host: str = "127.0.0.1", port: int = 8765, device: str = "auto",
          max_wait: float = 3.0, max_batch: int = 32, reload: bool = True, project_steps: int | None = None,
          out=sys.stdout) -> int:
    """Load ``run``, listen on host:port, serve until Ctrl-C / SIGTERM; returns 0 then.

    Prints one line naming the URL once the socket listens and the model is ready (after a
    warning when the address is reachable from other machines). A user mistake (no such run,
    port in use, a bad option) is a UserError before anything is served. ``project_steps``:
    optimisation steps per photo brought to the page (default
    :data:`.projector.PAGE_STEPS`).
    """
    check_installed()
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port number; give 1 to 65535 (0: any free port)")
    # nan passes every comparison (nothing would ever be refused) and neither nan nor inf is
    # JSON (the page's /api/info sends it): only a finite positive number of seconds.
    if not (math.isfinite(max_wait) and max_wait > 0):
        raise UserError(f"--max-wait must be a positive number of seconds, got {max_wait:g}; "
                        "give e.g. --max-wait 3")
    if not 1 <= max_batch <= 1024:
        raise UserError("--max-batch must be from 1 to 1024")
    if project_steps is not None and not 0 <= project_steps <= 5000:
        raise UserError("--project-steps must be from 0 to 5000")
    sock = bind(host, port)  # first: a port in use is said at once, not after loading
    try:
        _serve(sock, run, host, device, max_wait, max_batch, reload, project_steps, out)
    except KeyboardInterrupt:  # Ctrl-C while the model loads, or a second one while stopping
        pass
    finally:
        sock.close()
    print("facegan serve: stopped", file=out, flush=True)
    return 0


def _serve(sock, run, host, device, max_wait, max_batch, reload, project_steps, out) -> None:
    import uvicorn

    from .app import Server
    from .engine import Batcher, ModelHolder
    from .projector import PAGE_STEPS, ProjectorSettings

    holder = ModelHolder(run, device=device, reload=reload)
    batcher = Batcher(holder, max_batch=max_batch, max_wait=max_wait)
    batcher.warm_up()  # measures this machine, so refusals under load are by real times
    loopback = is_loopback(host)
    # (Starlette's host check cannot parse an IPv6 Host header: no check on ::1.)
    allowed = sorted({*LOOPBACK_NAMES, host}) if loopback and ":" not in host else None
    projection = ProjectorSettings(steps=PAGE_STEPS if project_steps is None else project_steps)
    server = Server(holder, batcher, run_label=str(run), allowed_hosts=allowed, projection=projection)
    if not loopback:
        print(f"facegan: warning: serving on {host}, which other machines can reach: anyone who "
              "can connect can use the model and see this run's samples and curves (there is no "
              "password); use the default --host 127.0.0.1 to keep it on this machine",
              file=sys.stderr)
    m = holder.model
    if m.directions_problem:
        print(f"facegan: warning: {m.directions_problem}; serving without direction sliders",
              file=sys.stderr)
    print(f"facegan serve: {url_of(sock)}  ({run}: step {m.loaded.step}, {m.resolution}px, "
          f"{m.device}; Ctrl-C stops)", file=out, flush=True)
    config = uvicorn.Config(server.app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)
    try:
        _quiet_server_class()(config).run(sockets=[sock])
    finally:
        batcher.stop()
