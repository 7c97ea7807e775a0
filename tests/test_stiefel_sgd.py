"""Our own Riemannian optimiser on St(n, k) (models/riemannian_optim.py): its maths on single steps, bad input, and the
registered layers judged on every iterate (QR retraction holds in float32 and float64; column normalisation refuted)."""
from __future__ import annotations

import pytest
import torch

from verify.checking.api import check
from verify.errors import InputError
from verify.evidence import Verdict
from verify.models.riemannian_optim import (StiefelSGD, column_normalise, polar_retraction, project_tangent,
                                            qr_retraction)


def _point(n: int = 16, k: int = 8, seed: int = 0) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return Q


def _defect(W: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(W.mT @ W - torch.eye(W.shape[1], dtype=W.dtype), ord=2))


def test_the_projection_is_onto_the_tangent_space_and_idempotent() -> None:
    W = _point()
    Z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    P = project_tangent(W, Z)
    assert float((W.mT @ P + P.mT @ W).abs().max()) < 1e-13  # WᵀP + PᵀW = 0: tangent at W
    assert float((project_tangent(W, P) - P).abs().max()) < 1e-13


@pytest.mark.parametrize("retract", [qr_retraction, polar_retraction])
def test_both_retractions_land_on_stiefel_and_fix_its_points(retract) -> None:
    Y = torch.randn(16, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert _defect(retract(Y)) < 1e-14
    W = _point()
    assert float((retract(W) - W).abs().max()) < 1e-13  # R(W) = W on St: a retraction, not a different point


def test_qr_retraction_has_positive_diagonal_r_and_column_normalisation_is_not_on_stiefel() -> None:
    Y = torch.randn(16, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    Q = qr_retraction(Y)
    R = Q.mT @ Y  # Y = QR with Q orthonormal
    assert float(torch.tril(R, -1).abs().max()) < 1e-12 and bool((torch.diagonal(R) > 0).all())
    C = column_normalise(Y)
    assert float((C.norm(dim=0) - 1).abs().max()) < 1e-14 and _defect(C) > 0.1  # unit columns, not orthogonal


@pytest.mark.parametrize("retraction, on", [("qr", True), ("polar", True), ("column_normalise", False), ("none", False)])
def test_steps_of_the_optimiser_stay_on_stiefel_only_with_a_true_retraction(retraction: str, on: bool) -> None:
    W = torch.nn.Parameter(_point())
    target = _point(seed=9)
    opt = StiefelSGD([W], lr=0.01, momentum=0.9, retraction=retraction)
    worst = 0.0
    for _ in range(30):
        loss = ((W - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        worst = max(worst, _defect(W.detach()))
        assert "momentum_buffer" in opt.state[W]
    assert (worst < 1e-13) if on else (worst > 1e-6), worst


def test_bad_optimiser_input_is_refused_with_a_fix() -> None:
    W = torch.nn.Parameter(_point())
    with pytest.raises(InputError, match="retraction"):
        StiefelSGD([W], retraction="cayley")
    with pytest.raises(InputError, match="positive step"):
        StiefelSGD([W], lr=-1.0)
    with pytest.raises(InputError, match="momentum"):
        StiefelSGD([W], momentum=1.0)
    with pytest.raises(InputError, match="n ≥ k"):
        StiefelSGD([torch.nn.Parameter(torch.zeros(3, 5))])


# --------------------------------------------------------------------------- the registered layers, every iterate
def test_qr_retraction_in_float32_keeps_every_one_of_1001_iterates_on_stiefel_and_learns() -> None:
    r = check("stiefel-sgd-qr", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.HOLDS and not r.errors, res.numeric.summary
    rec = r.trained.records[res.claim.name]
    assert rec["step"] == list(range(1001)) and rec["dtype"] == "float32"
    assert max(d / t for d, t in zip(rec["defect"], rec["tolerance"])) <= 1
    assert r.trained.test_loss < 1e-6


def test_column_normalisation_as_retraction_is_refuted_with_the_step_where_it_left() -> None:
    r = check("stiefel-sgd-column-normalise", size="quick")
    (res,) = r.results
    assert res.verdict is Verdict.VIOLATED and res.as_expected and res.numeric.classification == "structural"
    left = res.numeric.search["drift"]["left_at"]
    assert left is not None and left <= 5 and f"left St(16, 8) at step {left}" in res.numeric.summary
