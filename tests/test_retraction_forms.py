"""The QR and polar retractions as symbolic forms (verify/derive/parametrisations.py): the lemma's certificate is an exact
identity of symbolic matrices of any size, its premises are exact obligations; a wrong retraction (column
normalisation) is refuted with an exact instance; the forms bind to the code of our optimiser's retractions, and a form
declared for the wrong code binds nothing and proves nothing."""
from __future__ import annotations

import math
import time

import pytest
import sympy as sp
import torch
from torch import nn
from torch.nn.utils import parametrize

from verify.checking.api import check
from verify.declare.manifolds import SO, Orthogonal, Stiefel
from verify.derive import parametrisations as pz
from verify.evidence import Verdict
from verify.models.riemannian_optim import ColumnNormalise, PolarRetraction, QRRetraction, polar_retraction
from verify.properties import OnManifold


@pytest.mark.parametrize("kind", ["qr", "polar"])
@pytest.mark.parametrize("n", [2, 3, 8])
def test_every_obligation_of_the_qr_and_polar_lemmas_reduces_to_zero(kind: str, n: int) -> None:
    obs, _, n_check = pz.check_form(pz.Parametrisation(kind), n)
    assert n_check == n and len(obs) == 3
    assert all(ob.holds for ob in obs), [(ob.name, pz.residual_latex(ob)) for ob in obs if not ob.holds]
    assert "any n, k" in obs[0].name  # the certificate is size-free (MatrixSymbol algebra)


def test_the_certificate_is_not_vacuous_a_missing_premise_term_leaves_a_residual() -> None:
    n, k = sp.Symbol("n", integer=True, positive=True), sp.Symbol("k", integer=True, positive=True)
    X, R, T = sp.MatrixSymbol("X", n, k), sp.MatrixSymbol("R", k, k), sp.MatrixSymbol("T", k, k)
    I = sp.Identity(k)
    full = T.T * (X.T * X - R.T * R) * T + (R * T - I).T * (R * T) + (R * T - I)
    without_rt = T.T * (X.T * X - R.T * R) * T  # drop the RT = I terms: then QᵀQ − I is not in the premises' span
    assert isinstance(((X * T).T * (X * T) - I - full).expand(), sp.ZeroMatrix)
    assert not isinstance(((X * T).T * (X * T) - I - without_rt).expand(), sp.ZeroMatrix)


def test_column_normalisation_is_refuted_with_an_exact_instance_that_replays() -> None:
    obs, _, _ = pz.check_form(pz.Parametrisation("column_normalise"), 8)
    (ob,) = obs
    assert not ob.holds and ob.instance is not None
    X = sp.Matrix([[sp.Rational(v) for v in row] for row in ob.instance["parameters"]["X"]])
    Q = X * sp.diag(*[1 / sp.sqrt((X[:, j].T * X[:, j])[0, 0]) for j in range(X.shape[1])])
    worst = max(abs(float(e)) for e in (Q.T * Q - sp.eye(X.shape[0])))
    assert worst > 0 and math.isclose(worst, ob.instance["residual"], rel_tol=1e-12)
    # the diagonal is exactly 0 (unit columns): only the off-diagonal entries are left
    assert all(sp.cancel(ob.residual[i, i]) == 0 for i in range(ob.residual.rows))


def test_the_proofs_at_n_8_are_fast() -> None:
    # the figure is ≤ 0.1 s at n = 8 (measured 0.06–0.09 s under load); the bound here is loose (a shared CPU)
    for kind in ("qr", "polar"):
        pz.check_form(pz.Parametrisation(kind), 8)  # sympy's first-call caches
        start = time.perf_counter()
        obs, _, _ = pz.check_form(pz.Parametrisation(kind), 8)
        assert all(ob.holds for ob in obs) and time.perf_counter() - start < 1.0, kind


def _retracted(module: nn.Module, n: int = 12, k: int = 5, seed: int = 0) -> nn.Linear:
    lin = nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)))
    parametrize.register_parametrization(lin, "weight", module)
    return lin


@pytest.mark.parametrize("module", [QRRetraction, PolarRetraction])
def test_the_forms_bind_to_our_retraction_code_and_are_proved(module: type[nn.Module]) -> None:
    res = check(_retracted(module()), claims=[OnManifold(Stiefel(12, 5))], rollout_steps=0)
    r = res.results[0]
    assert r.verdict is Verdict.PROVED, (r.symbolic.summary, r.numeric.summary)
    assert "reproduces the module's float64 output" in r.symbolic.bound_by
    assert "full column rank" in r.symbolic.summary


class _PolarDeclaredAsQR(nn.Module):
    """Computes the polar factor but declares the QR form: the twin disagrees, nothing is proved."""

    manifold_form = pz.Parametrisation("qr")

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return polar_retraction(X)


def test_a_form_declared_for_other_code_is_not_bound_and_proves_nothing() -> None:
    res = check(_retracted(_PolarDeclaredAsQR()), claims=[OnManifold(Stiefel(12, 5))], rollout_steps=0)
    r = res.results[0]
    assert r.symbolic.verdict is Verdict.UNDECIDED and "does not describe the module" in r.symbolic.summary
    assert r.verdict is Verdict.HOLDS  # numerically the polar factor is on St all the same


def test_a_rank_deficient_raw_parameter_is_outside_the_lemma_and_judged_numerically() -> None:
    lin = _retracted(QRRetraction())
    with torch.no_grad():
        X = lin.parametrizations.weight.original
        X[:, 4] = X[:, 0] * 2  # column 4 is a multiple of column 0: XᵀX is singular
    res = check(lin, claims=[OnManifold(Stiefel(12, 5))], rollout_steps=0)
    r = res.results[0]
    assert r.symbolic.verdict is Verdict.UNDECIDED and "rank-deficient" in r.symbolic.summary, r.symbolic.summary
    assert r.verdict is Verdict.HOLDS  # Householder QR still returns orthonormal columns: no false refutation


def test_an_so_claim_of_a_qr_retraction_has_no_form_and_is_judged_numerically() -> None:
    # det of the QR/polar factor is sign(det X): no proof of SO(n) for every X; the numeric stage decides
    res = check(_retracted(QRRetraction(), n=6, k=6, seed=3), claims=[OnManifold(SO(6))], rollout_steps=0)
    r = res.results[0]
    assert r.symbolic.verdict is Verdict.UNDECIDED
    det = float(torch.linalg.det(_retracted(QRRetraction(), n=6, k=6, seed=3).weight.detach().double()))
    assert (r.verdict is Verdict.VIOLATED) == (det < 0)


def test_registered_layers_qr_proved_and_column_normalised_refuted_symbolically() -> None:
    (ok,) = check("stiefel-qr-parametrised", size="quick").results
    assert ok.verdict is Verdict.PROVED, (ok.symbolic.summary, ok.numeric.summary)
    (bad,) = check("stiefel-column-normalised", size="quick").results
    assert bad.verdict is Verdict.VIOLATED and bad.as_expected and bad.symbolic.verdict is Verdict.VIOLATED
    assert "exact instance" in bad.symbolic.summary
    _ = Orthogonal  # (O(n) = St(n, n): the same forms serve square layers)
