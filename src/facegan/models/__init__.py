"""Network registry: ``ARCHS[arch](model_cfg, spec) -> (generator, critic)``.

``spec`` (:class:`NetSpec`) says what the networks are built for (resolution, channels,
label width); ``model_cfg`` says how (widths, norms, spectral norm). Shared layers live in
``layers.py``, residual blocks in ``blocks.py``, one file per architecture.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import UserError
from .dcgan import DCGANCritic, DCGANGenerator
from .resnet import ResNetCritic, ResNetGenerator
from .spec import NetSpec


def _unconditional(spec: NetSpec, arch: str) -> None:
    if spec.label_dim > 0:
        raise ValueError(f"model.arch '{arch}' is unconditional: it cannot take label_dim="
                         f"{spec.label_dim} (labels are not supported yet)")


def _dcgan(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    _unconditional(spec, "dcgan")
    g = DCGANGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                       max_width=m.max_width, norm=m.g_norm, channels=spec.channels, use_sn=m.g_sn)
    d = DCGANCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                    norm=m.d_norm, dropout=m.d_dropout, channels=spec.channels, use_sn=m.d_sn)
    return g, d


def _resnet(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    _unconditional(spec, "resnet")
    if m.d_dropout > 0:
        raise UserError("model.arch 'resnet' has no critic dropout; set model.d_dropout=0")
    g = ResNetGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                        max_width=m.max_width, norm=m.g_norm, use_sn=m.g_sn,
                        channels=spec.channels)
    d = ResNetCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                     norm=m.d_norm, use_sn=m.d_sn, channels=spec.channels)
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


__all__ = ["ARCHS", "NetSpec", "build_networks", "DCGANGenerator", "DCGANCritic",
           "ResNetGenerator", "ResNetCritic"]
