"""A subprocess's stderr read in a thread, for tests that act when a line appears (send a
signal once training holds, once an evaluation reports progress) instead of sleeping blindly."""

from __future__ import annotations

import subprocess
import threading


class StderrWatch:
    """Collects ``proc``'s stderr lines (it must be opened with ``stderr=PIPE, text=True``);
    :meth:`wait` blocks until a line starts with ``marker``."""

    def __init__(self, proc: subprocess.Popen, marker: str):
        self.lines: list[str] = []
        self._marker = marker
        self._seen = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line)
            if line.startswith(self._marker):
                self._seen.set()

    def wait(self, timeout: float) -> None:
        """Assert the marker line arrives within ``timeout`` seconds (else show what did)."""
        assert self._seen.wait(timeout=timeout), self.text()

    def text(self, join: bool = False) -> str:
        """All lines so far; ``join``: first wait (briefly) for the stream to end."""
        if join:
            self._thread.join(timeout=30)
        return "".join(self.lines)
