"""The ``facegan`` command: thin subcommands that parse, validate and call the library.

One module per group (``train`` / ``demo`` / ``presets``, ``sample`` / ``morph``,
``directions`` / ``edit``, ``project``, ``fid`` / ``evaluate`` / ``nearest``, ``serve``), each
adding its subparsers with ``register``. A user mistake raises UserError, printed as one line
``facegan: error: ...`` with exit status 2; a diverged run exits with 3, an interrupted one
with 130. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import UserError
from . import directions, metrics, project, sample, serve, train
from .common import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USER_ERROR, is_main_process


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="facegan", description="Train, sample and evaluate face GANs.")
    p.add_argument("--version", action="version", version=f"facegan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    train.register(sub)  # train, demo
    sample.register(sub)  # sample, morph
    train.register_presets(sub)
    serve.register(sub)
    directions.register(sub)  # directions, edit
    project.register(sub)  # project (GAN inversion)
    metrics.register(sub)  # fid, evaluate, nearest
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """facegan's own warnings (their text starts 'facegan: ') as one line, like its errors;
    anyone else's as Python prints them."""
    text = str(message)
    if text.startswith("facegan: "):
        if not text.startswith("facegan: warning: "):
            text = "facegan: warning: " + text[len("facegan: "):]
        return text + "\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Run the ``facegan`` command with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options too (train --steps 3 k=v --out R k2=v2):
    # argparse alone takes one run of positionals only.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    warnings.formatwarning = _format_warning
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        # Under torchrun each rank meets the same mistake: rank 0 says it, the others only
        # when the error is theirs alone (see DistEnv.agree).
        if is_main_process() or getattr(e, "rank_only", False):
            print(f"facegan: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("facegan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of the output went away (`facegan presets | head`): stop quietly, as other
        # command-line tools do. Python flushes stdout again at exit, so point it at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        warnings.formatwarning = _python_format_warning


__all__ = ["EXIT_DIVERGED", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
