"""FID / KID / IS maths, the clean resize and the statistics files: small arrays, fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.errors import UserError
from facegan.metrics.fid import (
    fid_from_features,
    frechet_distance,
    gaussian_fit,
    inception_score,
    kernel_inception_distance,
)
from facegan.metrics.resize import resize_clean
from facegan.metrics.stats import FeatureStats, load_stats, save_stats, stats_cache_path


def _close(a, b, **kw):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64),
                               torch.as_tensor(b, dtype=torch.float64), **kw)


# ---- FID ------------------------------------------------------------------------------------

def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    _close(frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)), expected, rtol=1e-9, atol=1e-9)


def test_frechet_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(1).normal(size=(400, 32))
    mu, sigma = gaussian_fit(f)
    _close(frechet_distance(mu, sigma, mu, sigma), 0.0, rtol=0, atol=1e-8)
    _close(fid_from_features(f, f), 0.0, rtol=0, atol=1e-8)


def test_gaussian_fit_is_mean_and_unbiased_covariance():
    f = np.random.default_rng(2).normal(size=(50, 5)).astype(np.float32)
    mu, sigma = gaussian_fit(f)
    _close(mu, f.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    _close(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n1,n2,d", [(30, 40, 64), (20, 20, 100), (120, 90, 32)])
def test_low_rank_fid_equals_the_sqrtm_form(n1, n2, d):
    rng = np.random.default_rng(n1)
    a = rng.normal(size=(n1, d))
    b = rng.normal(size=(n2, d)) * 1.5 + 0.3
    _close(fid_from_features(a, b), frechet_distance(*gaussian_fit(a), *gaussian_fit(b)),
           rtol=1e-6, atol=1e-6)


def test_fid_halves_small_shift_large():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(2000, 8))
    halves = fid_from_features(f[:1000], f[1000:])
    shifted = fid_from_features(f[:1000], f[1000:] + 1.0)
    assert halves < 0.05
    assert shifted > 7.5  # 8 dims x 1.0^2 plus covariance noise


# ---- KID ------------------------------------------------------------------------------------

def _kid_reference(x, y):
    """Direct unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3 (loops kept obvious)."""
    d = x.shape[1]
    m = x.shape[0]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = ~np.eye(m, dtype=bool)
    return kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean()


def test_kid_matches_direct_formula_on_full_sets():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 10))
    y = rng.normal(size=(60, 10)) + 0.5
    # Subsets as large as the sets: every subset is a permutation, so each value is exact.
    mean, std = kernel_inception_distance(x, y, num_subsets=5, subset_size=1000)
    _close(mean, _kid_reference(x, y), rtol=1e-10, atol=1e-12)
    assert std < 1e-10


def test_kid_of_identical_sets_is_minus_the_diagonal_excess():
    # For y == x the unbiased estimate is 2 (mean off-diagonal k - mean k) <= 0, exactly.
    x = np.random.default_rng(5).normal(size=(50, 6))
    mean, _ = kernel_inception_distance(x, x, num_subsets=3, subset_size=50)
    _close(mean, _kid_reference(x, x), rtol=1e-10, atol=1e-12)
    assert mean <= 0


def test_kid_unbiased_near_zero_for_same_distribution_positive_for_different():
    rng = np.random.default_rng(6)
    f = rng.normal(size=(2000, 16))
    same_mean, same_std = kernel_inception_distance(f[:1000], f[1000:], num_subsets=20,
                                                    subset_size=200)
    diff_mean, _ = kernel_inception_distance(f[:1000], f[1000:] + 0.5, num_subsets=20,
                                             subset_size=200)
    # Unbiased: centred on 0 (either sign), well inside the subset spread.
    assert abs(same_mean) < same_std
    assert diff_mean > 10 * same_std


def test_kid_subset_size_is_capped_by_the_smaller_set():
    rng = np.random.default_rng(7)
    mean, std = kernel_inception_distance(rng.normal(size=(30, 4)), rng.normal(size=(500, 4)),
                                          num_subsets=10)
    assert np.isfinite(mean) and np.isfinite(std)


# ---- IS -------------------------------------------------------------------------------------

def test_inception_score_limits():
    n, c = 100, 10
    uniform = np.full((n, c), 1.0 / c)
    _close(inception_score(uniform)[0], 1.0, rtol=1e-12, atol=1e-12)
    # Confident and evenly spread over c classes in every split: IS = c.
    onehot = np.eye(c)[np.arange(n) % c]
    mean, std = inception_score(onehot, splits=10)
    _close(mean, float(c), rtol=1e-9, atol=1e-9)
    _close(std, 0.0, rtol=0, atol=1e-9)


# ---- resize ---------------------------------------------------------------------------------

def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                     (x + y) * 255 // max(h + w - 2, 1)], -1).astype(np.uint8)


def test_resize_matches_per_channel_float_pil_bicubic():
    img = _gradient(64, 64)
    img[10:20, 30:40] = [255, 0, 0]  # a hard edge, so bicubic overshoots and the clip matters
    out = resize_clean(img)
    assert out.shape == (3, 299, 299) and out.dtype == np.float32
    for c in range(3):
        ref = Image.fromarray(img[:, :, c].astype(np.float32))  # clean-fid: mode 'F'
        assert ref.mode == "F"
        ref = np.clip(np.asarray(ref.resize((299, 299), resample=Image.BICUBIC)), 0, 255)
        np.testing.assert_array_equal(out[c], ref)
    assert out.min() >= 0 and out.max() <= 255
    # Not quantised: the float result keeps fractional values.
    assert np.any(out != np.round(out))


def test_resize_299_passes_through_and_nonsquare_is_squashed():
    img = np.random.default_rng(8).integers(0, 256, (299, 299, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_clean(img), img.transpose(2, 0, 1).astype(np.float32))
    wide = _gradient(40, 90)
    assert resize_clean(wide).shape == (3, 299, 299)


# ---- statistics files -----------------------------------------------------------------------

def test_stats_round_trip_atomic_and_foreign_npz(tmp_path):
    f = np.random.default_rng(9).normal(size=(40, 8)).astype(np.float32)
    st = FeatureStats.from_features(f, network_id="net-x", fingerprint="abc")
    path = save_stats(tmp_path / "s.npz", st)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary left over
    back = load_stats(path)
    _close(back.mu, st.mu, rtol=0, atol=0)
    _close(back.sigma, st.sigma, rtol=0, atol=0)
    np.testing.assert_array_equal(back.features, f)
    assert (back.n, back.network_id, back.fingerprint) == (40, "net-x", "abc")
    # pytorch-fid's format: only mu and sigma.
    np.savez(tmp_path / "foreign.npz", mu=st.mu, sigma=st.sigma)
    foreign = load_stats(tmp_path / "foreign.npz")
    assert foreign.features is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="mu"):
        load_stats(tmp_path / "empty.npz")


def test_stats_keep_a_fixed_feature_subset_for_kid():
    f = np.random.default_rng(10).normal(size=(300, 4)).astype(np.float32)
    st = FeatureStats.from_features(f, max_features=100)
    assert st.features.shape == (100, 4) and st.n == 300
    np.testing.assert_array_equal(st.features, f[st.feature_index])
    again = FeatureStats.from_features(f, max_features=100)
    np.testing.assert_array_equal(again.feature_index, st.feature_index)


def test_stats_cache_path_is_under_cache_and_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    p = stats_cache_path("ab/c d", "net:1")
    assert p.parent == tmp_path / "stats" and "/" not in p.name and ":" not in p.name


# ---- display and reliability helpers --------------------------------------------------------

def test_fid_tiny_negatives_are_zero_real_problems_are_not_hidden():
    from facegan.metrics.evaluate import clamp_fid

    assert clamp_fid(-3e-9) == 0.0 and str(clamp_fid(-3e-9)) == "0.0"
    assert f"{clamp_fid(-0.0):.4f}" == "0.0000"  # not '-0.0000'
    assert clamp_fid(12.5) == 12.5
    assert clamp_fid(-0.5) == -0.5  # a clearly negative FID is a bug, shown as it is


def test_small_sample_warning_names_counts_and_recommendation():
    from facegan.metrics.evaluate import small_sample_warning

    assert small_sample_warning([(50, "generated"), (10000, "real")]) is None
    assert small_sample_warning([(0, ""), (5000, "")]) is None  # 0: unknown (mu/sigma-only file)
    msg = small_sample_warning([(16, "generated"), (48, "real")])
    assert msg.startswith("FID on 16 generated and 48 real images is unreliable")
    assert "10,000" in msg and "\n" not in msg


# ---- the eager Inception module, without the weights file -----------------------------------

def test_batch_norm_folding_equals_conv_then_batch_norm():
    import torch.nn.functional as F

    from facegan.metrics.tf_inception import fold_bn

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 3, 3, generator=g)
    gamma, beta = torch.rand(6, generator=g) + 0.5, torch.randn(6, generator=g)
    mean, var = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.1
    x = torch.randn(2, 4, 9, 9, generator=g)
    ref = F.batch_norm(F.conv2d(x, w, padding=1), mean, var, gamma, beta, False, 0.1, 1e-3)
    fw, fb = fold_bn(w, beta, mean, var, gamma=gamma)
    torch.testing.assert_close(F.conv2d(x, fw, fb, padding=1), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_eager_module_is_the_pytorch_fid_graph(channels_last):
    """Random weights and batch-norm statistics: the folded eager module (stacked 1x1
    convolutions, TF pools) gives the features of pytorch-fid's torchvision layout."""
    from facegan.metrics.inception import _PytorchFIDFeatures, build_pytorch_fid_inception
    from facegan.metrics.tf_inception import FIDInceptionV3, convs_from_pytorch_fid

    torch.manual_seed(0)
    net = build_pytorch_fid_inception()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    ref = _PytorchFIDFeatures(net).eval()
    eager = FIDInceptionV3(convs_from_pytorch_fid(net))
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    if channels_last:
        eager = eager.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a, b = ref(x), eager(x)
    assert a.shape == b.shape == (1, 2048)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_eager_module_refuses_a_wrong_layout():
    from facegan.metrics.tf_inception import FIDInceptionV3, convs_from_torchscript_state_dict

    with pytest.raises(ValueError, match="94 convolutions"):
        FIDInceptionV3([(torch.zeros(1, 1, 1, 1), torch.zeros(1))] * 3)
    with pytest.raises(ValueError, match="not the FID Inception layout"):
        convs_from_torchscript_state_dict({"conv.weight": torch.zeros(1, 1, 1, 1)})
