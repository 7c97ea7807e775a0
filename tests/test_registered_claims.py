"""Every registered architecture × claim, trained and checked (the plugin makes one item each).

Genuine claims must come out proved or holds; the false claims of negative controls
must come out violated. The registry includes entry-point plugins, so a third-party
package's architectures are tested here too.
"""

from properties.equivariant import EquivarianceMeasurement
from verify.registry import get_task


def test_claim(registered_claim):
    registered_claim.assert_expected()


def test_symplectic_family_is_proved_after_training(registered_claim):
    """Genuine claims with a symbolic form must be *proved*, not only hold; controls must be refuted in both stages."""
    claim, result = registered_claim.claim, registered_claim.result
    if claim.claim.expected:
        if claim.symbolic is not None:
            assert claim.verdict.value == "proved", claim.symbolic_text
        assert claim.numeric is not None and claim.numeric.verdict.value == "holds", claim.numeric.summary
    else:
        if claim.symbolic is not None:
            assert claim.symbolic.verdict.value == "violated", claim.symbolic_text
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
