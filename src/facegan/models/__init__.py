"""Network registry: ``ARCHS[arch](model_cfg, spec) -> (generator, critic)``.

``spec`` (:class:`NetSpec`) says what the networks are built for (resolution, channels,
label width); ``model_cfg`` says how (widths, norms, spectral norm). Shared layers live in
``layers.py``, residual blocks in ``blocks.py``, conditioning pieces in ``conditioning.py``,
one file per architecture.

With ``spec.label_dim`` K > 0 both architectures build conditional nets (``model_cfg.g_cond``,
``model_cfg.d_cond``): ``G(z, c) -> images`` and ``D(x, c) -> (scores (N,), aux (N, K) or
None)``, c float (N, K). Unconditional nets (K = 0) are unchanged: ``G(z)``, ``D(x) -> (N,)``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..errors import UserError
from .conditioning import D_CONDS, G_CONDS
from .dcgan import DCGANCritic, DCGANGenerator
from .resnet import ResNetCritic, ResNetGenerator
from .spec import NetSpec


def _check_conditioning(m: ModelConfig, spec: NetSpec) -> None:
    """Refuse conditioning options that cannot build (only matters when there are labels)."""
    if spec.label_dim == 0:
        return
    if m.g_cond not in G_CONDS:
        raise UserError(f"unknown model.g_cond '{m.g_cond}'; choose one of: {', '.join(G_CONDS)}")
    if m.d_cond not in D_CONDS:
        raise UserError(f"unknown model.d_cond '{m.d_cond}'; choose one of: {', '.join(D_CONDS)}")
    if m.g_cond == "cbn" and m.g_norm != "batch":
        raise UserError(f"model.g_cond=cbn replaces the generator's batch norms, but model.g_norm="
                        f"'{m.g_norm}'; set model.g_norm=batch or model.g_cond=concat")


def _dcgan(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    _check_conditioning(m, spec)
    k = spec.label_dim
    g = DCGANGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                       max_width=m.max_width, norm=m.g_norm, channels=spec.channels, use_sn=m.g_sn,
                       label_dim=k, cond=m.g_cond if k else "concat")
    d = DCGANCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                    norm=m.d_norm, dropout=m.d_dropout, channels=spec.channels, use_sn=m.d_sn,
                    label_dim=k, cond=m.d_cond if k else "projection")
    return g, d


def _resnet(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    _check_conditioning(m, spec)
    if m.d_dropout > 0:
        raise UserError("model.arch 'resnet' has no critic dropout; set model.d_dropout=0")
    k = spec.label_dim
    g = ResNetGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                        max_width=m.max_width, norm=m.g_norm, use_sn=m.g_sn,
                        channels=spec.channels, label_dim=k, cond=m.g_cond if k else "concat")
    d = ResNetCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                     norm=m.d_norm, use_sn=m.d_sn, channels=spec.channels, label_dim=k,
                     cond=m.d_cond if k else "projection")
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
