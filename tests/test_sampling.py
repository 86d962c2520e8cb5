import torch

from facegan.models.dcgan import DCGANGenerator
from facegan.sampling import latents, lerp, morph, slerp, to_uint8
from facegan.train.batches import BatchSampler


def test_to_uint8_matches_png_quantisation():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5, -3.0])
    torch.testing.assert_close(to_uint8(x), torch.tensor([0, 0, 128, 191, 255, 255, 0], dtype=torch.uint8))


def test_latents_deterministic_per_seed():
    torch.testing.assert_close(latents(4, 8, seed=3), latents(4, 8, seed=3))
    assert not torch.equal(latents(4, 8, seed=3), latents(4, 8, seed=4))


def test_lerp_and_slerp_end_points_and_norm():
    a, b = torch.randn(3, 64), torch.randn(3, 64)
    t = torch.linspace(0, 1, 5)
    for f in (lerp, slerp):
        z = f(a, b, t)
        assert z.shape == (3, 5, 64)
        torch.testing.assert_close(z[:, 0], a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z[:, -1], b, atol=1e-5, rtol=1e-5)
    # slerp between equal-norm points keeps the norm; lerp dips in the middle
    a_n = a / a.norm(dim=1, keepdim=True) * 8
    b_n = b / b.norm(dim=1, keepdim=True) * 8
    torch.testing.assert_close(slerp(a_n, b_n, t).norm(dim=-1), torch.full((3, 5), 8.0), atol=1e-4, rtol=1e-4)
    assert (lerp(a_n, b_n, t)[:, 2].norm(dim=-1) < 7.9).all()


def test_morph_shapes_and_chain():
    g = DCGANGenerator(latent_dim=8, resolution=16, width=4).eval()
    assert morph(g, rows=2, steps=4).shape == (2, 4, 3, 16, 16)
    frames = morph(g, rows=1, steps=4, chain=3)
    assert frames.shape == (1, 4 + 2 * 3, 3, 16, 16)


def test_batch_sampler_epochs_and_state():
    s = BatchSampler(10, 3, seed=1)
    seen = torch.cat([s.next()[0] for _ in range(3)])
    assert sorted(seen.tolist()) == sorted(set(seen.tolist()))  # no repeats within an epoch
    state = s.state_dict()
    a = [s.next() for _ in range(5)]
    s2 = BatchSampler(10, 3, seed=99)
    s2.load_state_dict(state)
    b = [s2.next() for _ in range(5)]
    for (ia, fa), (ib, fb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(fa, fb)
    assert s.epoch >= 1

