"""Networks that declare their scheme: claims derived from the tableau, checked on trained weights."""
import sympy as sp
import torch

from verify.models.scheme_nets import ODEResNet, SchemeHamiltonianNet, scheme_plan
from verify.properties import StableStep, Symplectic
from verify.derive.proofs import derive_scheme
from verify.errors import InputError
from verify.evidence import Verdict


def _linear(W, h, scheme="forward-euler"):
    net = ODEResNet(dim=2, steps=1, h=h, scheme=scheme, skew=False, width=0).double()
    net.linear_part = lambda: torch.tensor(W, dtype=torch.float64)  # a fixed layer W, for the exact bound
    return net


def test_forward_euler_step_bound_is_exactly_two_fifths():
    W = [[-1.0, 2.0], [-2.0, -1.0]]
    ok = StableStep().derive_trained(_linear(W, 0.399), time_limit=20)
    assert ok.verdict is Verdict.PROVED and "h_max = 0.4" in ok.summary
    # the float 0.4 is 0.4000000000000000222...: exactly, it lies outside the region
    assert StableStep().derive_trained(_linear(W, 0.4), time_limit=20).verdict is Verdict.VIOLATED
    bad = StableStep().derive_trained(_linear(W, 0.41), time_limit=20)
    assert bad.verdict is Verdict.VIOLATED and bad.blocks[0].instance["residual"] > 0


def test_rk4_is_stable_on_the_imaginary_axis_up_to_two_root_two():
    W = [[0.0, 1.0], [-1.0, 0.0]]
    assert StableStep().derive_trained(_linear(W, 2.8, "rk4"), 20).verdict is Verdict.PROVED
    assert StableStep().derive_trained(_linear(W, 2.9, "rk4"), 20).verdict is Verdict.VIOLATED
    assert StableStep().derive_trained(_linear(W, 0.001, "forward-euler"), 20).verdict is Verdict.VIOLATED


def test_symplecticity_follows_from_the_scheme():
    assert derive_scheme(Symplectic(), "yoshida4-strang").verdict is Verdict.PROVED
    assert derive_scheme(Symplectic(), "strang").verdict is Verdict.PROVED
    ref = derive_scheme(Symplectic(), "rk4")
    assert ref.verdict is Verdict.VIOLATED and ref.blocks[0].instance["residual"] > 1e-12  # float64 round-off is ~1e-16


def test_numeric_stable_step_sees_the_trained_spectrum():
    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.checking.search import Budget

    net = ODEResNet(dim=2, steps=1, h=0.1, scheme="forward-euler", skew=True).double().eval()
    ev = measure(StableStep(), net, dim=2, depth=1, domain=Box([-1, -1], [1, 1]),
                 budget=Budget(n_inputs=64, starts=4, steps=4, examples=10))
    lam = torch.linalg.eigvals(net.linear_part().detach()).abs().max()
    assert ev.verdict is Verdict.VIOLATED
    assert abs(ev.max_defect - (float((1 + 0.01 * lam**2) ** 0.5) - 1)) < 1e-9  # |1 + ihω| − 1


def test_scheme_nets_step_with_the_declared_tableau():
    torch.manual_seed(0)
    rk4 = SchemeHamiltonianNet(2, 8, 0.1, "rk4").double()
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    f = rk4.vector_field
    k1 = f(x); k2 = f(x + 0.05 * k1); k3 = f(x + 0.05 * k2); k4 = f(x + 0.1 * k3)
    assert torch.allclose(rk4(x), x + 0.1 / 6 * (k1 + 2 * k2 + 2 * k3 + k4), atol=1e-14)
    kind, plan = scheme_plan("yoshida4-strang")
    gammas = 1 / (2 - 2 ** (1 / 3))
    assert kind == "split" and len(plan) == 9 and abs(plan[0][1] - gammas / 2) < 1e-15


def test_implicit_scheme_is_refused_with_a_fix():
    try:
        ODEResNet(scheme="gauss-legendre-2")
    except InputError as exc:
        assert "explicit" in str(exc) and "Fix" in str(exc)
    else:
        raise AssertionError("an implicit scheme must be refused")
