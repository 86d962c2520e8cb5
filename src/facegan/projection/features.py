"""Feature networks for the projection loss: the run's critic, the FID Inception's early
blocks, or the attribute classifier, each frozen, as lists of activations to compare."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..models import NetSpec, build_networks, critic_stages
from ..sampling import LoadedGenerator

FEATURES = ("critic", "inception", "classifier", "none")
DEFAULT_FEATURES = "critic"


class FeatureNet:
    """A frozen network as a feature loss: ``feats(x, c)`` -> a list of activations (each
    float (N, C_i, H_i, W_i)) of images x float (N, 3, R, R) in [-1, 1] with labels c float
    (N, K) (ignored by the networks that take none), differentiable in x; ``distance`` compares
    two such lists. ``name`` is what ``--features`` calls it. Its weights are frozen."""

    name = ""

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def distance(feats: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
        """Per image (N,): the mean squared feature difference of each stage divided by the
        target's mean square there (so every stage counts alike whatever its scale), averaged
        over the stages. 0 for identical features; about 1 or more for unrelated images."""
        terms = [(f - t).square().flatten(1).mean(1) / t.square().flatten(1).mean(1).clamp_min(1e-8)
                 for f, t in zip(feats, target)]
        return torch.stack(terms).mean(0)


class CriticFeatures(FeatureNet):
    """The run's critic as a feature network: ``feats(x, c)`` -> the activations at the end of
    each of its stages (:func:`facegan.models.critic_stages`, image side first), read by
    forward hooks; the score heads are not used. The critic is in eval mode and its weights
    are frozen."""

    name = "critic"

    def __init__(self, critic: nn.Module):
        self.critic = critic.eval().requires_grad_(False)
        self.modules = [s[-1] if isinstance(s, nn.ModuleList) else s for s in critic_stages(critic)]

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o)) for m in self.modules]
        try:
            self.critic(x, c)
        finally:
            for h in hooks:
                h.remove()
        return out


# Inception as a loss: the FID network's stem and its first three mixed blocks, on the image
# upsampled to 96 px (not 299). Early layers carry the local structure (edges, texture, parts)
# a perceptual loss wants. Even so a step costs several times the critic's on a CPU;
# the later blocks and the 299 px input would cost several times more again, for features that
# mostly say "a face" (every projection is one).
INCEPTION_SIZE = 96


class InceptionFeatures(FeatureNet):
    """The FID Inception-v3 (:class:`facegan.metrics.tf_inception.FIDInceptionV3`, the weights
    facegan ships for FID) as a feature network: images float (N, 3, R, R) in [-1, 1] are
    resized (bilinear) to ``size`` x ``size`` (default :data:`INCEPTION_SIZE`), scaled as the
    TF graph expects (``(x255 - 128) / 128``), and ``feats`` returns three activations: after
    the stem's third convolution (64 channels, ~size/2), after its fifth (192 channels,
    ~size/4) and after the third mixed block Mixed_5d (288 channels, ~size/10). ``c`` is
    ignored."""

    name = "inception"

    def __init__(self, net: nn.Module, size: int = INCEPTION_SIZE):
        if size < 75:  # the stem and two 3x3 stride-2 pools need 75 px to leave a 1 x 1 map
            raise ValueError(f"the Inception feature loss needs images of at least 75 px, got {size}")
        self.net = net.eval().requires_grad_(False)
        self.size = int(size)

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = ((x + 1.0) * 127.5 - 128.0) / 128.0  # [-1, 1] -> the graph's (0..255 - 128) / 128
        x = x.contiguous(memory_format=torch.channels_last)
        s1 = n.conv3(n.conv2(n.conv1(x)))
        s2 = n.conv5(n.conv4(F.max_pool2d(s1, 3, 2)))
        s3 = n.blocks[2](n.blocks[1](n.blocks[0](F.max_pool2d(s2, 3, 2))))
        return [s1, s2, s3]


class ClassifierFeatures(FeatureNet):
    """The attribute classifier (:class:`facegan.metrics.classifier.AttributeNet`, trained on
    the run's labelled data) as a feature network: the activations at the end of each of its
    stages (after the second conv's ReLU; 64 px: 32, 16, 8, 4 px maps). Images float (N, 3,
    R, R) in [-1, 1] are resized (bilinear) to the classifier's resolution when it differs;
    ``c`` is ignored. Batch norm in eval mode, weights frozen."""

    name = "classifier"

    def __init__(self, net: nn.Module, resolution: int):
        self.net = net.eval().requires_grad_(False)
        self.resolution = int(resolution)
        layers = list(net.features)
        self.stage_ends = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)][1::2]

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False)
        out = []
        for i, layer in enumerate(self.net.features):
            # The ReLUs are in-place; the stage's output is kept, so it must not be overwritten.
            x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            if i in self.stage_ends:
                out.append(x)
        return out


def load_critic(lg: LoadedGenerator) -> CriticFeatures:
    """The critic of ``lg``'s checkpoint as a :class:`CriticFeatures`, on the generator's
    device. UserError when the checkpoint holds no critic weights."""
    ckpt = load_checkpoint(lg.checkpoint)
    state = ckpt.get("D")
    if state is None:
        raise UserError(f"'{lg.checkpoint}' holds no critic weights for the feature loss; use "
                        "--features none")
    cfg = ckpt["config"]
    _, d = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, int(ckpt.get("label_dim", 0))))
    try:
        d.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"'{lg.checkpoint}': critic weights do not match its config "
                        f"({str(e).splitlines()[0][:120]}); use --features none") from None
    return CriticFeatures(d.to(next(lg.generator.parameters()).device))


def load_features(lg: LoadedGenerator, features: str, *, data: str | os.PathLike | None = None,
                  progress: bool = True) -> FeatureNet | None:
    """The feature network ``features`` names (one of :data:`FEATURES`) for projecting into
    ``lg``, on the generator's device; None for 'none'.

    'critic': the checkpoint's critic (:func:`load_critic`). 'inception': the FID Inception
    weights (:func:`facegan.metrics.load_inception`; UserError saying how to install them when
    absent). 'classifier': the attribute classifier of the run's labelled training data,
    ``data`` (default the run's ``data.path``), read from facegan's cache or trained there once
    (:func:`facegan.metrics.classifier.classifier_for_data`; minutes on a CPU); UserError when
    that data is not on this machine or has no labels."""
    if features not in FEATURES:
        raise UserError(f"--features must be one of {', '.join(FEATURES)}, got '{features}'")
    device = next(lg.generator.parameters()).device
    if features == "none":
        return None
    if features == "critic":
        return load_critic(lg)
    if features == "inception":
        from ..metrics import load_inception

        return InceptionFeatures(load_inception(None, device=device, engine="eager", streams=1).module)
    from ..metrics.classifier import classifier_for_data

    path = str(data) if data else lg.config.data.path
    if not path or not path.strip():
        raise UserError("--features classifier needs the run's labelled training data (CelebA "
                        "attributes, the built-in faces or class folders), and this checkpoint "
                        "names none; use --features critic")
    # The built-in faces (data.path 'builtin') are drawn with their attributes: they train a
    # classifier as CelebA does (facegan.data.synthetic.LABEL_NAMES).
    if path.strip() != "builtin" and not Path(path).expanduser().exists():
        raise UserError(f"--features classifier needs the run's labelled training data, and "
                        f"'{path}' is not on this machine; use --features critic")
    clf = classifier_for_data(replace(lg.config.data, path=path), device=device, progress=progress)
    return ClassifierFeatures(clf.net, clf.resolution)
