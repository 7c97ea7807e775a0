"""SO(3) and O(3): elements, Haar draws, irreps (ours for l ≤ 1, e3nn's for l ≥ 2) and their action on features."""
import numpy as np
import pytest
import torch

from verify.declare.space import FeatureAction, O3, SO3, homomorphism_error, irreps, parse_irreps
from verify.errors import InputError


def test_exact_elements_are_the_signed_permutations():
    assert len(SO3().exact_elements()) == 24 and len(O3().exact_elements()) == 48
    assert SO3().exact_elements()[0].label == "identity"
    for g in O3().exact_elements():
        assert O3().is_exact_on_grid(g) and O3().contains(g)


@pytest.mark.parametrize("group", [SO3(), O3()])
def test_haar_draws_are_orthogonal_reproducible_and_cover_both_components(group):
    a, b = group.haar_sample(64, 7), group.haar_sample(64, 7)
    assert a == b
    for g in a:
        assert np.allclose(g.matrix @ g.matrix.T, np.eye(3), atol=1e-12)
    dets = {g.det for g in a}
    assert dets == ({1, -1} if group.inversion else {1})
    # the mean of a Haar-random rotation matrix is 0: a biased sampler shows up here
    mean = np.mean([g.matrix * g.det for g in group.haar_sample(4000, 1)], axis=0)
    assert np.abs(mean).max() < 0.05


@pytest.mark.parametrize("text", ["1x0e + 1x1o", "2x1e + 1x0o", "1x2e + 1x1o", "1x3o"])
@pytest.mark.parametrize("group", [SO3(), O3()])
def test_irreps_are_homomorphisms(group, text):
    rep = irreps(group, text)
    assert rep.size == sum(m * (2 * l + 1) for m, l, _ in parse_irreps(text))
    assert homomorphism_error(rep, n=6) < 1e-12


def test_vectors_rotate_by_R_and_pseudovectors_ignore_inversion():
    G = O3()
    g = G.haar_sample(1, 3)[0]
    inv = G.element(-np.eye(3))
    assert np.allclose(irreps(G, "1x1o")(g), g.matrix)
    assert np.allclose(irreps(G, "1x1o")(inv), -np.eye(3)) and np.allclose(irreps(G, "1x1e")(inv), np.eye(3))
    assert np.allclose(irreps(G, "1x0o")(inv), -1) and np.allclose(irreps(G, "1x0e")(inv), 1)


def test_the_l2_block_matches_e3nn():
    e3nn = pytest.importorskip("e3nn")
    from e3nn import o3

    G = O3()
    for g in G.haar_sample(5, 2):
        ours = irreps(G, "1x0e + 1x2o + 1x1o")(g)
        theirs = o3.Irreps("1x0e + 1x2o + 1x1o").D_from_matrix(torch.as_tensor(g.matrix)).numpy()
        assert np.abs(ours - theirs).max() < 1e-5, e3nn.__version__  # e3nn's own D is float32-accurate only


def test_feature_action_on_points_and_its_shape_errors():
    G = SO3()
    act = FeatureAction(irreps(G, "1x0e + 1x1o"), points=5)
    x = torch.randn(2, 5, 4)
    g = G.haar_sample(1, 0)[0]
    y = act.apply(x, g)
    assert torch.allclose(y[..., 1:], x[..., 1:].double() @ torch.as_tensor(g.matrix).T)
    assert torch.equal(y[..., :1], x[..., :1].double())
    many = act.apply_many(x, [G.identity(), g])
    assert many.shape == (4, 5, 4) and torch.allclose(many[2:], y)  # element-major (E·B, ...), the Action protocol
    assert torch.allclose(act.apply_paired(x, [G.identity(), g]), torch.stack([x[0].double(), y[1]]))
    with pytest.raises(InputError, match=r"\(B, 5, 4\)"):
        act.check_shape(torch.randn(2, 5, 3), "model input")


@pytest.mark.parametrize("bad", ["", "1x1q", "0x1o", "x1o", "1o +"])
def test_bad_irreps_are_refused_with_the_notation(bad):
    with pytest.raises(InputError, match="e3nn's notation|multiplicity"):
        parse_irreps(bad)


def test_so3_refuses_a_reflection():
    with pytest.raises(InputError, match="O3"):
        SO3().element(-np.eye(3))
