"""Data sources, preprocessing, the decoded cache and the errors a user can run into."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facegan.data.cache as cache_mod
import facegan.data.dataset as dataset_mod
from facegan.config import DataConfig
from facegan.data import CELEBA_ATTRIBUTES, ImageSet, crop_box, load_dataset, resolve_crop, to_float
from facegan.errors import UserError

RNG = np.random.default_rng(0)


def save_image(path: Path, size=(24, 20), mode="RGB", fmt=None, colour=None) -> Path:
    """A small noisy image (or a flat colour) at ``path``; ``size`` is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if colour is not None:
        im = Image.new("RGB", size, colour)
    else:
        im = Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "P":
        im = im.convert("P", palette=Image.ADAPTIVE, colors=16)
        im.info["transparency"] = 0
    elif mode != "RGB":
        im = im.convert(mode)
    im.save(path, format=fmt)
    return path


def load(path, **kw) -> ImageSet:
    kw.setdefault("resolution", 16)
    return load_dataset(DataConfig(path=str(path), **kw), progress=False)


def make_celeba(root: Path, n=6, size=(89, 109), partitions=(0, 0, 0, 1, 1, 2), attr=True,
                part=True) -> np.ndarray:
    """A tiny CelebA layout under root; returns the attribute table (n x 40, values 1/-1)."""
    imgs = root / "img_align_celeba"
    table = RNG.choice([-1, 1], size=(n, 40))
    for i in range(n):
        save_image(imgs / f"{i + 1:06d}.jpg", size)
    if attr:
        rows = [f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in table[i]) for i in range(n)]
        (root / "list_attr_celeba.txt").write_text(
            f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n")
    if part:
        (root / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(partitions)))
    return table


# --------------------------------------------------------------------------------------------
# Sources

def test_folder_recursive_mixed_extensions_and_modes(tmp_path):
    save_image(tmp_path / "a" / "x.JPG")
    save_image(tmp_path / "b" / "c" / "gray.png", mode="L")
    save_image(tmp_path / "b" / "alpha.png", mode="RGBA")
    save_image(tmp_path / "pal.png", mode="P")
    save_image(tmp_path / "w.webp", fmt="WEBP")
    save_image(tmp_path / "z.bmp")
    save_image(tmp_path / "j.jpeg", size=(40, 16))
    (tmp_path / "notes.txt").write_text("not an image")
    save_image(tmp_path / "._x.jpg")  # hidden (macOS resource fork name): ignored

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no palette-transparency or skip warnings
        ds = load(tmp_path)
    assert ds.names == ["a/x.JPG", "b/alpha.png", "b/c/gray.png", "j.jpeg", "pal.png", "w.webp",
                        "z.bmp"]
    assert ds.images.shape == (7, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.images.is_contiguous() and ds.images.device.type == "cpu"
    assert ds.labels is None and ds.label_names == [] and ds.skipped == []
    assert ds.source == "folder" and len(ds) == 7
    gray = ds.images[ds.names.index("b/c/gray.png")]
    torch.testing.assert_close(gray[0], gray[1])  # L was expanded to three equal channels


def test_zip_source_matches_folder(tmp_path):
    folder = tmp_path / "imgs"
    for rel in ["deep/er/one.png", "two.jpg", "Three.PNG"]:
        save_image(folder / rel)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*.*")):
            zf.write(p, "top/" + p.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/top/._two.jpg", b"junk")
        zf.writestr("top/readme.txt", b"hello")
    zs, fs = load(archive), load(folder)
    assert zs.source == "zip"
    assert zs.names == ["top/" + n for n in fs.names]
    torch.testing.assert_close(zs.images, fs.images)


def test_celeba_layout_partitions_and_labels(tmp_path):
    table = make_celeba(tmp_path)
    train = load(tmp_path)
    assert train.source == "celeba"
    assert train.names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert train.label_names == list(CELEBA_ATTRIBUTES)
    assert train.labels.dtype == torch.float32 and train.labels.shape == (3, 40)
    torch.testing.assert_close(train.labels, torch.tensor((table[:3] > 0).astype(np.float32)))
    assert load(tmp_path, partition="valid").names == ["000004.jpg", "000005.jpg"]
    test = load(tmp_path, partition="test")
    assert test.names == ["000006.jpg"]
    torch.testing.assert_close(test.labels[0], torch.tensor((table[5] > 0).astype(np.float32)))
    assert len(load(tmp_path, partition="all")) == 6
    # Pointing at the image folder itself works when its parent has the txt files.
    assert load(tmp_path / "img_align_celeba").names == train.names


def test_celeba_without_attr_file_or_partition_file(tmp_path):
    make_celeba(tmp_path, attr=False, part=False)
    ds = load(tmp_path)
    assert ds.source == "celeba" and ds.labels is None and len(ds) == 6
    with pytest.raises(UserError, match="list_eval_partition.txt"):
        load(tmp_path, partition="valid")


def test_celeba_partial_copy_uses_the_images_present(tmp_path):
    make_celeba(tmp_path, n=6, partitions=(0,) * 6)
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    (tmp_path / "img_align_celeba" / "000005.jpg").unlink()
    # A subset of CelebA is normal: the absent images are counted in one line, not listed as
    # unreadable files.
    with pytest.warns(UserWarning, match="2 images listed in list_eval_partition.txt .* are not in"):
        ds = load(tmp_path)
    assert ds.names == ["000001.jpg", "000003.jpg", "000004.jpg", "000006.jpg"]
    assert ds.skipped == []
    assert ds.labels.shape == (4, 40)


@pytest.mark.parametrize("size", [(178, 218), (89, 109)])
def test_celeba_auto_crop_keeps_the_face_box(tmp_path, size):
    # Paint the face box red and everything else blue: the decoded image must be all red.
    w, h = size
    l, t, r, b = crop_box("celeba", w, h)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 2] = 255
    arr[t:b, l:r] = (255, 0, 0)
    imgs = tmp_path / "img_align_celeba"
    imgs.mkdir()
    Image.fromarray(arr).save(imgs / "000001.png")
    ds = load(tmp_path, resolution=8)
    assert ds.images[0, 0].min() >= 250 and ds.images[0, 2].max() <= 5


# --------------------------------------------------------------------------------------------
# Preprocessing

def test_crop_box_coordinates():
    assert crop_box("celeba", 178, 218) == (30, 55, 150, 175)  # 120 x 120 at full size
    assert crop_box("celeba", 89, 109) == (15, 28, 75, 88)  # 27.5 and 87.5 round up
    assert crop_box("center", 100, 60) == (20, 0, 80, 60)
    assert crop_box("center", 60, 101) == (0, 20, 60, 80)
    assert crop_box("none", 89, 109) == (0, 0, 89, 109)


def test_resolve_crop():
    assert resolve_crop(DataConfig(crop="auto"), "celeba") == "celeba"
    assert resolve_crop(DataConfig(crop="auto"), "folder") == "center"
    assert resolve_crop(DataConfig(crop="none"), "celeba") == "none"
    with pytest.raises(UserError, match="crop"):
        resolve_crop(DataConfig(crop="face"), "folder")


def test_center_crop_drops_the_sides(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 255  # white centred square between black side bands
    Image.fromarray(arr).save(tmp_path / "wide.png")
    ds = load(tmp_path, resolution=8)
    assert ds.images.min() >= 250
    squashed = load(tmp_path, resolution=8, crop="none")
    assert squashed.images.min() == 0  # 'none' keeps the black bands


def test_resize_shape_and_dtype(tmp_path):
    save_image(tmp_path / "big.png", size=(70, 50))
    save_image(tmp_path / "small.jpg", size=(9, 11))
    ds = load(tmp_path, resolution=32)
    assert ds.images.shape == (2, 3, 32, 32) and ds.images.dtype == torch.uint8


def test_to_float_range():
    x = torch.tensor([0, 255, 127], dtype=torch.uint8).view(1, 3, 1, 1)
    y = to_float(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.flatten()[:2], torch.tensor([-1.0, 1.0]), rtol=0, atol=0)
    torch.testing.assert_close(y.flatten()[2], torch.tensor(127 / 127.5 - 1))


def test_max_images_takes_the_first_n(tmp_path):
    for i in range(5):
        save_image(tmp_path / f"{i}.png")
    ds = load(tmp_path, max_images=3)
    assert ds.names == ["0.png", "1.png", "2.png"]
    torch.testing.assert_close(ds.images, load(tmp_path).images[:3])


# --------------------------------------------------------------------------------------------
# Cache

def test_cache_hit_decodes_nothing(tmp_path, monkeypatch):
    make_celeba(tmp_path / "celeba")
    first = load(tmp_path / "celeba")
    calls = []
    monkeypatch.setattr(dataset_mod, "decode_image", lambda *a, **k: calls.append(a))
    second = load(tmp_path / "celeba")
    assert calls == []
    assert second.fingerprint == first.fingerprint and second.names == first.names
    torch.testing.assert_close(second.images, first.images)
    torch.testing.assert_close(second.labels, first.labels)


def test_cache_dir_setting_and_files(tmp_path):
    save_image(tmp_path / "imgs" / "a.png")
    ds = load(tmp_path / "imgs", cache_dir=str(tmp_path / "cache"))
    files = sorted(p.name for p in (tmp_path / "cache" / "data").iterdir())
    assert files == [f"{ds.cache_key}.json", f"{ds.cache_key}.npy"]


def test_large_sets_are_memory_mapped(tmp_path, monkeypatch):
    for i in range(4):
        save_image(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "imgs" / "1b.png").write_bytes(b"broken")  # exercises the in-place compaction
    with pytest.warns(UserWarning, match="skipped 1"):
        in_memory = load(tmp_path / "imgs")
    monkeypatch.setattr(cache_mod, "MEMMAP_ABOVE", 1)
    monkeypatch.setattr(dataset_mod, "MEMMAP_ABOVE", 1)
    for _ in range(2):  # decoded into a scratch map, then the cache file mapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mapped = load(tmp_path / "imgs", cache_dir=str(tmp_path / "cache"))
        assert [str(w.message) for w in caught if "skipped" not in str(w.message)] == []
        cached = cache_mod.DecodedCache(tmp_path / "cache" / "data", mapped.cache_key).load()
        assert isinstance(cached.images, np.memmap)
        torch.testing.assert_close(mapped.images, in_memory.images)
        assert mapped.names == in_memory.names


def test_fingerprint_and_cache_key_change_with_settings_and_files(tmp_path):
    make_celeba(tmp_path)
    first = load(tmp_path)
    base, key = first.fingerprint, first.cache_key
    assert len(base) == 32 and base != key
    assert (load(tmp_path).fingerprint, load(tmp_path).cache_key) == (base, key)
    for kw in ({"resolution": 8}, {"crop": "center"}, {"partition": "all"}, {"max_images": 2}):
        other = load(tmp_path, **kw)
        assert other.fingerprint != base and other.cache_key != key, kw
    same = load(tmp_path, crop="celeba")  # what 'auto' resolves to
    assert (same.fingerprint, same.cache_key) == (base, key)
    # A touched file is decoded again (the cache key holds the mtime), but the same pixels
    # are the same data: the fingerprint, and what is keyed by it, stays.
    img = tmp_path / "img_align_celeba" / "000002.jpg"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = load(tmp_path)
    assert touched.cache_key != key and touched.fingerprint == base
    # Other pixels in one file, or another label, are other data.
    save_image(img, size=(89, 109), colour=(10, 200, 30))
    assert load(tmp_path).fingerprint != base


def test_a_cache_entry_without_a_content_hash_gets_the_same_fingerprint(tmp_path):
    import json

    save_image(tmp_path / "imgs" / "a.png")
    save_image(tmp_path / "imgs" / "b.png")
    ds = load(tmp_path / "imgs", cache_dir=str(tmp_path / "cache"))
    meta_path = tmp_path / "cache" / "data" / f"{ds.cache_key}.json"
    meta = json.loads(meta_path.read_text())
    assert meta["content"] == ds.fingerprint
    del meta["content"]  # as written by an older facegan
    meta_path.write_text(json.dumps(meta))
    again = load(tmp_path / "imgs", cache_dir=str(tmp_path / "cache"))
    assert again.fingerprint == ds.fingerprint
    assert json.loads(meta_path.read_text())["content"] == ds.fingerprint  # kept for next time


def test_a_fresh_copy_has_the_same_fingerprint_and_reuses_real_statistics(tmp_path, monkeypatch):
    import shutil

    import facegan.metrics.stats as stats_mod

    make_celeba(tmp_path / "a")
    first = load(tmp_path / "a", cache_dir=str(tmp_path / "cache"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # new mtimes, another path
    for p in (tmp_path / "b").rglob("*"):
        os.utime(p, ns=(1, 10**18))
    copy = load(tmp_path / "b", cache_dir=str(tmp_path / "cache"))
    assert copy.cache_key != first.cache_key and copy.fingerprint == first.fingerprint

    class Net:
        network_id = "tiny-net"
        seen = 0

        def __call__(self, x, probs=False):
            Net.seen += x.shape[0]
            return x.float().mean((2, 3)).repeat(1, 2)

    monkeypatch.setattr("facegan.metrics.features.extract_features",
                        lambda net, images, **k: net(torch.as_tensor(images)).double().numpy())
    a = stats_mod.real_stats(first, Net(), cache_dir=str(tmp_path / "cache"))
    b = stats_mod.real_stats(copy, Net(), cache_dir=str(tmp_path / "cache"))
    assert Net.seen == len(first)  # the copy's statistics came from the cache
    np.testing.assert_array_equal(a.mu, b.mu)


def test_fingerprint_changes_when_a_file_is_added(tmp_path):
    save_image(tmp_path / "a.png")
    base = load(tmp_path).fingerprint
    save_image(tmp_path / "b.png")
    assert load(tmp_path).fingerprint != base


# --------------------------------------------------------------------------------------------
# Bad files and user errors

def test_corrupt_files_are_skipped_with_one_warning(tmp_path):
    good = save_image(tmp_path / "a_good.jpg", size=(40, 40))
    save_image(tmp_path / "c_good.png")
    (tmp_path / "b_truncated.jpg").write_bytes(good.read_bytes()[:300])
    (tmp_path / "d_text.jpg").write_text("this is not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(tmp_path)
    assert len(caught) == 1 and "skipped 2 of 4" in str(caught[0].message)
    assert "b_truncated.jpg" in str(caught[0].message)
    assert ds.names == ["a_good.jpg", "c_good.png"] and len(ds) == 2
    assert [s[0] for s in ds.skipped] == ["b_truncated.jpg", "d_text.jpg"]
    # Each reason is words about the file, not Pillow's "<_io.BytesIO object at 0x...>".
    reasons = dict(ds.skipped)
    assert reasons["d_text.jpg"] == "not an image Pillow can read (a broken file, or not an image at all)"
    assert reasons["b_truncated.jpg"].startswith("OSError: ")
    assert not any("object at 0x" in r or "BytesIO" in r for r in reasons.values())
    # The cached copy reports the same skipped files.
    with pytest.warns(UserWarning, match="skipped 2"):
        assert load(tmp_path).skipped == ds.skipped


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images"):
        load(tmp_path)


def test_all_files_corrupt(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(UserError, match="none of the 3"):
        load(tmp_path)


def test_bad_zip(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"definitely not a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        load(tmp_path / "data.zip")
    (tmp_path / "empty.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # a valid empty archive
    with pytest.raises(UserError, match="no images in zip"):
        load(tmp_path / "empty.zip")


def test_plain_file_is_not_a_source(tmp_path):
    p = save_image(tmp_path / "one.png")
    with pytest.raises(UserError, match="not a .zip"):
        load(p)


def test_partition_errors(tmp_path):
    make_celeba(tmp_path / "celeba", partitions=(0,) * 6)
    with pytest.raises(UserError, match="selects no images"):
        load(tmp_path / "celeba", partition="valid")
    save_image(tmp_path / "plain" / "a.png")
    with pytest.raises(UserError, match="partition"):
        load(tmp_path / "plain", partition="test")


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    save_image(tmp_path / "a.png")
    load_dataset(DataConfig(path=str(tmp_path), resolution=8), progress=True)
    captured = capsys.readouterr()
    assert "decoding" in captured.err and captured.out == ""


# --------------------------------------------------------------------------------------------
# The real data that the celeba_dir fixture finds (skipped when absent)

def test_real_celeba_subset(celeba_dir):
    ds = load(celeba_dir, resolution=32, max_images=200)
    assert ds.source == "celeba" and ds.images.shape == (200, 3, 32, 32)
    assert ds.labels.shape == (200, 40)
    assert "Male" in ds.label_names and "Eyeglasses" in ds.label_names
    assert set(ds.labels.unique().tolist()) == {0.0, 1.0}
    assert ds.names[0] == "000001.jpg" and ds.skipped == []


def test_real_afhq(afhq_dir):
    ds = load(afhq_dir, resolution=32)
    assert ds.source == "folder" and ds.images.shape == (1000, 3, 32, 32)
    assert ds.labels is None and ds.skipped == []
    assert 40 < ds.images.float().mean() < 215
