"""Network registry: ``arch`` name -> (generator class builder, critic class builder)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from .dcgan import DCGANCritic, DCGANGenerator


def _dcgan(m: ModelConfig, resolution: int) -> tuple[nn.Module, nn.Module]:
    g = DCGANGenerator(latent_dim=m.latent_dim, resolution=resolution, width=m.g_width,
                       max_width=m.max_width, norm=m.g_norm)
    d = DCGANCritic(resolution=resolution, width=m.d_width, max_width=m.max_width, norm=m.d_norm,
                    dropout=m.d_dropout)
    return g, d


ARCHS: dict[str, Callable[[ModelConfig, int], tuple[nn.Module, nn.Module]]] = {
    "dcgan": _dcgan,
}


def build_networks(m: ModelConfig, resolution: int) -> tuple[nn.Module, nn.Module]:
    """Return (generator, critic) for a model config at the given resolution."""
    from ..errors import UserError

    if m.arch not in ARCHS:
        raise UserError(f"unknown model.arch '{m.arch}'; choose one of: {', '.join(ARCHS)}")
    return ARCHS[m.arch](m, resolution)


__all__ = ["ARCHS", "build_networks", "DCGANGenerator", "DCGANCritic"]
