"""Image-field and set/graph domains (verify/checking/domains_fields.py) and the equivariance check on the one search engine."""
from __future__ import annotations

import math

import pytest
import torch

from verify.properties.equivariant import Equivariant, Oracle, float64_copy, measure_equivariance
from verify.declare.actions import ImageField, SetAction, gaussian_blur
from verify.checking.domains import Domain, StructuredDomain
from verify.checking.domains_fields import FIELD_SCALES, ImageFieldDomain, SetDomain, smooth_window
from verify.declare.groups import CyclicGroup, O2, SO2, SymmetricGroup, trivial
from verify.checking.search import Budget, Objective, search

N = 21


def _pool(n: int = 4, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return gaussian_blur(torch.randn(n, channels, N, N, generator=g, dtype=torch.float64), 2.0) * smooth_window(N)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- image fields
def test_image_domain_draws_valid_points_deterministically():
    dom = ImageFieldDomain(_pool(channels=2), min_feature_px=2.5)
    assert isinstance(dom, Domain) and isinstance(dom, StructuredDomain)
    a, b = dom.draw(32, 10.0, _gen(3)), dom.draw(32, 10.0, _gen(3))
    assert a.shape == (32, dom.dim) and torch.equal(a, b)
    assert not torch.equal(a, dom.draw(32, 10.0, _gen(4)))
    assert torch.equal(dom.clip(a), a), "draws are inside the domain (clip is the identity on them)"
    img = dom.render(a)
    assert img.shape == (32, 2, N, N) and img.dtype == torch.float64 and torch.isfinite(img).all()
    # the scale is the amplitude: the same point at ×10 renders ten times larger
    one = a.clone()
    one[:, 0] = 0.0
    assert torch.allclose(dom.render(a), 10.0 * dom.render(one), rtol=1e-12, atol=0)
    # half task images × amplitude, half bump fields, none empty
    from_pool = a[:, 2] != 0
    bumps = torch.stack([a[:, dom._bump(j)][:, 3] != 0 for j in range(dom.max_bumps)], 1)
    assert 5 < int(from_pool.sum()) < 27 and bool((from_pool ^ bumps.any(1)).all())
    assert dom.scales() == list(FIELD_SCALES) and min(dom.scales()) < 1e-2 and max(dom.scales()) >= 100


def test_image_domain_keeps_the_claimed_band_limit_under_every_move():
    dom = ImageFieldDomain(_pool(), min_feature_px=2.5, max_feature_px=4.0)
    x = dom.draw(64, 1.0, _gen())
    moved = dom.perturb(x, 0.5, _gen(1))
    assert moved.shape == x.shape and torch.equal(moved, dom.perturb(x, 0.5, _gen(1)))
    wild = dom.clip(x + 5.0 * torch.randn(x.shape, generator=_gen(2), dtype=torch.float64))
    for pts in (moved, wild):
        assert torch.equal(dom.clip(pts), pts)
        for j in range(dom.max_bumps):
            b = pts[:, dom._bump(j)]
            assert bool(((b[:, 2] >= 0) & (b[:, 2] <= 1)).all()), "widths stay in [min_feature_px, max_feature_px]"
            assert bool((b[:, :2].abs() <= 1).all()) and bool((b[:, 3].abs() <= 3).all())
    # a rendered bump is a Gaussian no narrower than min_feature_px: its spectrum is within the band of that width
    p = torch.zeros(1, dom.dim, dtype=torch.float64)
    p[0, dom._bump(0)] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    img = dom.render(p)[0, 0]
    c = N // 2
    assert float(img[c, c]) == pytest.approx(1.0, rel=1e-6)
    window = float(smooth_window(N)[c, c + 2])  # the field lies under the smooth window
    assert float(img[c, c + 2]) == pytest.approx(math.exp(-4 / (2 * 2.5 ** 2)) * window, rel=1e-12)


def test_image_domain_shrinks_to_fewer_bumps_and_rounder_numbers():
    dom = ImageFieldDomain(_pool(), min_feature_px=2.5)
    x = torch.zeros(dom.dim, dtype=torch.float64)
    for j, (cx, amp) in enumerate([(0.3137, 1.7321), (-0.5, 0.4142), (0.1, -0.2718)]):
        x[dom._bump(j)] = torch.tensor([cx, -0.2, 0.37, amp, 0.5], dtype=torch.float64)
    x = dom.clip(x.unsqueeze(0))[0]

    def fails(z: torch.Tensor) -> bool:  # "violated" while the field has a bump of height > 1 right of the centre
        img = dom.render(z.unsqueeze(0))[0, 0]
        return float(img[:, N // 2 + 1:].max()) > 1.0

    assert fails(x)
    small = dom.shrink(x, fails)
    assert fails(small)
    active = [j for j in range(dom.max_bumps) if small[dom._bump(j)][3] != 0]
    assert active == [0], dom.describe_input(small)
    # rounder: the surviving bump's numbers have few digits in the units a reader sees
    text = dom.describe_input(small)
    assert "bumps (c=(" in text and len(text) < len(dom.describe_input(x))


def test_continuous_group_element_travels_with_the_input():
    G = O2()
    dom = ImageFieldDomain(_pool(), group=G)
    x = dom.draw(200, 1.0, _gen())
    els = [dom.element(p) for p in x]
    assert all(G.contains(g) for g in els)
    exact = sum(G.is_exact_on_grid(g) for g in els)
    assert 30 < exact < 80, "a quarter of the draws are exact quarter turns (held to round-off on new inputs too)"
    assert {g.flip for g in els} == {0, 1}
    assert torch.equal(dom.render(x), ImageFieldDomain(_pool()).render(x[:, :-2])), "the element does not change the field"
    with pytest.raises(Exception):
        ImageFieldDomain(_pool(), group=CyclicGroup(8))  # finite groups are enumerated by the objective


def test_engine_finds_a_violation_far_out_through_the_image_domain_and_hypothesis_hook():
    """A planted objective that fails only above 10× the data's amplitude, off-centre: the engine's scales and
    structured hypothesis strategy find it, and the counterexample is a simple field."""
    dom = ImageFieldDomain(_pool(), min_feature_px=2.5)

    def ratio(x: torch.Tensor) -> torch.Tensor:
        img = dom.render(x)[:, 0]
        return img[:, :, N // 2 + 2:].amax((1, 2)).clamp_min(0.0) / 20.0

    obj = Objective(ratio=lambda x: ratio(x).detach(), ratio64=ratio)
    budget = Budget(n_inputs=48, starts=4, steps=3, population=2, examples=20)
    found = search(obj, dom, seed=0, budget=budget)
    assert found.worst()[0] > 1.0 and found.counterexample is not None
    assert float(ratio(found.counterexample.unsqueeze(0))[0]) > 1.0
    assert found.methods["hypothesis"]["examples"] > 0
    # simple: at most the bumps it needs (hypothesis shrinks in the domain's own terms)
    active = [j for j in range(dom.max_bumps) if found.counterexample[dom._bump(j)][3] != 0]
    assert len(active) + int(found.counterexample[2] != 0) <= 2, dom.describe_input(found.counterexample)
    again = search(obj, dom, seed=0, budget=budget)
    assert torch.equal(found.x, again.x) and torch.equal(found.counterexample, again.counterexample)
    assert [m.get("best_ratio") for m in found.methods.values()] == [m.get("best_ratio") for m in again.methods.values()]


# --------------------------------------------------------------------------- sets and graphs
def test_set_and_graph_domains():
    S = SymmetricGroup(5)
    g = torch.Generator().manual_seed(0)
    sets = SetDomain(torch.randn(8, 5, 2, generator=g, dtype=torch.float64))
    x = sets.draw(40, 1.0, _gen())
    assert x.shape == (40, 5, 2) and torch.equal(x, sets.draw(40, 1.0, _gen()))
    assert torch.equal(sets.perturb(x, 0.1, _gen(1)), sets.perturb(x, 0.1, _gen(1)))
    A = (torch.rand(8, 5, 5, generator=g) < 0.5).double()
    graphs = SetDomain(torch.cat([A, torch.ones(8, 5, 1, dtype=torch.float64)], -1), graph=True)
    xg = graphs.draw(60, 1.0, _gen())
    assert xg.shape == (60, 5, 6)
    binary = [(A_ == A_.T).all() and ((A_ == 0) | (A_ == 1)).all() for A_ in xg[:, :, :5]]
    assert sum(bool(b) for b in binary) >= 10, "a third of the graph draws are random 0/1 symmetric adjacencies"
    assert graphs.describe()["kind"] == "graphs" and SetAction(S, graph=True).graph

    def fails(z: torch.Tensor) -> bool:
        return float(z[0, 0]) > 1.0

    z = torch.full((5, 2), 2.3456, dtype=torch.float64)
    small = sets.shrink(z, fails)
    assert fails(small) and int((small != 0).sum()) == 1 and float(small[0, 0]) == 2.0


# --------------------------------------------------------------------------- the property on the engine
class BigAmplitudeTerm(torch.nn.Module):
    """Mean over the central disk (C4-invariant) plus a term that switches on only above 5× the data's largest value,
    and then reads one off-centre pixel: invisible on the data, found by the search's larger amplitudes."""

    def __init__(self, data_max: float) -> None:
        super().__init__()
        self.limit = 5.0 * data_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((-2, -1))
        big = torch.relu(x.abs().amax((-3, -2, -1)) - self.limit)[:, None]
        return mean + 1e-3 * big * x[:, :, N // 2, N // 2 + 3]


def test_equivariance_search_refutes_a_violation_the_data_cannot_show():
    G = CyclicGroup(4)
    prop = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G), spatial=False), image_size=N, n_inputs=4)
    x = prop.draw_inputs(None, 0, torch.device("cpu"))
    model = BigAmplitudeTerm(float(x.abs().max())).eval()
    ev = measure_equivariance(prop, model, seed=0, reinit=False, max_examples=12)
    assert not ev.violating, "the enumeration on the data sees nothing"
    assert ev.verdict.value == "violated" and ev.classification == "structural", ev.summary
    ce = ev.search["counterexample"]
    assert ce["class"] == "structural" and ce["element"] != "C4[0°]" and ce["error_float64"] > ce["threshold_float64"]
    methods = ev.search["methods"]
    assert set(methods) - {"resolution"} == {"sampling", "gradient", "smoothed", "hypothesis"}
    # a field has no volume in Rⁿ to resolve: the resolution stage says so rather than sample
    assert "resolution" not in methods or (not methods["resolution"]["applies"] and methods["resolution"]["inputs"] == 0)
    assert ev.search["methods"]["sampling"]["per_scale"]["100"]["worst_ratio_float64"] > 1.0
    assert ev.search["budget"]["n_inputs"] <= 40 and "SEARCH_BUDGET" in ev.search["budget_rule"]
    # and a correct model is not refuted at any amplitude
    ok = measure_equivariance(prop, BigAmplitudeTerm(1e9).eval(), seed=0, reinit=False, max_examples=12)
    assert ok.verdict.value == "holds" and ok.search["counterexample"] is None, ok.summary


def test_so2_search_draws_its_elements_with_the_inputs():
    G = SO2()
    prop = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G)), image_size=N, n_inputs=3, n_haar=4)

    class Blur(torch.nn.Module):
        def forward(self, t):
            return gaussian_blur(t, 1.0).to(t.dtype)

    ev = measure_equivariance(prop, Blur(), seed=0, reinit=False, max_examples=6)
    assert ev.verdict.value == "holds", ev.summary
    assert "drawn with the input" in ev.search["strategy"] and ev.search["worst"]["element"].startswith("SO2[")
    assert ev.search["examples"] > ev.search["methods"]["sampling"]["inputs"]


def test_oracle_draw_states_are_the_numbers_float64_copy_makes():
    """The oracle holds its storage draws as states of one twin; they are exactly the copies float64_copy(model, gen)
    would make, draw after draw (escnn's cached filters included)."""
    from verify.models.equivariant_cnns import SteerableClassifier

    torch.manual_seed(0)
    model = SteerableClassifier(N=4, channels=2).eval()
    oracle = Oracle(model, torch.float32, 3, 29 * 29)
    gen = torch.Generator().manual_seed(10_007 * 3 + 1)
    x = torch.randn(2, 1, 29, 29, dtype=torch.float64)
    with torch.no_grad():
        for t in range(oracle.n_draws):
            assert torch.equal(float64_copy(model, gen)(x), oracle.twin(t)(x))
    assert not model.training


def test_separable_blur_is_the_normalised_2d_gaussian():
    x = torch.randn(3, 2, 15, 15, generator=_gen(), dtype=torch.float64)
    r = 4
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t ** 2 / 2)
    k2 = k[:, None] * k[None, :]
    k2 = (k2 / k2.sum()).expand(2, 1, 2 * r + 1, 2 * r + 1)
    ref = torch.nn.functional.conv2d(x, k2, padding=r, groups=2)
    assert torch.allclose(gaussian_blur(x, 1.0), ref, rtol=0, atol=1e-14)


def test_a_users_domain_replaces_the_search_domain_and_a_mismatched_one_is_an_error():
    from verify.models.permutation import DeepSets

    S = SymmetricGroup(5)
    prop = Equivariant(S, SetAction(S), SetAction(S, invariant=True))
    torch.manual_seed(0)
    model = DeepSets().eval()
    pool = torch.randn(4, 5, 2, generator=_gen(), dtype=torch.float64)
    mine = SetDomain(pool, scale_list=(1.0, 1e4))
    ev = prop.measure_model(model, seed=0, max_examples=4, untrained=False, domain=mine)
    assert ev.verdict.value == "holds" and ev.search["domain"]["scales"] == ["1", "10000"], ev.summary
    G = SO2()
    img = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G)), image_size=N, n_inputs=2, n_haar=2)

    class Blur(torch.nn.Module):
        def forward(self, t):
            return gaussian_blur(t, 1.0).to(t.dtype)

    bad = img.measure_model(Blur(), seed=0, max_examples=4, untrained=False, domain=ImageFieldDomain(_pool()))
    assert bad.verdict.value == "error" and "group" in bad.summary and "ImageFieldDomain(" in bad.fix


class FourFoldAboveAmplitude(torch.nn.Module):
    """A mean (invariant) plus, above `limit` in amplitude, a readout weighted by X²Y²: invariant under quarter turns
    exactly, not under 45°. A C8 claim is then violated at its interpolated elements only, and only at large
    amplitudes."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        c = (N - 1) / 2
        r = torch.arange(N, dtype=torch.float64) - c
        self.register_buffer("w", (r[None, :] ** 2 * r[:, None] ** 2) * smooth_window(N) / (c ** 4))
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.relu(x.abs().amax((-3, -2, -1)) - self.limit)[:, None]
        return x.mean((-2, -1)) + 0.1 * big * (x * self.w.to(x.dtype)).sum((-2, -1))


def test_interpolated_elements_are_claimed_up_to_grid_amplitude():
    G = CyclicGroup(8)
    kw = dict(image_size=N, n_inputs=4, grid_rtol=0.02)
    data_max = float(Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G), spatial=False), **kw)
                     .draw_inputs(None, 0, torch.device("cpu")).abs().max())
    model = FourFoldAboveAmplitude(30.0 * data_max).double().eval()
    claimed = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G), spatial=False), grid_amplitude=10.0, **kw)
    ev = measure_equivariance(claimed, model, seed=0, reinit=False, max_examples=8)
    assert ev.verdict.value == "holds", ev.summary
    beyond = ev.search["beyond_grid_amplitude"]
    assert beyond["ratio"] > 1.0 and beyond["amplitude"] > 10.0 and beyond["element"] in ("C8[45°]", "C8[135°]",
                                                                                          "C8[225°]", "C8[315°]")
    assert "up to 10× the data's amplitude" in str(claimed)
    everywhere = Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G), spatial=False), grid_amplitude=None, **kw)
    bad = measure_equivariance(everywhere, model, seed=0, reinit=False, max_examples=8)
    assert bad.verdict.value == "violated" and not bad.violating, bad.summary  # the data (×1) show nothing
    assert bad.search["counterexample"]["element"] in ("C8[45°]", "C8[135°]", "C8[225°]", "C8[315°]")
    with pytest.raises(Exception, match="grid_amplitude"):
        Equivariant(G, ImageField(trivial(G)), ImageField(trivial(G)), grid_amplitude=-1.0)
