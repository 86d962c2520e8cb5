"""Data sets as users have them: odd file names, unreadable folders, broken links, rewritten
files, Kaggle's CelebA, huge photos, transparency, TIFFs, and `facegan fid` reading a folder as
training does. Each case is tiny (16 px, a few images, tmp_path).

Permission cases fake the failing OS call (monkeypatch), so they also hold when the tests run
as root, whom chmod does not stop."""

from __future__ import annotations

import errno
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facegan.data.transforms as transforms_mod
from facegan.config import DataConfig
from facegan.data import CELEBA_ATTRIBUTES, ImageSet, load_dataset, resolve_labels
from facegan.data.sources import scanned_folder
from facegan.errors import UserError
from facegan.metrics.features import FileImages, check_images_readable, list_image_files

RNG = np.random.default_rng(1)


def save_image(path: Path, size=(24, 20), colour=None, fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if colour is None:
        im = Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    else:
        im = Image.new("RGB", size, colour)
    im.save(path, format=fmt)
    return path


def load(path, **kw) -> ImageSet:
    kw.setdefault("resolution", 16)
    return load_dataset(DataConfig(path=str(path), **kw), progress=False)


def quiet_load(path, **kw) -> tuple[ImageSet, list[str]]:
    """load(), and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(path, **kw)
    return ds, [str(w.message) for w in caught]


def deny(monkeypatch, folder: Path) -> None:
    """Make ``folder`` behave as one with mode 000 for a user that does not own it: listing it
    and looking at anything inside fail with EACCES; the folder's own stat still works."""
    folder = os.path.abspath(folder)
    real_scandir, real_stat = os.scandir, os.stat

    def denied(p) -> bool:
        return os.path.abspath(os.fsdecode(p)) == folder

    def inside(p) -> bool:
        return os.path.abspath(os.fsdecode(p)).startswith(folder + os.sep)

    def scandir(p="."):
        if denied(p) or inside(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
        return real_scandir(p)

    def stat(p, *a, **kw):
        if not isinstance(p, int) and inside(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
        return real_stat(p, *a, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)


# --------------------------------------------------------------------------------------------
# 1. File names that are not UTF-8

def test_a_file_name_that_is_not_utf8_loads_and_is_written_readably(tmp_path):
    save_image(tmp_path / "a.png")
    raw = os.fsencode(tmp_path)
    with open(os.path.join(raw, b"caf\xe9.png"), "wb") as f:
        Image.new("RGB", (20, 20), (200, 10, 10)).save(f, "PNG")
    with open(os.path.join(raw, b"bad\xff.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    ds, said = quiet_load(tmp_path)
    assert ds.names == ["a.png", "caf\\xe9.png"] and len(ds) == 2
    assert ds.skipped == [("bad\\xff.jpg", ds.skipped[0][1])]
    # What train writes to skipped_files.txt and a message are plain UTF-8 text.
    "".join(f"{n}\t{why}\n" for n, why in ds.skipped).encode("utf-8")
    assert any("bad\\xff.jpg" in m for m in said)
    again, _ = quiet_load(tmp_path)  # from the cache: its JSON held the same names
    assert again.names == ds.names and again.skipped == ds.skipped
    assert again.fingerprint == ds.fingerprint


# --------------------------------------------------------------------------------------------
# 2. Folders that cannot be read

def test_an_unreadable_sub_folder_is_counted_in_one_warning(tmp_path, monkeypatch):
    for i in range(2):
        save_image(tmp_path / "open" / f"{i}.png")
        save_image(tmp_path / "locked" / f"{i}.png")
    save_image(tmp_path / "locked2" / "x.png")
    deny(monkeypatch, tmp_path / "locked")
    deny(monkeypatch, tmp_path / "locked2")
    ds, said = quiet_load(tmp_path)
    assert ds.names == ["open/0.png", "open/1.png"]
    notes = [m for m in said if "cannot be read" in m]
    assert len(notes) == 1, said
    assert "2 sub-folders or links" in notes[0] and "locked: permission denied" in notes[0]
    assert "locked2" in notes[0]


def test_an_unreadable_data_folder_is_a_user_error(tmp_path, monkeypatch):
    data = tmp_path / "data"
    save_image(data / "a.png")
    deny(monkeypatch, data)
    for call in (lambda: load(data), lambda: scanned_folder(data), lambda: list_image_files(data)):
        with pytest.raises(UserError, match=r"cannot read '.*data' \(permission denied\); make it "
                                            r"readable"):
            call()


def test_train_on_an_unreadable_data_folder_says_so_in_one_line(tmp_path, monkeypatch, cli_error):
    data = tmp_path / "data"
    save_image(data / "a.png")
    deny(monkeypatch, data)
    line = cli_error("train", "--data", data, "--out", tmp_path / "run", "--no-progress",
                     "data.resolution=16", "train.steps=1")
    assert f"cannot read '{data}' (permission denied)" in line, line


# --------------------------------------------------------------------------------------------
# 3. Links to themselves, loops, links to nothing

def test_links_that_loop_or_point_at_nothing_are_skipped_and_counted(tmp_path):
    save_image(tmp_path / "a.png")
    os.symlink("self.jpg", tmp_path / "self.jpg")
    os.symlink("/nonexistent/x.jpg", tmp_path / "gone.jpg")
    os.symlink("loopdir", tmp_path / "loopdir")
    os.symlink("/nonexistent/disk", tmp_path / "photos")
    (tmp_path / "sub").mkdir()
    os.symlink("..", tmp_path / "sub" / "up")  # a folder loop: each folder is read once
    ds, said = quiet_load(tmp_path)
    assert ds.names == ["a.png"]
    reasons = dict(ds.skipped)
    assert set(reasons) == {"self.jpg", "gone.jpg"}
    assert "loops" in reasons["self.jpg"] and "does not exist" in reasons["gone.jpg"]
    note = next(m for m in said if "cannot be read" in m)
    assert "2 sub-folders or links" in note and "loopdir" in note and "photos" in note


# --------------------------------------------------------------------------------------------
# 4. A file rewritten with its size and mtime put back

def test_a_rewrite_that_keeps_size_and_mtime_is_decoded_again(tmp_path):
    p = save_image(tmp_path / "a.bmp", size=(16, 16), colour=(255, 0, 0))
    save_image(tmp_path / "b.bmp", size=(16, 16))
    first = load(tmp_path)
    before = os.stat(p)
    save_image(p, size=(16, 16), colour=(0, 0, 255))  # a BMP of the same size has the same bytes count
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))  # as exiftool -P or touch -r do
    after = os.stat(p)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if after.st_ctime_ns == before.st_ctime_ns:  # a coarse clock: let it tick
        import time

        time.sleep(0.05)
        os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = load(tmp_path)
    assert second.cache_key != first.cache_key
    assert second.images[0, 2].float().mean() > 250 and first.images[0, 0].float().mean() > 250


def test_zip_members_stay_keyed_by_their_crc(tmp_path):
    import zipfile

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 200, 0)).save(buf, "PNG")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("a.png", buf.getvalue())
    key = load(tmp_path / "d.zip").cache_key
    os.utime(tmp_path / "d.zip")  # a new mtime and ctime, the same members
    assert load(tmp_path / "d.zip").cache_key == key


# --------------------------------------------------------------------------------------------
# 5. CelebA as Kaggle ships it

def make_kaggle(root: Path, n=6, partitions=(0, 0, 0, 1, 1, 2), nested=True) -> np.ndarray:
    """Kaggle's CelebA: the lists as .csv, the images in img_align_celeba/img_align_celeba/."""
    imgs = root / "img_align_celeba" / ("img_align_celeba" if nested else "")
    table = RNG.choice([-1, 1], size=(n, 40))
    for i in range(n):
        save_image(imgs / f"{i + 1:06d}.jpg", (89, 109))
    (root / "list_attr_celeba.csv").write_text(
        "image_id," + ",".join(CELEBA_ATTRIBUTES) + "\n"
        + "".join(f"{i + 1:06d}.jpg," + ",".join(str(v) for v in table[i]) + "\n" for i in range(n)))
    (root / "list_eval_partition.csv").write_text(
        "image_id,partition\n" + "".join(f"{i + 1:06d}.jpg,{p}\n" for i, p in enumerate(partitions)))
    return table


@pytest.mark.parametrize("nested", [True, False])
def test_kaggle_celeba_csv_lists(tmp_path, nested):
    table = make_kaggle(tmp_path, nested=nested)
    ds = load(tmp_path)
    assert ds.source == "celeba" and ds.names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert ds.label_names == list(CELEBA_ATTRIBUTES)
    np.testing.assert_array_equal(ds.labels.numpy(), (table[:3] > 0).astype(np.float32))
    assert load(tmp_path, partition="valid").names == ["000004.jpg", "000005.jpg"]
    assert len(load(tmp_path, partition="all")) == 6
    # The image folder (outer or Kaggle's inner one) given as --data is the same data.
    assert load(tmp_path / "img_align_celeba").names == ds.names
    if nested:
        assert load(tmp_path / "img_align_celeba" / "img_align_celeba").names == ds.names
    spec, c = resolve_labels("Male", ds)
    assert c.shape == (3, 1)


def test_the_official_txt_lists_win_over_the_csv_ones(tmp_path):
    make_kaggle(tmp_path, nested=False)
    (tmp_path / "list_eval_partition.txt").write_text("000006.jpg 0\n")
    assert load(tmp_path).names == ["000006.jpg"]


def test_celeba_without_attributes_never_suggests_folders(tmp_path):
    save_image(tmp_path / "img_align_celeba" / "000001.jpg", (89, 109))
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    ds = load(tmp_path)
    for cond in ("Male", "folders", "classes:Male"):
        with pytest.raises(UserError) as e:
            resolve_labels(cond, ds)
        said = str(e.value)
        assert "list_attr_celeba" in said and "use data.condition=folders" not in said, said
        assert "folders for one class" not in said, said


def test_celeba_without_a_partition_list_says_train_is_every_image(tmp_path):
    for i in range(3):
        save_image(tmp_path / "img_align_celeba" / f"{i + 1:06d}.jpg", (89, 109))
    ds, said = quiet_load(tmp_path)
    assert len(ds) == 3
    assert [m for m in said if "partition 'train' is all 3 images" in m], said
    _, said = quiet_load(tmp_path, partition="all")
    assert not [m for m in said if "partition" in m], said


# --------------------------------------------------------------------------------------------
# 6. Large photos

def test_large_photos_load_without_pillows_warning_and_its_limit_stays(tmp_path, monkeypatch):
    # Pillow's limit made tiny stands for a 200 MP photo against its real 89 / 179 MP limits.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    save_image(tmp_path / "photo.jpg", (120, 90), colour=(30, 60, 90))
    save_image(tmp_path / "scan.png", (120, 90), colour=(90, 60, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        ds = load(tmp_path, resolution=8)
    assert ds.names == ["photo.jpg", "scan.png"] and ds.skipped == []
    means = ds.images.float().mean((2, 3)).numpy()
    assert abs(means - [[30, 60, 90], [90, 60, 30]]).max() < 4
    assert Image.MAX_IMAGE_PIXELS == 1000  # untouched for everything else
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "scan.png")


def test_photos_over_the_data_limit_are_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(transforms_mod, "MAX_PIXELS", 5000)
    save_image(tmp_path / "small.png", (40, 40))
    save_image(tmp_path / "huge.jpg", (100, 80))
    ds, _ = quiet_load(tmp_path)
    assert ds.names == ["small.png"]
    assert ds.skipped == [("huge.jpg", "100x80 pixels (0 MP), more than the 0 MP facegan reads; "
                                       "shrink it")]


def test_a_real_108_megapixel_jpeg_loads_quickly(tmp_path):
    # A flat colour compresses to almost nothing; libjpeg decodes it at 1/8 scale (draft).
    Image.new("RGB", (12000, 9000), (40, 80, 120)).save(tmp_path / "big.jpg", quality=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load(tmp_path)
    assert ds.skipped == [] and abs(ds.images[0].float().mean((1, 2)).numpy() - [40, 80, 120]).max() < 3


# --------------------------------------------------------------------------------------------
# 7. facegan fid finds and decodes a folder's files as training does

def _exif_rotated(path: Path) -> Path:
    """64x32, left half red, right half blue, EXIF orientation 6 (shown 32x64)."""
    im = Image.new("RGB", (64, 32), (255, 0, 0))
    im.paste((0, 0, 255), (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_fid_lists_the_files_training_uses(tmp_path):
    data = tmp_path / "data"
    save_image(data / "a.png")
    _exif_rotated(data / "b.jpg")
    save_image(data / "c.tif", fmt="TIFF")
    (data / "._a.png").write_bytes(b"\x00\x05\x16\x07Mac OS X")  # AppleDouble from a Mac copy
    save_image(tmp_path / "elsewhere" / "d.png")
    os.symlink(tmp_path / "elsewhere", data / "more")
    run = data / "old-run"  # a run trained into the folder: its plots are no data
    save_image(run / "loss.png")
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text("{}")
    files = list_image_files(data)
    assert [f.relative_to(data).as_posix() for f in files] == ["a.png", "b.jpg", "c.tif", "more/d.png"]
    assert [f"{n}" for n in load(data).names] == ["a.png", "b.jpg", "c.tif", "more/d.png"]
    check_images_readable(files, data)
    img = FileImages(files)[1]
    assert img.shape == (64, 32, 3)  # EXIF rotation applied, as in training
    assert img[2, 16, 0] > 200 and img[-3, 16, 2] > 200  # red on top, blue below


def test_fid_refuses_a_run_folder_and_unreadable_parts(tmp_path, monkeypatch):
    run = tmp_path / "run"
    save_image(run / "loss.png")
    save_image(run / "samples" / "step_000010.png")
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is a facegan run folder.*facegan sample"):
        list_image_files(run)
    data = tmp_path / "data"
    save_image(data / "a.png")
    save_image(data / "locked" / "b.png")
    deny(monkeypatch, data / "locked")
    with pytest.raises(UserError, match="cannot read 1 sub-folder or link.*locked: permission denied"):
        list_image_files(data)


def test_fid_names_a_broken_link_as_an_unreadable_image(tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    os.symlink("/nonexistent/x.png", tmp_path / "gone.png")
    files = list_image_files(tmp_path)
    assert [f.name for f in files] == ["a.png", "b.png", "gone.png"]
    with pytest.raises(UserError, match="cannot read image .*gone.png"):
        check_images_readable(files, tmp_path)


# --------------------------------------------------------------------------------------------
# 8. Transparency

def test_transparent_pixels_are_white(tmp_path):
    a = np.zeros((32, 32, 4), np.uint8)
    a[..., 0] = 255  # red under the transparent part
    a[8:24, 8:24] = (0, 0, 255, 255)  # an opaque blue square
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.fromarray(a[..., :3].copy(), "RGB").convert("P", palette=Image.ADAPTIVE, colors=4)
    red = pal.getpixel((0, 0))
    pal.save(tmp_path / "pal.png", transparency=red)
    ds = load(tmp_path, crop="none")
    for img in ds.images:
        assert img[:, 0, 0].tolist() == [255, 255, 255]  # white, not the hidden red
        assert img[:, 8, 8].tolist() == [0, 0, 255]
    assert transforms_mod.read_rgb(tmp_path / "rgba.png")[0, 0].tolist() == [255, 255, 255]


# --------------------------------------------------------------------------------------------
# 10. A partial CelebA; macOS files in img_align_celeba/

def test_partial_celeba_counts_the_absent_images_in_one_line(tmp_path):
    imgs = tmp_path / "img_align_celeba"
    for i in range(1, 4):
        save_image(imgs / f"{i:06d}.jpg", (89, 109))
    (imgs / "._000001.jpg").write_bytes(b"\x00\x05\x16\x07junk")
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {0 if i < 90 else 1}\n" for i in range(1, 101)))
    (tmp_path / "list_attr_celeba.txt").write_text(
        "3\nMale Smiling\n" + "".join(f"{i:06d}.jpg 1 -1\n" for i in range(1, 4)))
    ds, said = quiet_load(tmp_path)
    assert ds.names == ["000001.jpg", "000002.jpg", "000003.jpg"] and ds.skipped == []
    lines = [m for m in said if "not in" in m]
    assert lines == [f"facegan: 86 images listed in list_eval_partition.txt for partition 'train' "
                     f"are not in '{imgs}': using the 3 present"], said
    assert not [m for m in said if "skipped" in m], said
    # Without a partition file every image file is wanted: a Mac's '._x.jpg' is none.
    (tmp_path / "list_eval_partition.txt").unlink()
    ds, said = quiet_load(tmp_path)
    assert len(ds) == 3 and ds.skipped == [], ds.skipped


# --------------------------------------------------------------------------------------------
# 11. Messages every data command shares

def test_shared_messages_name_the_data_folder_not_the_library(tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"broken")
    _, said = quiet_load(tmp_path)
    skipped = next(m for m in said if "skipped" in m)
    assert f"'{tmp_path}' (--data)" in skipped and "ImageSet" not in skipped
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        load(tmp_path / "empty")
    assert "--data" in str(e.value) and "data.path" not in str(e.value)


# --------------------------------------------------------------------------------------------
# 12. TIFFs; a folder of other files

def test_tiff_files_load_at_their_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((0, 200, 0), (200, 0, 0))]
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    save_image(tmp_path / "b.TIFF", fmt="TIFF")
    ds = load(tmp_path)
    assert ds.names == ["a.tif", "b.TIFF"]
    assert ds.images[0, :, 8, 8].tolist() == [0, 200, 0]


def test_no_images_lists_the_extensions_found(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.gif")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.gif")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    for call in (load, list_image_files):
        with pytest.raises(UserError, match=r"it holds only 3 other files \(\.gif 2, \.txt 1\)"):
            call(tmp_path)
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("faces/a.gif", (tmp_path / "a.gif").read_bytes())
        zf.writestr("__MACOSX/faces/._a.gif", b"x")
    with pytest.raises(UserError, match=r"no images in zip .*it holds only 1 other file \(\.gif 1\)"):
        load(tmp_path / "d.zip")


def test_the_cache_json_is_plain_text(tmp_path):
    raw = os.fsencode(tmp_path / "d")
    os.makedirs(raw)
    with open(os.path.join(raw, b"\xff.png"), "wb") as f:
        Image.new("RGB", (8, 8)).save(f, "PNG")
    cache = tmp_path / "cache"
    load_dataset(DataConfig(path=str(tmp_path / "d"), resolution=8, cache_dir=str(cache)), progress=False)
    (meta,) = (cache / "data").glob("*.json")
    assert json.loads(meta.read_text(encoding="utf-8"))["names"] == ["\\xff.png"]
