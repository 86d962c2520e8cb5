import torch

from facegan.models.dcgan import DCGANGenerator
from facegan.models.nfresnet import NFGenerator
from facegan.sampling import latents, lerp, morph, slerp, standing_stats, to_uint8
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



def test_standing_stats_are_the_mean_of_the_generators_own_batch_statistics():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=8, resolution=16, width=4).eval()
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    z, c = torch.randn(3, 5, 8), torch.zeros(3, 5, 0)
    # what each batch norm sees in train mode, batch by batch (hooks on its input)
    seen = {m: [] for m in bns}
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen[m].append(inp[0].detach())) for m in bns]
    standing_stats(g, z, c)
    for h in hooks:
        h.remove()
    assert not g.training  # back in its mode
    for m in bns:
        assert m.momentum == 0.1 and len(seen[m]) == 3  # momentum restored; one input a batch
        dims = [0, 2, 3]
        mean = torch.stack([x.mean(dims) for x in seen[m]]).mean(0)
        var = torch.stack([x.var(dims, unbiased=True) for x in seen[m]]).mean(0)
        torch.testing.assert_close(m.running_mean, mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.running_var, var, atol=1e-5, rtol=1e-4)


def test_standing_stats_leave_a_generator_without_batch_norm_alone():
    g = NFGenerator(latent_dim=8, resolution=16, width=4, group_size=4).eval()
    state = {k: v.clone() for k, v in g.state_dict().items()}
    standing_stats(g, torch.randn(2, 4, 8), torch.zeros(2, 4, 0))
    assert all(torch.equal(state[k], v) for k, v in g.state_dict().items())
