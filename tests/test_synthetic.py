"""The built-in procedurally drawn faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facegan.data.synthetic as synthetic
from facegan.config import DataConfig
from facegan.data import BUILTIN_ATTRIBUTES, load_dataset


def test_shapes_and_ranges():
    images, labels = synthetic.generate_faces(20, 16)
    assert images.shape == (20, 3, 16, 16) and images.dtype == np.uint8
    assert labels.shape == (20, len(synthetic.LABEL_NAMES)) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1}
    assert images.std() > 20  # not blank


def test_deterministic_and_prefix_stable():
    a, la = synthetic.generate_faces(300, 16, seed=3)
    b, lb = synthetic.generate_faces(300, 16, seed=3, workers=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    c, lc = synthetic.generate_faces(40, 16, seed=3)
    np.testing.assert_array_equal(a[:40], c)  # the first N do not depend on the total
    np.testing.assert_array_equal(la[:40], lc)
    d, _ = synthetic.generate_faces(40, 16, seed=4)
    assert not np.array_equal(c, d)


def test_label_balance_and_consistency():
    _, labels = synthetic.generate_faces(600, 8)
    names = synthetic.LABEL_NAMES
    hair = labels[:, [names.index(n) for n in
                      ("black_hair", "blond_hair", "brown_hair", "gray_hair", "bald")]]
    np.testing.assert_array_equal(hair.sum(1), 1)  # exactly one hair state per face
    bald = labels[:, names.index("bald")].astype(bool)
    assert not labels[bald, names.index("long_hair")].any()
    freq = labels.mean(0)
    for name, p in zip(names, freq):
        assert 0.03 < p < 0.7, (name, p)


def test_attributes_are_visible():
    # Labels must match what is drawn: dark-skinned faces are darker in the middle.
    images, labels = synthetic.generate_faces(400, 16)
    names = synthetic.LABEL_NAMES
    dark = labels[:, names.index("dark_skin")].astype(bool)
    centre = images[:, :, 6:10, 6:10].astype(np.float32).mean(axis=(1, 2, 3))
    assert centre[dark].mean() < centre[~dark].mean() - 20


def test_load_builtin_respects_max_images_and_caches(monkeypatch):
    ds = load_dataset(DataConfig(path="builtin", resolution=16, max_images=50), progress=False)
    assert ds.source == "builtin" and ds.images.shape == (50, 3, 16, 16)
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.label_names == list(BUILTIN_ATTRIBUTES) and ds.labels.shape == (50, 9)
    assert ds.names[0] == "builtin/000000" and ds.names[-1] == "builtin/000049"
    images, labels = synthetic.generate_faces(50, 16)
    np.testing.assert_array_equal(ds.images.numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels.astype(np.float32))

    def fail(*a, **k):
        raise AssertionError("the cached builtin set was drawn again")

    monkeypatch.setattr(synthetic, "generate_faces", fail)
    again = load_dataset(DataConfig(path="builtin", resolution=16, max_images=50), progress=False)
    assert again.fingerprint == ds.fingerprint
    torch.testing.assert_close(again.images, ds.images)


@pytest.mark.parametrize("partition", ["valid", "test"])
def test_builtin_held_out_partitions_differ(partition):
    train = load_dataset(DataConfig(path="builtin", resolution=8, max_images=10), progress=False)
    other = load_dataset(DataConfig(path="builtin", resolution=8, max_images=10,
                                    partition=partition), progress=False)
    assert other.fingerprint != train.fingerprint
    assert not torch.equal(other.images, train.images)
