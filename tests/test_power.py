"""The verifier's detection power, through the public API: every planted violation refuted, no correct model refuted.

Mutants (models/mutants.py) break Symplectic, VolumePreserving or Invertible by a relative size δ ∈ {1e-1, 1e-3,
1e-5}, placed everywhere in the data box, only far beyond it (|x|∞ > 3, 30, 300), only inside a small region, or
only in the code of a layer whose declared twin stays correct; and a symmetry-breaking term of size δ in a C4
steerable CNN and in a DeepSets model. Each is registered with `architecture(...)` and
checked with `check()` at the default settings, exactly as benchmarks/power.py does for reports/power/.
The newer properties (LogDet, Lipschitz, ConformalSymplectic, OnManifold) are tested here on a subset: the hardest
placements at the smallest δ, one correct model each, and every OnManifold row (they cost milliseconds).
"""
import re

import pytest

import torch

from benchmarks.power import (DIMS, EQUIVARIANT, EQUIVARIANT_MUTANTS, MANIFOLDS, NEWER, PROMISED, PROPERTIES,
                              manifold_promised, newer_correct_jobs, newer_jobs, _row)
from verify.models import mutants

CASES = [(p, w, n, d) for p in PROPERTIES for w in mutants.PLACEMENTS for n in DIMS[w] for d in mutants.SIZES
         if (w, n) in PROMISED]


@pytest.mark.parametrize("prop, where, dim, delta", CASES, ids=[f"{p}-{w}-{n}d-{d:g}" for p, w, n, d in CASES])
def test_planted_violation_is_refuted(prop, where, dim, delta):
    row = _row("mutant", prop, where, delta, dim, 0, lambda: mutants.mutant(prop, delta, where, dim))
    assert row.verdict == "violated", f"{mutants.describe(prop, delta, where, dim)} came out {row.verdict}: {row.evidence}"


@pytest.mark.parametrize("delta", mutants.SIZES)
@pytest.mark.parametrize("k", [3.0, 30.0])
def test_code_that_differs_from_its_twin_is_refuted_even_when_the_claim_is_true(delta, k):
    row = _row("twin", "Symplectic", f"|z| > {k:g}", delta, 2, 0, lambda: mutants.mismatched_twin(delta, k))
    assert row.verdict == "violated", row.evidence
    assert "does not describe the module" in row.evidence and "layer 1" in row.evidence


@pytest.mark.parametrize("delta", mutants.SIZES)
@pytest.mark.parametrize("prop, where, build", EQUIVARIANT_MUTANTS, ids=["cnn-mirror-conv1", "cnn-branch-conv2", "set-position-weight"])
def test_symmetry_breaking_term_is_refuted(prop, where, build, delta):
    row = _row("mutant", prop, where, delta, 0, 0, lambda: build(delta))
    assert row.verdict == "violated", f"{prop} with a {where} (δ = {delta:g}) came out {row.verdict}: {row.evidence}"
    assert "structural" in row.evidence, row.evidence  # it survives in float64: a term, not round-off


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("prop", list(EQUIVARIANT))
def test_correct_equivariant_models_are_never_refuted(prop, seed):
    kind = EQUIVARIANT[prop][2]
    row = _row("correct", prop, "—", 0.0, 0, seed, lambda: mutants.correct_equivariant(kind, seed))
    assert row.verdict in ("holds", "proved"), row.evidence


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dim", [2, 4])
@pytest.mark.parametrize("prop", list(PROPERTIES))
def test_correct_models_are_never_refuted(prop, dim, seed):
    row = _row("correct", prop, "—", 0.0, dim, seed, lambda: mutants.correct_model(mutants.BASE_FOR[prop], dim, seed))
    assert row.verdict in ("holds", "proved"), row.evidence


def test_the_data_scale_resolution_is_stated_and_reached_up_to_4_dimensions():
    """The coverage says which ball anywhere in the data box sampling resolves: ρ = 0.1 of the half-width in 4-D
    (a hard-edged region there, with no gradient outside, is found only this way), and in 6-D the ρ actually reached."""
    row4 = _row("correct", "Symplectic", "—", 0.0, 4, 0, lambda: mutants.correct_model("g-sympnet", 4, 0))
    stated = re.search(r"resolution ρ = ([0-9.e+-]+) of the half-width at the data scale \((\d+) samples", row4.evidence)
    assert stated and float(stated[1]) <= 0.1 and int(stated[2]) >= 1 << 17, row4.evidence
    from verify.properties import Symplectic
    from verify import check
    from verify.checking.search import Budget

    # the default resolution settings, with the other methods cut short: only the stated coverage is under test here
    quick = Budget(n_inputs=1024, starts=0, steps=0, examples=0)
    result = check(mutants.correct_model("g-sympnet", 6, 0), claims=[Symplectic()], dim=6, seed=0, rollout_steps=0,
                   symbolic=False, budget=quick).results[0]
    res = result.numeric.search["methods"]["resolution"]
    assert res["applies"] and not res["reached"] and 0.1 < res["resolution"] < 0.5, res
    assert "beyond the cost cap" in res["statement"] and res["data_scale_inputs"] >= 1 << 16, res


# -- the newer properties: a subset within the suite's time budget (the page runs them all), each at the smallest δ in a
# hard-edged region (no gradient outside it; in 4-D only the resolution stage finds it). Two engine bugs the power page
# found are pinned here: Lipschitz's search had no resolution stage, and a float64 excess that the storage precision of
# float32 parameters later excuses (the damping's stored μ = 0.9f against the claimed 0.9) ended the search before the
# resolution stage, so the 4-D region was never sampled and the claim read `holds`
NEWER_CASES = [("LogDet", "region-hard", 2), ("Lipschitz", "region-hard", 4), ("ConformalSymplectic", "region-hard", 4)]
assert {p for p, _, _ in NEWER_CASES} == set(NEWER)


@pytest.mark.parametrize("prop, where, dim", NEWER_CASES, ids=[f"{p}-{w}-{n}d" for p, w, n in NEWER_CASES])
def test_newer_planted_violation_is_refuted(prop, where, dim):
    delta = min(mutants.SIZES)
    row = _row("mutant", prop, where, delta, dim, 0, lambda: mutants.newer_mutant(prop, delta, where, dim))
    assert row.verdict == "violated", f"{prop} δ = {delta:g} at {where} ({dim}-D) came out {row.verdict}: {row.evidence}"


@pytest.mark.parametrize("prop", list(NEWER))
def test_newer_correct_models_are_never_refuted(prop):
    row = _row("correct", prop, "—", 0.0, 2, 0, lambda: mutants.newer_correct_model(mutants.NEWER_BASE_FOR[prop], 2, 0))
    assert row.verdict in ("holds", "proved"), row.evidence


def test_every_promised_manifold_perturbation_is_refuted_and_no_correct_weight_is():
    """All of OnManifold's rows (cheap: no inputs): every perturbation above twice its dtype's round-off is refuted, every
    correct weight (stored, or torch's orthogonal parametrisation; float32 and float64; 5 seeds) holds or is proved."""
    planted = [j for j in newer_jobs() if j[1] in MANIFOLDS]
    assert len(planted) == len(mutants.MANIFOLD_KINDS) * 2 * len(mutants.PERTURBATIONS) * len(mutants.SIZES)
    promised = [j for j in planted if j[7]]
    assert len(promised) >= len(planted) - 4, [(j[1], j[2], j[3]) for j in planted if not j[7]]
    for job in promised:
        row = _row(*job)
        assert row.verdict == "violated", (row.prop, row.placement, row.delta, row.evidence)
    correct = [j for j in newer_correct_jobs(5) if j[1].startswith("OnManifold")]
    assert {j[1] for j in correct} >= {f"{m}, {t}" for m in MANIFOLDS for t in ("float32", "float64")}
    for job in correct:
        row = _row(*job)
        assert row.verdict in ("holds", "proved"), (row.prop, row.seed, row.evidence)


def test_a_perturbation_below_round_off_is_not_promised_and_says_why():
    """A random direction is mostly tangent to the sphere: at δ = 1e-5 its distance off S⁷ is below float32's round-off
    (not promised, with the numbers), while in float64 the same move is far above it (promised)."""
    _, d32 = mutants.manifold_weight("sphere", 0, torch.float32, 1e-5, "random direction")
    ok, why = manifold_promised("sphere", torch.float32, d32)
    assert not ok and "round-off tolerance" in why and d32 < 1e-5 / 4
    _, d64 = mutants.manifold_weight("sphere", 0, torch.float64, 1e-5, "random direction")
    assert manifold_promised("sphere", torch.float64, d64) == (True, "")
