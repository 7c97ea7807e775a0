"""Groups, representations, transforms, the kernel constraint and the per-element check (fast unit tests)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from verify.properties.equivariant import Equivariant, measure_equivariance
from verify.declare.actions import ImageField, SetAction, gaussian_blur, spatial_transform
from verify.errors import InputError
from verify.evidence import Verdict
from verify.declare.groups import (
    O2, SO2, CyclicGroup, DihedralGroup, SymmetricGroup, check_homomorphism, field_representation, permutation,
    regular, standard, trivial,
)
from verify.derive.steerable import in_span_exactly, solve_kernel_constraint


@pytest.mark.parametrize("G", [CyclicGroup(4), CyclicGroup(8), DihedralGroup(4), SymmetricGroup(4)], ids=str)
def test_group_axioms(G):
    els = G.elements()
    e = G.identity()
    for a in els:
        assert G.compose(a, e) == a == G.compose(e, a)
        assert G.compose(a, G.inverse(a)) == e
    for a, b, c in zip(els, els[1:] + els[:1], els[2:] + els[:2]):
        assert G.compose(G.compose(a, b), c) == G.compose(a, G.compose(b, c))


@pytest.mark.parametrize("rep", [standard(CyclicGroup(8)), regular(CyclicGroup(8)), standard(DihedralGroup(4)),
                                 regular(DihedralGroup(4)), permutation(SymmetricGroup(4))], ids=repr)
def test_finite_representations_are_exact_homomorphisms(rep):
    res = check_homomorphism(rep)
    assert res.exact and res.ok and res.pairs == rep.group.order() ** 2


def test_continuous_homomorphism_and_inverted_rep_is_caught():
    assert check_homomorphism(standard(SO2()), n_samples=12).ok
    assert check_homomorphism(standard(O2()), n_samples=12).ok
    # g ↦ ρ(g⁻¹) is an anti-homomorphism: caught on a non-abelian group
    assert not check_homomorphism(regular(DihedralGroup(4)).inverse_of()).ok


def test_escnn_interop_matrices_agree():
    from escnn import nn as enn

    for G in (CyclicGroup(8), DihedralGroup(4)):
        gs = G.escnn_gspace()
        ft = enn.FieldType(gs, [gs.regular_repr])
        rep = field_representation(G, ft)
        for g in G.elements():
            assert np.abs(gs.basespace_action(G.escnn_element(g)) - G.plane_matrix(g)).max() < 1e-12
            x = torch.randn(2, ft.size, 9, 9, dtype=torch.float64)
            ours = ImageField(rep).apply(x, g) if G.is_exact_on_grid(g) else None
            if ours is not None:  # grid elements: exact gathers equal escnn's own transform
                assert torch.equal(ours, ft.transform(x, G.escnn_element(g)))


def test_exact_elements_are_bit_exact_and_floor_positive_at_45_degrees():
    G = CyclicGroup(8)
    x = gaussian_blur(torch.randn(3, 1, 17, 17, dtype=torch.float64), 2.0)
    r90 = G.element(Fraction(2, 8))
    assert torch.equal(spatial_transform(x, G.plane_matrix(r90), exact=True), torch.rot90(x, 1, dims=(-2, -1)))
    prop = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G)), image_size=17)

    class Blur(torch.nn.Module):
        def forward(self, t):
            return gaussian_blur(t, 1.0).to(t.dtype)

    ev = measure_equivariance(prop, Blur(), seed=0, reinit=False)
    floors = dict(zip(ev.elements, ev.floors))
    labels = dict(zip(ev.elements, ev.labels))
    assert labels["C8[45°]"] == "interpolated" and labels["C8[90°]"] == "exact"
    assert floors["C8[45°]"] > 0 and floors["C8[90°]"] == 0.0
    assert ev.verdict is Verdict.HOLDS, ev.summary  # the blur itself passes its own floor test
    assert len(ev.errors) == 8  # every element, no early stop


def test_bad_inputs_name_the_value():
    G = CyclicGroup(4)
    with pytest.raises(InputError, match=r"group element=C8\[45°\]"):
        G.require(CyclicGroup(8).element(Fraction(1, 8)))
    with pytest.raises(InputError, match=r"turn=0.1"):
        CyclicGroup(8).element(0.1)
    with pytest.raises(InputError, match=r"image size=\(28, 28\).*odd"):
        ImageField(trivial(G)).check_shape(torch.zeros(1, 1, 28, 28), "image")
    with pytest.raises(InputError, match=r"model input channels=3: expected 1"):
        ImageField(trivial(G)).check_shape(torch.zeros(1, 3, 29, 29), "model input")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5)).train()
    with pytest.raises(InputError, match=r"model.training=True"):
        measure_equivariance(Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G, 841), spatial=False)), model)


def test_kernel_constraint_solution_contains_symmetric_kernels():
    G = CyclicGroup(4)
    B = solve_kernel_constraint(G, trivial(G), trivial(G), 3)
    assert B.shape[1] == 3  # centre, edge ring, corner ring
    iso = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float).reshape(1, 1, 3, 3)
    skew = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=float).reshape(1, 1, 3, 3)
    assert in_span_exactly(B, [iso]) == [0.0]
    assert in_span_exactly(B, [skew])[0] > 0.5


def test_permutation_check_flags_every_nonidentity_for_index_term():
    S = SymmetricGroup(4)

    class IndexTerm(torch.nn.Module):
        def forward(self, x):
            return x + torch.arange(4, dtype=x.dtype)[None, :, None]

    ev = measure_equivariance(Equivariant(S, SetAction(S), SetAction(S)), IndexTerm(), reinit=False)
    assert ev.verdict is Verdict.VIOLATED
    assert set(ev.violating) == {repr(g) for g in S.elements()} - {repr(S.identity())}


def test_lie_derivative_and_haar_search_catch_a_plain_cnn_claiming_so2():
    """SO(2): an isotropic blur holds (Lie derivative at its floor); a free 5×5 convolution is refuted, by the
    Haar-drawn angles, by its Lie derivative and by the hypothesis search over inputs and angles."""
    G = SO2()
    prop = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G)), image_size=21, n_inputs=3, n_haar=6)

    class Blur(torch.nn.Module):
        def forward(self, t):
            return gaussian_blur(t, 1.0).to(t.dtype)

    ok = measure_equivariance(prop, Blur(), seed=0, reinit=False, max_examples=8)
    assert ok.verdict is Verdict.HOLDS, ok.summary
    assert not ok.lie["violated"] and ok.lie["value"] <= ok.lie["threshold"]
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False).double().eval()
    bad = measure_equivariance(prop, conv, seed=0, reinit=False, max_examples=8)
    assert bad.verdict is Verdict.VIOLATED
    assert bad.lie["violated"] and "Lie derivative" in bad.violating
    assert bad.search["counterexample"] is not None
