"""A scheme-declared network is bound to its tableau by the engine's own stepper (verify.schemes.stepping)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from verify.models.hamiltonian_net import Potential
from verify.models.scheme_nets import ODEResNet, SchemeHamiltonianNet, rk_step
from verify.declare import registry
from verify.errors import InputError
from verify.schemes.stepping import (
    ROUNDOFF_KAPPA, bind_scheme, evaluations_per_step, scheme_mismatch_defects, scheme_plan, step, tolerance,
)

SCHEME_NETS = ["hnn-yoshida4", "hnn-rk4", "ode-resnet-euler", "ode-resnet-rk4", "ode-resnet-euler-undamped"]
HAMILTONIAN = {"hnn-yoshida4", "hnn-rk4"}


def _inputs(dim: int, seed: int, n: int = 96) -> torch.Tensor:
    """Rows near the data (|x| ≲ 2) and far from it (|x| ~ 10–100), float64."""
    g = torch.Generator().manual_seed(seed)
    near = torch.randn(n // 3, dim, generator=g, dtype=torch.float64)
    far = torch.randn(n - n // 3, dim, generator=g, dtype=torch.float64)
    far = far / far.abs().amax(dim=-1, keepdim=True) * (10 + 90 * torch.rand(len(far), 1, generator=g, dtype=torch.float64))
    return torch.cat([near, far])


def _build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return registry.get(name).build("quick")


# ---------------------------------------------------------------------------
# correct models: the binding holds, over seeds, with a calibrated tolerance
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEME_NETS)
def test_registered_scheme_nets_are_bound_to_their_declared_scheme(name):
    arch = registry.get(name)
    worst_ratio = 0.0
    for seed in range(5):
        model = _build(name, seed)
        x = _inputs(model.vector_field(torch.zeros(1, 2)).shape[-1], 100 + seed)
        b = bind_scheme(model, arch.scheme, x, hamiltonian=name in HAMILTONIAN or None)
        assert b.holds, b.message
        assert b.n_inputs == len(x) == len(b.mismatches) == len(b.step_mismatches)
        assert b.max_mismatch == max(b.mismatches) <= b.tolerance
        assert b.tolerance == pytest.approx(ROUNDOFF_KAPPA * 2.0**-52 * b.steps * evaluations_per_step(arch.scheme))
        assert b.steps == getattr(model, "steps", 1) and b.h == float(model.h.double())
        assert ("(b) Hamiltonian field" in b.checked) == (name in HAMILTONIAN)
        assert ("(b) separability" in b.checked) == (arch.scheme == "yoshida4-strang")
        worst_ratio = max(worst_ratio, b.max_mismatch / b.tolerance)
    assert worst_ratio <= 1e-2  # round-off sits far below the allowance on every seed


def test_a_differently_written_but_correct_forward_is_not_flagged():
    """RK4 written as x + h/6 (k1 + 2k2 + 2k3 + k4): other roundings than the engine's, still bound."""

    class HandRK4(SchemeHamiltonianNet):
        def forward(self, x):
            f, h = self.vector_field, self.h
            k1 = f(x); k2 = f(x + h / 2 * k1); k3 = f(x + h / 2 * k2); k4 = f(x + h * k3)
            return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    for seed in range(5):
        torch.manual_seed(seed)
        b = bind_scheme(HandRK4(2, 16, 0.1, "rk4"), "rk4", _inputs(2, seed), hamiltonian=True)
        assert b.holds, b.message
        assert 0 < b.max_mismatch < b.tolerance / 50  # a real round-off difference, well inside ...
        assert b.tolerance / b.max_mismatch < 1e4  # ... and the tolerance is not far above reality


def test_large_weights_stay_inside_the_round_off_tolerance():
    """Weights ×20 (a badly conditioned trained net): ∇H by autograd vs the closed form reaches ~2 ε/evaluation."""
    for scheme in ("yoshida4-strang", "rk4"):
        for seed in range(3):
            torch.manual_seed(seed)
            net = SchemeHamiltonianNet(4, 32, 0.5, scheme)
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(20)
            b = bind_scheme(net, scheme, _inputs(4, seed, 200), hamiltonian=True)
            assert b.holds and b.max_mismatch < b.tolerance / 10, b.message


# ---------------------------------------------------------------------------
# mutants the binding must catch
# ---------------------------------------------------------------------------


class OffCoefficient(SchemeHamiltonianNet):
    """One stage coefficient off by 1e-3."""

    def __init__(self, scheme):
        super().__init__(2, 16, 0.1, scheme)
        if self.kind == "rk":
            A, b = self.plan
            A = [row[:] for row in A]
            A[1][0] += 1e-3
            self.plan = (A, b)
        else:
            self.plan = [(op, a + 1e-3 if i == 4 else a) for i, (op, a) in enumerate(self.plan)]


@pytest.mark.parametrize("scheme", ["yoshida4-strang", "rk4"])
def test_a_coefficient_off_by_1e_3_in_one_stage_is_caught(scheme):
    torch.manual_seed(0)
    b = bind_scheme(OffCoefficient(scheme), scheme, _inputs(2, 0), hamiltonian=True)
    assert not b.holds and b.worst_part == "(a) step"
    assert max(b.step_mismatches) > 1e4 * b.tolerance
    assert "(a) step" in b.message and "(b)" not in b.message.split("does not hold")[1]


class WrongH(SchemeHamiltonianNet):
    """Declares h but steps with another value."""

    def __init__(self, used_h):
        super().__init__(2, 16, 0.1, "yoshida4-strang")
        self.used_h = used_h

    def forward(self, x):
        h, self.h = self.h, torch.as_tensor(self.used_h, dtype=self.h.dtype)
        try:
            return super().forward(x)
        finally:
            self.h = h


def test_a_wrong_step_size_is_caught():
    torch.manual_seed(0)
    b = bind_scheme(WrongH(0.11), "yoshida4-strang", _inputs(2, 0), hamiltonian=True)
    assert not b.holds and b.worst_part == "(a) step" and max(b.step_mismatches) > 1e-4
    # the float32 rounding of h (declared float32(0.1), stepped with the double 0.1: Δh/h = 1.5e-8) is caught too
    b = bind_scheme(WrongH(0.1), "yoshida4-strang", _inputs(2, 0), hamiltonian=True)
    assert not b.holds and max(b.step_mismatches) > 10 * b.tolerance


class WrongGradient(Potential):
    """V's hand-written gradient with one wrong weight (W₂[0, 0] + 0.05): no longer the gradient of V."""

    def gradient(self, z):
        W2 = self.l2.weight.clone()
        W2[0, 0] = W2[0, 0] + 0.05
        h1 = torch.tanh(self.l1(z))
        h2 = torch.tanh(self.l2(h1))
        return ((1 - h1**2) * (((1 - h2**2) * self.l3.weight[0]) @ W2)) @ self.l1.weight


class NotHamiltonian(SchemeHamiltonianNet):
    """Steps (forward and vector_field alike) with the wrong gradient of V: the field is not Ω⁻¹∇H."""

    def __init__(self, *args):
        super().__init__(*args)
        wrong = WrongGradient(self.d, self.V.l1.out_features)
        wrong.load_state_dict(self.V.state_dict())
        self.V = wrong


@pytest.mark.parametrize("scheme", ["yoshida4-strang", "rk4"])
def test_a_field_that_is_not_hamiltonian_is_caught(scheme):
    torch.manual_seed(0)
    b = bind_scheme(NotHamiltonian(2, 16, 0.1, scheme), scheme, _inputs(2, 0), hamiltonian=True)
    assert max(b.step_mismatches) <= b.tolerance  # it steps its own field correctly ...
    assert not b.holds and b.worst_part == "(b) Hamiltonian field"  # ... which is not Ω⁻¹∇H
    assert max(b.field_mismatches) > 1e4 * b.tolerance and "(b) Hamiltonian field" in b.message


def test_a_non_separable_field_under_a_splitting_is_caught():
    class Coupled(SchemeHamiltonianNet):
        def vector_field(self, x):
            f = super().vector_field(x)
            return f + 1e-3 * torch.cat([x[..., :1], torch.zeros_like(x[..., 1:])], dim=-1)  # f_q depends on q

    torch.manual_seed(0)
    b = bind_scheme(Coupled(2, 16, 0.1, "yoshida4-strang"), "yoshida4-strang", _inputs(2, 0), hamiltonian=False)
    assert not b.holds and b.field_mismatches is None
    assert max(b.separability_defects) > 1e-4 and "(b) separability" in b.message


class OneStepShort(ODEResNet):
    def forward(self, x):
        for _ in range(self.steps - 1):
            x = rk_step(self.vector_field, x, self.h, *self.plan)
        return x


@pytest.mark.parametrize("name", ["ode-resnet-euler", "ode-resnet-rk4"])
def test_an_ode_resnet_that_does_one_step_fewer_is_caught(name):
    cfg = dict(registry.get(name).size("quick").config)
    torch.manual_seed(0)
    b = bind_scheme(OneStepShort(**cfg), cfg["scheme"], _inputs(2, 0))
    assert not b.holds and b.worst_part == "(a) step" and b.max_mismatch > 1e-3


class FarOff(ODEResNet):
    """Correct for |x|_∞ ≤ 5; beyond, the step is 1e-4 too long."""

    def forward(self, x):
        far = x.abs().amax(dim=-1, keepdim=True) > 5
        y = super().forward(x)
        h = self.h
        self.h = h * (1 + 1e-4)
        try:
            y_far = super().forward(x)
        finally:
            self.h = h
        return torch.where(far, y_far, y)


def test_a_mismatch_only_beyond_the_data_is_caught_and_found_by_the_defect_function():
    cfg = dict(registry.get("ode-resnet-euler").size("quick").config)
    torch.manual_seed(0)
    model = FarOff(**cfg)
    near = _inputs(2, 0)[:32]
    assert near.abs().amax() < 5 and bind_scheme(model, "forward-euler", near).holds
    b = bind_scheme(model, "forward-euler", _inputs(2, 0))
    assert not b.holds and max(abs(v) for v in b.worst_input) > 5
    # the per-input defect for a search engine: finite, one per row, large only beyond |x| = 5
    model64 = model.double().eval()
    defects = scheme_mismatch_defects(model64, "forward-euler")
    grid = torch.linspace(-50, 50, 41, dtype=torch.float64)
    x = torch.cartesian_prod(grid, grid)
    d = defects(x)
    tol = tolerance("forward-euler", model64.steps)
    assert d.shape == (len(x),) and torch.isfinite(d).all()
    assert bool((d[x.abs().amax(dim=-1) <= 5] <= tol).all()) and bool((d[x.abs().amax(dim=-1) > 5] > tol).all())


def test_defect_function_is_differentiable_for_gradient_ascent():
    torch.manual_seed(0)
    model64 = NotHamiltonian(2, 16, 0.1, "yoshida4-strang").double().eval()
    defects = scheme_mismatch_defects(model64, "yoshida4-strang", hamiltonian=True)
    x = torch.tensor([[0.3, -0.7], [2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(defects(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


# ---------------------------------------------------------------------------
# the interface: missing pieces are InputErrors with a fix
# ---------------------------------------------------------------------------


def test_missing_interface_is_an_input_error_naming_it():
    class NoField(torch.nn.Module):
        h = 0.1

        def forward(self, x):
            return x

    class NoH(torch.nn.Module):
        def vector_field(self, x):
            return -x

        def forward(self, x):
            return x

    with pytest.raises(InputError, match=r"NoField\.vector_field.*Fix"):
        bind_scheme(NoField(), "rk4", torch.zeros(2, 2))
    with pytest.raises(InputError, match=r"NoH\.h.*register_buffer"):
        bind_scheme(NoH(), "rk4", torch.zeros(2, 2))
    odd = ODEResNet(steps=1)
    odd.steps = 0
    with pytest.raises(InputError, match=r"ODEResNet\.steps=0"):
        bind_scheme(odd, "forward-euler", torch.zeros(2, 2))
    with pytest.raises(InputError, match=r"ODEResNet\.hamiltonian.*Fix"):
        bind_scheme(ODEResNet(), "forward-euler", torch.zeros(2, 2), hamiltonian=True)
    with pytest.raises(InputError, match=r"scheme='no-such-scheme'.*catalogued"):
        bind_scheme(ODEResNet(), "no-such-scheme", torch.zeros(2, 2))
    with pytest.raises(InputError, match=r"scheme='gauss-legendre-2'.*explicit"):
        bind_scheme(ODEResNet(), "gauss-legendre-2", torch.zeros(2, 2))


def test_implicit_schemes_are_refused_without_a_fixed_point_tolerance():
    with pytest.raises(InputError, match="implicit_tol"):
        step("gauss-legendre-2", lambda x: -x, torch.ones(1, 2), 0.1)
    with pytest.raises(InputError, match="implicit_tol"):
        step("lobatto-iiia-iiib-3", lambda x: x.flip(-1), torch.ones(1, 2), 0.1)  # implicit even when separable


# ---------------------------------------------------------------------------
# the engine's stepper against exact solutions
# ---------------------------------------------------------------------------

W = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=torch.float64)
M = torch.tensor([[1.0, 0.3], [0.3, 2.0]], dtype=torch.float64)  # T(p) = ½ pᵀMp
K = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)  # V(q) = ½ qᵀKq
SEPARABLE = torch.cat([torch.cat([torch.zeros(2, 2, dtype=torch.float64), M], 1),
                       torch.cat([-K, torch.zeros(2, 2, dtype=torch.float64)], 1)])


def _global_error(scheme: str, A: torch.Tensor, n: int, **kw) -> float:
    x0 = torch.tensor([[1.0, 0.5, -0.3, 0.2][: len(A)], [-0.4, 0.8, 0.1, -1.0][: len(A)]], dtype=torch.float64)
    x, h = x0, 1.0 / n
    for _ in range(n):
        x = step(scheme, lambda z: z @ A.T, x, h, **kw)
    exact = x0 @ torch.linalg.matrix_exp(A).T
    return float((x - exact).abs().max())


@pytest.mark.parametrize("scheme,order,A,kw", [
    ("forward-euler", 1, W, {}), ("heun", 2, W, {}), ("rk4", 4, W, {}), ("dormand-prince-5", 5, W, {}),
    ("gauss-legendre-2", 4, W, {"implicit_tol": 1e-15}),
    ("strang", 2, SEPARABLE, {}), ("yoshida4-strang", 4, SEPARABLE, {}), ("lie-trotter", 1, SEPARABLE, {}),
    ("stormer-verlet", 2, SEPARABLE, {}), ("symplectic-euler", 1, SEPARABLE, {}), ("yoshida4-verlet", 4, SEPARABLE, {}),
    ("lobatto-iiia-iiib-3", 4, SEPARABLE, {"implicit_tol": 1e-15}),
])
def test_engine_stepper_has_the_scheme_order_on_a_linear_field(scheme, order, A, kw):
    e = [_global_error(scheme, A, n, **kw) for n in (8, 16, 32)]
    rates = [math.log2(e[0] / e[1]), math.log2(e[1] / e[2])]
    assert abs(rates[-1] - order) < 0.15, (e, rates)


def test_strang_is_velocity_verlet_and_the_models_convention():
    f = lambda z: torch.cat([z[..., 2:] @ M.T, -z[..., :2] @ K.T], dim=-1)
    x = torch.tensor([[1.0, 0.5, -0.3, 0.2]], dtype=torch.float64)
    assert torch.allclose(step("strang", f, x, 0.1), step("stormer-verlet", f, x, 0.1), atol=1e-15, rtol=0)
    q, p = x[:, :2], x[:, 2:]
    p = p - 0.05 * q @ K.T
    q = q + 0.1 * p @ M.T
    p = p - 0.05 * q @ K.T
    assert torch.allclose(step("strang", f, x, 0.1), torch.cat([q, p], -1), atol=1e-15, rtol=0)


def test_step_keeps_dtype_and_batches_with_per_row_step_sizes():
    f = lambda z: z @ W.T.to(z.dtype)
    x = torch.randn(5, 2, dtype=torch.float32)
    assert step("rk4", f, x, 0.1).dtype == torch.float32
    h = torch.linspace(0.01, 0.2, 5, dtype=torch.float64)
    y = step("rk4", f, x.double(), h)
    for i in range(5):
        assert torch.allclose(y[i], step("rk4", f, x[i : i + 1].double(), float(h[i]))[0], atol=1e-15, rtol=0)
    with pytest.raises(InputError, match="h.shape"):
        step("rk4", f, x, torch.ones(3))
    with pytest.raises(InputError, match="dim_split"):
        step("strang", f, x, 0.1, dim_split=2)


def test_scheme_plan_moved_into_the_engine_is_what_the_models_step_by():
    import verify.models.scheme_nets as sn

    assert sn.scheme_plan is scheme_plan
    kind, plan = scheme_plan("yoshida4-strang")
    assert kind == "split" and len(plan) == 9
    with pytest.raises(InputError, match="explicit"):
        scheme_plan("gauss-legendre-2")


def test_the_engine_does_not_import_models():
    code = ("import sys; from verify.properties import Symplectic; from verify.derive.proofs import derive_scheme; "
            "import verify.schemes.stepping; derive_scheme(Symplectic(), 'rk4'); "
            "print([m for m in sys.modules if m in ('models', 'verify.models') or m.startswith(('models.', 'verify.models.'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_hamiltonian_the_transforms_cannot_trace_is_an_input_error():
    class ItemH(SchemeHamiltonianNet):
        def hamiltonian(self, x):
            return x.sum(-1) * float(x.abs().max().item() > 0)

    torch.manual_seed(0)
    with pytest.raises(InputError, match=r"ItemH\.hamiltonian.*torch\.func"):
        bind_scheme(ItemH(2, 8, 0.1, "rk4"), "rk4", torch.ones(3, 2))
