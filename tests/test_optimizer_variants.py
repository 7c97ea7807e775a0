"""Schedules, weight decay and Adam as maps of (θ, v) (models/optimizer_variants.py), the bad inputs of ConformalSymplectic,
and violations that are hard to see: in a small region far from the data, and below float32 resolution."""
from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from torch import nn

from verify import check
from verify.derive.proofs import derive, trace_exact
from verify.models.optimizer_steps import LR, MU, MomentumStep, momentum_blocks, sine_gradient
from verify.models.optimizer_variants import (ADAM_LR, BETAS, AdamStep, DecoupledDecayStep, ScheduledMomentumSteps,
                                              adam_blocks, coupled_decay_blocks, cosine_lrs, decoupled_decay_blocks,
                                              frozen_adam_blocks)
from verify.properties import ConformalSymplectic
from verify.properties.conformal_symplectic import _raw_form


def _factor_of(block) -> sp.Expr:
    """c = (JᵀΩJ)_(0,d) of a block's exact trace, as a sympy expression of its parameters."""
    t = trace_exact(block)
    d = len(t.jacobian) // 2
    c = t.reduce(_raw_form(t.jacobian, t.backend.zero)[(0, d)])
    return sp.expand(sp.sympify(t.to_expr(c) if hasattr(c, "t") or hasattr(c, "monoms") else c))


def _float64(factory, *args, **kwargs) -> nn.Module:
    """A module built under float64, so its lr, μ and data points are the decimal numbers torch's optimisers use."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return factory(*args, **kwargs)
    finally:
        torch.set_default_dtype(previous)


# --------------------------------------------------------------------------- the symbolic facts
def test_each_step_keeps_the_factor_mu_whatever_its_learning_rate_and_coupled_decay_too():
    """Heavy ball's c is μ alone (no lr in it: a schedule cannot change the per-step factor); coupled weight decay
    (∇f + λθ) keeps it; decoupled decay (SGDW) has c = μ(1 − lr·λ)."""
    mu, lr, wd = sp.symbols("mu lr wd")
    claim = ConformalSymplectic.with_factor(0.9)
    for blocks, expected in ((momentum_blocks({"hidden": 1}), mu), (coupled_decay_blocks({"hidden": 1}), mu),
                             (decoupled_decay_blocks({"hidden": 1}), mu - lr * wd * mu)):
        ev = derive(claim, blocks, 60)
        assert ev.verdict.value == "proved", ev.summary
        assert sp.expand(_factor_of(blocks[0]) - expected) == 0, (blocks[0].name, _factor_of(blocks[0]))


def test_adam_with_a_frozen_preconditioner_is_proved_with_factor_beta1_and_real_adam_is_refuted():
    claim = ConformalSymplectic.with_factor(0.9)
    frozen = frozen_adam_blocks({"hidden": 1})
    ev = derive(claim, frozen, 60)
    assert ev.verdict.value == "proved", ev.summary
    assert sp.expand(_factor_of(frozen[0]) - sp.Symbol("b1")) == 0, _factor_of(frozen[0])
    # the real step: the preconditioner p(v') with v' = β₂v + (1 − β₂)g(θ)² depends on θ
    real = derive(claim, adam_blocks({"hidden": 1}), 60)
    assert real.verdict.value == "violated", real.summary


# --------------------------------------------------------------------------- the maps are torch's optimisers
@pytest.mark.parametrize("name, factory", [("sgd-momentum-cosine-states", ScheduledMomentumSteps),
                                           ("sgdw-states", DecoupledDecayStep), ("adam-states", AdamStep)])
def test_the_maps_are_torchs_own_steps(name, factory):
    from verify.declare.registry import get_task

    x, y = get_task(name).dataset(64, 5)
    assert torch.allclose(_float64(factory)(x), y, rtol=0, atol=1e-12)


def test_the_schedule_is_torchs_cosine_and_its_learning_rates_differ():
    lrs = cosine_lrs()
    assert lrs[0] == LR and len(set(lrs)) == len(lrs) and all(a > b for a, b in zip(lrs, lrs[1:]))


# --------------------------------------------------------------------------- numeric verdicts through check()
def _numeric(model: nn.Module, claim: ConformalSymplectic, seed: int = 0, n_inputs: int = 256):
    """The numeric stage through check(), with a small budget: no data-scale resolution stage (in 26 dimensions its
    cap reaches no ball inside the box), ascent and hypothesis as usual."""
    from verify.checking.search import Budget

    budget = Budget(n_inputs=n_inputs, examples=5, resolution_cap=0)
    return check(model, claims=[claim], dim=model.dim, budget=budget, seed=seed, symbolic=False).results[0]


def test_the_scheduled_window_has_factor_mu_to_the_k_and_no_constant_rate():
    torch.manual_seed(0)
    model = ScheduledMomentumSteps().double()
    K, lrs, mu = len(model.lrs), model.lrs, float(model.layers[0].mu)
    assert _numeric(model, ConformalSymplectic.with_factor(mu ** K)).verdict.value == "holds"
    fitted = -math.log(mu) / lrs[0]
    wrong = _numeric(model, ConformalSymplectic(rate=fitted, step=sum(lrs)))
    assert wrong.verdict.value == "violated", wrong.numeric.summary
    assert f"c = {mu ** K:.6g}" in wrong.numeric.summary, wrong.numeric.summary  # the diagnosis shows μ^K


def test_sgdw_is_conformal_with_the_factor_mu_times_one_minus_lr_lambda_not_mu():
    torch.manual_seed(0)
    model = DecoupledDecayStep().double()
    true = float(model.mu * (1 - model.lr * model.wd))
    assert _numeric(model, ConformalSymplectic.with_factor(true)).verdict.value == "holds"
    wrong = _numeric(model, ConformalSymplectic.with_factor(MU))
    assert wrong.verdict.value == "violated" and "another factor" in wrong.numeric.summary, wrong.numeric.summary


def test_adam_is_refuted_for_its_beta1_and_is_conformal_for_no_factor():
    from verify.declare.registry import get_task
    from verify.properties.base import Probe

    torch.manual_seed(0)
    model = AdamStep().double()
    for factor in (BETAS[0], 0.5, 1.0):
        r = _numeric(model, ConformalSymplectic.with_factor(factor))
        assert r.verdict.value == "violated" and r.numeric.classification == "structural", (factor, r.numeric.summary)
    # at the states Adam visits, JᵀΩJ departs from every multiple of Ω (its own c(x)Ω included), far beyond round-off
    x, _ = get_task("adam-states").dataset(64, 1)
    parts = ConformalSymplectic.with_factor(BETAS[0]).defect_parts(Probe(model, x))
    off = parts["JᵀΩJ − c(x)Ω, c(x) its own factor"]
    assert float(off.median()) > 1e-6 and float(off.max()) > 1e-3, off


# --------------------------------------------------------------------------- bad input
class PlainGradientDescent(nn.Module):
    """θ ← θ − lr·∇f(θ): an optimiser with no velocity state, a map of θ alone (P = 13, odd)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MomentumStep()
        self.dim = self.inner.P

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta - self.inner.lr * sine_gradient(theta, self.inner.xs, self.inner.ys, self.inner.hidden)


def test_an_optimiser_with_no_velocity_state_is_an_error_naming_the_dimension_and_the_fix():
    r = _numeric(PlainGradientDescent(), ConformalSymplectic.with_factor(MU), n_inputs=32)
    assert r.verdict.value == "error", r
    assert "dim=13" in r.numeric.summary and "velocity" in r.numeric.summary, r.numeric.summary
    assert "momentum_buffer" in r.numeric.fix, r.numeric.fix


class NaNLossStep(MomentumStep):
    """Heavy ball on f(θ) + (2/3)(θ₀ − a)^{3/2}: the loss is NaN where θ₀ < a (its gradient √(θ₀ − a) too)."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, v = x[..., : self.P], x[..., self.P:]
        g = sine_gradient(theta, self.xs, self.ys, self.hidden)
        extra = torch.zeros_like(g)
        extra[..., 0] = (theta[..., 0] - self.a).sqrt()
        v2 = self.mu * v + g + extra
        return torch.cat([theta - self.lr * v2, v2], dim=-1)


@pytest.mark.parametrize("a", [0.0, 5.0], ids=["nan-in-the-data-box", "nan-only-beyond-it"])
def test_a_loss_that_returns_nan_during_the_check_is_an_error_never_holds(a: float):
    torch.manual_seed(0)
    r = _numeric(NaNLossStep(a).double(), ConformalSymplectic.with_factor(MU))
    assert r.verdict.value == "error", (r.verdict, r.numeric.summary)
    assert "finite" in r.numeric.summary, r.numeric.summary


# --------------------------------------------------------------------------- violations that are hard to see
class HeavyBall(nn.Module):
    """Heavy ball v' = μv + ∇f(θ), θ' = θ − lr·v' on f(θ) = Σ log cosh θ_i + ½ Σ θ_i θ_{i+1}: P parameters, state 2P.
    Conformal symplectic with the factor μ for every x (the search's own small-dimensional subject)."""

    def __init__(self, P: int, lr: float = 0.25, mu: float = 0.875) -> None:
        super().__init__()
        self.P, self.dim = P, 2 * P
        self.register_buffer("lr", torch.tensor(lr))
        self.register_buffer("mu", torch.tensor(mu))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, v = x[..., : self.P], x[..., self.P:]
        coupling = torch.zeros_like(theta)
        coupling[..., 1:] += 0.5 * theta[..., :-1]
        coupling[..., :-1] += 0.5 * theta[..., 1:]
        v2 = self.mu * v + torch.tanh(theta) + coupling
        return torch.cat([theta - self.lr * v2, v2], dim=-1)


def _far_bump(dim: int, k: float, width: float) -> "Placement":
    """A Gaussian bump of the given width centred at a seeded point with |c|∞ = k (the data box is [−1, 1]ⁿ)."""
    from verify.models.mutants import Placement

    gen = torch.Generator().manual_seed(5)
    c = torch.rand(dim, generator=gen, dtype=torch.float64) * 2 - 1
    c = k * c / c.abs().max()
    return Placement(f"bump-{k:g}", f"a Gaussian bump of width {width:g} at |c|∞ = {k:g}",
                     lambda x: torch.exp(-((x - c.to(x)) ** 2).sum(-1, keepdim=True) / (2 * width * width)))


# (dim, k, width): measured frontier of the search (check() at its defaults, seed 0): in 2-D a bump whose width is 5 % of
# its distance k (0.1 = 0.05·the box's width at 3×) is found at 3×, 30× and 300× the box; in 4-D 10 % of the distance is.
# Not found (holds, a miss, recorded in the helper's report): width 0.05 at 3× in 2-D and 4-D, 0.15 at 3× in 4-D, and a
# width fixed at ≤ 0.2 at 30× or 300× (the sampling there is too sparse and the bump too narrow to give a slope).
FAR_BUMPS = [(2, 3.0, 0.1), (2, 30.0, 1.5), (2, 300.0, 15.0), (4, 3.0, 0.3), (4, 30.0, 3.0), (4, 300.0, 30.0)]


@pytest.mark.parametrize("delta", [1e-1, 1e-3])
@pytest.mark.parametrize("dim, k, width", FAR_BUMPS, ids=[f"{d}d-at-{k:g}x-width-{w:g}" for d, k, w in FAR_BUMPS])
def test_a_violation_in_a_small_region_far_from_the_data_is_caught(dim: int, k: float, width: float, delta: float):
    from verify.models.mutants import Planted

    model = Planted(HeavyBall(dim // 2), delta, _far_bump(dim, k, width), "Symplectic").eval()
    r = check(model, claims=[ConformalSymplectic.with_factor(0.875)], dim=dim, seed=0, rollout_steps=0,
              symbolic=False).results[0]
    assert r.verdict.value == "violated" and r.numeric.classification == "structural", r.numeric.summary
    assert r.numeric.counterexample is not None and max(abs(v) for v in r.numeric.counterexample) > 1.5


def test_the_genuine_small_heavy_ball_holds_everywhere_the_search_goes():
    for dim in (2, 4):
        r = check(HeavyBall(dim // 2).eval(), claims=[ConformalSymplectic.with_factor(0.875)], dim=dim, seed=0,
                  rollout_steps=0, symbolic=False).results[0]
        assert r.verdict.value == "holds", r.numeric.summary


class SinKick(nn.Module):
    """base(x) with v'_0 += δ·sin(θ_0): a non-conformal term of size δ on one coordinate."""

    def __init__(self, base: nn.Module, delta: float) -> None:
        super().__init__()
        self.base, self.delta, self.dim = base, delta, base.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        kick = torch.zeros_like(y)
        kick[..., self.base.P] = self.delta * torch.sin(x[..., 0])
        return y + kick


@pytest.mark.parametrize("delta", [1e-7, 1e-9])
def test_a_violation_below_float32_resolution_is_refuted_by_the_float64_oracle(delta: float):
    """In float32 δ·sin(θ₀) on a velocity of size ~1 rounds away: the float32 defect is round-off, within tolerance.
    The float64 copy keeps it: JᵀΩJ departs from every multiple of Ω by ~δ, which moving the stored numbers (μ, lr) by
    their float32 precision cannot explain (that moves the factor c(x), held to its own allowance), so it is structural.
    (In 2-D every JᵀΩJ is det J·Ω: a term there only moves the factor, and a factor off by less than the storage
    allowance of μ, ~6·eps₃₂·μ, is excused; see the helper's report.)"""
    model = SinKick(HeavyBall(2), delta).eval()
    r = check(model, claims=[ConformalSymplectic.with_factor(0.875)], dim=4, seed=0, rollout_steps=0,
              symbolic=False).results[0]
    m = r.numeric
    assert r.verdict.value == "violated" and m.classification == "structural", m.summary
    assert m.dtype == "float32" and m.max_defect <= m.tolerance, "float32 alone cannot see it"
    assert m.max_defect_float64 > 100 * m.tolerance_float64
    assert m.search["counterexample_dtype"] == "float64" and m.counterexample_defect > m.tolerance_float64
    assert "JᵀΩJ − c(x)Ω" in m.summary, m.summary
