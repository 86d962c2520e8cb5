"""Network registry: ``ARCHS[arch](model_cfg, spec) -> (generator, critic)``.

``spec`` (:class:`NetSpec`) says what the networks are built for (resolution, channels,
label width); ``model_cfg`` says how (widths, norms, spectral norm). Shared layers live in
``layers.py``, residual blocks in ``blocks.py``, conditioning pieces in ``conditioning.py``,
one file per architecture.

Every generator is ``G(z, c) -> images`` and every critic ``D(x, c) -> (scores (N,), aux
(N, K) or None)``, c float (N, K) with K = ``spec.label_dim``. K = 0 builds unconditional nets
(c is ``torch.zeros(N, 0)``, not read; aux None); K > 0 conditional ones (``model_cfg.g_cond``,
``model_cfg.d_cond``). The choices themselves are checked by ``Config.validate``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import UserError
from .dcgan import DCGANCritic, DCGANGenerator
from .resnet import ResNetCritic, ResNetGenerator
from .spec import NetSpec


def _dcgan(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    k = spec.label_dim
    g = DCGANGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                       max_width=m.max_width, norm=m.g_norm, channels=spec.channels, use_sn=m.g_sn,
                       label_dim=k, cond=m.g_cond)
    d = DCGANCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                    norm=m.d_norm, dropout=m.d_dropout, channels=spec.channels, use_sn=m.d_sn,
                    label_dim=k, cond=m.d_cond)
    return g, d


def _resnet(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    if m.d_dropout > 0:
        raise UserError("model.arch 'resnet' has no critic dropout; set model.d_dropout=0")
    k = spec.label_dim
    g = ResNetGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                        max_width=m.max_width, norm=m.g_norm, use_sn=m.g_sn,
                        channels=spec.channels, label_dim=k, cond=m.g_cond)
    d = ResNetCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                     norm=m.d_norm, use_sn=m.d_sn, channels=spec.channels, label_dim=k,
                     cond=m.d_cond)
    return g, d


ARCHS: dict[str, Callable[[ModelConfig, NetSpec], tuple[nn.Module, nn.Module]]] = {
    "dcgan": _dcgan,
    "resnet": _resnet,
}


def build_networks(m: ModelConfig, spec: NetSpec | int) -> tuple[nn.Module, nn.Module]:
    """Return (generator, critic) for a model config; ``spec`` may be a bare resolution."""
    if m.arch not in ARCHS:
        raise UserError(f"unknown model.arch '{m.arch}'; choose one of: {', '.join(ARCHS)}")
    if not isinstance(spec, NetSpec):
        spec = NetSpec(resolution=int(spec))
    return ARCHS[m.arch](m, spec)


__all__ = [
    "ARCHS",
    "DCGANCritic",
    "DCGANGenerator",
    "NetSpec",
    "ResNetCritic",
    "ResNetGenerator",
    "build_networks",
]
