"""The decoded-image cache: decode a dataset once, then load it as a raw uint8 array.

Per dataset the cache folder holds ``<fingerprint>.npy`` (uint8 N x 3 x R x R),
``<fingerprint>.labels.npy`` (uint8 N x K, when there are labels) and ``<fingerprint>.json``
(names, skipped files, label names). The JSON is written last, so an interrupted write leaves
no JSON and the entry is simply rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataConfig
from ..files import atomic_write, atomic_write_text, cache_home

# Bump when decoding or drawing changes, so caches made by an older facegan are not reused.
CACHE_FORMAT = 2
# Bump when content_hash changes what it covers.
CONTENT_FORMAT = 1

# Below this an array is read into memory; above it is memory-mapped, so a 10 GB CelebA-128
# cache does not need 10 GB of RAM.
MEMMAP_ABOVE = 2 << 30


def cache_root(cfg: DataConfig) -> Path:
    """``cfg.cache_dir``, else $FACEGAN_CACHE, else ~/.cache/facegan; decoded data goes in ``data/``."""
    return cache_home(cfg.cache_dir) / "data"


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable 32-hex-digit hash of a JSON-able description of a dataset."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def content_hash(images: np.ndarray, labels: np.ndarray | None, label_names: list[str],
                 names: list[str]) -> str:
    """A 32-hex-digit hash of what a dataset *is*: its decoded pixels, labels and names.

    Unlike the cache key (file sizes and mtimes), it is the same for a fresh copy of the same
    files, so what is derived from the images alone (real Inception statistics, the attribute
    classifier) is not recomputed when the data is copied again. Reads every pixel once
    (about 0.1 s per 100 MB), so it is computed when a set is decoded and kept in the cache.
    """
    h = hashlib.sha256()
    head = {"format": CONTENT_FORMAT, "shape": list(images.shape), "label_names": list(label_names),
            "labels": None if labels is None else [str(labels.dtype), list(labels.shape)]}
    h.update(json.dumps(head, sort_keys=True).encode("utf-8"))
    h.update("\n".join(names).encode("utf-8", "surrogateescape"))  # names not in UTF-8 too
    # In slices of images, so a memory-mapped 10 GB set is never copied whole.
    step = max(1, (64 << 20) // max(1, int(np.prod(images.shape[1:]))))
    for i in range(0, images.shape[0], step):
        h.update(np.ascontiguousarray(images[i:i + step]).data)
    if labels is not None:
        h.update(np.ascontiguousarray(labels).data)
    return h.hexdigest()[:32]


@dataclass
class Decoded:
    """A decoded dataset as stored in the cache.

    images: uint8 N x 3 x R x R. labels: uint8 N x K in {0, 1}, or None.
    content: content_hash of the set ('' until computed; see ``ensure_content``).
    """

    images: np.ndarray
    labels: np.ndarray | None
    label_names: list[str]
    names: list[str]
    skipped: list[tuple[str, str]]
    source: str
    content: str = ""

    def ensure_content(self) -> str:
        if not self.content:
            self.content = content_hash(self.images, self.labels, self.label_names, self.names)
        return self.content


def scratch_array(shape: tuple[int, ...], folder: Path) -> np.ndarray:
    """An uninitialised uint8 array: in memory when small, else backed by an anonymous temp file.

    The temp file has no name on disk (TemporaryFile), so it disappears with the array.
    """
    if int(np.prod(shape)) < MEMMAP_ABOVE:
        return np.empty(shape, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as f:
        # The map holds its own reference to the file, so closing ours here is fine.
        return np.memmap(f, dtype=np.uint8, mode="w+", shape=shape)


def _load_array(path: Path) -> np.ndarray:
    arr = np.load(path, mmap_mode="c")  # 'c': writable for torch, but writes never reach the file
    if arr.nbytes < MEMMAP_ABOVE:
        arr = np.array(arr)  # a plain in-memory copy; the map is closed with the old object
    return arr


class DecodedCache:
    """The cache entry for one fingerprint inside ``folder``."""

    def __init__(self, folder: Path, key: str):
        self.folder = Path(folder)
        self.key = key
        self.images_path = self.folder / f"{key}.npy"
        self.labels_path = self.folder / f"{key}.labels.npy"
        self.meta_path = self.folder / f"{key}.json"

    def load(self) -> Decoded | None:
        """The cached dataset, or None when absent or unreadable (then it is rebuilt)."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if meta.get("key") != self.key:
                return None
            images = _load_array(self.images_path)
            labels = _load_array(self.labels_path) if meta["has_labels"] else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        n = len(meta["names"])
        if images.dtype != np.uint8 or images.shape != tuple(meta["shape"]) or images.shape[0] != n:
            return None
        if labels is not None and labels.shape != (n, len(meta["label_names"])):
            return None
        d = Decoded(images=images, labels=labels, label_names=list(meta["label_names"]),
                    names=list(meta["names"]), skipped=[tuple(s) for s in meta["skipped"]],
                    source=meta["source"], content=str(meta.get("content", "")))
        if not d.content:  # an entry from before content hashes: hash once, keep it
            meta["content"] = d.ensure_content()
            try:
                atomic_write_text(self.meta_path, json.dumps(meta))
            except OSError:
                pass  # a read-only cache: the hash is computed again next time
        return d

    def save(self, d: Decoded) -> bool:
        """Write the entry atomically; on a disk error warn and return False (training goes on)."""
        meta = {"key": self.key, "source": d.source, "shape": list(d.images.shape),
                "has_labels": d.labels is not None, "label_names": d.label_names,
                "names": d.names, "skipped": [list(s) for s in d.skipped],
                "content": d.ensure_content()}
        # Each file is written atomically: its temporary file is removed on any exit (Ctrl-C, and
        # SIGTERM under facegan's commands); an entry left without its JSON is removed too.
        written: list[Path] = []
        done = False
        try:
            written.append(atomic_write(self.images_path, lambda tmp: _save_npy(tmp, d.images)))
            if d.labels is not None:
                written.append(atomic_write(self.labels_path, lambda tmp: _save_npy(tmp, d.labels)))
            atomic_write_text(self.meta_path, json.dumps(meta))
            done = True
        except OSError as e:
            warnings.warn(f"facegan: could not write the decoded-image cache in {self.folder} "
                          f"({e}); the images will be decoded again next time. Set "
                          f"data.cache_dir or FACEGAN_CACHE to a writable folder.", stacklevel=3)
            return False
        finally:
            # (Unless another process completed the same entry meanwhile: its JSON is there.)
            if not done and not self.meta_path.exists():
                for path in written:
                    with contextlib.suppress(OSError):
                        path.unlink()
        return True


def _save_npy(path: str, arr: np.ndarray) -> None:
    # Through a file object: np.save(path) would append '.npy' to the temp name.
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
