"""The attribute / class classifier: training separates classes, held-out rule, safe save/load."""

import json

import pytest
import torch

from facegan.errors import UserError
from facegan.metrics.classifier import AttributeNet, heldout_mask, load_classifier, save_classifier, train_classifier


def _two_attribute_set(n=240, size=16, seed=0):
    """uint8 images whose two attributes are visible: 'Spot' adds a bright square in the
    middle (not a left/right cue: training flips images horizontally), 'Red' raises the red
    channel; independent, on a noisy grey background."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 2, generator=g) < 0.5).float()
    x = 100 + 25 * torch.randn(n, 3, size, size, generator=g)
    x[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] += 70 * labels[:, 0, None, None, None]
    x[:, 0] += 70 * labels[:, 1, None, None]
    return x.clamp(0, 255).round().to(torch.uint8), labels


def test_classifier_separates_attributes_and_classes():
    images, labels = _two_attribute_set()
    held = torch.zeros(len(images), dtype=torch.bool)
    held[-60:] = True
    clf = train_classifier(images, labels, ["Spot", "Red"], heldout=held, epochs=12, batch_size=32,
                           width=8, lr=5e-3)
    assert clf.info["n_heldout"] == 60 and clf.info["accuracy_on"] == "held-out images"
    assert clf.accuracy["Spot"] > 0.9 and clf.accuracy["Red"] > 0.9
    p = clf.probs(images[-60:])
    assert p.shape == (60, 2) and float(p.min()) >= 0 and float(p.max()) <= 1
    # Exclusive classes (softmax): 'Spot' as two classes.
    onehot = torch.nn.functional.one_hot(labels[:, 0].long(), 2).float()
    cls = train_classifier(images, onehot, ["plain", "spot"], kind="class", heldout=held, epochs=12,
                           batch_size=32, width=8, lr=5e-3)
    assert cls.accuracy["overall"] > 0.9
    torch.testing.assert_close(cls.probs(images[:5]).sum(1), torch.ones(5))


def test_untrained_net_is_at_chance_on_the_same_set():
    # The accuracy above comes from training: the same net before training is near chance
    # on one of the attributes (guards against a test that cannot fail).
    images, labels = _two_attribute_set()
    torch.manual_seed(0)
    net = AttributeNet(2, 16, 8).eval()
    with torch.no_grad():
        p = torch.sigmoid(net(images.float() / 127.5 - 1))
    acc = ((p > 0.5).float() == labels).float().mean(0)
    assert float(acc.min()) < 0.7


def test_save_load_round_trip_and_refuses_unsafe_files(tmp_path):
    images, labels = _two_attribute_set(n=40)
    clf = train_classifier(images, labels, ["Spot", "Red"], epochs=1, width=8)
    assert clf.info["accuracy_on"].startswith("training images")
    path = save_classifier(clf, tmp_path / "clf")
    assert path.name == "clf.json" and (tmp_path / "clf.pt").is_file()
    meta = json.loads(path.read_text())
    assert meta["names"] == ["Spot", "Red"] and meta["resolution"] == 16
    back = load_classifier(tmp_path / "clf.pt")
    torch.testing.assert_close(back.probs(images), clf.probs(images))
    assert back.accuracy == pytest.approx(clf.accuracy)

    class Evil:  # anything but tensors must be refused by weights_only=True
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "clf.pt")
    with pytest.raises(UserError, match="not a readable facegan classifier"):
        load_classifier(tmp_path / "clf")
    with pytest.raises(UserError, match="no classifier"):
        load_classifier(tmp_path / "missing")


def test_heldout_rule(tmp_path):
    names = [f"{i:06d}.jpg" for i in range(1, 301)]
    mask, rule = heldout_mask(list(reversed(names)))
    assert int(mask.sum()) == 30 and "last 10%" in rule
    # the last 30 names in name order, whatever order the list is in
    held = {n for n, m in zip(reversed(names), mask.tolist()) if m}
    assert held == set(names[-30:])
    # CelebA partitions win when they hold enough images (in a CelebA folder's layout)
    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{n} {0 if i < 150 else (1 if i < 250 else 2)}\n" for i, n in enumerate(names)))
    mask, rule = heldout_mask(names, tmp_path)
    assert rule == "CelebA valid+test partitions" and mask.tolist() == [i >= 150 for i in range(300)]
    # ...but not when all images are 'train' (the 10k development subset)
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in names))
    assert "last 10%" in heldout_mask(names, tmp_path)[1]
    # Kaggle's copy: the same partitions in a .csv
    (tmp_path / "list_eval_partition.txt").unlink()
    (tmp_path / "list_eval_partition.csv").write_text("image_id,partition\n" + "".join(
        f"{n},{0 if i < 150 else (1 if i < 250 else 2)}\n" for i, n in enumerate(names)))
    mask, rule = heldout_mask(names, tmp_path)
    assert rule == "CelebA valid+test partitions" and mask.tolist() == [i >= 150 for i in range(300)]


def test_heldout_rule_for_class_folders_takes_every_class():
    # Folder names sort by class: the last 10% overall would all be dogs.
    names = [f"cat/{i:04d}.jpg" for i in range(40)] + [f"dog/{i:04d}.jpg" for i in range(200)]
    classes = torch.tensor([0] * 40 + [1] * 200)
    mask, rule = heldout_mask(names, classes=classes)
    assert "each class" in rule
    held = {n for n, m in zip(names, mask.tolist()) if m}
    assert held == set(names[36:40]) | set(names[-20:])
    assert heldout_mask(names)[0][:40].sum() == 0  # without classes: no cat held out


@pytest.mark.slow
def test_classifier_learns_male_on_real_celeba(celeba_dir):
    from facegan.config import DataConfig
    from facegan.data import load_dataset

    data = load_dataset(DataConfig(path=str(celeba_dir), resolution=32, partition="all",
                                   max_images=3000), progress=False)
    male = data.labels[:, data.label_names.index("Male")][:, None]
    held = torch.zeros(len(data), dtype=torch.bool)
    held[-500:] = True
    clf = train_classifier(data.images, male, ["Male"], heldout=held, epochs=4, width=16)
    # Majority class is ~58% female: well above it means the faces were learnt from.
    assert clf.accuracy["Male"] > 0.85


def test_cached_classifier_is_keyed_by_the_heldout_rows(tmp_path, monkeypatch):
    # The data fingerprint is of the images and labels, so it is the same whichever partition
    # file sits beside them; the classifier's cache key must still tell the hold-outs apart.
    import numpy as np
    from PIL import Image

    import facegan.metrics.classifier as clf_mod
    from facegan.config import DataConfig
    from facegan.data import CELEBA_ATTRIBUTES

    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 12
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)).save(
            root / "img_align_celeba" / f"{i + 1:06d}.jpg")
    rows = [f"{i + 1:06d}.jpg " + " ".join(str(v) for v in rng.choice([-1, 1], 40)) for i in range(n)]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n"
                                               + "\n".join(rows) + "\n")

    def partitions(held):
        (root / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {1 if i in held else 0}\n" for i in range(n)))

    monkeypatch.setattr(clf_mod, "MIN_HELDOUT", 2)  # a 12-image set
    trained = []
    real_train = clf_mod.train_classifier
    monkeypatch.setattr(clf_mod, "train_classifier",
                        lambda *a, **k: trained.append(k["heldout"].clone()) or real_train(*a, **k))
    cfg = DataConfig(path=str(root), resolution=16, cache_dir=str(tmp_path / "cache"))
    partitions({0, 1, 2})
    first = clf_mod.classifier_for_data(cfg, names=["Male"], epochs=1, progress=False)
    partitions({9, 10, 11})
    clf_mod.classifier_for_data(cfg, names=["Male"], epochs=1, progress=False)
    assert len(trained) == 2 and not torch.equal(trained[0], trained[1])
    assert trained[1][9:].all() and not trained[1][:9].any()
    partitions({0, 1, 2})
    again = clf_mod.classifier_for_data(cfg, names=["Male"], epochs=1, progress=False)
    assert len(trained) == 2  # the first hold-out's classifier, from the cache
    assert again.info["n_heldout"] == first.info["n_heldout"] == 3
