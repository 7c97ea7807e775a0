"""Every failure becomes a verdict: what library code does to the checker, reproduced with small modules.

Code that vmap rejects, a module that frees its input, a module that deepcopy cannot copy (or copies without its
plain tensor attributes), a parameter-free module, dtypes that differ between the model, the data and torch's
default, and exceptions from a property itself: each gives `error` evidence with the exception, the stage and a
fix, or runs by a slower path that says which path ran. Never a traceback out of check().
"""
from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from verify import Size, architecture, check, unregister
from verify.checking.domains import Box
from verify.checking.numeric import JACOBIAN_PATHS, batched_jacobian, jacobian_path, loop_jacobian, measure
from verify.checking.search import Budget
from verify.evidence import Failure, Measurement, Verdict
from verify.precision import CopyError, copy_path, float64_copy, remember_factory
from verify.properties import Invertible, Symplectic, VolumePreserving

SMALL = Budget(n_inputs=256, starts=4, steps=4, examples=10)


def run(prop, model, dim=2):
    return measure(prop, model, dim=dim, depth=2, domain=Box([-1.0] * dim, [1.0] * dim), budget=SMALL)


class Shear(nn.Module):
    """(q, p) ↦ (q, p + a·tanh(w q)): symplectic, volume preserving, with an inverse."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7))
        self.w = nn.Parameter(torch.tensor(1.3))

    def kick(self, q: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.w * q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], x[:, 1:] + self.kick(x[:, :1])], dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y[:, :1], y[:, 1:] - self.kick(y[:, :1])], dim=-1)


class InPlaceShear(Shear):
    """The same map, written in place into a buffer allocated by shape (as torchdiffeq's solvers do): vmap refuses to
    write a batched value into an unbatched tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)
        out[:, :1] = x[:, :1]
        out[:, 1:] = x[:, 1:] + self.kick(x[:, :1])
        return out


class _Kick(torch.autograd.Function):
    """An autograd.Function in the pre-2.0 style (forward takes ctx, no setup_context): torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, q, a, w):
        ctx.save_for_backward(q, a, w)
        return a * torch.tanh(w * q)

    @staticmethod
    def backward(ctx, g):
        q, a, w = ctx.saved_tensors
        t = torch.tanh(w * q)
        d = 1 - t * t
        return g * a * w * d, (g * t).sum(), (g * a * q * d).sum()


class FunctionShear(Shear):
    def kick(self, q: torch.Tensor) -> torch.Tensor:
        return _Kick.apply(q, self.a, self.w)


class FreesInput(Shear):
    """Releases its input's storage after the call (memcnn's InvertibleModuleWrapper(keep_input=False) does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x).clone()
        x.untyped_storage().resize_(0)
        return y


@pytest.mark.parametrize("cls, path", [(InPlaceShear, "grad"), (FunctionShear, "grad")], ids=["in-place", "old-style-function"])
def test_code_vmap_rejects_falls_back_to_classic_autograd_and_says_so(cls, path):
    torch.manual_seed(0)
    model = cls().double().eval()
    x = torch.randn(16, 2, dtype=torch.float64)
    J = batched_jacobian(model, x)
    assert torch.allclose(J, loop_jacobian(Shear().double().eval(), x), atol=1e-12, rtol=0)
    used, why = jacobian_path(model)
    assert used == path and "vmap" in why
    ev = run(Symplectic(), cls().eval())
    assert isinstance(ev, Measurement) and ev.verdict is Verdict.HOLDS, ev.summary
    assert ev.search["jacobian"].startswith(JACOBIAN_PATHS[path]) and "vmap could not run" in ev.summary


def test_a_module_that_frees_its_input_is_called_on_fresh_copies():
    ev = run(Invertible(), FreesInput().eval())
    assert isinstance(ev, Measurement) and ev.verdict is Verdict.HOLDS, ev.summary


class ComputedAttribute(Shear):
    """Keeps a tensor computed from a parameter as a plain attribute (non-leaf): deepcopy refuses the module."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = self.a * 2  # non-leaf


class PlainConstant(Shear):
    """A constant kept as a plain tensor attribute, not a buffer: .to(float64) does not move it."""

    def __init__(self) -> None:
        super().__init__()
        self.J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) @ self.J @ self.J.T


class Locked(Shear):
    """Holds a lock: deepcopy cannot copy it at all."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def test_float64_copy_paths():
    m = PlainConstant().eval()
    m64 = float64_copy(m)
    assert m64.J.dtype == torch.float64 and m.J.dtype == torch.float32 and "plain tensor attribute" in copy_path(m64)
    m = ComputedAttribute().eval()
    m64 = float64_copy(m)
    assert m64.scale.dtype == torch.float64 and m64.scale.grad_fn is None and copy_path(m64).startswith("deepcopy with")
    locked = Locked().eval()
    with pytest.raises(CopyError) as info:
        float64_copy(locked)
    assert "deepcopy" in str(info.value) and "factory" in str(info.value) and info.value.fix
    remember_factory(locked, Locked)
    with torch.no_grad():
        locked.a.fill_(0.3)
    m64 = float64_copy(locked)
    assert copy_path(m64).startswith("a fresh instance from the architecture's factory")
    assert float(m64.a.detach()) == pytest.approx(0.3) and m64.a.dtype == torch.float64 and not m64.training


def test_storage_draws_move_only_non_integers_by_their_precision():
    m = PlainConstant().eval()
    twin = float64_copy(m, torch.Generator().manual_seed(0))
    assert torch.equal(twin.J, m.J.double())  # 0, ±1: exact in every format
    eps32 = torch.finfo(torch.float32).eps
    for p, q in ((twin.a, m.a), (twin.w, m.w)):
        moved = abs(float(p.detach()) - float(q.detach()))
        assert 0 < moved <= 2 * eps32 * abs(float(q.detach()))


def test_a_model_without_a_float64_copy_is_checked_and_says_it_has_no_oracle():
    ev = run(Symplectic(), Locked().eval())
    assert isinstance(ev, Measurement) and ev.verdict is Verdict.HOLDS
    assert "no float64 oracle" in ev.summary and "deepcopy" in ev.search["oracle"]


class FixedRotation(nn.Module):
    """A quarter turn with no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, 1:], -x[:, :1]], dim=-1)


def test_a_parameter_free_module_trains_nothing_and_is_checked():
    architecture("test-fixed-rotation", claims=[Symplectic()], task="pendulum",
                 sizes={"quick": Size(config={}, steps=10)})(FixedRotation)
    try:
        result = check("test-fixed-rotation", rollout_steps=0, n_inputs=128, max_examples=10)
    finally:
        unregister("test-fixed-rotation")
    assert not result.errors and result.trained.steps == 0
    assert result.result("Symplectic").verdict in (Verdict.PROVED, Verdict.HOLDS)


def test_an_architecture_declared_under_float64_trains_and_is_checked_in_float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what a library like strupnet does on import
    try:
        architecture("test-shear-f64", claims=[VolumePreserving()], task="pendulum",
                     sizes={"quick": Size(config={}, steps=10)})(Shear)
    finally:
        torch.set_default_dtype(before)
    try:
        result = check("test-shear-f64", rollout_steps=0, n_inputs=128, max_examples=10, symbolic=False)
    finally:
        unregister("test-shear-f64")
    assert not result.errors, result.errors
    assert torch.get_default_dtype() == before
    num = result.result("VolumePreserving").numeric
    assert num.dtype == "float64" and num.verdict is Verdict.HOLDS and "its own oracle" in num.search["oracle"]


class Mixed(Shear):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.3, dtype=torch.float64))


def test_mixed_parameter_dtypes_are_refused_with_a_message():
    architecture("test-mixed", claims=[Symplectic()], task="pendulum", sizes={"quick": Size(config={}, steps=5)})(Mixed)
    try:
        result = check("test-mixed", rollout_steps=0, n_inputs=64, max_examples=5)
    finally:
        unregister("test-mixed")
    r = result.result("Symplectic")
    assert r.verdict is Verdict.ERROR and "one floating dtype" in result.errors[0] and "float64" in result.errors[0]


def test_a_plugin_that_switches_the_default_dtype_is_contained():
    from verify.declare import registry

    before = torch.get_default_dtype()
    notes = len(registry.PLUGIN_NOTES)
    registry._load_plugin("test-plugin (test)", lambda: torch.set_default_dtype(torch.float64))
    assert torch.get_default_dtype() == before
    assert len(registry.PLUGIN_NOTES) == notes + 1 and "float64" in registry.PLUGIN_NOTES[-1]
    with pytest.raises(Exception) as info:
        registry._load_plugin("broken (test)", lambda: 1 / 0)
    assert "broken (test)" in str(info.value) and "ZeroDivisionError" in str(info.value)


class Exploding(Symplectic):
    """A property whose own numeric stage raises (a bug in a property, or a library it calls)."""

    def numeric(self, subject, domain, settings):
        raise KeyError("boom")


class NoDomain(Symplectic):
    def domain(self, subject):
        raise RuntimeError("no domain today")


def test_an_exception_from_a_property_is_error_evidence_with_stage_and_exception():
    result = check(Shear().eval(), claims=[Exploding(), NoDomain()], dim=2, n_inputs=64, max_examples=5)
    boom, nodomain = result.results
    for r, needle in ((boom, "KeyError"), (nodomain, "no domain today")):
        assert r.verdict is Verdict.ERROR
        assert isinstance(r.numeric, Failure) and needle in r.numeric.summary and r.numeric.exception
    assert "numeric" in boom.numeric.summary and "test_failures.py" in boom.numeric.exception


class Broken(Shear):
    """A model whose library raises on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("library bug")


def test_a_model_that_raises_everywhere_gives_errors_not_a_traceback():
    architecture("test-broken", claims=[Symplectic(), Invertible()], task="pendulum",
                 sizes={"quick": Size(config={}, steps=5)})(Broken)
    try:
        result = check("test-broken", rollout_steps=10, n_inputs=64, max_examples=5)
    finally:
        unregister("test-broken")
    assert result.errors and "library bug" in result.errors[0] and "training" in result.errors[0]
    for r in result.results:
        assert r.verdict is Verdict.ERROR and "library bug" in r.numeric.summary and r.numeric.exception
    # the same module given directly (no training): each claim's numeric stage says what raised, where
    direct = check(Broken().eval(), claims=[Symplectic()], dim=2, n_inputs=64, max_examples=5).results[0]
    assert direct.verdict is Verdict.ERROR and "library bug" in direct.numeric.summary
    assert "preflight" in direct.numeric.summary and "test_failures.py" in direct.numeric.exception
