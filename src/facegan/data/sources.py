"""Finding the images: a folder, a .zip, or the CelebA layout (official or Kaggle's).

A source is turned into a :class:`Listing`: the sorted files to decode, how to read each one's
bytes, the labels (if any) and an identity (path, sizes, mtimes, ctimes) that goes into the
cache key. Nothing is decoded here.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import UserError, plural

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
PARTITIONS = {"train": 0, "valid": 1, "test": 2}

CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTR = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
# Kaggle's copy of CelebA has the same lists as .csv files (a header row, commas).
CELEBA_LISTS = (CELEBA_ATTR, CELEBA_PARTITION, "list_attr_celeba.csv", "list_eval_partition.csv")
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

    names: N identifiers (path relative to the folder or zip; the file name for CelebA), as
        the file system gives them (bytes that are not UTF-8 kept as surrogates; see
        :func:`readable`).
    stamps: N strings that change when a file's content may have (size, mtime and ctime, or
        zip CRC).
    labels: uint8 N x K in {0, 1}, or None.
    missing: (file, reason) for image files that cannot be read (a broken link), or that
        cannot be used (no row in the attribute list); they are reported as skipped.
    notes: one-line messages about the source, for the user (sub-folders that cannot be read,
        CelebA images listed but absent).
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
    notes: list[str] = field(default_factory=list)

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
    # A file rewritten at the same size with its mtime put back (exiftool -P, touch -r, rsync
    # -t) would keep size:mtime; its ctime changes on every write and nothing can set it back.
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def readable(name: str) -> str:
    """``name`` as text any file or terminal takes: the bytes of a file name that are not UTF-8
    (which Python keeps as surrogates, 'caf\\udce9.png') written as escapes ('caf\\\\xe9.png')."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_error_words(e: OSError) -> str:
    """An OSError in a few words, without the path it repeats."""
    if e.errno == errno.ELOOP:
        return "a symbolic link that loops back on itself"
    if e.errno == errno.ENOENT:
        return "a symbolic link to something that does not exist"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or type(e).__name__


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """An OSError inside (a folder the user may not read, say) -> a UserError naming ``path``."""
    try:
        yield
    except OSError as e:
        fix = (f"make it readable (chmod -R u+rX '{path}') or use another folder"
               if e.errno in (errno.EACCES, errno.EPERM) else "use another folder")
        raise UserError(f"cannot read '{path}' ({os_error_words(e)}); {fix}") from None


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
    with reading(raw):
        try:
            path.stat()  # unlike exists(), tells a missing path from one that cannot be read
        except (FileNotFoundError, NotADirectoryError):
            raise UserError(f"data path '{raw}' does not exist; give --data an image folder, a "
                            f".zip of images, a CelebA folder or builtin") from None
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
    raise UserError(f"data path '{raw}' is a file but not a .zip; give --data the folder that "
                    f"holds the images, or a .zip of them")


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
    with reading(path):
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


@dataclass
class FolderScan:
    """What :func:`scan_folder` found below a folder (paths relative to it, posix, sorted).

    files: (path, stat) of each image file.
    broken: (path, why) of image-named entries that cannot be read (a link to nothing or to
        itself).
    unreadable: (path, why) of sub-folders that cannot be read, and of broken links that are
        not image-named (one may stand for a folder: a link to an unmounted disk).
    others: how many files of each other extension ('' for none) it holds.
    run: the folder itself is a facegan run (its samples and plots are then in ``files``).
    """

    files: list[tuple[str, os.stat_result]] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    others: Counter = field(default_factory=Counter)
    run: bool = False

    def other_files(self) -> str:
        return _other_files(self.others)

    def unreadable_count(self) -> str:
        n = len(self.unreadable)
        return f"{n:,} {'sub-folder or link' if n == 1 else 'sub-folders or links'}"

    def unreadable_line(self, root: str | os.PathLike) -> str:
        """One line naming the sub-folders (and broken links) of ``root`` that were left out."""
        return (f"left out {self.unreadable_count()} of '{root}' that cannot be read "
                f"({readable(examples(self.unreadable))}); make them readable (chmod -R u+rX) or "
                f"remove the broken links")


def examples(items: list[tuple[str, str]]) -> str:
    """(name, why) pairs in a message: 'a: why; also b, c and 7 more'."""
    (first, why), rest = items[0], [name for name, _ in items[1:3]]
    also = f"; also {', '.join(rest)}" if rest else ""
    more = f" and {len(items) - 3:,} more" if len(items) > 3 else ""
    return f"{first}: {why}{also}{more}"


def _other_files(others: Counter) -> str:
    """'; it holds only 3 other files (.txt 2, .gif 1)' when there are some, else ''."""
    if not others:
        return ""
    kinds = ", ".join(f"{ext or 'no extension'} {n:,}" for ext, n in others.most_common(6))
    return f"; it holds only {plural(sum(others.values()), 'other file')} ({kinds})"


def scan_folder(root: Path) -> FolderScan:
    """Every image file below ``root`` (recursive, symbolic links followed, each folder once),
    leaving out hidden entries (macOS '._x.jpg' resource forks, .git) and facegan run folders
    below root (a run trained into the data folder: its samples and plots are not images of the
    data). What cannot be read is collected, not raised; UserError when root itself cannot be
    read. Training and ``facegan fid`` both find their files here."""
    scan = FolderScan()
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> None:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop would recurse forever
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        entries = list(os.scandir(folder))
        if _is_run(entries):
            if rel:
                return
            scan.run = True
        for e in entries:
            if e.name.startswith("."):
                continue
            name, image = f"{rel}{e.name}", _is_image(e.name)
            try:
                if e.is_dir():  # raises for a link to itself (ELOOP)
                    image = False
                    visit(Path(e.path), f"{name}/")
                elif image:
                    scan.files.append((name, e.stat()))
                else:
                    if e.is_symlink():
                        e.stat()  # a link to nothing raises here (is_dir() said False)
                    scan.others[os.path.splitext(e.name)[1].lower()] += 1
            except OSError as err:
                (scan.broken if image else scan.unreadable).append((name, os_error_words(err)))

    with reading(root):
        visit(root, "")
    scan.files.sort(key=lambda t: t[0])
    return scan


def _list_folder(root: Path) -> Listing:
    scan = scan_folder(root)
    notes = [scan.unreadable_line(root)] if scan.unreadable else []
    if not scan.files:
        left_out = f"; {notes[0]}" if notes else ""
        raise UserError(f"no images in '{root}' (looked for {', '.join(IMAGE_EXTENSIONS)} in all "
                        f"subfolders{scan.other_files()}){left_out}; give --data the folder that "
                        f"holds the images")
    names = [n for n, _ in scan.files]

    def read(i: int) -> bytes:
        return (root / names[i]).read_bytes()

    return Listing(kind="folder", names=names, stamps=[_stamp(st) for _, st in scan.files],
                   read=read, identity={"path": str(root.resolve())}, missing=scan.broken,
                   notes=notes)


# --------------------------------------------------------------------------------------------
# Zip

def _list_zip(path: Path) -> Listing:
    try:
        with zipfile.ZipFile(path) as zf:
            files = [i for i in zf.infolist()
                     if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                     and not any(p.startswith(".") for p in i.filename.split("/"))]
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"'{path}' is not a readable zip file ({e}); re-create the archive or "
                        f"give --data a folder of images") from None
    infos = [i for i in files if _is_image(i.filename)]
    if not infos:
        others = Counter(os.path.splitext(i.filename)[1].lower() for i in files)
        raise UserError(f"no images in zip '{path}' (looked for {', '.join(IMAGE_EXTENSIONS)}"
                        f"{_other_files(others)}); check the archive's contents")
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
    """The attribute list of a CelebA folder (``list_attr_celeba.txt``, or Kaggle's
    ``list_attr_celeba.csv``), or None (any other source, or a CelebA folder without one):
    whether ``path`` has attribute labels."""
    with reading(path):
        celeba = _find_celeba(Path(path))
        return None if celeba is None else _list_file(celeba[0], CELEBA_ATTR)


def celeba_partitions(path: str | os.PathLike) -> dict[str, int] | None:
    """File name -> 0 (train), 1 (valid) or 2 (test) from the partition list of a CelebA
    folder (``list_eval_partition.txt``, or Kaggle's ``.csv``); None without one."""
    with reading(path):
        celeba = _find_celeba(Path(path))
        part_file = None if celeba is None else _list_file(celeba[0], CELEBA_PARTITION)
    return None if part_file is None else _read_partition(part_file)


def _find_celeba(path: Path) -> tuple[Path, Path] | None:
    """(root holding the lists, folder holding the jpgs) if ``path`` has the CelebA layout: it
    holds img_align_celeba/, or it is that folder (Kaggle's inner one too) with the lists above."""
    if not path.is_dir():
        return None
    root = images = None
    if path.name == CELEBA_IMAGES:  # the lists are one level up (two from Kaggle's inner folder)
        above = [path.parent, path.parent.parent] if path.parent.name == CELEBA_IMAGES else [path.parent]
        root = next((r for r in above if any((r / f).is_file() for f in CELEBA_LISTS)), None)
        images = path
    if root is None:
        if not (path / CELEBA_IMAGES).is_dir():
            return None
        root, images = path, path / CELEBA_IMAGES
    # Kaggle's copy nests the images one level deeper: img_align_celeba/img_align_celeba/.
    if (images / CELEBA_IMAGES).is_dir():
        images = images / CELEBA_IMAGES
    return root, images


def _list_file(root: Path, txt: str) -> Path | None:
    """CelebA's list ``txt`` in ``root``, else Kaggle's .csv of it, else None."""
    for p in (root / txt, (root / txt).with_suffix(".csv")):
        if p.is_file():
            return p
    return None


def _rows(path: Path) -> list[list[str]]:
    """A CelebA list split into fields: by spaces (the official .txt) or commas (Kaggle's .csv)."""
    with reading(path):
        text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: a BOM from Excel
    if path.suffix.lower() == ".csv":
        return [[f.strip() for f in row] for row in csv.reader(text.splitlines())]
    return [line.split() for line in text.splitlines()]


def _read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Parse the attribute list: .txt: a count, the names, then 'NAME v1 .. vK' rows; .csv: an
    'image_id,NAME1,..' header, then 'NAME,v1,..' rows; values 1 / -1."""
    rows = _rows(path)
    if path.suffix.lower() == ".csv":
        names, body, first = (rows[0][1:] if rows else []), rows[1:], 2
    else:
        names, body, first = (rows[1] if len(rows) > 1 else []), rows[2:], 3
    if not names:
        raise UserError(f"'{path}' is too short to be CelebA's attribute file; re-download it or "
                        f"remove it to train without labels")
    out: dict[str, np.ndarray] = {}
    for ln, parts in enumerate(body, start=first):
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise UserError(f"'{path}' line {ln} has {len(parts) - 1} values for {len(names)} "
                            f"attributes; the file is damaged, re-download it")
        try:
            out[parts[0]] = (np.array(parts[1:], dtype=np.int8) > 0).astype(np.uint8)
        except ValueError:
            raise UserError(f"'{path}' line {ln} holds a value that is not 1 or -1; the file is "
                            f"damaged, re-download it") from None
    return names, out


def _read_partition(path: Path) -> dict[str, int]:
    # Lines that are not 'NAME 0|1|2' (Kaggle's 'image_id,partition' header) are passed over.
    return {p[0]: int(p[1]) for p in _rows(path) if len(p) == 2 and p[1] in ("0", "1", "2")}


def _list_celeba(root: Path, images: Path, partition: str) -> Listing:
    with reading(images):
        entries = list(os.scandir(images))
    on_disk: dict[str, os.DirEntry] = {}
    broken: dict[str, str] = {}
    for e in entries:
        # Hidden entries include macOS '._x.jpg' resource forks, as in a plain folder.
        if e.name.startswith(".") or not _is_image(e.name):
            continue
        try:
            e.stat()  # follows a link: raises for one to nothing or to itself
        except OSError as err:
            broken[e.name] = os_error_words(err)
            continue
        if e.is_file():
            on_disk[e.name] = e
    present = set(on_disk) | set(broken)
    attr_file, part_file = _list_file(root, CELEBA_ATTR), _list_file(root, CELEBA_PARTITION)
    identity = {"path": str(images.resolve())}
    notes: list[str] = []

    if part_file is not None:
        identity["partition_file"] = f"{part_file.name}:{_stamp(part_file.stat())}"
        parts = _read_partition(part_file)
        if partition == "all":
            wanted = set(parts) | present
        else:
            wanted = {n for n, p in parts.items() if p == PARTITIONS[partition]}
            if not wanted:
                counts = {k: sum(p == v for p in parts.values()) for k, v in PARTITIONS.items()}
                raise UserError(
                    f"partition '{partition}' selects no images in '{part_file}' "
                    f"(train {counts['train']}, valid {counts['valid']}, test {counts['test']}); "
                    f"use --partition train or all")
    elif partition in ("train", "all"):
        wanted = present
        if partition == "train":
            # Without the list every image is in 'train': the valid and test ones too.
            notes.append(f"'{root}' has no {CELEBA_PARTITION} (or .csv) to say which images are "
                         f"valid and test, so partition 'train' is all {plural(len(present), 'image')} "
                         f"in '{images}'; add CelebA's {CELEBA_PARTITION} to hold those out, or "
                         f"use --partition all")
    else:
        raise UserError(f"--partition {partition} (data.partition) needs CelebA's {CELEBA_PARTITION} "
                        f"(or Kaggle's list_eval_partition.csv) in '{root}', which is missing; add "
                        f"it or use --partition train or all")

    label_names: list[str] = []
    attrs: dict[str, np.ndarray] | None = None
    if attr_file is not None:
        identity["attr_file"] = f"{attr_file.name}:{_stamp(attr_file.stat())}"
        label_names, attrs = _read_attributes(attr_file)

    missing: list[tuple[str, str]] = []
    names: list[str] = []
    absent = 0
    for name in sorted(wanted):
        if name in broken:
            missing.append((name, broken[name]))
        elif name not in on_disk:
            # A partial copy (a subset of the 202,599 images) is normal: counted, not listed.
            absent += 1
        elif attrs is not None and name not in attrs:
            missing.append((name, f"has no row in {attr_file.name}"))
        else:
            names.append(name)
    if absent:
        which = "" if partition == "all" else f" for partition '{partition}'"
        notes.append(f"{plural(absent, 'image')} listed in {part_file.name}{which} "
                     f"{'is' if absent == 1 else 'are'} not in '{images}': using the "
                     f"{len(wanted) - absent:,} present")
    if not names:
        raise UserError(f"no CelebA images found for partition '{partition}' in '{images}'"
                        f"{f' ({absent:,} listed, none there)' if absent else ''}; check that the "
                        f"jpgs were extracted there")

    def read(i: int) -> bytes:
        return (images / names[i]).read_bytes()

    labels = None if attrs is None else np.stack([attrs[n] for n in names])
    return Listing(kind="celeba", names=names, stamps=[_stamp(on_disk[n].stat()) for n in names],
                   read=read, identity=identity, labels=labels, label_names=label_names,
                   missing=missing, notes=notes)
