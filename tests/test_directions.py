"""Latent directions: InterFaceGAN fit, --keep projection, SeFa, directions.json, strengths."""

import json

import numpy as np
import pytest
import torch

from facegan.directions import (
    Boundary,
    direction_entry,
    edit_latents,
    first_layer_matrix,
    fit_boundary,
    get_direction,
    interfacegan_boundary,
    load_directions,
    orthogonalize,
    parse_strength,
    read_directions,
    save_directions,
    sefa,
)
from facegan.errors import UserError
from facegan.models import DCGANGenerator, ResNetGenerator


def _unit(v):
    return v / v.norm()


def _planted(d=16, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    truth = _unit(torch.randn(d, generator=g))
    return z, truth, g


def test_interfacegan_recovers_a_planted_direction():
    z, truth, g = _planted()
    # A classifier's probability that follows a hyperplane through the origin, with noise.
    scores = torch.sigmoid(3.0 * (z @ truth) + 0.3 * torch.randn(len(z), generator=g))
    b = interfacegan_boundary(z, scores, ratio=0.05, seed=1)
    assert isinstance(b, Boundary)
    torch.testing.assert_close(b.normal.norm(), torch.tensor(1.0))
    assert float(b.normal @ truth) > 0.95  # the right way round, and close
    assert b.accuracy > 0.95
    # 5% a side of 4000, 30% of each side for validation
    assert len(b.y_train) == 2 * 140 and len(b.y_val) == 2 * 60
    # Reversed scores give the opposite direction.
    assert float(interfacegan_boundary(z, -scores, ratio=0.05).normal @ truth) < -0.95


def test_fit_boundary_is_logistic_regression():
    z, truth, g = _planted(d=4, n=2000)
    y = (torch.rand(len(z), generator=g) < torch.sigmoid(2.0 * (z @ truth) + 0.5)).float()
    w, b = fit_boundary(z, y, l2=0.0)
    # The maximum-likelihood fit of a logistic model recovers its parameters (2 * truth, 0.5).
    torch.testing.assert_close(w.float(), 2.0 * truth, atol=0.25, rtol=0)
    assert abs(b - 0.5) < 0.2
    # At the optimum the gradient of the mean log-likelihood is zero: mean (y - p) x = 0.
    p = torch.sigmoid(z.double() @ w + b)
    torch.testing.assert_close((y.double() - p) @ z.double() / len(z), torch.zeros(4, dtype=torch.float64),
                               atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="both classes"):
        fit_boundary(z, torch.zeros(len(z)))


def test_keep_makes_directions_orthogonal_and_edits_leave_the_kept_score():
    d = 16
    z, a, g = _planted(d=d)
    other = _unit(torch.randn(d, generator=g))
    b_true = _unit(0.6 * a + 0.8 * _unit(other - (other @ a) * a))  # cos(a, b) = 0.6
    score_a, score_b = z @ a, z @ b_true  # synthetic "classifier" logits
    ba = interfacegan_boundary(z, torch.sigmoid(3 * score_a), ratio=0.05)
    bb = interfacegan_boundary(z, torch.sigmoid(3 * score_b), ratio=0.05)
    v = orthogonalize(ba.normal, [bb.normal], "A", ["B"])
    torch.testing.assert_close(v.norm(), torch.tensor(1.0))
    torch.testing.assert_close(v @ bb.normal, torch.tensor(0.0), atol=1e-6, rtol=0)
    # Editing along the plain direction drags B along (cos 0.6); the kept one hardly moves it.
    z0 = z[:100]
    def moved_b(direction):
        return ((edit_latents(z0, direction, torch.tensor([3.0]))[:, 0] - z0) @ b_true).abs().mean()

    moved_plain, moved_kept = moved_b(ba.normal), moved_b(v)
    assert float(moved_plain) > 1.4
    assert float(moved_kept) < 0.35
    # ...while still moving A itself.
    assert float((edit_latents(z0, v, torch.tensor([3.0]))[:, 0] @ a - z0 @ a).mean()) > 1.5
    # The projected direction still separates A's extremes on the validation split.
    assert ba.accuracy_of(v) > 0.85
    # Several kept directions: orthogonal to each; a direction inside their span is refused.
    c = _unit(torch.randn(d, generator=g))
    w = orthogonalize(ba.normal, [bb.normal, c])
    torch.testing.assert_close(torch.stack([w @ bb.normal, w @ c]), torch.zeros(2), atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="span of the kept"):
        orthogonalize(0.3 * c + 0.7 * bb.normal, [bb.normal, c], "X", ["B", "C"])


def test_sefa_matches_a_hand_computed_eigendecomposition():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=6, resolution=16, width=4).eval()
    a = first_layer_matrix(g)
    assert a.shape == (4 * 4 * 4 * 2, 6)  # 8 channels x 4 x 4 outputs, 6 latents
    z = torch.randn(3, 6)
    # A is the first layer: A z equals the transposed conv's output on a 1x1 input.
    with torch.no_grad():
        torch.testing.assert_close(z @ a.T, g.net[0](z.view(3, 6, 1, 1)).flatten(1))
    vecs, vals = sefa(g, 3)
    w = g.net[0].weight.detach().double().numpy().reshape(6, -1)  # (latent, out) = A^T
    ev, evec = np.linalg.eigh(w @ w.T)  # A^T A, ascending
    torch.testing.assert_close(vals.double(), torch.from_numpy(ev[::-1][:3].copy()), rtol=1e-5, atol=1e-8)
    for i in range(3):
        torch.testing.assert_close(abs(float(vecs[i].double() @ torch.from_numpy(evec[:, -1 - i]))), 1.0,
                                   rtol=0, atol=1e-5)
    torch.testing.assert_close(vecs @ vecs.T, torch.eye(3), atol=1e-5, rtol=0)
    # ResNet: the seed Linear (no bias with batch norm) is the first layer.
    r = ResNetGenerator(latent_dim=6, resolution=8, width=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(z @ first_layer_matrix(r).T, r.fc(z))
    with pytest.raises(UserError, match="between 1 and the latent size 6"):
        sefa(g, 7)


def test_sefa_ignores_a_conditional_generators_label_inputs():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=6, resolution=16, width=4, label_dim=2, cond="concat")
    assert g.net[0].weight.shape[0] == 6 + 6  # latent + label embedding
    assert first_layer_matrix(g).shape[1] == 6


def test_directions_json_format_merge_and_errors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    v = torch.tensor([3.0, 4.0, 0.0])
    save_directions(run, 3, {"Smiling": direction_entry(v, "interfacegan", 0.9, ["Male"])})
    save_directions(run, 3, {"sefa_0": direction_entry(-v, "sefa", None)})
    doc = json.loads((run / "directions.json").read_text())
    assert set(doc) == {"version", "z_dim", "directions"}
    assert doc["version"] == 1 and doc["z_dim"] == 3
    assert set(doc["directions"]) == {"Smiling", "sefa_0"}  # merged
    e = doc["directions"]["Smiling"]
    assert set(e) == {"vector", "method", "accuracy", "kept"}
    assert e["vector"] == pytest.approx([0.6, 0.8, 0.0]) and e["method"] == "interfacegan"
    assert e["accuracy"] == pytest.approx(0.9) and e["kept"] == ["Male"]
    assert doc["directions"]["sefa_0"]["accuracy"] is None
    torch.testing.assert_close(get_direction(load_directions(run), "sefa_0"), torch.tensor([-0.6, -0.8, 0.0]))
    with pytest.raises(UserError, match="it has: Smiling, sefa_0"):
        get_direction(doc, "Bald", run)
    with pytest.raises(UserError, match="z_dim 3"):
        save_directions(run, 5, {"x": direction_entry(torch.ones(5), "sefa", None)})
    with pytest.raises(UserError, match="facegan directions"):
        load_directions(tmp_path / "other")
    (run / "directions.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        load_directions(run)
    (run / "directions.json").write_text(json.dumps({"version": 1, "z_dim": 3,
                                                     "directions": {"a": {"vector": [1.0]}}}))
    with pytest.raises(UserError, match="no vector of length 3"):
        load_directions(run)
    for bad in ([0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], [1.0, "2", 0.0]):
        (run / "directions.json").write_text(json.dumps({"version": 1, "z_dim": 3,
                                                         "directions": {"a": {"vector": bad}}}))
        with pytest.raises(UserError, match="'a' has no vector of length 3 .finite, not all zero"):
            read_directions(run / "directions.json")


@pytest.mark.parametrize("text,expected", [("-3:3", (-3.0, 3.0)), ("0:2.5", (0.0, 2.5)),
                                           ("2", (-2.0, 2.0)), ("-1e0 : 1e0", (-1.0, 1.0))])
def test_parse_strength(text, expected):
    assert parse_strength(text) == expected


@pytest.mark.parametrize("text", ["3:-3", "a:b", "-3..3", "", "1:1", "nan:1", "1:2:3"])
def test_parse_strength_refuses(text):
    with pytest.raises(UserError, match="--strength"):
        parse_strength(text)


def test_edit_images_at_strength_zero_are_the_sampled_faces_with_their_labels():
    from facegan.directions import edit_images, score_latents
    from facegan.labels import LabelSpec
    from facegan.sampling import generate_images, latents

    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=6, resolution=16, width=4, label_dim=2, cond="concat").eval()
    spec = LabelSpec("class", ("cat", "dog"), (3, 7), 10)
    v = torch.zeros(6)
    v[0] = 1.0
    frames = edit_images(g, v, torch.tensor([-2.0, 0.0, 2.0]), 4, labels=spec, seed=3, batch_size=5)
    assert frames.shape == (4, 3, 3, 16, 16) and frames.dtype == torch.uint8
    assert torch.equal(frames[:, 1], generate_images(g, 4, seed=3, labels=spec))
    assert not torch.equal(frames[:, 0], frames[:, 1])

    class MeanRed:  # a stand-in classifier: the mean red level of an image, in [0, 1]
        names = ["Red"]

        def probs(self, images):
            return images[:, :1].float().mean(dim=(2, 3)) / 255.0

    z = latents(4, 6, 3)
    p = score_latents(g, MeanRed(), z, spec.draw(4, 3), batch_size=3)
    torch.testing.assert_close(p, MeanRed().probs(frames[:, 1]))
