"""Every registered architecture × claim, trained and checked (the plugin makes one item each).

Genuine claims must come out proved or holds; the false claims of negative controls
must come out violated. The registry includes entry-point plugins, so a third-party
package's architectures are tested here too.
"""
import pytest

from verify.evidence import contradictions
from verify.properties.base import NO_FORM
from verify.properties.equivariant import EquivarianceMeasurement
from verify.declare.registry import get_task


def test_claim(registered_claim):
    registered_claim.assert_expected()


def test_symplectic_family_is_proved_after_training(registered_claim):
    """Genuine claims with a symbolic form must be *proved*, not only hold; controls must be refuted in both stages."""
    claim, result = registered_claim.claim, registered_claim.result
    if claim.claim.expected:
        # a forward with no symbolic form (a library's code that neither a declared twin nor torch.fx covers) is judged
        # numerically only: it must hold
        if claim.symbolic is not None and not claim.symbolic.summary.startswith(NO_FORM):
            assert claim.verdict.value == "proved", claim.symbolic_text
        assert claim.numeric is not None and claim.numeric.verdict.value == "holds", claim.numeric.summary
    else:
        if claim.symbolic is not None:
            # refuted, or (a twin generated from a monolithic forward past its time limit) undecided: never proved
            assert claim.symbolic.verdict.value in ("violated", "undecided"), claim.symbolic_text
        assert claim.numeric.verdict.value == "violated", claim.numeric.summary
        assert claim.numeric.classification == "structural"
        if isinstance(claim.numeric, EquivarianceMeasurement):
            # per-element evidence instead of a shrunk phase-space counterexample: the flagged elements must
            # really be beyond their thresholds
            flagged = [e for e, err, th in zip(claim.numeric.elements, claim.numeric.errors, claim.numeric.thresholds) if err > th]
            assert flagged and set(flagged) <= set(claim.numeric.violating), claim.numeric.summary
        else:
            assert claim.numeric.counterexample is not None, "hypothesis should have shrunk a counterexample"
            # a structural defect below float32 resolution is shrunk on the float64 copy, against its tolerance
            in64 = claim.numeric.search["counterexample_dtype"] == "float64"
            limit = claim.numeric.tolerance_float64 if in64 else claim.numeric.tolerance
            assert claim.numeric.counterexample_defect > limit
    # tasks whose loss is not a flow-map MSE (cross entropy, denoising) state their own "has learned" bound
    learned_below = getattr(get_task(result.architecture.task), "learned_below", 1e-2) if result.architecture else 1e-2
    assert result.trained is not None and result.trained.test_loss < learned_below, "the model should have learned its task"


# A tolerance far above what correct models measure hides real violations. The bound is stated here, next to the
# error models it checks (properties/base.py: (L + λ√n)·eps for the Jacobian identities, measured by
# benchmarks/error_model.py; properties/invertible.py: 1.5·L·eps), and every genuine map claim is held to it.
CALIBRATION_BOUND = 30.0
# Known loose, by (architecture, property), with the reason. The Jacobian identities' law no longer needs an entry
# (g-sympnet-fput's Symplectic and VolumePreserving at 2d = 64 now sit 5–10× above their observed defects). What is
# left is the Invertible round trip's 1.5·L·eps (properties/invertible.py, not the Jacobian law): on the 64-dimensional
# FPUT chain it sits 38× above the observed 0.3·eps over the size's 256-input budget; its law has no dimension term to
# tighten, and halving its constant would leave the small models (0.2–1.1 eps at L = 4–12) without margin.
CALIBRATION_KNOWN_LOOSE: dict[tuple[str, str], str] = {
    ("g-sympnet-fput", "Invertible"): "the round trip's 1.5·L·eps is 38× the 0.3·eps a 64-dimensional chain measures",
    # Glow's defects are divided by max(1, κ₂(J)), and a trained Glow's κ₂ is large (actnorm and 1×1 convolution
    # scales): the normalised defect reads 0.01–0.2 eps where the small models that set the laws' constants read 2–5 eps,
    # so the ratio is 100–1000×. The normalisation, not the law, is loose here: a defect measure for well-scaled deep
    # flows (per-layer conditioning instead of κ₂ of the whole map) is the next step.
    ("glow-digits", "Invertible"): "κ₂-normalised round trip of a deep flow: 0.05·eps observed against 1.5·L·eps",
    ("glow-digits", "LogDet"): "κ₂-normalised log-det of a deep flow: 0.01·eps observed against (L + 8√n)·eps",
    ("glow-actnorm-no-hw", "Invertible"): "as glow-digits' Invertible (the control's true claim)",
    # geotorch's PSD returns Q diag(softplus(λ)) Qᵀ with λ_min ≈ 0.5·‖S‖-scale: no eigenvalue comes near 0, so the SPD
    # defect reads only the asymmetry of the float32 product, a fraction of an ulp of ‖S‖ (worst of 301 iterates
    # 3.5e-8), against the eigenvalue error model c·eps·(√n + m) = 3.8e-6 that guards λ_min: ~100×. There is no
    # round-off on λ_min to calibrate against in a well-conditioned SPD matrix; the model is the eigensolver's.
    ("geotorch-spd", "OnManifold(SPD(16), linear.weight, every iterate)"):
        "SPD defect of a well-conditioned geotorch.positive_definite weight: only sub-ulp asymmetry, ~100× below",
    # 4 heavy-ball steps composed: the law charges L = 4 roundings, but each later step multiplies the form JᵀΩJ (and
    # the round-off already in it) by μ = 0.875; on 512 of the task's states the window's float32 defect is 0.18·eps
    # at most, one step's (same μ) 0.39·eps: composing did not add round-off, so the law's L·eps is what is loose
    ("sgd-momentum-cosine", "ConformalSymplectic"): "4 composed steps: (4 + 2√26)·eps against ≤ 0.33·eps observed (~44×)",
}


def test_tolerances_are_calibrated_against_what_genuine_models_measure(registered_claim):
    claim = registered_claim.claim
    num = claim.numeric
    if not claim.claim.expected or num is None or isinstance(num, EquivarianceMeasurement) or not hasattr(num, "search"):
        pytest.skip("controls are judged by their refutation; equivariance states its own ratio (tests/test_equivariance_*)")
    ratio = num.search["calibration_ratio"]
    if num.max_defect == 0.0:
        pytest.skip("an exactly zero defect (|R(hλ)| ≤ 1 everywhere, clamped) has no round-off to calibrate against")
    known = CALIBRATION_KNOWN_LOOSE.get((registered_claim.result.name, num.property))
    if ratio > CALIBRATION_BOUND and known:
        pytest.xfail(f"known loose: {known} (tolerance {num.tolerance:.3g}, {ratio:.3g}× the observed float32 defect; "
                     f"{num.tolerance_formula})")
    assert 1.0 <= ratio <= CALIBRATION_BOUND, (
        f"tolerance {num.tolerance:.3g} is {ratio:.3g}× the observed float32 defect {num.max_defect:.3g} "
        f"(bound {CALIBRATION_BOUND:g}×): the error model {num.tolerance_formula} is far from reality")


def test_messages_never_contradict_their_own_numbers(registered_claim):
    claim = registered_claim.claim
    for ev in (claim.symbolic, claim.numeric, claim.binding):
        if ev is not None:
            assert not contradictions(ev.summary), f"{contradictions(ev.summary)} in: {ev.summary}"
