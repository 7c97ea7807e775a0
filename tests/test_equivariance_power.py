"""Power of the equivariance check: planted symmetry-breaking terms are refuted at every size, genuine networks never.

Mutants go through the public API: `Equivariant.measure_model` on a model (the numeric stage) and an architecture
registered with `verify.declare.registry.architecture` (the symbolic stage, and `check` end to end). Models are tiny and
untrained or trained for a few dozen steps, so the file runs in well under a minute.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from verify.models.equivariant_cnns import C4, SteerableClassifier, _image, _logits
from verify.models.mutants import PositionWeightedSets, c4_mutant, quick_train
from verify.models.permutation import S, DeepSets
from verify.properties.equivariant import Equivariant, EquivarianceMeasurement
from verify.declare.actions import SetAction
from verify.evidence import Verdict
from verify.declare.registry import Size, architecture, get_task, unregister

DIGITS = get_task("rotated-digits")
SETS = get_task("set-sum")
C4_CLAIM = Equivariant(C4, _image(C4), _logits(C4))
SET_CLAIM = Equivariant(S, SetAction(S), SetAction(S, invariant=True))


# the mutants (FlipTerm, ConvBranch, PositionWeightedSets) live in models/mutants.py, shared with the power page


def _numeric(claim: Equivariant, model: nn.Module, task, seed: int = 0, examples: int = 12) -> EquivarianceMeasurement:
    ev = claim.measure_model(model, task=task, seed=seed, max_examples=examples, untrained=False)
    assert isinstance(ev, EquivarianceMeasurement), ev.summary
    return ev


@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-5])
@pytest.mark.parametrize("kind, where", [("flip", "conv1"), ("flip", "conv2"), ("branch", "conv2")])
def test_c4_symmetry_breaking_term_after_a_convolution_is_refuted(eps, kind, where):
    ev = _numeric(C4_CLAIM, c4_mutant(eps, kind, where), DIGITS)
    assert ev.verdict is Verdict.VIOLATED, ev.summary
    assert ev.classification == "structural", ev.summary  # it survives in float64, beyond the storage allowance
    worst64 = max(e / t for e, t in zip(ev.errors_float64, ev.thresholds_float64))
    assert worst64 > 1.0
    # the old tolerance 2·L·K·eps (K = 841 pixels) sat at 8e-4 and passed every ε ≤ 1e-4
    assert ev.tolerance < 1e-5, ev.tolerance


@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-5])
def test_set_model_with_position_dependent_weight_is_refuted(eps):
    torch.manual_seed(0)
    ev = _numeric(SET_CLAIM, PositionWeightedSets(eps).eval(), SETS)
    assert ev.verdict is Verdict.VIOLATED and ev.classification == "structural", ev.summary
    assert len(ev.violating) == 119  # every permutation but the identity moves some item to another weight


def test_structural_violation_below_float32_resolution_is_refuted_by_the_float64_oracle():
    """1 + 1e-9·i rounds to 1 in float32: the float32 model is exactly invariant, its float64 copy is not."""
    torch.manual_seed(0)
    ev = _numeric(SET_CLAIM, PositionWeightedSets(1e-9).eval(), SETS)
    assert ev.verdict is Verdict.VIOLATED and ev.classification == "structural", ev.summary
    assert max(ev.errors) < 1e-6, "in float32 it is round-off: float32 alone cannot see it"
    assert max(ev.errors_float64) > 1e-10 > 100 * ev.tolerance_float64
    assert all(c == "structural" for g, c in zip(ev.elements, ev.element_classes) if g != repr(S.identity()))


@pytest.mark.parametrize("seed", range(5))
def test_genuine_c4_and_deepsets_are_never_refuted_and_calibrated(seed):
    torch.manual_seed(seed)
    c4 = quick_train(SteerableClassifier(N=4, channels=2), DIGITS, steps=20, seed=seed)
    torch.manual_seed(seed)
    ds = quick_train(DeepSets(), SETS, steps=30, seed=seed)
    for claim, model, task in ((C4_CLAIM, c4, DIGITS), (SET_CLAIM, ds, SETS)):
        ev = _numeric(claim, model, task, seed=seed, examples=15)
        assert ev.verdict is Verdict.HOLDS, ev.summary
        assert ev.classification == "none"
        assert ev.search["counterexample"] is None and ev.search["worst_ratio"] <= 1.0
        # calibrated: the tolerance sits at most 30× above what the network really shows
        assert 1.0 <= ev.calibration_ratio <= 30.0, (ev.calibration_ratio, ev.summary)
        assert f"{ev.calibration_ratio:.3g}" in ev.summary
        assert all(e64 <= t64 for e64, t64 in zip(ev.errors_float64, ev.thresholds_float64))


# --------------------------------------------------------------------------- through the registry
@pytest.fixture
def registered_mutants():
    names = []

    def register(name: str, factory, eps: float, claim=C4_CLAIM, task: str = "rotated-digits"):
        architecture(name, claims=[claim.falsely(f"a planted symmetry-breaking term of relative size {eps:g}")],
                     task=task, sizes={"quick": Size(config={}, steps=10, lr=1e-2, n_train=128, batch=32)})(factory)
        names.append(name)
        return name

    yield register
    for n in names:
        unregister(n)


def test_registered_mutants_are_refuted_end_to_end(registered_mutants):
    from verify.checking.api import check

    name = registered_mutants("test-c4-flip-1e-5", lambda: c4_mutant(1e-5, "flip", "conv1"), 1e-5)
    result = check(name, size="quick", seed=0, rollout_steps=0, max_examples=10)
    r = result.results[0]
    assert r.verdict is Verdict.VIOLATED and r.as_expected, r.numeric.summary
    assert r.numeric.classification == "structural"
    # the symbolic stage sees the operation written in forward and does not claim a proof
    assert r.symbolic.verdict is Verdict.UNDECIDED, r.symbolic.summary
    assert any("flip" in b for b in r.symbolic.not_covered), r.symbolic.not_covered


def test_symbolic_stage_lists_an_added_plain_conv_branch(registered_mutants):
    name = registered_mutants("test-c4-branch", lambda: c4_mutant(1e-3, "branch", "conv2"), 1e-3)
    from verify.declare.registry import get

    ev = C4_CLAIM.derive_symbolic(get(name), "quick", 60.0)
    assert ev.verdict is not Verdict.PROVED, ev.summary
    listed = " ".join(b.block for b in ev.blocks if b.verdict in (Verdict.UNDECIDED, Verdict.VIOLATED))
    assert "conv2.branch" in listed, ev.summary
    assert ev.verdict is Verdict.UNDECIDED and "conv2.branch" in " ".join(ev.not_covered)


def test_near_zero_output_is_not_a_violation():
    """A correct DeepSets whose output on one data input is ~0: relative errors divide by the data's output scale,
    not by that input's norm (the old per-input norm turned round-off into `violated`)."""
    torch.manual_seed(3)
    model = DeepSets().eval()
    x = SETS.dataset(SET_CLAIM.n_inputs, 0 + 20_000)[0].float()
    with torch.no_grad():
        model.rho[-1].bias -= model(x[:1])[0]  # output on data input #0 is now round-off only
        assert abs(float(model(x[:1]))) < 1e-6
    ev = _numeric(SET_CLAIM, model, SETS, examples=0)
    assert ev.verdict is Verdict.HOLDS, ev.summary
    assert math.isfinite(ev.scale_data) and ev.scale_data > 0.1
    assert "S_data" in ev.scale and max(ev.errors) < 1e-5
