"""Lipschitz(L): certified upper bounds (operator norms, per layer), searched lower bounds, i-ResNets and their controls."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from verify import check
from verify.derive.operator_norms import (Chain, Residual, Scaled, UnknownLayer, certified_bound, conv2d_norm,
                                          linear_norm, local_norm)
from verify.errors import InputError
from verify.properties import Invertible, Lipschitz


def _conv_matrix(m: nn.Conv2d, hw: tuple[int, int]) -> torch.Tensor:
    """The explicit matrix of the (bias-free) convolution on hw inputs, float64: column j is conv(e_j)."""
    m64 = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                    dilation=m.dilation, groups=m.groups, bias=False, padding_mode=m.padding_mode).double()
    with torch.no_grad():
        m64.weight.copy_(m.weight.double())
    n = m.in_channels * hw[0] * hw[1]
    with torch.no_grad():
        cols = m64(torch.eye(n, dtype=torch.float64).reshape(n, m.in_channels, *hw))
    return cols.reshape(n, -1).T


CONVS = [
    dict(padding=1, padding_mode="circular", k=3), dict(padding=2, padding_mode="circular", k=5),
    dict(padding=1, k=3), dict(padding=0, k=3), dict(padding=2, k=3), dict(padding=1, k=2), dict(padding="same", k=3),
    dict(padding=1, k=3, stride=2), dict(padding=1, k=3, dilation=2), dict(padding=1, k=3, groups=2),
]


@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_operator_norm_against_the_explicit_convolution_matrix(cfg: dict, seed: int) -> None:
    """Circular size-keeping padding: the Fourier-domain norm IS σ_max of the convolution matrix; zero padding, stride,
    dilation, groups: an upper bound of it (the circular embedding), never below."""
    torch.manual_seed(seed)
    cfg = dict(cfg)
    k = cfg.pop("k")
    c_in, c_out = [(2, 4), (4, 6), (1, 3)][seed]
    m = nn.Conv2d(c_in if cfg.get("groups", 1) == 1 else 4, c_out if cfg.get("groups", 1) == 1 else 6, k, **cfg)
    hw = (5, 6) if seed != 1 else (7, 4)
    bound, how = conv2d_norm(m, hw)
    true = float(torch.linalg.matrix_norm(_conv_matrix(m, hw), 2))
    assert bound >= true, (cfg, bound, true, how)
    if cfg.get("padding_mode") == "circular":
        assert bound == pytest.approx(true, rel=1e-9), (cfg, bound, true)
    # the reshaped kernel's norm is NOT a bound of the convolution (it is the norm of one frequency's worth at most)
    assert bound <= 1.5 * math.sqrt(k * k) * true + 1e-12


def test_reshaped_kernel_norm_underestimates_a_positive_convolution() -> None:
    """The failure the issue names: for a non-negative 3×3 kernel the convolution's norm is ≈ 3× the reshaped one."""
    m = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    reshaped = float(torch.linalg.matrix_norm(m.weight.detach().reshape(1, -1).double(), 2))  # = 3
    true = float(torch.linalg.matrix_norm(_conv_matrix(m, (8, 8)), 2))
    bound, _ = conv2d_norm(m, (8, 8))
    assert reshaped == pytest.approx(3.0)
    assert true > 2.5 * reshaped and bound >= true


def test_linear_norm_is_an_upper_bound_with_its_margin() -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in [(3, 5), (16, 16), (1, 7), (40, 2)]:
        W = torch.randn(*shape, generator=gen)
        b, how = linear_norm(W)
        assert b >= float(torch.linalg.matrix_norm(W.double(), 2)) and b <= 1.0001 * float(torch.linalg.matrix_norm(W.double(), 2))
        assert "margin" in how


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.1), nn.LeakyReLU(2.0), nn.Tanh(), nn.ELU(), nn.ELU(0.5),
                                 nn.ELU(1.5), nn.CELU(0.7), nn.Softplus(), nn.Softplus(beta=3.0), nn.SiLU(), nn.GELU(),
                                 nn.GELU("tanh"), nn.Sigmoid(), nn.Hardtanh(), nn.Softsign(), nn.ReLU6()],
                         ids=repr)
def test_activation_table_bounds_the_derivative(act: nn.Module) -> None:
    """Every constant of the table is ≥ sup|σ'| measured on a fine grid, and not loose by more than 2 %."""
    x = torch.linspace(-30, 30, 600_001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(act(x).sum(), x)
    sup = float(d.abs().max())
    b = certified_bound(nn.Sequential(act), torch.randn(3, 4)).value
    # 1e-7: autograd's own float64 evaluation of σ' (CELU's backward reads 1 + 1.7e-8 next to 0, where σ' = eˣᐟᵅ ≤ 1)
    assert b >= sup * (1 - 1e-7), (act, b, sup)
    assert b <= 1.02 * sup + 1e-12, (act, b, sup)


def _random_net(gen: torch.Generator, kind: int) -> tuple[nn.Module, int]:
    torch.manual_seed(int(torch.randint(0, 10**6, (1,), generator=gen)))
    acts = [nn.Tanh(), nn.ReLU(), nn.ELU(), nn.SiLU(), nn.Sigmoid(), nn.LeakyReLU(0.3)]
    act = acts[int(torch.randint(0, len(acts), (1,), generator=gen))]
    if kind == 0:  # MLP
        n = int(torch.randint(1, 5, (1,), generator=gen))
        return nn.Sequential(nn.Linear(n, 8), act, nn.Linear(8, 6), act, nn.Linear(6, n)), n
    if kind == 1:  # a small conv net on 5×5, flattened in and out
        return nn.Sequential(nn.Unflatten(1, (1, 5, 5)), nn.Conv2d(1, 3, 3, padding=1), act,
                             nn.Conv2d(3, 1, 3, padding=1), nn.Flatten()), 25
    return _Res(nn.Sequential(nn.Linear(3, 6), act, nn.Linear(6, 3))), 3


class _Res(nn.Module):
    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.g(x)

    def lipschitz_structure(self) -> Residual:
        return Residual(self.g)


def test_certified_bound_is_above_the_true_lipschitz_constant_of_random_networks() -> None:
    """Over 60 random small networks (MLPs, convolutions, residual blocks): the certified bound ≥ the largest local
    norm ‖J(x)‖₂ and every difference quotient found at 256 random inputs and pairs (each a lower bound of Lip)."""
    gen = torch.Generator().manual_seed(0)
    for i in range(60):
        net, n = _random_net(gen, i % 3)
        net = net.double()
        x = 3 * torch.randn(256, n, generator=gen, dtype=torch.float64)
        upper = certified_bound(net, x[:8]).value
        s, _ = local_norm(net, x)
        y = x + 0.3 * torch.randn(256, n, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            q = (net(y) - net(x)).norm(dim=1) / (y - x).norm(dim=1)
        assert upper >= float(s.max()) and upper >= float(q.max()), (i, net, upper, float(s.max()), float(q.max()))


def test_power_iteration_local_norm_is_a_lower_bound_of_the_exact_one() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 6)).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    exact, _ = local_norm(net, x)
    power, _ = local_norm(net, x, iterations=50)
    assert torch.all(power <= exact * (1 + 1e-12)) and torch.allclose(power, exact, rtol=1e-3)


# -- the property on bare modules: verdicts, both bounds, bad input ------------------------------------------------
def _small(net: nn.Module, *claims: object, dim: int) -> object:
    return check(net.eval(), claims=list(claims), dim=dim, n_inputs=256, max_examples=5, rollout_steps=0)


def test_bounds_bracket_and_verdicts_follow_them() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
    upper = certified_bound(net, torch.randn(4, 3)).value
    res = _small(net, Lipschitz(upper * 1.01), dim=3)
    r = res.results[0]
    assert r.verdict.value == "proved", (r.symbolic.summary, r.numeric.summary)
    assert r.numeric.lower_bound <= r.numeric.upper_bound
    res = _small(net, Lipschitz(r.numeric.lower_bound * 0.5), dim=3)
    r2 = res.results[0]
    assert r2.verdict.value == "violated" and r2.numeric.counterexample is not None
    assert r2.numeric.lower_bound > r2.claim.property.L
    # between the bounds: undecided, never proved or violated
    mid = (r.numeric.lower_bound * 1.001 + upper) / 2 if r.numeric.lower_bound * 1.001 < upper else None
    if mid is not None:
        r3 = _small(net, Lipschitz(mid), dim=3).results[0]
        assert r3.verdict.value in ("undecided", "violated")  # a better search may still find more than the first run
        assert r3.verdict.value != "proved"


class _Mystery(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(3 * self.lin(x))


def test_an_unknown_module_leaves_the_upper_bound_unknown_with_its_type_and_the_fix() -> None:
    r = _small(_Mystery(), Lipschitz(1e6), dim=2).results[0]
    assert r.verdict.value == "undecided"
    assert "_Mystery" in r.symbolic.summary and "lipschitz_structure" in r.symbolic.summary
    assert r.numeric.upper_bound is None and "no certified upper bound" in r.numeric.summary


class _Liar(nn.Module):
    """Declares x + g(x) but computes x + 3·g(x): the structure is checked against the forward, so no bound."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 3 * self.g(x)

    def lipschitz_structure(self) -> Residual:
        return Residual(self.g)


def test_a_structure_that_is_not_the_forward_gives_no_bound() -> None:
    r = _small(_Liar(), Lipschitz(1e6), dim=2).results[0]
    assert r.verdict.value == "undecided" and "differs from the forward" in r.symbolic.summary


def test_structure_nodes_compose() -> None:
    g = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        g.weight.copy_(torch.tensor([[0.3, 0.0], [0.0, 0.1]]))

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g = g

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * (x + self.g(x))

        def lipschitz_structure(self) -> Scaled:
            return Scaled(2.0, Chain(Residual(self.g)))

    b = certified_bound(M(), torch.randn(3, 2))
    # 0.3 stored in float32 is 0.30000001192…: the bound is of the stored numbers
    assert b.value == pytest.approx(2 * 1.3, rel=1e-7) and b.value >= 2 * (1 + float(torch.tensor(0.3)))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_L_is_refused_at_claim_time(bad: object) -> None:
    with pytest.raises(InputError, match=r"Lipschitz\(L=\.\.\.\)=.*expected a positive finite number.*Fix"):
        Lipschitz(bad)  # type: ignore[arg-type]


def test_bad_branches_and_inverse_accuracy_are_refused() -> None:
    with pytest.raises(InputError, match="branches"):
        Lipschitz(0.9, branches="not a name")
    for bad in (0, 1.5, -1e-3, float("nan"), True):
        with pytest.raises(InputError, match="inverse_accuracy"):
            Invertible(inverse_accuracy=bad)
    r = _small(nn.Linear(2, 2), Lipschitz(0.9, branches="blocks"), dim=2).results[0]
    assert r.verdict.value == "error" and "Linear.blocks" in r.numeric.summary


# -- the registered i-ResNets and their controls -------------------------------------------------------------------
def test_iresnet_claims_and_derived_invertibility() -> None:
    res = check("iresnet-mlp", rollout_steps=0)
    branch = res.result("Lipschitz(branches)")
    assert branch.verdict.value == "proved"
    assert branch.numeric.upper_bound <= 0.5 and branch.numeric.lower_bound <= branch.numeric.upper_bound
    d = branch.numeric.derived
    assert d["available"] and d["contraction"] < 1 and d["iterations"] == 40
    assert all(b["a_priori_error_factor"] < 1e-10 for b in d["branches"])
    assert res.result("Lipschitz").verdict.value == "proved"
    assert res.result("Invertible").verdict.value == "holds"


def test_controls_are_refuted_with_the_value_that_gives_them_away() -> None:
    scaled = check("iresnet-scaled-branch", rollout_steps=0).results[0]
    assert scaled.verdict.value == "violated"
    assert scaled.numeric.lower_bound > 0.9 and scaled.numeric.upper_bound > 0.9
    assert not scaled.numeric.derived["available"] and "NOT derived" in scaled.numeric.summary

    few = check("iresnet-few-iterations", rollout_steps=0)
    inv = few.result("Invertible")
    assert inv.verdict.value == "violated" and inv.numeric.classification == "structural"
    assert inv.numeric.max_defect_float64 > 1e-4  # far beyond the claimed 1e-6: the iterations stop short
    assert few.result("Lipschitz(branches)").verdict.value == "proved"  # the branches are fine: only the inverse is not

    reshaped = check("iresnet-reshaped-kernel", rollout_steps=0).results[0]
    assert reshaped.verdict.value == "violated"
    assert reshaped.numeric.upper_bound > 0.5 and reshaped.numeric.lower_bound > 0.5
    assert reshaped.symbolic.verdict.value == "undecided"  # never proved


@pytest.mark.parametrize("seed", [1, 2])
def test_genuine_iresnets_are_never_refuted_over_seeds(seed: int) -> None:
    res = check("iresnet-mlp", seed=seed, rollout_steps=0, n_inputs=1024, max_examples=10)
    for r in res.results:
        assert r.verdict.value in ("proved", "holds"), (seed, r.claim, r.numeric.summary)


def test_a_torch_spectral_norm_layer_is_read_from_the_weight_it_actually_uses() -> None:
    """torch's spectral_norm divides by a power-iteration estimate σ̂ ≤ σ: after one iteration the weight it uses can
    have norm above 1. The bound reads that weight (in eval mode, from its stored u, v), so it reports > 1, not 1."""
    torch.manual_seed(3)
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 6), n_power_iterations=1)
    with torch.no_grad():
        lin.parametrizations.weight.original.mul_(torch.linspace(0.2, 3.0, 6))  # spread the spectrum
    lin(torch.randn(2, 6))  # one power-iteration step in train mode
    lin.eval()
    used = float(torch.linalg.matrix_norm(lin.weight.detach().double(), 2))
    b = certified_bound(lin, torch.randn(3, 6)).value
    assert b >= used and b == pytest.approx(used, rel=1e-6)  # the float64 copy recomputes W/σ̂: ~1e-7 apart
    assert used > 1.0 + 1e-3  # the estimate lags: "spectral-normalised" is not "Lip ≤ 1" until the weight says so


class _Overflow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x ** 3)


def test_an_overflowing_map_is_an_error_not_a_small_norm() -> None:
    r = _small(_Overflow(), Lipschitz(1e6), dim=2).results[0]
    assert r.verdict.value in ("error", "undecided", "violated") and r.verdict.value not in ("proved", "holds")


class _Shift(nn.Module):
    """x ↦ x + b with an inverse off by `err` (relative to the scale 1 + |x| + |y|: a fixed-point inverse stopped early)."""

    def __init__(self, err: float) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.5, -0.25], dtype=torch.float64))
        self.err = err

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y - self.b + self.err * (1 + y.abs().amax(-1, keepdim=True))


def test_inverse_accuracy_states_how_good_an_iterative_inverse_is() -> None:
    """An inverse 1e-4 off (relative) holds under inverse_accuracy=1e-3 and is refuted under 1e-5, in both directions
    of the round trip; without the option only round-off is allowed."""
    def verdict(model: nn.Module, prop: Invertible) -> str:
        return check(model.eval(), claims=[prop], dim=2, n_inputs=256, max_examples=5, rollout_steps=0,
                     symbolic=False).results[0].verdict.value

    off = _Shift(1e-4)
    assert verdict(off, Invertible(inverse_accuracy=1e-3)) == "holds"
    assert verdict(off, Invertible(inverse_accuracy=1e-5)) == "violated"
    assert verdict(off, Invertible()) == "violated"
    assert verdict(_Shift(0.0), Invertible(inverse_accuracy=1e-9)) == "holds"
    assert str(Invertible(inverse_accuracy=1e-6)) == "Invertible(inverse_accuracy=1e-06)"
