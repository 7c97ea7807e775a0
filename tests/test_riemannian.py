"""Along training: the drift record of OnManifold claims, the per-iterate verdict (every_iterate=True), geoopt's
Riemannian optimisers on the Stiefel manifold and the Euclidean-SGD control, the orthogonal RNN, and bad input (a
missing or incomplete record, an optimiser that is not one, a loss that turns NaN): error, never holds."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from verify import Size, architecture, unregister
from verify.checking.api import check
from verify.declare.manifolds import Orthogonal, Stiefel
from verify.declare.registry import get, register_task
from verify.errors import InputError
from verify.evidence import Failure, Verdict
from verify.properties import OnManifold
from verify.properties.on_manifold import ManifoldMeasurement, drift_numbers, judge_iterates

geoopt_missing = False
try:
    from verify.models.riemannian_layers import geoopt_module

    geoopt_module()
except Exception:  # noqa: BLE001
    geoopt_missing = True
needs_geoopt = pytest.mark.skipif(geoopt_missing, reason="geoopt not installed: pip install --no-deps geoopt==0.5.0")


# --------------------------------------------------------------------------- the per-iterate rule, on records
def _record(defects: list[float], tol: float = 1e-6, steps: list[int] | None = None) -> dict:
    steps = list(range(len(defects))) if steps is None else steps
    return {"step": steps, "defect": defects, "defect_float64": [d * 1.01 for d in defects],
            "tolerance": [tol] * len(defects), "steps_planned": len(defects) - 1, "every": 1, "dtype": "float32"}


def _final(verdict: Verdict = Verdict.HOLDS) -> ManifoldMeasurement:
    return ManifoldMeasurement(stage="numeric", verdict=verdict, summary="final", seconds=0.0, property="p", defect="d",
                               dtype="float32", device="cpu", seed=0, n_inputs=1, max_defect=1e-7, quantiles={},
                               worst_input=[], tolerance=1e-6, tolerance_formula="", search={})


PROP = OnManifold(Orthogonal(4), "w", every_iterate=True)


def test_every_iterate_within_tolerance_holds_and_one_above_is_violated_at_its_step() -> None:
    ok = judge_iterates(PROP, _final(), _record([1e-7, 5e-7, 9e-7]), 0.0)
    assert ok.verdict is Verdict.HOLDS and "every one of the 3 iterates" in ok.summary
    bad = judge_iterates(PROP, _final(), _record([1e-7, 5e-7, 2e-6, 3e-7]), 0.0)
    assert bad.verdict is Verdict.VIOLATED
    assert "left O(4) at step 2" in bad.summary and bad.search["drift"]["left_at"] == 2
    assert bad.classification == "structural"  # its float64 value (2.02e-6) is beyond the tolerance too


def test_a_missing_incomplete_or_non_finite_record_is_an_error_never_holds() -> None:
    missing = judge_iterates(PROP, _final(), None, 0.0)
    assert isinstance(missing, Failure) and missing.verdict is Verdict.ERROR and "no drift record" in missing.summary
    gaps = _record([1e-7, 1e-7, 1e-7], steps=[0, 2, 3])
    gaps["steps_planned"] = 3
    incomplete = judge_iterates(PROP, _final(), gaps, 0.0)
    assert incomplete.verdict is Verdict.ERROR and "missing steps [1]" in incomplete.summary
    nan = judge_iterates(PROP, _final(), _record([1e-7, math.nan, 1e-7]), 0.0)
    assert nan.verdict is Verdict.ERROR and "iterate 1 is not finite" in nan.summary
    failed = judge_iterates(PROP, _final(), {"error": "at step 3: RuntimeError: boom"}, 0.0)
    assert failed.verdict is Verdict.ERROR and "boom" in failed.summary


def test_the_trained_tensor_still_decides_when_the_iterates_are_fine() -> None:
    ev = judge_iterates(PROP, _final(Verdict.VIOLATED), _record([1e-7, 1e-7]), 0.0)
    assert ev.verdict is Verdict.VIOLATED and "the trained tensor's measurement is not" in ev.summary


def test_drift_numbers_slope_and_where_it_left() -> None:
    r = _record([1e-8, 1e-7, 1e-6, 1e-5])  # one decade per step: 1000 decades per 1000 steps
    nums = drift_numbers(r)
    assert nums["slope"] == pytest.approx(1000.0) and nums["left_at"] == 3 and nums["max_step"] == 3


def test_bad_claim_options_are_refused_with_a_fix() -> None:
    with pytest.raises(InputError, match="every_iterate"):
        OnManifold(Orthogonal(4), "w", every_iterate="yes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="record_every"):
        OnManifold(Orthogonal(4), "w", record_every=0)
    with pytest.raises(InputError, match="judged on every iterate"):
        OnManifold(Orthogonal(4), "w", every_iterate=True, record_every=5)


# --------------------------------------------------------------------------- geoopt and the controls, trained
@needs_geoopt
def test_geoopt_riemannian_sgd_keeps_every_one_of_1001_iterates_on_the_stiefel_manifold(tmp_path) -> None:
    r = check("geoopt-stiefel-rsgd", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.HOLDS and not r.errors, res.numeric.summary
    rec = r.trained.records[res.claim.name]
    assert rec["step"] == list(range(1001)) and max(d / t for d, t in zip(rec["defect"], rec["tolerance"])) <= 1
    assert r.trained.test_loss < 0.05  # it learned its task while staying on St(16, 8)
    # the record travels with the checkpoint: a cached or reloaded model is judged on the same iterates
    from verify.train.training import load_checkpoint, save_checkpoint

    save_checkpoint(r.trained, get("geoopt-stiefel-rsgd"), tmp_path / "ck")
    back = load_checkpoint(tmp_path / "ck", "geoopt-stiefel-rsgd")
    assert back.records[res.claim.name]["defect"] == rec["defect"]


@needs_geoopt
def test_geoopt_riemannian_sgd_in_float64_holds_on_every_iterate() -> None:
    r = check("geoopt-stiefel-rsgd-float64", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.HOLDS and res.numeric.dtype == "float64", res.numeric.summary


@needs_geoopt
def test_euclidean_sgd_on_a_stiefel_weight_is_refuted_with_the_step_where_it_left() -> None:
    r = check("geoopt-stiefel-euclidean-sgd", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.VIOLATED and res.as_expected
    assert res.numeric.search["drift"]["left_at"] == 1 and "left St(16, 8) at step 1" in res.numeric.summary
    worst = int(res.numeric.counterexample[0])  # the counterexample is the step of the worst iterate
    rec = r.trained.records[res.claim.name]
    assert res.numeric.counterexample_defect == rec["defect"][worst] > rec["tolerance"][worst]


@needs_geoopt
def test_unstabilised_riemannian_adam_accumulates_round_off_and_is_refuted() -> None:
    r = check("geoopt-stiefel-radam", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.VIOLATED and res.as_expected
    left = res.numeric.search["drift"]["left_at"]
    assert left is not None and left > 1  # on St at first, then the retractions' round-off accumulates


@needs_geoopt
def test_a_model_passed_in_has_no_record_so_a_claim_about_every_iterate_is_an_error() -> None:
    arch = get("geoopt-stiefel-rsgd")
    r = check(arch, model=arch.build("quick"))
    (res,) = r.results
    assert res.verdict is Verdict.ERROR and "no drift record" in res.numeric.summary


# --------------------------------------------------------------------------- the orthogonal RNN and its page
def test_orthogonal_rnn_learns_the_adding_task_with_every_iterate_orthogonal(tmp_path) -> None:
    r = check("orthogonal-rnn-matrix-exp", size="quick")
    every, so = r.results
    assert every.verdict is Verdict.PROVED and so.verdict is Verdict.PROVED, (every.numeric.summary, so.numeric.summary)
    assert r.trained.records[every.claim.name]["step"] == list(range(501))
    assert r.trained.test_loss < 1 / 6 / 3  # well below the mean predictor's 1/6
    assert "drift" in so.numeric.search  # the trained-tensor claim reports the drift as data
    from verify.report.pages import write_architecture

    folder = write_architecture(r, tmp_path)
    page = (folder / "README.md").read_text()
    assert (folder / "drift.png").is_file() and "## Drift along training" in page and "left M at step" in page


# --------------------------------------------------------------------------- bad input during training
@dataclass(frozen=True)
class _NaNAfter:
    """y = x; the loss turns NaN from the 5th evaluation on (a diverging objective)."""

    name: str = "test-nan-loss-4"
    dim: int = 4
    learned_below: float = 1.0

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return x, x

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _NaNAfter.calls = getattr(_NaNAfter, "calls", 0) + 1
        mse = torch.mean((pred - target) ** 2)
        return mse * math.nan if _NaNAfter.calls > 4 else mse


class _Orth4(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(4))
        torch.nn.utils.parametrizations.orthogonal(self.linear, orthogonal_map="cayley")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_a_loss_that_turns_nan_during_training_is_an_error_with_a_message_never_holds() -> None:
    register_task(_NaNAfter())
    _NaNAfter.calls = 0
    architecture("test-nan-loss", task="test-nan-loss-4", sizes={"quick": Size(steps=20, lr=1e-2, n_train=64, batch=16)},
                 claims=[OnManifold(Orthogonal(4), "linear.weight", every_iterate=True)])(_Orth4)
    try:
        r = check("test-nan-loss", size="quick")
    finally:
        unregister("test-nan-loss")
    (res,) = r.results
    assert res.verdict is Verdict.ERROR and r.errors
    assert "training loss" in r.errors[0] and "nan" in r.errors[0].lower() and "lower the learning rate" in r.errors[0]


def test_an_optimiser_without_state_is_refused_before_training_with_what_it_lacks() -> None:
    class Stateless:
        """Something named as an optimiser that has step() but no param_groups or per-parameter state."""

        def __init__(self, params, lr: float) -> None:
            self.params = list(params)

        def step(self) -> None: ...

        def zero_grad(self, set_to_none: bool = True) -> None: ...

    register_task(_NaNAfter())  # (a 4-dimensional identity task: the optimiser is refused before any loss)
    architecture("test-stateless-optimiser", task="test-nan-loss-4",
                 sizes={"quick": Size(steps=5, lr=1e-2, n_train=64, batch=16, optimizer=Stateless)},
                 claims=[OnManifold(Orthogonal(4), "linear.weight", every_iterate=True)])(_Orth4)
    try:
        r = check("test-stateless-optimiser", size="quick")
    finally:
        unregister("test-stateless-optimiser")
    (res,) = r.results
    assert res.verdict is Verdict.ERROR and r.errors
    assert "without param_groups, state" in r.errors[0] and "torch.optim.Optimizer" in r.errors[0]
