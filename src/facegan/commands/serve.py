"""``facegan serve``: the web page for a run."""

from __future__ import annotations

from .common import add_device, add_run


def register(sub) -> None:
    """Add ``serve`` to the main parser's subparsers."""
    sv = sub.add_parser("serve", help="explore a trained model in the browser (needs facegan[serve])",
                        description="Serve a web page for a run: faces by seed, morphs, conditions, "
                        "attribute directions, your own photo projected and edited, and the run's "
                        "samples and curves while it trains.")
    add_run(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, "
                    "this machine only; 0.0.0.0 makes the page reachable from other machines)")
    sv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    add_device(sv)
    sv.add_argument("--max-wait", type=float, default=3.0, metavar="SECONDS", help="refuse (503) a "
                    "request that would wait longer than this (default 3)")
    sv.add_argument("--max-batch", type=int, default=32, help="images per generator pass (default 32)")
    sv.add_argument("--project-steps", type=int, default=None, metavar="N", help="optimisation steps "
                    "per photo brought to the page (default 100; facegan project uses 300)")
    sv.add_argument("--no-reload", action="store_true", help="keep the model loaded at start "
                    "(default: load a newer checkpoint of a run that is still training)")
    sv.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from ..web import (
        serve,  # lazily: Starlette and uvicorn are the optional [serve] extra
    )

    return serve(args.run, host=args.host, port=args.port, device=args.device,
                 max_wait=args.max_wait, max_batch=args.max_batch, reload=not args.no_reload,
                 project_steps=args.project_steps)
