"""Small helpers shared by several modules: atomic writes, JSON lines, the cache folder."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
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
    """Append one JSON object as a line (flushed, so a crash loses at most this line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")
        f.flush()


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
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into '{path}' (permission denied); give {option} a folder "
                        "in a writable place")
    return not existed
