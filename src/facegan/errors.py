"""What stops a command: a user's mistake or a stop signal.

The CLI turns a :class:`UserError` into a one-line message on stderr and exit status 2; any
other exception is a bug in facegan and keeps its traceback. Within
:func:`stop_signals_interrupt`, SIGTERM stops a command as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import numbers
import signal
import threading
from typing import Any


class UserError(Exception):
    """A mistake in the user's input (path, option, file). The message names the problem and the fix."""


def check_whole(value: Any, name: str, minimum: int | None = 0) -> int:
    """``value`` as an int of at least ``minimum`` (a number of images, rows or steps; a seed
    with ``minimum`` None), for values given from Python: TypeError for what is no whole number
    (2.5, '16', True, None), UserError below ``minimum``. ``name`` says what it is in the
    messages."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        shown = repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"  # not a model's repr
        raise TypeError(f"{name} must be a whole number (int), got {shown}")
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def plural(n: int, word: str) -> str:
    """'1 image', '3 images', '10,000 images': a count for a message, ``word`` singular."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class StopSignal(KeyboardInterrupt):
    """SIGINT or SIGTERM outside the training loop, raised by the handler that
    :func:`stop_signals_interrupt` installs; ``signal_name``: which."""

    def __init__(self, name: str):
        super().__init__(name)
        self.signal_name = name


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within it, SIGTERM stops like Ctrl-C: both raise :class:`StopSignal` (a
    KeyboardInterrupt), so every ``finally`` runs (temporary files removed, a failed start's
    folder taken back) instead of the process dying at once. The training loop installs its
    own handlers (a checkpoint first) and restores these. A signal
    ignored (SIG_IGN) stays ignored; outside the main thread nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise StopSignal(signal.Signals(signum).name)

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                old[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
