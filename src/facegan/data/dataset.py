"""load_dataset: find a source, decode it once in parallel, cache it, hand back uint8 tensors."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..config import DataConfig
from ..errors import UserError
from . import synthetic
from .cache import MEMMAP_ABOVE, Decoded, DecodedCache, cache_root, fingerprint, scratch_array
from .sources import Listing, examples, list_source, readable
from .transforms import ImageTooLarge, decode_image, resolve_crop

BUILTIN = "builtin"
_BUILTIN_SEED = 0
# The builtin set draws its held-out partitions from other random streams.
_PARTITION_STREAMS = {"train": 0, "all": 0, "valid": 1, "test": 2}
_CHUNK = 128  # images per decoding task: big enough to amortise scheduling, small for the bar


@dataclass(repr=False)
class ImageSet:
    """A decoded dataset, ready for training.

    images: uint8 N x 3 x R x R (R = cfg.resolution), values 0..255, CPU, contiguous; may be
        backed by a memory map of the cache file when large (writes stay private).
    labels: float32 N x K in {0, 1} (1 = attribute present), or None when the source has none.
    label_names: the K attribute names.
    names: N source identifiers (path inside the folder or zip, CelebA file name, 'builtin/000123');
        bytes of a file name that are not UTF-8 are written as escapes ('caf\\xe9.png').
    skipped: (file, reason) for files that are missing or could not be decoded.
    fingerprint: hex hash of the decoded content (pixels, labels, label names, names): the
        same for a fresh copy of the same files, different whenever an image, a label, the
        crop, resolution, partition or max_images changes. The key of what is derived from
        the images (real statistics, classifiers) and of the resume check.
    cache_key: hex hash of source identity, file list (sizes, mtimes, ctimes), partition,
        crop, resolution and max_images: the decoded-image cache entry, found without decoding.
    source: 'folder' | 'zip' | 'celeba' | 'builtin'.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    label_names: list[str]
    names: list[str]
    skipped: list[tuple[str, str]]
    fingerprint: str
    source: str
    cache_key: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        k = 0 if self.labels is None else self.labels.shape[1]
        return (f"ImageSet(source={self.source!r}, images={tuple(self.images.shape)}, "
                f"labels={k}, skipped={len(self.skipped)}, fingerprint={self.fingerprint!r})")


def load_dataset(cfg: DataConfig, *, progress: bool = True) -> ImageSet:
    """Load the images described by ``cfg``, decoding them only the first time.

    ``cfg.path`` is an image folder (recursive), a .zip, a CelebA root, or ``builtin`` (a folder
    literally named 'builtin' must be written './builtin'). The first call decodes every file
    (in parallel, with a progress bar on stderr when ``progress``) into the cache folder; later
    calls with the same files and settings read that cache and decode nothing. Undecodable files
    are skipped with one SkippedFilesWarning; what else the user should know about the source
    (sub-folders that cannot be read, CelebA images listed but absent) comes as one DataWarning
    each. Raises UserError when there is nothing to train on.
    """
    if cfg.resolution < 1:
        raise UserError(f"data.resolution must be positive, got {cfg.resolution}")
    if cfg.partition not in _PARTITION_STREAMS:
        raise UserError(f"unknown partition '{cfg.partition}'; use train, valid, test or all")
    if cfg.path.strip() == BUILTIN:
        return _load_builtin(cfg, progress)

    listing = list_source(cfg)
    for note in listing.notes:
        warnings.warn(f"facegan: {note}", DataWarning, stacklevel=2)
    listing = listing.head(cfg.max_images)
    crop = resolve_crop(cfg, listing.kind)
    key = fingerprint({
        "source": listing.kind, **listing.identity, "crop": crop, "resolution": cfg.resolution,
        # Without a partition file every partition is the same set of files.
        "partition": cfg.partition if "partition_file" in listing.identity else "all",
        "max_images": max(cfg.max_images, 0),
        "files": _hash_lines(f"{n}\t{s}" for n, s in zip(listing.names, listing.stamps)),
    })
    cache = DecodedCache(cache_root(cfg), key)
    data = cache.load()
    if data is None:
        data = _decode_listing(listing, crop, cfg.resolution, progress, cache)
        if cache.save(data) and data.images.nbytes >= MEMMAP_ABOVE:
            data = cache.load() or data  # map the cache file instead of the scratch copy
    _warn_skipped(data.skipped, len(data.names) + len(data.skipped), cfg.path)
    return _to_imageset(data, key)


def _load_builtin(cfg: DataConfig, progress: bool) -> ImageSet:
    n = cfg.max_images if cfg.max_images > 0 else synthetic.DEFAULT_SIZE
    stream = _PARTITION_STREAMS[cfg.partition]
    key = fingerprint({"source": BUILTIN, "drawing": synthetic.DRAWING_VERSION, "n": n,
                       "seed": _BUILTIN_SEED, "stream": stream, "resolution": cfg.resolution})
    cache = DecodedCache(cache_root(cfg), key)
    data = cache.load()
    if data is None:
        with _bar(n, "drawing builtin faces", progress) as bar:
            images, labels = synthetic.generate_faces(n, cfg.resolution, seed=_BUILTIN_SEED,
                                                      stream=stream, workers=_cpu_count(),
                                                      on_progress=bar.update)
        data = Decoded(images=images, labels=labels, label_names=list(synthetic.LABEL_NAMES),
                       names=[f"builtin/{i:06d}" for i in range(n)], skipped=[], source=BUILTIN)
        cache.save(data)
    return _to_imageset(data, key)


def _decode_listing(listing: Listing, crop: str, resolution: int, progress: bool,
                    cache: DecodedCache) -> Decoded:
    """Decode every file of ``listing`` with a thread pool; drop (and record) the failures."""
    n = len(listing)
    out = scratch_array((n, 3, resolution, resolution), cache.folder)
    errors: list[str | None] = [None] * n
    abandon = threading.Event()  # set when the load is interrupted (Ctrl-C, SIGTERM)

    def work(start: int, stop: int) -> int:
        for i in range(start, stop):
            if abandon.is_set():
                break
            try:
                img = decode_image(listing.read(i), crop, resolution)
                out[i] = img.transpose(2, 0, 1)
            except Exception as e:  # any failure makes this one file unusable, not the run
                errors[i] = decode_error(e)
        return stop - start

    # Pillow releases the GIL while decoding and resizing, so threads use all cores without
    # the pickling cost of processes.
    with ThreadPoolExecutor(max_workers=_cpu_count()) as pool, \
            _bar(n, f"decoding {listing.kind} images", progress) as bar:
        futures = [pool.submit(work, a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]
        try:
            for f in as_completed(futures):
                bar.update(f.result())
        except BaseException:
            # Stop at once: the running tasks end after their current image, the rest never start.
            abandon.set()
            for f in futures:
                f.cancel()
            raise

    keep = [i for i in range(n) if errors[i] is None]
    # Names go on into messages, skipped_files.txt and the cache's JSON: readable text there.
    skipped = [(readable(name), why) for name, why in listing.missing] + [
        (readable(listing.names[i]), errors[i]) for i in range(n) if errors[i] is not None]
    if not keep:
        raise UserError(f"none of the {n} image files could be decoded (first: "
                        f"{readable(listing.names[0])}: {errors[0]}); check that --data holds "
                        f"valid jpg/png/webp/bmp/tif images")
    if len(keep) < n:
        # Compact in place (row j <- row keep[j], j <= keep[j]) so a memory-mapped array is
        # never copied whole.
        for j, i in enumerate(keep):
            if i != j:
                out[j] = out[i]
        out = out[:len(keep)]
    labels = None if listing.labels is None else listing.labels[keep]
    return Decoded(images=out, labels=labels, label_names=list(listing.label_names),
                   names=[readable(listing.names[i]) for i in keep], skipped=skipped,
                   source=listing.kind)


# Pillow names the stream it read ("<_io.BytesIO object at 0x7f...>"), which says nothing beside
# the file's own name.
_STREAM = re.compile(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>")


def decode_error(e: Exception) -> str:
    """Why a file could not be decoded, in one line of at most 200 characters: the exception's
    type and message, without Pillow's stream address."""
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read (a broken file, or not an image at all)"
    if isinstance(e, ImageTooLarge):
        return str(e)
    message = _STREAM.sub("", str(e)).strip()
    return (f"{type(e).__name__}: {message}" if message else type(e).__name__)[:200]


def _to_imageset(data: Decoded, key: str) -> ImageSet:
    images = torch.from_numpy(np.ascontiguousarray(data.images))
    labels = None
    if data.labels is not None:
        labels = torch.from_numpy(np.asarray(data.labels, dtype=np.float32))
    return ImageSet(images=images, labels=labels, label_names=list(data.label_names),
                    names=list(data.names), skipped=list(data.skipped),
                    fingerprint=data.ensure_content(), source=data.source, cache_key=key)


class DataWarning(UserWarning):
    """Something about a data set the user should know, said once as it loads (sub-folders it
    cannot read, CelebA images listed but absent, a partition that is every image): one line
    that starts 'facegan: '. Under torchrun, ranks other than 0 may ignore it (rank 0 says it)."""


class SkippedFilesWarning(DataWarning):
    """Some image files were missing or undecodable and left out (the list: ImageSet.skipped).

    One warning per load, however many files; ``facegan train`` replaces it with its own line
    that names the run's skipped_files.txt.
    """


def _warn_skipped(skipped: list[tuple[str, str]], total: int, path: str) -> None:
    if skipped:
        warnings.warn(f"facegan: skipped {len(skipped)} of {total} image files in '{path}' "
                      f"(--data) that are missing or could not be decoded ({examples(skipped)}); "
                      "the others are used", SkippedFilesWarning, stacklevel=3)


def _hash_lines(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))  # a file name that is not UTF-8 too
        h.update(b"\n")
    return h.hexdigest()


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
