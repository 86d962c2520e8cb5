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
from .grow import current_lod, set_lod
from .nfresnet import NFCritic, NFGenerator
from .resnet import ResNetCritic, ResNetGenerator
from .spec import NetSpec


def _dcgan(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    k = spec.label_dim
    g = DCGANGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                       max_width=m.max_width, norm=m.g_norm, channels=spec.channels, use_sn=m.g_sn,
                       label_dim=k, cond=m.g_cond, grow_from=m.grow_from)
    d = DCGANCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                    norm=m.d_norm, dropout=m.d_dropout, channels=spec.channels, use_sn=m.d_sn,
                    label_dim=k, cond=m.d_cond, grow_from=m.grow_from, mbstd=m.d_mbstd)
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
                     cond=m.d_cond, mbstd=m.d_mbstd)
    return g, d


def _nfresnet(m: ModelConfig, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    # No normalisation and no spectral norm by design (the R1 + R2 penalties keep the critic
    # smooth); a setting that asks for them would silently do nothing, so it is refused.
    if m.g_norm != "none" or m.d_norm != "none" or m.g_sn or m.d_sn or m.d_dropout > 0:
        raise UserError("model.arch 'nfresnet' is normalisation-free; set model.g_norm=none, "
                        "model.d_norm=none, model.g_sn=false, model.d_sn=false, model.d_dropout=0")
    if m.d_mbstd:
        raise UserError("model.arch 'nfresnet' has no minibatch-std layer; set model.d_mbstd=0 "
                        "(or model.arch=dcgan or resnet)")
    k = spec.label_dim
    if k and m.g_cond != "concat":
        raise UserError(f"model.arch 'nfresnet' conditions the generator by concat only; set "
                        f"model.g_cond=concat (not '{m.g_cond}')")
    if k and m.d_cond not in ("projection", "ac"):
        raise UserError(f"model.arch 'nfresnet' conditions the critic by projection or ac; set "
                        f"model.d_cond=projection (not '{m.d_cond}')")
    shape = {"blocks": m.blocks, "expansion": m.expansion, "group_size": m.group_size}
    g = NFGenerator(latent_dim=m.latent_dim, resolution=spec.resolution, width=m.g_width,
                    max_width=m.max_width, channels=spec.channels, label_dim=k, cond=m.g_cond, **shape)
    d = NFCritic(resolution=spec.resolution, width=m.d_width, max_width=m.max_width,
                 channels=spec.channels, label_dim=k, cond=m.d_cond, **shape)
    return g, d


ARCHS: dict[str, Callable[[ModelConfig, NetSpec], tuple[nn.Module, nn.Module]]] = {
    "dcgan": _dcgan,
    "resnet": _resnet,
    "nfresnet": _nfresnet,
}


def critic_stages(d: nn.Module) -> list[nn.Module]:
    """The critic's stages from the image side (the highest resolution first), each a module
    holding that stage's layers: what ``train.freeze_d`` counts (FreezeD freezes the first
    ones, which see fine detail and transfer across data sets). The heads are not stages."""
    if isinstance(d, NFCritic):
        return [nn.ModuleList([d.from_rgb, d.stages[0]]), *d.stages[1:]]
    if isinstance(d, ResNetCritic):
        return list(d.blocks)
    if isinstance(d, DCGANCritic):
        stages: list[list[nn.Module]] = []
        for layer in list(d.net)[:-1]:  # the last conv is the score head
            if isinstance(layer, nn.Conv2d) or not stages:
                stages.append([])
            stages[-1].append(layer)
        return [nn.ModuleList(s) for s in stages]
    raise TypeError(f"no stages known for {type(d).__name__}")


def build_networks(m: ModelConfig, spec: NetSpec | int) -> tuple[nn.Module, nn.Module]:
    """Return (generator, critic) for a model config; ``spec`` may be a bare resolution."""
    if m.arch not in ARCHS:
        raise UserError(f"unknown model.arch '{m.arch}'; choose one of: {', '.join(ARCHS)}")
    if not isinstance(spec, NetSpec):
        spec = NetSpec(resolution=int(spec))
    return ARCHS[m.arch](m, spec)


__all__ = [
    "current_lod",
    "set_lod",
    "ARCHS",
    "DCGANCritic",
    "DCGANGenerator",
    "NFCritic",
    "NFGenerator",
    "NetSpec",
    "ResNetCritic",
    "ResNetGenerator",
    "build_networks",
    "critic_stages",
]
