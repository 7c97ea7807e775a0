"""Normalising flows (verify/models/flows.py, flow_controls.py): per-layer proofs, trained flows over 3 seeds, every
control refuted with the value that gives it away, and bad input (tuple outputs, no log-det, non-finite log-dets)."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from verify import check
from verify.checking.domains import Box
from verify.checking.numeric import measure
from verify.declare.registry import all_architectures
from verify.declare.subject import Subject
from verify.evidence import Verdict
from verify.models.flows import (
    actnorm_block, additive_coupling_block, affine_coupling_block, lu_blocks, permutation_block, scaling_block,
    squeeze_order,
)
from verify.properties import Invertible, LogDet, VolumePreserving

LOG_DET = LogDet(inverse_method="inverse_log_det")

# -- per-layer proofs (no training) ---------------------------------------------------------------------------------


def _verdict(prop, blocks):
    # through the protocol (prop.symbolic), so that LogDet(inverse_method=...) adds the inverses' own blocks
    ev = prop.symbolic(Subject(name="layers", blocks=list(blocks), time_limit=60.0))
    return ev.verdict, ev


def test_additive_coupling_is_invertible_volume_preserving_and_reports_log_det_zero():
    block = additive_coupling_block(4, [0, 1], [2, 3], 8)
    for prop in (Invertible(), VolumePreserving(), LOG_DET):
        verdict, ev = _verdict(prop, [block])
        assert verdict is Verdict.PROVED, ev.summary


def test_affine_coupling_log_det_sum_of_s_is_proved_both_ways_and_volume_is_not_preserved():
    block = affine_coupling_block(4, [0, 1], [2, 3], 8)
    assert _verdict(Invertible(), [block])[0] is Verdict.PROVED
    verdict, ev = _verdict(LOG_DET, [block])
    assert verdict is Verdict.PROVED, ev.summary
    assert {b.block for b in ev.blocks} == {block.name, block.name + " (inverse)"}  # the inverse's own Jacobian too
    assert _verdict(VolumePreserving(), [block])[0] is Verdict.VIOLATED


def test_actnorm_log_det_is_hw_times_the_sum_of_log_scales_and_forgetting_hw_is_refuted():
    assert _verdict(LOG_DET, [actnorm_block(16, 4, 4)])[0] is Verdict.PROVED
    verdict, ev = _verdict(LOG_DET, [actnorm_block(16, 4, 4, forget_pixels=True)])
    assert verdict is Verdict.VIOLATED
    # the residual is Σ logs − H·W·Σ logs = −3·Σ logs (H·W = 4), exactly
    assert "3 \\log" in ev.blocks[0].residual.replace("logs", "\\log") or "3 logs" in ev.blocks[0].residual \
        or "- 3" in ev.blocks[0].residual, ev.blocks[0].residual


def test_lu_convolution_factors_are_proved_and_an_inverse_without_p_is_refuted():
    blocks = list(lu_blocks(12, 3, 4, perm=[2, 0, 1], sign=[1, -1, 1]))
    for prop in (Invertible(), LOG_DET):
        verdict, ev = _verdict(prop, blocks)
        assert verdict is Verdict.PROVED, ev.summary
    bad = list(lu_blocks(12, 3, 4, perm=[2, 0, 1], sign=[1, -1, 1], ignore_permutation=True))
    verdict, ev = _verdict(Invertible(), bad)
    assert verdict is Verdict.VIOLATED and "inverse ignores P" in ev.summary, ev.summary
    assert ev.blocks[-1].instance["residual"] > 0.1


def test_squeeze_and_scaling_are_proved():
    blocks = [permutation_block(squeeze_order(16, 1, 4, 4), "squeeze"), scaling_block(16)]
    for prop in (Invertible(), LOG_DET):
        assert _verdict(prop, blocks)[0] is Verdict.PROVED
    assert _verdict(VolumePreserving(signed=False), blocks[:1])[0] is Verdict.PROVED


def test_a_flipped_sign_in_a_twin_is_refuted_with_a_concrete_instance():
    for kwargs in (dict(log_det_sign=-1), dict(inverse_log_det_sign=-1)):
        verdict, ev = _verdict(LOG_DET, [affine_coupling_block(2, [0], [1], 4, **kwargs)])
        assert verdict is Verdict.VIOLATED, ev.summary
        bad = next(b for b in ev.blocks if b.verdict is Verdict.VIOLATED)
        assert bad.instance["residual"] > 1e-3  # 2·|Σ s| at the seeded instance


def test_a_block_without_a_reported_log_det_is_undecided_not_proved():
    from verify.models.shears import translation_block

    verdict, ev = _verdict(LogDet(), [translation_block(2)])
    assert verdict is Verdict.UNDECIDED and "declares no reported log-determinant" in ev.summary


@pytest.mark.parametrize("n, a, b, overlap, where", [(2, [0], [1], 1, "[1]"), (4, [0, 1], [2, 3], 2, "[2, 3]"),
                                                      (4, [0, 1], [2, 3], 1, "[2]")])
def test_an_overlapping_mask_is_named_by_the_coordinates_that_overlap(n, a, b, overlap, where):
    """The undecided LogDet of a coupling whose conditioner reads moved coordinates points at the mask, not at exp(·)."""
    verdict, ev = _verdict(LogDet(), [affine_coupling_block(n, a, b, 4, overlap=overlap)])
    assert verdict is Verdict.UNDECIDED, ev.summary
    text = ev.summary
    assert f"the masks overlap at {where}" in text and "disjoint masks" in text, text
    assert "write the layer's scales as exp" not in text, text


def test_a_non_exponential_scale_that_reads_no_moved_coordinate_keeps_the_general_fix():
    """A scale free of the coordinate it scales (here a softplus of the other half) is not blamed on the mask."""
    from verify.derive.symbolic import SymbolicBlock, Undecidable, trace_exact
    from verify.properties.log_det import exact_log_abs_det

    def fwd(bld, x):
        return bld.concat(x[0:1], x[1:2] * bld.act("softplus", x[0:1]))

    block = SymbolicBlock("softplus scale (n=2)", 2, fwd, None, "x_1 ← x_1·softplus(x_0)")
    with pytest.raises(Undecidable) as info:
        exact_log_abs_det(trace_exact(block))
    assert "∂y_1/∂x_1" in str(info.value) and "write the layer's scales as exp" in str(info.value)
    assert "overlap" not in str(info.value)


# -- trained flows, 3 seeds ------------------------------------------------------------------------------------------

GENUINE = ["nice", "nice-volume", "realnvp", "glow-digits"]
CONTROLS = ["realnvp-logdet-sign", "realnvp-inverse-logdet-sign", "coupling-overlap", "glow-conv-no-perm",
            "glow-actnorm-no-hw", "flow-batchnorm-train"]


@functools.lru_cache(maxsize=None)
def _checked(name: str, seed: int):
    # seeds 1 and 2 with a lighter search (the registry tests run seed 0 with the full budget); Glow's own stated
    # budget (GLOW_BUDGET, 512 inputs) is already lighter than 1024, so it keeps it
    light = {} if seed == 0 or name.startswith("glow-") else dict(n_inputs=1024, max_examples=10)
    return check(name, seed=seed, rollout_steps=0, **light)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", GENUINE)
def test_genuine_flows_are_proved_after_training(name, seed):
    result = _checked(name, seed)
    assert not result.errors, result.errors
    for r in result.results:
        assert r.verdict is Verdict.PROVED, (r.claim, r.symbolic_text, r.numeric.summary,
                                             r.binding.summary if r.binding else None)
    log_det = result.result("LogDet")
    assert "reported log-det" in log_det.binding.method  # the twins' reports were bound to the module's methods


@pytest.mark.parametrize("name", CONTROLS)
def test_every_flow_control_is_refuted(name):
    result = _checked(name, 0)
    for r in result.results:
        if r.claim.expected:
            assert r.verdict.passed, (r.claim, r.symbolic_text, r.numeric.summary)
        else:
            assert r.verdict is Verdict.VIOLATED, (r.claim, r.symbolic_text, r.numeric.summary)
            assert r.numeric.verdict is Verdict.VIOLATED, r.numeric.summary


def test_the_sign_flip_is_given_away_by_the_reported_and_jacobian_values():
    r = _checked("realnvp-logdet-sign", 0).result("LogDet")
    assert r.symbolic.verdict is Verdict.VIOLATED  # the twin (the code as written) reports −Σ s
    assert "reported log_det(x) =" in r.numeric.summary and "log|det J| =" in r.numeric.summary, r.numeric.summary
    r = _checked("realnvp-inverse-logdet-sign", 0).result("LogDet")
    assert "reported inverse_log_det(f(x)) =" in r.numeric.summary, r.numeric.summary
    assert _checked("realnvp-inverse-logdet-sign", 0).result("Invertible").verdict.passed  # the round trip holds


def test_the_batchnorm_control_says_the_output_depends_on_the_batch():
    r = _checked("flow-batchnorm-train", 0).result("LogDet")
    assert "depends on the other inputs of its batch" in r.numeric.summary, r.numeric.summary


def test_the_actnorm_control_residual_is_the_missing_hw_factor():
    r = _checked("glow-actnorm-no-hw", 0).result("LogDet")
    assert r.symbolic.verdict is Verdict.VIOLATED and "actnorm" in r.symbolic.summary, r.symbolic.summary


# -- bad input -------------------------------------------------------------------------------------------------------


class _Affine(nn.Module):
    def __init__(self, log_det_value: float | None = None, pair: bool = False) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.value, self.pair = log_det_value, pair

    def forward(self, x):
        y = x * torch.exp(self.s)
        return (y, self.s.sum().expand(x.shape[0])) if self.pair else y

    def inverse(self, y):
        return y * torch.exp(-self.s)

    def log_det(self, x):
        out = self.s.sum().expand(x.shape[0])
        return out if self.value is None else out + self.value


def _measure(prop, model):
    return measure(prop, model.eval(), dim=2, depth=1, domain=Box([-1.0, -1.0], [1.0, 1.0]), seed=0)


def test_a_flow_whose_forward_returns_y_and_log_det_gets_the_existing_message():
    ev = _measure(LogDet(), _Affine(pair=True))
    assert ev.verdict is Verdict.ERROR and "returns several values" in ev.summary, ev.summary


def test_log_det_on_a_model_without_the_method_is_an_error_naming_it():
    ev = _measure(LogDet(method="log_abs_det_jacobian"), _Affine())
    assert ev.verdict is Verdict.ERROR and "log_abs_det_jacobian" in ev.summary, ev.summary


def test_non_finite_log_dets_are_an_error_never_holds():
    for value in (float("nan"), float("inf")):
        ev = _measure(LogDet(), _Affine(log_det_value=value))
        assert ev.verdict is Verdict.ERROR, ev.summary
        assert "finite" in ev.summary, ev.summary


def test_a_correct_bare_flow_holds():
    assert _measure(LogDet(), _Affine()).verdict is Verdict.HOLDS


def test_an_honest_twin_of_code_whose_log_det_is_flipped_does_not_bind():
    """The twin says Σ s (proved), the code returns −Σ s: the binding compares the reports and refuses the proof."""
    from verify.derive.binding import Bound
    from verify.models.flows import AffineCoupling, Flow

    class HonestTwin(AffineCoupling):
        def symbolic_layers(self):
            sp = self.split
            return [Bound(affine_coupling_block(sp.n, sp.idx_a, sp.idx_b, self.W.shape[0]), self)]

    torch.manual_seed(0)
    model = Flow([HonestTwin(2, [0], [1], 4, log_det_sign=-1), HonestTwin(2, [1], [0], 4)]).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.S.mul_(30.0)  # visible scales
    result = check(model, claims=[LogDet()], dim=2, rollout_steps=0, n_inputs=256, max_examples=5)
    r = result.result("LogDet")
    assert r.symbolic.verdict is Verdict.PROVED  # about the twin, which is right
    assert r.binding.verdict is Verdict.VIOLATED, r.binding.summary
    assert "log_det(x) =" in r.binding.summary and "twins report" in r.binding.summary, r.binding.summary
    assert r.verdict is Verdict.VIOLATED
