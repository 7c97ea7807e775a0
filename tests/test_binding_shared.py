"""One binding search per module and domain: the forward/inverse twin is searched once and shared by the claims that
bind it (Invertible, LogDet); a LogDet claim adds a search of the reported log-dets only, and its evidence states both
parts. The binding tolerance's per-step Jacobians (one replicated call per block of rows) equal the historical ones
(one backward per row), so the tolerance, and every verdict read against it, is unchanged."""
from __future__ import annotations

import math

import pytest
import torch

from verify import check
from verify.checking.binding_stage import bind_layers_stage
from verify.checking.domains import Box
from verify.checking.search import Budget
from verify.declare.subject import Settings
from verify.derive import binding
from verify.evidence import Binding, Verdict
from verify.models.flows import Glow, RealNVP

HOW = "hand-written twin bound by name"
SMALL = Settings(seed=0, budget=Budget(n_inputs=256, starts=4, steps=4, population=2, examples=4, resolution=0.0))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # tests/conftest.py
    yield


class _ReportsTooMuch(RealNVP):
    """A RealNVP whose log_det method adds ½ to what its layers report: the twins (the layers' own programs) are right,
    the number the module returns is not. Only the log-det part of the binding can see it."""

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        return super().log_det(x) + 0.5


def _bound(model: torch.nn.Module):
    torch.manual_seed(0)
    return binding.bind(model.eval(), None, 2)


def test_the_log_det_part_is_searched_beside_the_shared_twin_and_states_both():
    torch.manual_seed(0)
    model64, layers = _bound(RealNVP(dim=2, layers=4, width=8))
    box = Box([-2.0, -2.0], [2.0, 2.0])
    twin = bind_layers_stage(model64, layers, HOW, box, SMALL)
    shared = bind_layers_stage(model64, layers, HOW, box, SMALL, log_det=("log_det", "inverse_log_det"), twin=twin)
    combined = bind_layers_stage(model64, layers, HOW, box, SMALL, log_det=("log_det", "inverse_log_det"))
    assert twin.verdict is shared.verdict is combined.verdict is Verdict.HOLDS, (twin.summary, shared.summary)
    # the shared part is the twin's own search, not a re-run: its numbers are carried as they are
    part = shared.search["forward_inverse"]
    assert part["shared"] and part["n_inputs"] == twin.n_inputs and part["max_mismatch"] == twin.max_mismatch
    assert shared.search["log_det"]["n_inputs"] > 0 and shared.n_inputs == twin.n_inputs + shared.search["log_det"]["n_inputs"]
    assert "searched once" in shared.method and "reported log-dets (log_det, inverse_log_det)" in shared.method
    assert twin.summary in shared.summary
    # every ratio stays within round-off, as the one combined search found
    assert shared.max_mismatch <= shared.tolerance and combined.max_mismatch <= combined.tolerance


def test_a_module_that_reports_another_log_det_than_its_twins_is_refuted_by_the_log_det_part():
    torch.manual_seed(0)
    model64, layers = _bound(_ReportsTooMuch(dim=2, layers=4, width=8))
    box = Box([-2.0, -2.0], [2.0, 2.0])
    twin = bind_layers_stage(model64, layers, HOW, box, SMALL)
    assert twin.verdict is Verdict.HOLDS, twin.summary  # forward and inverse are what the twins say
    shared = bind_layers_stage(model64, layers, HOW, box, SMALL, log_det=("log_det", "inverse_log_det"), twin=twin)
    assert shared.verdict is Verdict.VIOLATED, shared.summary
    assert "log_det(x) =" in shared.where and "the twins report" in shared.where, shared.where
    assert shared.max_mismatch == pytest.approx(0.5, rel=1e-6)  # the value that gives it away


def test_check_binds_the_twin_once_for_invertible_and_log_det():
    result = check("realnvp", rollout_steps=0, n_inputs=512, max_examples=4)
    inv, ld = result.result("Invertible"), result.result("LogDet")
    assert inv.verdict is ld.verdict is Verdict.PROVED, (inv.binding.summary, ld.binding.summary)
    assert isinstance(inv.binding, Binding) and isinstance(ld.binding, Binding)
    shared = ld.binding.search["forward_inverse"]
    assert shared["shared"] and shared["n_inputs"] == inv.binding.n_inputs
    assert shared["max_mismatch"] == inv.binding.max_mismatch and shared["seconds"] == inv.binding.seconds


def test_replicated_jacobian_rows_equal_one_backward_per_row():
    torch.manual_seed(0)
    model64, layers = binding.bind(Glow(steps=1, hidden=8).eval(), None, 64)
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.rand(6, 64, generator=g, dtype=torch.float64) - 0.5,
                   100 * (torch.rand(2, 64, generator=g, dtype=torch.float64) - 0.5)])
    for inverse in (False, True):
        fast = binding.mismatch_tolerance(model64, layers, inverse=inverse)(x)
        steps = binding._steps(layers)
        z = x
        for s in (reversed(steps) if inverse else steps):
            a = binding._jacobian_norms(s, z, inverse)
            assert s.batched_rows is True
            s.batched_rows = False  # the historical path: one backward per row
            b = binding._jacobian_norms(s, z, inverse)
            assert torch.allclose(a[1], b[1], rtol=1e-12, atol=1e-13), (s.label, float((a[1] - b[1]).abs().max()))
            z = s.code(z, inverse)
        # mismatch() (which evaluates the twin too) reads the same tolerances
        report = binding.mismatch(model64, layers, x)
        side = report["inverse" if inverse else "forward"]
        assert torch.allclose(fast, torch.tensor(side["tolerances"], dtype=torch.float64), rtol=1e-12)
        assert bool((fast > 0).all()) and math.isfinite(float(fast.max()))
