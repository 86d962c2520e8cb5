"""Progress of long work: a tqdm bar on a terminal, plain periodic lines in logs, an ETA that
respects a time budget, and the runner for step-at-a-time work."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Generator
from typing import Any


def format_duration(seconds: float) -> str:
    """45s, 2m50s, 1h02m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta_seconds(remaining: float, rate: float | None, budget_left: float | None = None) -> float | None:
    """Seconds to the end: ``remaining`` units at ``rate`` units a second, or the time budget
    left (``budget_left`` seconds) when that ends sooner; None when neither is known.

    ``eta_seconds(9000, 0.01, budget_left=500)`` -> 500.0 (the budget ends the run first).
    """
    eta = remaining / rate if rate and rate > 0 else None
    if budget_left is not None:
        eta = max(0.0, budget_left) if eta is None else min(eta, max(0.0, budget_left))
    return None if eta is None else max(0.0, float(eta))


def _format_rate(rate: float) -> str:
    """41.2, 3.1, and two significant digits below 1 (0.048)."""
    return f"{rate:.1f}" if rate >= 1 or rate == 0 else f"{rate:.2g}"


@functools.cache
def _budget_bar_class():
    """tqdm with the ETA of :func:`eta_seconds` (``bar.budget_left``) in place of its own."""
    from tqdm import tqdm

    class BudgetBar(tqdm):
        budget_left: float | None = None

        @property
        def format_dict(self):
            d = super().format_dict
            n, total, elapsed = d.get("n", 0), d.get("total"), d.get("elapsed") or 0
            rate = d.get("rate") or ((n - (d.get("initial") or 0)) / elapsed if elapsed else None)
            eta = eta_seconds(total - n, rate, self.budget_left) if total else None
            d["eta_fmt"] = "?" if eta is None else tqdm.format_interval(eta)
            return d

    return BudgetBar


class Progress:
    """Progress of a count: a tqdm bar on a terminal, else one line on ``stream`` (stderr) at
    every 10% and at least every ``every_s`` seconds, so logs show it too (no carriage
    returns)::

        real-image features: 3000/10000 images, 41.2 img/s, eta 2m50s
        train: step 1200/10000, 3.1 steps/s, d=-0.412, g=1.203, eta 47m20s

    ``log=None`` picks by ``stream.isatty()``. ``count``: how the count reads (``{done}``,
    ``{total}``, ``{unit}``); ``rate_unit``: the rate's unit in the lines, ``bar_unit`` the
    unit on the bar (tqdm's, e.g. 'step' for '3.1step/s'); ``initial``: the count already
    done before (a resumed run), not part of the rate. :meth:`set_fields` adds ``key=value``
    fields (the bar's postfix); :meth:`set_budget_left` makes the ETA the smaller of the count's
    and the time budget's (:func:`eta_seconds`), on the bar as in the lines.
    """

    def __init__(self, total: int, desc: str = "features", unit: str = "images", *,
                 stream=None, log: bool | None = None, every_s: float = 30.0, initial: int = 0,
                 count: str = "{done}/{total} {unit}", rate_unit: str = "img/s", bar_unit: str = "img",
                 leave: bool = False):
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.count = count
        self.rate_unit = rate_unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.initial = self.done = int(initial)
        self.fields: dict[str, str] = {}
        self.budget_left: float | None = None
        self.t0 = time.perf_counter()
        self._last_t = self.t0
        self._next_tenth = 10 * self.done // max(self.total, 1) + 1  # the next 10% step to report
        self._bar = None
        if log is None:
            isatty = getattr(self.stream, "isatty", None)
            log = not (callable(isatty) and isatty())
        self.log = log
        if not log and self.total:
            self._bar = _budget_bar_class()(
                total=self.total, initial=self.done, desc=desc, unit=bar_unit,
                leave=leave, file=self.stream, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{eta_fmt}, {rate_fmt}{postfix}]")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        tenths = 10 * self.done // max(self.total, 1)
        if tenths >= self._next_tenth or self.done >= self.total or now - self._last_t >= self.every_s:
            self._next_tenth = tenths + 1
            self._last_t = now
            self._line(now)

    def set_fields(self, **fields: str) -> None:
        """``key=value`` fields shown from now on (after the rate)."""
        self.fields = {k: str(v) for k, v in fields.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.fields, refresh=False)

    def set_budget_left(self, seconds: float | None) -> None:
        """The time budget left (None: no budget); the ETA is never later than its end."""
        self.budget_left = seconds
        if self._bar is not None:
            self._bar.budget_left = seconds

    def set_total(self, total: int) -> None:
        self.total = int(total)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: the count at the rate so far, or the budget when it ends sooner."""
        dt = max((now if now is not None else time.perf_counter()) - self.t0, 1e-9)
        return eta_seconds(self.total - self.done, (self.done - self.initial) / dt, self.budget_left)

    def write(self, message: str) -> None:
        """One line on the stream, above the bar when there is one."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def _line(self, now: float) -> None:
        dt = max(now - self.t0, 1e-9)
        rate = (self.done - self.initial) / dt
        if self.done >= self.total:
            tail = f"done in {format_duration(dt)}"
        else:
            eta = self.eta(now)
            tail = f"eta {'?' if eta is None else format_duration(eta)}"
        parts = [self.count.format(done=self.done, total=self.total, unit=self.unit),
                 f"{_format_rate(rate)} {self.rate_unit}", *(f"{k}={v}" for k, v in self.fields.items()), tail]
        print(f"{self.desc}: {', '.join(parts)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_steps(work: Generator[float, None, Any], progress: Progress | None = None) -> Any:
    """Run a step-at-a-time Python generator (work that yields each step's loss, so a caller
    can interleave it with other work, such as projection's encoder training and latent
    optimisation) to its end: its return value. ``progress``: a :class:`Progress` counted on
    by one per step, showing the step's loss."""
    while True:
        try:
            loss = next(work)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress.set_fields(loss=f"{loss:.4f}")
            progress.update()
