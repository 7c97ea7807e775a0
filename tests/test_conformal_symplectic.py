"""ConformalSymplectic (JᵀΩJ = e^{−γh}Ω) and optimisers as maps of (θ, v) (verify/models/optimizer_steps.py)."""
from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from verify import check
from verify.derive.proofs import derive, trace_exact
from verify.derive.symbolic import Builder, SymbolicBlock
from verify.errors import InputError
from verify.models.optimizer_steps import MomentumStep, OptimizerStates, momentum_blocks
from verify.properties import ConformalSymplectic


def test_subtraction_of_an_input_dependent_term_propagates_its_jacobian_with_the_minus_sign():
    """y = x − s(x) elementwise: J = I − diag(s'(x)). (A column present in both rows was once added, not subtracted:
    every hand-written block of the form x − f(x) had the Jacobian of x + f(x).)"""
    block = SymbolicBlock("x − s(x)", 2, lambda b, x: x - b.act("s", x))
    t = trace_exact(block)
    J = [[t.to_expr(e) if hasattr(e, "t") else sp.sympify(e) for e in row] for row in t.jacobian]
    primes = [sym for sym in sp.Matrix(J).free_symbols]
    assert len(primes) == 2 and J[0][1] == 0 and J[1][0] == 0
    assert sp.expand(J[0][0] + J[1][1]) == 2 - sum(primes)  # 1 − s'(x₀) and 1 − s'(x₁)


@pytest.mark.parametrize("hidden", [1, 2])
def test_heavy_ball_is_proved_for_any_loss_and_nesterov_refuted(hidden: int):
    claim = ConformalSymplectic.with_factor(0.9)
    proved = derive(claim, momentum_blocks({"hidden": hidden}), 60)
    assert proved.verdict.value == "proved", proved.summary
    refuted = derive(claim, momentum_blocks({"hidden": hidden, "nesterov": True}), 60)
    assert refuted.verdict.value == "violated", refuted.summary


def test_a_state_dependent_factor_is_refuted_symbolically():
    """v ← σ(q₀)·v scales ω by a factor that depends on the state: conformal for no constant rate."""
    def program(b: Builder, x):
        q, p = x[:1], x[1:]
        return Builder.concat(q, p * b.act("s", q))

    ev = derive(ConformalSymplectic.with_factor(0.5), [SymbolicBlock("p ← σ(q)p", 2, program)], 30)
    assert ev.verdict.value == "violated", ev.summary


def _planted(model: MomentumStep, k: int, delta: float) -> torch.nn.Module:
    """The heavy-ball step with v'_k += δ·sin(θ_k): a non-conformal term on one coordinate."""
    class Planted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            bump = torch.zeros_like(y)
            bump[..., model.P + k] = delta * torch.sin(x[..., k])
            return y + bump

    return Planted()


@pytest.mark.parametrize("delta", [1e-2, 1e-4, 1e-6])
def test_a_planted_violation_on_any_coordinate_is_refuted(delta: float):
    torch.manual_seed(0)
    for k in (0, 7, 12):
        model = MomentumStep(hidden=4, lr=0.05, momentum=0.9).double()
        res = check(_planted(model, k, delta), claims=[ConformalSymplectic.with_factor(0.9)], dim=model.dim,
                    n_inputs=256, max_examples=5, symbolic=False)
        assert res.results[0].verdict.value == "violated", (k, delta, res.results[0].numeric.summary)


@pytest.mark.parametrize("seed", range(4))
def test_correct_momentum_maps_are_never_refuted(seed: int):
    gen = torch.Generator().manual_seed(seed)
    lr = float(0.01 + 0.2 * torch.rand((), generator=gen))
    mu = float(0.5 + 0.49 * torch.rand((), generator=gen))
    for dtype in (torch.float32, torch.float64):
        model = MomentumStep(hidden=3, lr=lr, momentum=mu).to(dtype)
        # the claim is the factor the module stores (a float32 μ is not the decimal μ)
        res = check(model, claims=[ConformalSymplectic.with_factor(float(model.mu))], dim=model.dim, n_inputs=256,
                    max_examples=5, seed=seed, symbolic=False)
        assert res.results[0].verdict.value == "holds", (dtype, lr, mu, res.results[0].numeric.summary)


def test_the_map_is_torch_optim_sgd():
    """The module's step equals torch.optim.SGD's own step() on the states an SGD run visits (heavy ball, Nesterov)."""
    for nesterov in (False, True):
        task = OptimizerStates(name="t", hidden=4, lr=0.05, momentum=0.9, nesterov=nesterov)
        x, y = task.dataset(64, 3)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # built under float64: lr, μ and the data points exactly as SGD's
        try:
            model = MomentumStep(hidden=4, lr=0.05, momentum=0.9, nesterov=nesterov)
        finally:
            torch.set_default_dtype(previous)
        assert torch.allclose(model(x), y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(rate=math.nan), dict(rate=0.1, step=0.0), dict(rate="fast")])
def test_bad_rates_are_refused_with_a_fix(kwargs):
    with pytest.raises(InputError, match="Fix"):
        ConformalSymplectic(**kwargs)
    with pytest.raises(InputError, match="with_factor"):
        ConformalSymplectic.with_factor(0.0)


def test_claim_text_states_rate_and_factor():
    assert str(ConformalSymplectic.with_factor(0.9)) == "ConformalSymplectic(rate=0.105361, step=1, factor=0.9)"
