"""Each equivariance control is refuted, and at the right group elements (shares the registry test's trained results)."""
from __future__ import annotations

import math

import pytest

from verify.properties.equivariant import Equivariant
from verify.checking.api import check
from verify.evidence import Verdict
from verify.declare.registry import all_architectures

GENUINE = sorted(a.name for a in all_architectures()
                 if any(isinstance(c.property, Equivariant) and c.expected for c in a.claims))


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
    assert r.symbolic.blocks[-1].block.startswith("output")  # the walk reached the output


def test_c8_interpolated_elements_judged_against_the_floor(verify_results):
    r = _result(verify_results, "c8-steerable-cnn")
    m = r.numeric
    assert r.verdict is Verdict.HOLDS, m.summary
    interp = [i for i, lab in enumerate(m.labels) if lab == "interpolated"]
    assert [m.elements[i] for i in interp] == ["C8[45°]", "C8[135°]", "C8[225°]", "C8[315°]"]
    assert all(m.floors[i] > 0 for i in interp)
    assert m.untrained.get("errors"), "the re-initialised model is checked too"
    assert m.search["examples"] >= 20 and m.search["counterexample"] is None and m.search["worst_ratio"] <= 1


@pytest.mark.parametrize("name", GENUINE)
def test_genuine_tolerances_are_calibrated(verify_results, name):
    """Every genuine registered equivariant network: the exact-element tolerance sits at most 30× above the float32
    error the trained network really shows (a tolerance far above reality would pass planted violations), the
    ratio is printed in the evidence, and the float64 oracle finds nothing structural."""
    r = _result(verify_results, name)
    m = r.numeric
    assert m.verdict is Verdict.HOLDS and m.classification == "none", m.summary
    exact = [i for i, lab in enumerate(m.labels) if lab == "exact"]
    if math.isnan(m.calibration_ratio):
        # bit-exact in float32 at every exact element (the GNN: row-wise layers, A·h permutes exactly): there is no
        # round-off to calibrate against, and the float64 oracle's tolerance is at the float64 level
        assert all(m.errors[i] == 0.0 for i in exact) and m.tolerance_float64 < 1e-12, m.summary
        assert "no round-off at all" in m.summary
    else:
        assert 1.0 <= m.calibration_ratio <= 30.0, (m.calibration_ratio, m.summary)
        assert f"{m.calibration_ratio:.3g}" in m.summary
    assert all(e <= t for e, t in zip(m.errors_float64, m.thresholds_float64))
    assert max(m.thresholds[i] for i in exact) < 1e-5, m.tolerance_formula  # the old 2·L·K·eps sat at 8e-4
