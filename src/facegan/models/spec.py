"""What a network is built for: image size, channels and label width (independent of the recipe)."""

from __future__ import annotations

from dataclasses import dataclass


def check_resolution(resolution: int, name: str = "resolution") -> None:
    """ValueError unless ``resolution`` is an int, a power of two and at least 8 (a network
    halves or doubles its image down to or up from 4 x 4)."""
    r = resolution
    if not isinstance(r, int) or isinstance(r, bool) or r < 8 or r & (r - 1):
        raise ValueError(f"{name} must be a power of two >= 8, got {r!r}")


@dataclass(frozen=True)
class NetSpec:
    """Shape of the data a (generator, critic) pair is built for.

    resolution: image side in pixels, a power of two (32, 64, 128 in practice).
    channels: image channels (3 for RGB).
    label_dim: width K of the conditioning vector c, float (N, K) (0: unconditional): one-hot
        for K classes or {0, 1}^K for K binary attributes (see ``facegan.labels``).
    """

    resolution: int
    channels: int = 3
    label_dim: int = 0

    def __post_init__(self) -> None:
        check_resolution(self.resolution, "NetSpec.resolution")
        if self.channels < 1:
            raise ValueError(f"NetSpec.channels must be >= 1, got {self.channels}")
        if self.label_dim < 0:
            raise ValueError(f"NetSpec.label_dim must be >= 0, got {self.label_dim}")


__all__ = ["NetSpec", "check_resolution"]
