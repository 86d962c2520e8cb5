"""Files and folders: atomic writes, JSON lines, the cache folder, output folders, write errors
as one line (a full disk, a quota, a file-size limit), and the lock on a run folder."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
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
    try:  # the temporary file goes on any failure, an interrupt (KeyboardInterrupt) included
        os.close(fd)
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


# ---- run folders ----------------------------------------------------------------------------

# What facegan writes into a run folder (train, demo, directions). A folder whose visible
# entries are all among these is facegan's own; anything else in it is someone else's files.
RUN_ENTRIES = frozenset({
    "config.json", "labels.json", "checkpoints", "samples", "metrics.jsonl", "loss.png",
    "train.log", "skipped_files.txt", "tensorboard", "directions.json", "samples.png",
    "morph.png", "morph.gif",
})


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """The visible entries of the existing ``folder`` that facegan did not write (sorted; hidden
    ones such as .lock and .DS_Store are left out): empty for an empty folder or a run folder."""
    try:
        names = [e.name for e in os.scandir(folder)]
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith(".") and n not in RUN_ENTRIES)


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
        # A lock object dropped unreleased (a notebook's trainer, never ended) closes its file,
        # which drops the lock, when it is collected.
        self._closer = weakref.finalize(self, os.close, fd)
        return self

    def release(self, remove: bool = False) -> None:
        """Drop the lock (closing the file drops it); ``remove``: delete the lock file first,
        while still holding it (for a folder about to be removed)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._closer()  # closes the file, once
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
