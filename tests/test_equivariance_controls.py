"""Each equivariance control is refuted, and at the right group elements (shares the registry test's trained results)."""
from __future__ import annotations

import pytest

from verify.checking import check
from verify.evidence import Verdict


def _result(verify_results, name):
    if name not in verify_results:
        verify_results[name] = check(name, size="quick", seed=0, rollout_steps=0)
    return verify_results[name].results[0]


@pytest.mark.parametrize("name, flagged", [
    ("plain-cnn-c4", {"C4[90°]", "C4[180°]", "C4[270°]"}),
    ("c4-perturbed-filter", {"C4[90°]", "C4[180°]", "C4[270°]"}),
    ("c4-denoiser-inverse-rep", {"C4[90°]", "C4[270°]"}),  # g⁻¹ = g for 0° and 180°
    ("c8-denoiser-table-typo", {"C8[135°]"}),  # one wrong table entry, nothing else
    ("c8-claims-half-percent", {"C8[45°]", "C8[135°]", "C8[225°]", "C8[315°]"}),  # interpolated elements only
    ("gnn-node-index", None),  # every non-identity permutation of the nodes
])
def test_control_refuted_at_the_offending_elements(verify_results, name, flagged):
    r = _result(verify_results, name)
    assert r.verdict is Verdict.VIOLATED, r.numeric.summary
    assert r.numeric.verdict is Verdict.VIOLATED
    ce = r.numeric.search.get("counterexample")
    assert ce, "the hypothesis search finds a counterexample too"
    if flagged is not None:
        assert set(r.numeric.violating) == flagged, r.numeric.summary
        assert ce["element"] in flagged, ce  # and at an offending element
    else:
        assert len(r.numeric.violating) == 119, r.numeric.summary


@pytest.mark.parametrize("name", ["c4-steerable-cnn", "d4-steerable-cnn", "c4-steerable-denoiser"])
def test_grid_groups_are_proved_and_exact(verify_results, name):
    r = _result(verify_results, name)
    assert r.symbolic is not None and r.symbolic.verdict is Verdict.PROVED, r.symbolic_text
    assert r.verdict is Verdict.PROVED
    assert all(lab == "exact" for lab in r.numeric.labels)
    assert max(r.numeric.errors) <= r.numeric.tolerance


def test_c8_interpolated_elements_judged_against_the_floor(verify_results):
    r = _result(verify_results, "c8-steerable-cnn")
    m = r.numeric
    assert r.verdict is Verdict.HOLDS, m.summary
    interp = [i for i, lab in enumerate(m.labels) if lab == "interpolated"]
    assert [m.elements[i] for i in interp] == ["C8[45°]", "C8[135°]", "C8[225°]", "C8[315°]"]
    assert all(m.floors[i] > 0 for i in interp)
    assert m.untrained.get("errors"), "the re-initialised model is checked too"
    assert m.search["examples"] >= 20 and m.search["counterexample"] is None and m.search["worst_ratio"] <= 1
