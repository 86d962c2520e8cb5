"""Finding the images: a folder, a .zip, or the official CelebA layout.

A source is turned into a :class:`Listing`: the sorted files to decode, how to read each one's
bytes, the labels (if any) and an identity (path, sizes, mtimes) that goes into the cache key.
Nothing is decoded here.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PARTITIONS = {"train": 0, "valid": 1, "test": 2}

CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTR = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
"""The 40 CelebA attribute names in the order of ``list_attr_celeba.txt``."""


@dataclass
class Listing:
    """The files a source will decode, in their final order.

    names: N identifiers (path relative to the folder or zip; the file name for CelebA).
    stamps: N strings that change when a file's content may have (size and mtime, or zip CRC).
    labels: uint8 N x K in {0, 1}, or None.
    missing: (file, reason) for files the source lists but that are not there.
    identity: what else defines the source for the cache key (path, label files' stamps).
    read: index -> the file's bytes; safe to call from several threads.
    """

    kind: str
    names: list[str]
    stamps: list[str]
    read: Callable[[int], bytes]
    identity: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def head(self, n: int) -> Listing:
        """The first ``n`` files (all of them when n <= 0)."""
        if n <= 0 or n >= len(self.names):
            return self
        # read(i) for i < n is unchanged, so the same reader still fits.
        return replace(self, names=self.names[:n], stamps=self.stamps[:n],
                       labels=None if self.labels is None else self.labels[:n])


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


def list_source(cfg: DataConfig) -> Listing:
    """Find the files for ``cfg.path`` (folder, .zip or CelebA root) and select ``cfg.partition``.

    Raises UserError when the path is missing, holds no images, or the partition is empty.
    ``cfg.max_images`` is not applied here (see :meth:`Listing.head`).
    """
    raw = cfg.path.strip()
    if not raw:
        raise UserError("data.path is empty; set it to an image folder, a .zip, a CelebA folder "
                        "or 'builtin'")
    path = Path(raw).expanduser()
    if not path.exists():
        raise UserError(f"data path '{raw}' does not exist; point data.path at an image folder, "
                        f"a .zip of images, a CelebA folder or use data.path=builtin")
    celeba = _find_celeba(path)
    if celeba is not None:
        return _list_celeba(*celeba, cfg.partition)
    if cfg.partition in ("valid", "test"):
        raise UserError(f"--partition {cfg.partition} (data.partition) needs CelebA's {CELEBA_PARTITION}, "
                        f"but '{raw}' is a plain folder or zip; use --partition train or all")
    if path.is_dir():
        return _list_folder(path)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return _list_zip(path)
    raise UserError(f"data path '{raw}' is a file but not a .zip; point data.path at the folder "
                    f"that holds the images, or at a .zip of them")


def absolute_path(path: str) -> str:
    """A data.path (or a run path) made absolute, so that it still means the same from another
    folder; 'builtin' and '' (each stripped of spaces) stay as they are."""
    text = path.strip()
    if text in ("builtin", ""):
        return text
    return os.path.abspath(os.path.expanduser(path))


def scanned_folder(path: str | os.PathLike) -> Path | None:
    """The folder whose images ``path`` (a data.path) trains on: the folder itself, or a CelebA
    layout's image folder; None for a zip, 'builtin' or a path that is not a folder."""
    p = Path(path).expanduser()
    if str(path).strip() == "builtin" or not p.is_dir():
        return None
    celeba = _find_celeba(p)
    return celeba[1] if celeba is not None else p


# --------------------------------------------------------------------------------------------
# Folder

def _is_run(entries: list[os.DirEntry]) -> bool:
    """The entries of a facegan run folder (its config.json and checkpoints/): its samples and
    plots are not training images."""
    kinds = {e.name: e for e in entries if e.name in ("config.json", "checkpoints")}
    try:
        return (len(kinds) == 2 and kinds["config.json"].is_file()
                and kinds["checkpoints"].is_dir())
    except OSError:
        return False


def _walk_images(root: Path) -> list[tuple[str, os.stat_result]]:
    """(relative posix path, stat) of every image below root, hidden files and folders left out,
    and so are facegan run folders below root (a run trained into the data folder)."""
    found: list[tuple[str, os.stat_result]] = []
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> None:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop would recurse forever
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        if rel and _is_run(entries):
            return
        for e in entries:
            # Hidden entries include macOS '._x.jpg' resource forks, which are not images.
            if e.name.startswith("."):
                continue
            if e.is_dir():
                visit(Path(e.path), f"{rel}{e.name}/")
            elif _is_image(e.name):
                try:
                    found.append((f"{rel}{e.name}", e.stat()))
                except OSError:
                    continue

    visit(root, "")
    found.sort(key=lambda t: t[0])
    return found


def _list_folder(root: Path) -> Listing:
    found = _walk_images(root)
    if not found:
        raise UserError(f"no images in '{root}' (looked for {', '.join(IMAGE_EXTENSIONS)} in all "
                        f"subfolders); point data.path at the folder that holds them")
    names = [n for n, _ in found]

    def read(i: int) -> bytes:
        return (root / names[i]).read_bytes()

    return Listing(kind="folder", names=names, stamps=[_stamp(st) for _, st in found], read=read,
                   identity={"path": str(root.resolve())})


# --------------------------------------------------------------------------------------------
# Zip

def _list_zip(path: Path) -> Listing:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist()
                     if not i.is_dir() and _is_image(i.filename)
                     and not i.filename.startswith("__MACOSX/")
                     and not any(p.startswith(".") for p in i.filename.split("/"))]
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"'{path}' is not a readable zip file ({e}); re-create the archive or "
                        f"point data.path at a folder of images") from None
    if not infos:
        raise UserError(f"no images in zip '{path}' (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                        f"check the archive's contents")
    infos.sort(key=lambda i: i.filename)
    names = [i.filename for i in infos]

    # ZipFile objects share one file position, so each decoding thread opens its own.
    local = threading.local()

    def read(i: int) -> bytes:
        zf = getattr(local, "zf", None)
        if zf is None:
            zf = local.zf = zipfile.ZipFile(path)
        return zf.read(names[i])

    return Listing(kind="zip", names=names, stamps=[f"{i.file_size}:{i.CRC}" for i in infos],
                   read=read, identity={"path": str(path.resolve())})


# --------------------------------------------------------------------------------------------
# CelebA

def celeba_attributes_file(path: str | os.PathLike) -> Path | None:
    """The ``list_attr_celeba.txt`` of a CelebA folder in the official layout, or None (any
    other source, or a CelebA folder without it): whether ``path`` has attribute labels."""
    celeba = _find_celeba(Path(path))
    if celeba is None or not (celeba[0] / CELEBA_ATTR).is_file():
        return None
    return celeba[0] / CELEBA_ATTR


def _find_celeba(path: Path) -> tuple[Path, Path] | None:
    """(root holding the txt files, folder holding the jpgs) if ``path`` has the CelebA layout."""
    if not path.is_dir():
        return None
    if (path / CELEBA_IMAGES).is_dir():
        root, images = path, path / CELEBA_IMAGES
    elif path.name == CELEBA_IMAGES and any(
            (path.parent / f).is_file() for f in (CELEBA_ATTR, CELEBA_PARTITION)):
        root, images = path.parent, path
    else:
        return None
    # Kaggle's copy nests the images one level deeper: img_align_celeba/img_align_celeba/.
    if (images / CELEBA_IMAGES).is_dir():
        images = images / CELEBA_IMAGES
    return root, images


def _read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Parse list_attr_celeba.txt: count, the names, then 'NAME v1 .. vK' rows of 1 / -1."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) < 2:
        raise UserError(f"'{path}' is too short to be CelebA's attribute file; re-download it or "
                        f"remove it to train without labels")
    names = lines[1].split()
    rows: dict[str, np.ndarray] = {}
    for ln, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise UserError(f"'{path}' line {ln} has {len(parts) - 1} values for {len(names)} "
                            f"attributes; the file is damaged, re-download it")
        rows[parts[0]] = (np.array(parts[1:], dtype=np.int8) > 0).astype(np.uint8)
    return names, rows


def _read_partition(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("0", "1", "2"):
            out[parts[0]] = int(parts[1])
    return out


def _list_celeba(root: Path, images: Path, partition: str) -> Listing:
    on_disk = {e.name: e for e in os.scandir(images) if e.is_file() and _is_image(e.name)}
    attr_file, part_file = root / CELEBA_ATTR, root / CELEBA_PARTITION
    identity = {"path": str(images.resolve())}

    if part_file.is_file():
        identity["partition_file"] = _stamp(part_file.stat())
        parts = _read_partition(part_file)
        if partition == "all":
            wanted = set(parts) | set(on_disk)
        else:
            wanted = {n for n, p in parts.items() if p == PARTITIONS[partition]}
            if not wanted:
                counts = {k: sum(p == v for p in parts.values()) for k, v in PARTITIONS.items()}
                raise UserError(
                    f"partition '{partition}' selects no images in '{part_file}' "
                    f"(train {counts['train']}, valid {counts['valid']}, test {counts['test']}); "
                    f"use --partition train or all")
    elif partition in ("train", "all"):
        wanted = set(on_disk)
    else:
        raise UserError(f"--partition {partition} (data.partition) needs '{part_file}', which is "
                        f"missing; add CelebA's {CELEBA_PARTITION} or use --partition train or all")

    label_names: list[str] = []
    attrs: dict[str, np.ndarray] | None = None
    if attr_file.is_file():
        identity["attr_file"] = _stamp(attr_file.stat())
        label_names, attrs = _read_attributes(attr_file)

    missing: list[tuple[str, str]] = []
    names: list[str] = []
    for name in sorted(wanted):
        if name not in on_disk:
            missing.append((name, f"listed in the CelebA txt files but not in {images}"))
        elif attrs is not None and name not in attrs:
            missing.append((name, f"has no row in {CELEBA_ATTR}"))
        else:
            names.append(name)
    if not names:
        raise UserError(f"no CelebA images found for partition '{partition}' in '{images}'; "
                        f"check that the jpgs were extracted there")

    def read(i: int) -> bytes:
        return (images / names[i]).read_bytes()

    labels = None if attrs is None else np.stack([attrs[n] for n in names])
    return Listing(kind="celeba", names=names, stamps=[_stamp(on_disk[n].stat()) for n in names],
                   read=read, identity=identity, labels=labels, label_names=label_names,
                   missing=missing)
