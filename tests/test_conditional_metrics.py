"""Conditional accuracy, intra-class FID / KID and edit metrics on cases with known answers."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from facegan.errors import UserError
from facegan.labels import LabelSpec
from facegan.metrics.conditional import (
    conditional_accuracy,
    edit_metrics,
    is_monotonic,
    per_class_fid,
    real_features_by_label,
)
from facegan.metrics.fid import kernel_inception_distance


class ChannelClassifier:
    """A stand-in classifier: attribute k's probability is the mean of colour channel k (0..1)."""

    def __init__(self, names, kind="attr"):
        self.names, self.kind = list(names), kind

    def probs(self, images):
        p = images.float().mean(dim=(2, 3))[:, :len(self.names)] / 255.0
        return p if self.kind == "attr" else p / p.sum(1, keepdim=True).clamp_min(1e-9)

    def index(self, name):
        if name not in self.names:
            raise UserError(f"the classifier knows no attribute '{name}'")
        return self.names.index(name)


class LabelPainter(nn.Module):
    """A conditional 'generator' that paints label k into colour channel k: flat images
    (N, 3, 8, 8), channel k = 2 c_k - 1 (or always +1 when it ignores its labels)."""

    def __init__(self, spec, ignore_labels=False):
        super().__init__()
        self.latent_dim, self.resolution = 4, 8
        self.ignore = ignore_labels
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z, c):
        x = torch.zeros(z.shape[0], 3, 8, 8)
        k = c.shape[1]
        x[:, :k] = (torch.ones_like(c) if self.ignore else c)[:, :, None, None] * 2 - 1
        return x


def test_conditional_accuracy_attributes():
    spec = LabelSpec("attr", ("Male", "Smiling"), (3, 5), 10)
    clf = ChannelClassifier(["Male", "Smiling"])
    res = conditional_accuracy(LabelPainter(spec), spec, clf, n=16)
    assert res["per_label"] == {"Male=1": 1.0, "Male=0": 1.0, "Smiling=1": 1.0, "Smiling=0": 1.0}
    assert res["mean"] == 1.0 and res["n"] == 16
    # A generator that ignores its labels is right only when asked for 1: balanced accuracy 0.5.
    res = conditional_accuracy(LabelPainter(spec, ignore_labels=True), spec, clf, n=16)
    assert res["per_label"]["Male=1"] == 1.0 and res["per_label"]["Male=0"] == 0.0
    assert res["per_attribute"] == {"Male": 0.5, "Smiling": 0.5}
    with pytest.raises(UserError, match="knows no 'Smiling'"):
        conditional_accuracy(LabelPainter(spec), spec, ChannelClassifier(["Male"]), n=4)


def test_conditional_accuracy_classes():
    spec = LabelSpec("class", ("cat", "dog", "wild"), (4, 4, 4), 12)
    clf = ChannelClassifier(["cat", "dog", "wild"], kind="class")
    res = conditional_accuracy(LabelPainter(spec), spec, clf, n=8)
    assert res["per_label"] == {"cat": 1.0, "dog": 1.0, "wild": 1.0}
    res = conditional_accuracy(LabelPainter(spec, ignore_labels=True), spec, clf, n=8)
    assert res["mean"] == pytest.approx(1 / 3)  # all channels equal: argmax is always 'cat'
    assert "per_attribute" not in res
    with pytest.raises(UserError, match="classifier is of kind 'attr'"):
        conditional_accuracy(LabelPainter(spec), spec, ChannelClassifier(spec.names), n=4)


def _fid_by_formula(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_per_class_fid_matches_the_formula_per_class():
    rng = np.random.default_rng(0)
    d = 6
    real = {"Male=1": rng.normal(0, 1, (60, d)), "Male=0": rng.normal(2, 1, (50, d))}
    gen = {"Male=1": rng.normal(0.5, 1.2, (40, d)), "Male=0": rng.normal(2, 0.8, (45, d))}
    res = per_class_fid(gen, real, kid=True)
    for c in real:
        assert res["per_class"][c]["fid"] == pytest.approx(_fid_by_formula(gen[c], real[c]), rel=1e-6)
        assert res["per_class"][c]["kid_mean"] == pytest.approx(kernel_inception_distance(gen[c], real[c])[0])
        assert (res["per_class"][c]["n_gen"], res["per_class"][c]["n_real"]) == (len(gen[c]), len(real[c]))
    assert res["mean_fid"] == pytest.approx(np.mean([res["per_class"][c]["fid"] for c in real]))
    # Swapping the classes (a generator that mixes them up) is much worse per class.
    swapped = per_class_fid({"Male=1": gen["Male=0"], "Male=0": gen["Male=1"]}, real, kid=False)
    assert swapped["mean_fid"] > 5 * res["mean_fid"]
    with pytest.raises(UserError, match="no real images for class 'x'"):
        per_class_fid({"x": gen["Male=1"]}, real)


def test_real_features_split_by_label():
    feats = np.arange(12, dtype=np.float64).reshape(6, 2)
    attrs = torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1], [1, 0], [0, 0]], dtype=torch.float32)
    spec = LabelSpec("attr", ("Male", "Smiling"), (3, 2), 6)
    out = real_features_by_label(feats, attrs, spec)
    assert list(out) == ["Male=1", "Male=0", "Smiling=1", "Smiling=0"]
    np.testing.assert_array_equal(out["Male=1"], feats[[0, 2, 4]])
    np.testing.assert_array_equal(out["Smiling=0"], feats[[0, 1, 4, 5]])
    cspec = LabelSpec("class", ("a", "b"), (2, 4), 6)
    onehot = torch.nn.functional.one_hot(torch.tensor([1, 0, 1, 1, 0, 1]), 2).float()
    out = real_features_by_label(feats, onehot, cspec)
    np.testing.assert_array_equal(out["a"], feats[[1, 4]])


class LinearPainter(nn.Module):
    """An unconditional 'generator' whose red channel is sigmoid(z . a) and green sigmoid(z . b)."""

    def __init__(self, a, b):
        super().__init__()
        self.latent_dim, self.resolution = a.numel(), 8
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z, c):
        assert c.shape == (z.shape[0], 0)  # unconditional: labels of width 0
        x = torch.zeros(z.shape[0], 3, 8, 8)
        x[:, 0] = (torch.sigmoid(z @ self.a) * 2 - 1)[:, None, None]
        x[:, 1] = (torch.sigmoid(z @ self.b) * 2 - 1)[:, None, None]
        return x


def test_edit_metrics_on_a_known_generator():
    a, b = torch.zeros(4), torch.zeros(4)
    a[0], b[1] = 1.0, 1.0
    g = LinearPainter(a, b)
    clf = ChannelClassifier(["Red", "Green"])
    res = edit_metrics(g, clf, a, "Red", strength=3.0, steps=5, n=16)
    assert res["strengths"] == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert res["monotonic"] and res["target_change"] > 0.5
    assert res["others_change"] == 0.0  # a is orthogonal to b: green never moves
    assert edit_metrics(g, clf, a, "Red", steps=3, n=4, watch=["Green"])["watched"] == {"Green": 0.0}
    assert res["target_abs_change"] > 0.2
    # Along a diagonal direction green moves too; backwards, the target falls.
    diag = (a + b) / 2 ** 0.5
    d = edit_metrics(g, clf, diag, "Red", steps=5, n=16, watch=["Green"])
    assert d["others_change"] > 0.1 and d["watched"]["Green"] == pytest.approx(d["others_change"])
    assert not edit_metrics(g, clf, -a, "Red", steps=5, n=16)["monotonic"]
    with pytest.raises(UserError, match="odd"):
        edit_metrics(g, clf, a, "Red", steps=4)


def test_edit_metrics_of_given_faces():
    """Given latents (e.g. projected photos) are the faces edited: a face already deep in 'red'
    barely reddens further, while random faces do."""
    a, b = torch.zeros(4), torch.zeros(4)
    a[0], b[1] = 1.0, 1.0
    g = LinearPainter(a, b)
    clf = ChannelClassifier(["Red", "Green"])
    z = torch.zeros(5, 4)
    z[:, 0] = 8.0  # red saturated already
    given = edit_metrics(g, clf, a, "Red", strength=1.0, steps=3, z=z)
    assert given["n"] == 5 and given["monotonic"]
    assert given["target_change"] < 0.01 < edit_metrics(g, clf, a, "Red", strength=1.0, steps=3, n=5)["target_change"]
    z[:, 0] = 0.0  # on the boundary: the most sensitive place
    assert edit_metrics(g, clf, a, "Red", strength=1.0, steps=3, z=z)["target_change"] == pytest.approx(
        float(torch.sigmoid(torch.tensor(1.0)) - torch.sigmoid(torch.tensor(-1.0))), abs=0.01)


def test_edit_metrics_identity_drift_with_a_feature_network():
    a, b = torch.zeros(4), torch.zeros(4)
    a[0], b[1] = 1.0, 1.0
    g = LinearPainter(a, b)
    clf = ChannelClassifier(["Red", "Green"])

    def net(x):  # (B, 3, 299, 299) in 0..255 -> per-channel means as 'features'
        return x.float().mean(dim=(2, 3))

    small = edit_metrics(g, clf, a, "Red", strength=0.2, steps=3, n=12, net=net)
    big = edit_metrics(g, clf, a, "Red", strength=6.0, steps=3, n=12, net=net)
    assert 0 < small["identity_drift"] < big["identity_drift"]
    assert small["random_pair_distance"] == pytest.approx(big["random_pair_distance"])
    assert small["drift_ratio"] == pytest.approx(small["identity_drift"] / small["random_pair_distance"])


def test_is_monotonic():
    assert is_monotonic([0.1, 0.2, 0.2, 0.9]) and not is_monotonic([0.1, 0.3, 0.2])
    assert is_monotonic([0.1, 0.3, 0.29], tol=0.02)


def test_intra_class_fid_end_to_end_with_a_feature_network():
    from facegan.metrics.conditional import intra_class_fid
    from facegan.metrics.features import extract_features

    spec = LabelSpec("attr", ("Male",), (6, ), 12)

    def net(x):  # (B, 3, 299, 299) in 0..255 -> per-channel means, plus a little spread
        return torch.cat([x.float().mean(dim=(2, 3)), x.float()[:, :, :3, :3].flatten(1)], 1)

    # Real images painted like the generator paints them, so a label-following generator
    # matches each class exactly and one that ignores its labels does not.
    real_labels = torch.tensor([[1.0], [0.0]] * 6)
    real_imgs = ((LabelPainter(spec)(torch.zeros(12, 4), real_labels) + 1) * 127.5).round().to(torch.uint8)
    real_feats = extract_features(net, real_imgs)
    good = intra_class_fid(LabelPainter(spec), spec, real_feats, real_labels, net, n=6, kid=False)
    bad = intra_class_fid(LabelPainter(spec, ignore_labels=True), spec, real_feats, real_labels, net,
                          n=6, kid=False)
    assert set(good["per_class"]) == {"Male=1", "Male=0"}
    assert good["mean_fid"] == pytest.approx(0.0, abs=1e-6)
    assert bad["per_class"]["Male=1"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert bad["per_class"]["Male=0"]["fid"] > 1000  # asked for Male=0, drew Male=1 images
    # Overall FID pools the classes: the label-ignoring generator's pool lacks half the data.
    assert bad["overall_fid"] > good["overall_fid"] + 100
