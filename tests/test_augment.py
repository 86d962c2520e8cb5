"""DiffAugment: shapes, value sets, differentiability (to second order), seeding, and its place
in the trainer's one critic call."""

import pytest
import torch

from facegan.augment import (
    AUGMENTS,
    DiffAugment,
    brightness,
    contrast,
    cutout,
    parse_policy,
    rotate,
    rotation,
    saturation,
    translation,
)
from facegan.errors import UserError


def _x(n=6, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "rotation", "color,translation,cutout",
                                    "rotation,translation,cutout"])
def test_shapes_dtype_and_seed(policy):
    x = _x()
    a = DiffAugment(policy, seed=3)(x)
    b = DiffAugment(policy, seed=3)(x)
    c = DiffAugment(policy, seed=4)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_translation_moves_pixels_and_fills_zeros():
    x = _x(n=32)
    y = translation(x, _g())
    # Every output value is an input value of the same sample and channel, or the zero fill.
    for i in range(4):
        vals = set(x[i].flatten().tolist()) | {0.0}
        assert set(y[i].flatten().tolist()) <= vals
    # Shifts of at most 2 px at 16 px (ratio 1/8): the content is the input shifted.
    shifted = 0
    for i in range(32):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros_like(x[i])
                src = x[i][:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)]
                ref[:, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)] = src
                found |= torch.equal(ref, y[i])
                shifted += int(torch.equal(ref, y[i]) and (dy or dx))
        assert found, i
    assert shifted > 16  # most samples move (1 in 25 stays put)


def test_cutout_zeroes_one_square_of_half_size():
    x = _x(n=16) * 0.5 + 0.75  # in [0.25, 1.25]: no zeros to begin with
    y = cutout(x, _g())
    for i in range(16):
        zero = (y[i] == 0).all(0)
        assert (y[i][:, ~zero] == x[i][:, ~zero]).all()
        ys, xs = torch.nonzero(zero, as_tuple=True)
        assert zero.sum() > 0
        # a square of 8x8 cut by the border at most
        assert ys.max() - ys.min() + 1 <= 8 and xs.max() - xs.min() + 1 <= 8
        assert zero.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert (y == 0).all(1).float().mean() > 0.15  # on average a large part of each image


def test_rotate_matches_rot90_and_identity():
    x = _x(n=3)
    # A quarter turn counter-clockwise as displayed is torch.rot90 over (H, W) with k=1.
    torch.testing.assert_close(rotate(x, torch.full((3,), torch.pi / 2)), torch.rot90(x, 1, (2, 3)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, -torch.full((3,), torch.pi / 2)), torch.rot90(x, -1, (2, 3)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate(x, torch.zeros(3)), x, atol=1e-5, rtol=0)
    # Per-sample angles: each sample turned by its own.
    y = rotate(x, torch.tensor([0.0, torch.pi / 2, torch.pi]))
    torch.testing.assert_close(y[1], torch.rot90(x[1], 1, (1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[2], torch.rot90(x[2], 2, (1, 2)), atol=1e-5, rtol=0)


def test_rotation_is_small_and_stays_in_range():
    x = _x(n=64)
    y = rotation(x, _g(2))
    for i in range(64):  # bilinear weights and reflection: within the sample's own range
        assert y[i].min() >= x[i].min() - 1e-6 and y[i].max() <= x[i].max() + 1e-6
    # The angles are within +-10 degrees: the centre pixel's neighbourhood barely moves, while
    # a 30-degree turn moves the image much more than any of the 64 draws.
    d_small = (y - x).abs().mean((1, 2, 3))
    d_big = (rotate(x, torch.full((64,), torch.pi / 6)) - x).abs().mean((1, 2, 3))
    assert (d_small < d_big).all()
    assert d_small.std() > 0  # each sample gets its own angle
    # bf16 in, bf16 out
    assert rotation(x.bfloat16(), _g(2)).dtype == torch.bfloat16


def test_color_matches_its_formulas():
    x = _x(n=4)
    u = torch.rand(4, 1, 1, 1, generator=_g(5))
    torch.testing.assert_close(brightness(x, _g(5)), x + u - 0.5)
    m = x.mean(1, keepdim=True)
    torch.testing.assert_close(saturation(x, _g(5)), (x - m) * (2 * u) + m)
    m = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(contrast(x, _g(5)), (x - m) * (u + 0.5) + m)
    # Bounded: brightness shifts by < 0.5, contrast keeps per-sample means.
    y = DiffAugment("color", seed=1)(x)
    assert y.abs().max() < 6 and torch.isfinite(y).all()


def test_differentiable_twice():
    # The gradient penalty differentiates the critic's input gradient again.
    x = _x(n=4).requires_grad_(True)
    w = torch.randn(3, 16, 16, requires_grad=True)
    y = DiffAugment("color,rotation,translation,cutout", seed=0)(x)
    score = (y * w).flatten(1).sum(1)
    (gx,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    assert gx.abs().sum() > 0
    gx.pow(2).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_rotation_second_derivative_is_exact():
    # grid_sample's double backward (x with the grid held fixed), against finite differences.
    x = _x(n=2, h=8, w=8).double().requires_grad_(True)
    w = torch.randn(3, 3, 3, 3, dtype=torch.float64)
    angles = torch.tensor([0.1, -0.15])
    f = lambda x: torch.tanh(torch.nn.functional.conv2d(rotate(x, angles), w))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_channels_last_input_same_values():
    x = _x()
    a = DiffAugment("color,rotation,translation,cutout", seed=2)(x)
    b = DiffAugment("color,rotation,translation,cutout", seed=2)(
        x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b)


def test_state_dict_resumes_the_stream():
    x = _x()
    a = DiffAugment("color,translation", seed=0)
    a(x)
    state = a.state_dict()
    expect = a(x)
    b = DiffAugment("color,translation", seed=99)
    b.load_state_dict(state)
    torch.testing.assert_close(b(x), expect, rtol=0, atol=0)


def test_a_state_from_another_kind_of_device_seeds_a_new_stream():
    """A CUDA generator's state (16 bytes) does not fit a CPU generator (nor the reverse): a
    run resumed across devices goes on with a stream seeded from it, the same every time."""
    x = _x()
    gpu_like = {"policy": "color,translation", "rng": torch.arange(16, dtype=torch.uint8)}
    a, b = DiffAugment("color,translation", seed=1), DiffAugment("color,translation", seed=2)
    a.load_state_dict(gpu_like)
    b.load_state_dict(gpu_like)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_policy_parsing():
    assert parse_policy("") == [] and parse_policy("none") == []
    assert parse_policy("color, cutout") == ["color", "cutout"]
    assert set(AUGMENTS) == {"color", "rotation", "translation", "cutout"}
    with pytest.raises(UserError, match="unknown augmentation 'flip'"):
        parse_policy("color,flip")
    assert not DiffAugment("")
