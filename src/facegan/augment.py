"""DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout augmentation,
plus small rotations (as in ADA's geometric set, Karras et al. 2020).

The trainer applies it inside its one critic call, to real and fake images alike (critic step)
and to fakes in the generator step, so the critic never sees an un-augmented image and the
generator gets gradients through the augmentation. Every transformation is built from
differentiable tensor ops (arithmetic, indexing, masks), so the gradient penalty's double
backward goes through it too. Random parameters come from the augmenter's own
``torch.Generator``, whose state travels in checkpoints: a resumed run draws the same
augmentations as an uninterrupted one.

All functions take x float (N, C, H, W) (images in [-1, 1]) and return the same shape. Each
sample gets its own random parameters. ``share=(rank, world)``: x is this rank's share of a
global batch of N * world images; the parameters are drawn for the whole global batch (the
same stream on every rank) and the rank's rows kept, so a run's augmentations do not depend
on its number of processes (see ``facegan.train.distributed``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .config import AUGMENT_NAMES, parse_policy

Share = tuple[int, int]  # (rank, world size)
ALONE: Share = (0, 1)


def _mine(t: Tensor, share: Share) -> Tensor:
    """Rows rank * n : (rank + 1) * n of a global draw t (world * n, ...)."""
    rank, world = share
    n = t.shape[0] // world
    return t[rank * n:(rank + 1) * n]


def _rand(n: int, g: torch.Generator, like: Tensor, share: Share = ALONE) -> Tensor:
    """U[0, 1) of shape (n, 1, 1, 1), float32, on like's device (this rank's share)."""
    t = torch.rand(n * share[1], 1, 1, 1, generator=g, device=like.device, dtype=torch.float32)
    return _mine(t, share)


def _randint(low: int, high: int, n: int, g: torch.Generator, like: Tensor, share: Share) -> Tensor:
    """int64 (n, 1) uniform in [low, high) on like's device (this rank's share)."""
    t = torch.randint(low, high, (n * share[1], 1), generator=g, device=like.device)
    return _mine(t, share)


def brightness(x: Tensor, g: torch.Generator, share: Share = ALONE) -> Tensor:
    """Add U[-0.5, 0.5) to every pixel of a sample."""
    return x + (_rand(x.shape[0], g, x, share) - 0.5).to(x.dtype)


def saturation(x: Tensor, g: torch.Generator, share: Share = ALONE) -> Tensor:
    """Scale each pixel's distance to its channel mean by U[0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x.shape[0], g, x, share) * 2).to(x.dtype) + mean


def contrast(x: Tensor, g: torch.Generator, share: Share = ALONE) -> Tensor:
    """Scale each sample's distance to its overall mean by U[0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x.shape[0], g, x, share) + 0.5).to(x.dtype) + mean


def translation(x: Tensor, g: torch.Generator, share: Share = ALONE, ratio: float = 0.125) -> Tensor:
    """Shift each sample by whole pixels, up to ratio * size in each direction, zero-filled.

    Implemented as a gather from a zero-padded copy, which is linear in x (so it has a double
    backward); values are the input's or 0, never new ones.
    """
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    ty = _randint(-sh, sh + 1, n, g, x, share)
    tx = _randint(-sw, sw + 1, n, g, x, share)
    # Index into the padded image (one zero border pixel); out-of-range reads land on it.
    gy = (torch.arange(h, device=dev)[None] + ty + 1).clamp_(0, h + 1)  # (N, H)
    gx = (torch.arange(w, device=dev)[None] + tx + 1).clamp_(0, w + 1)  # (N, W)
    xp = torch.nn.functional.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[batch, gy[:, :, None], gx[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: Tensor, g: torch.Generator, share: Share = ALONE, ratio: float = 0.5) -> Tensor:
    """Zero one square of (ratio * H) x (ratio * W) pixels per sample at a random place
    (it may be cut by the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    cy = _randint(0, h + (1 - ch % 2), n, g, x, share)
    cx = _randint(0, w + (1 - cw % 2), n, g, x, share)
    ys = torch.arange(h, device=dev)[None]
    xs = torch.arange(w, device=dev)[None]
    in_y = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch)  # (N, H)
    in_x = (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)  # (N, W)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (N, H, W)
    return x * keep[:, None].to(x.dtype)


def rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each sample about its centre by ``angles`` (N,) radians, counter-clockwise as
    displayed (row 0 at the top): bilinear, the corners filled by reflection.

    Built on ``affine_grid`` + ``grid_sample`` with the grid fixed, which is linear in x and
    has a double backward (checked by gradgradcheck in the tests), so the gradient penalty
    goes through it. Reflection rather than a zero fill, so that a rotated face has no black
    corners: real and fake images are rotated alike, so nothing leaks into the generator
    either way, but corners the data never has would be an easy cue for the critic. Computed
    in float32 (float64 for float64 x) and returned in x's dtype. With bilinear weights and
    reflection the values stay within each sample's range.
    """
    n, _, h, w = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    a = angles.to(device=x.device, dtype=work).reshape(n)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    # The grid maps output pixels to input positions in (x right, y down) coordinates: a
    # counter-clockwise rotation as displayed samples the input rotated the other way.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(x.to(work), grid, mode="bilinear",
                                          padding_mode="reflection", align_corners=False)
    return out.to(x.dtype)


def rotation(x: Tensor, g: torch.Generator, share: Share = ALONE, max_degrees: float = 10.0) -> Tensor:
    """Rotate each sample by an angle uniform in [-max_degrees, max_degrees] (see :func:`rotate`)."""
    u = _rand(x.shape[0], g, x, share).reshape(-1)
    return rotate(x, (u * 2 - 1) * (max_degrees * torch.pi / 180))


AUGMENTS: dict[str, list[Callable[[Tensor, torch.Generator, Share], Tensor]]] = {
    "color": [brightness, saturation, contrast],
    "rotation": [rotation],
    "translation": [translation],
    "cutout": [cutout],
}
assert tuple(AUGMENTS) == AUGMENT_NAMES  # config checks names against AUGMENT_NAMES


class DiffAugment:
    """A seeded, resumable augmentation policy: ``aug(x)`` -> augmented x (same shape, dtype).

    policy: e.g. 'color,translation,cutout' (applied in that order). seed: start of the
    augmenter's own random stream on ``device``. share: (rank, world size) of a multi-process
    run, whose batches are shares of a global batch.
    """

    def __init__(self, policy: str, seed: int = 0, device: torch.device | str = "cpu",
                 share: Share = ALONE):
        self.share = share
        self.names = parse_policy(policy)
        self.policy = ",".join(self.names)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.names:
            for fn in AUGMENTS[name]:
                x = fn(x, self.generator, self.share)
        return x

    def state_dict(self) -> dict:
        return {"policy": self.policy, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """The saved stream, continued exactly. A state from another kind of device (a run
        resumed on a CPU after a GPU, or the reverse) does not fit this generator: it then
        seeds a new stream from that state's bytes, as exact resume does not cross devices."""
        rng = state["rng"]
        try:
            self.generator.set_state(rng)
        except RuntimeError:
            self.generator.manual_seed(int(torch.as_tensor(rng).to(torch.int64).sum()))
