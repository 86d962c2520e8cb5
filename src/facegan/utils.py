"""Small helpers shared by several modules: atomic writes, JSON lines, the cache folder, write
errors as one line, the lock on a folder, progress reports (a bar on a terminal, lines in logs)."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


def cache_home(cache_dir: str | os.PathLike = "") -> Path:
    """The facegan cache folder: ``cache_dir`` if given, else $FACEGAN_CACHE, else
    ~/.cache/facegan. Decoded data sets, feature statistics, classifiers and the Inception
    checksum record live in sub-folders of it."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FACEGAN_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "facegan"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file sits in the same folder so the rename is atomic: a reader (or a crash)
    sees either the old file or the complete new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@functools.cache
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, and a process-wide umask of 0 even
    # for a moment would affect files other threads create (e.g. TensorBoard's writer).
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, _w)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON object as a line (flushed, so a crash loses at most this line).

    A write that fails (a full disk) is cut back off the file before the OSError propagates:
    a torn line would otherwise join the next record appended after a resume.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = memoryview((json.dumps(record, sort_keys=False) + "\n").encode("utf-8"))
    # Unbuffered: nothing is left in a buffer to be written (torn) when the file is closed.
    with open(path, "ab", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            while line:
                line = line[f.write(line):]
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(path, size)
            raise


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file, ignoring a torn last line left by a crash."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for figures that must name their machine."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def can_create_files_in(folder: str | os.PathLike) -> OSError | None:
    """None when a file can be created in the existing ``folder`` (the way :func:`atomic_write`
    creates its temporary file), else the error. Tried, not inferred from permission bits:
    those say nothing of /proc, read-only mounts, or what root may do. The probe is removed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".facegan-write-test.", suffix=".tmp", dir=folder)
    except OSError as e:
        return e
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def make_out_dir(path: str | os.PathLike, option: str) -> bool:
    """Create the output folder given as ``option`` (e.g. '--out'); True when this call made it.

    Any reason it cannot be a folder to write into is a one-line UserError naming ``option``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} '{path}' is a file, not a folder; give {option} a folder name")
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder '{path}' ({e.strerror or e}); give {option} "
                        "a folder in a writable place") from None
    error = can_create_files_in(path)
    if error is not None:
        if not existed:
            with contextlib.suppress(OSError):
                path.rmdir()  # leave nothing behind
        raise UserError(f"cannot write into '{path}' ({(error.strerror or str(error)).lower()}); give "
                        f"{option} a folder in a writable place")
    return not existed


# ---- write errors ---------------------------------------------------------------------------

class WriteFailed(UserError):
    """Writing ``path`` failed at the operating system (a full disk, a quota, a file-size limit,
    an I/O error). The message names the file and the free space; callers that know what the
    failure leaves intact (the trainer: the last good checkpoint) add that."""

    def __init__(self, path: str | os.PathLike, error: OSError):
        self.path = Path(path)
        self.error = error
        self.free = free_bytes(self.path)
        free = "" if self.free is None else f" ({format_bytes(self.free)} free)"
        super().__init__(f"cannot write {self.path}: {_why_write_failed(error)}{free}")


def _why_write_failed(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    if error.errno == getattr(errno, "EDQUOT", None):
        return "the disk quota is used up"
    if error.errno == errno.EFBIG:
        return "the file is larger than this process may write (the file size limit, ulimit -f)"
    return str(error.strerror or error)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing folder)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def format_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as df -H and file managers say them)."""
    if n < 1000:
        return f"{n} B"
    size = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if round(size, 1) < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}"


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: ``e`` itself, or one in its chain. torch.save writing to a
    Python file raises a RuntimeError whose context is the file's OSError."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def reporting_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an operating-system failure to write ``path`` into :class:`WriteFailed` (a one-line
    user error); anything else propagates as it is."""
    try:
        yield
    except WriteFailed:
        raise
    except (OSError, RuntimeError) as e:
        error = _os_error_in(e)
        if error is None:
            raise
        raise WriteFailed(path, error) from None


# ---- the lock on a folder -------------------------------------------------------------------

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".lock"


class FolderBusy(Exception):
    """Another process holds the folder's lock; ``pid``: its process id, when it could be read."""

    def __init__(self, folder: Path, pid: int | None):
        super().__init__(f"{folder} is locked by process {pid}")
        self.folder = folder
        self.pid = pid


class FolderLock:
    """An exclusive lock on a folder: an OS lock (``flock``) on FOLDER/.lock, a file holding the
    holder's process id. The operating system drops the lock when the holder exits, however it
    ends (kill -9 included), so a lock is never stale; the file may stay, the lock is what
    counts. Where ``fcntl`` is absent (Windows) nothing is locked: the lock only guards against
    a second trainer started by mistake, and is kept simple."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderBusy` at once (never waits)."""
        if fcntl is None or self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(self.folder, pid) from None
            raise
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same, only the PID is not shown
        self._fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        """Drop the lock (closing the file drops it); ``remove``: delete the lock file first,
        while still holding it (for a folder about to be removed)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ---- progress -------------------------------------------------------------------------------

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


def check_resolution(resolution: int, name: str = "resolution") -> None:
    """ValueError unless ``resolution`` is an int, a power of two and at least 8 (a network
    halves or doubles its image down to or up from 4 x 4)."""
    r = resolution
    if not isinstance(r, int) or isinstance(r, bool) or r < 8 or r & (r - 1):
        raise ValueError(f"{name} must be a power of two >= 8, got {r!r}")


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
