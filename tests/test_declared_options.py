"""Options a claim states about itself: `within=` (the defect it allows) and VolumePreserving(signed=False).

Through check(), the public API. A permutation of coordinates preserves volume but reverses orientation: under the
default claim det J = +1 it must be refuted *and say why* (det J = −1), and the claim |det J| = 1 must hold for it.
A stated tolerance changes what the numeric stage allows, says so, and never turns a larger defect into a pass.
"""
import math

import pytest
import torch
from torch import nn

from verify import Size, architecture, check, unregister
from verify.errors import InputError
from verify.properties import Symplectic, VolumePreserving


class Swap(nn.Module):
    """(a, b) -> (b, a) composed with a volume-preserving shear: |det J| = 1, det J = −1 everywhere."""

    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.tensor([0.2]))

    def forward(self, x):
        a, b = x[:, :1], x[:, 1:]
        return torch.cat([b + self.c * torch.tanh(a), a], dim=-1)


class AlmostKick(nn.Module):
    """p ← p + c q³ + ε p: a kick (symplectic) with det J = 1 + ε, so the symplectic defect is about ε."""

    def __init__(self, eps: float):
        super().__init__()
        self.c = nn.Parameter(torch.tensor([0.3]))
        self.eps = eps

    def forward(self, x):
        q, p = x[:, :1], x[:, 1:]
        return torch.cat([q, p + self.c * q ** 3 + self.eps * p], dim=-1)


def _check(name, model, claims):
    architecture(name, claims=list(claims), sizes={"quick": Size(config={})})(lambda: model)
    try:
        return check(name, model=model, dim=2, rollout_steps=0, n_inputs=1024, max_examples=20)
    finally:
        unregister(name)


def test_a_permutation_is_refuted_as_orientation_reversing_with_the_claim_that_fits():
    r = _check("opt-swap", Swap().eval(), [VolumePreserving()]).results[0]
    assert r.verdict.value == "violated"
    text = (r.numeric.summary if r.numeric is not None else "") + " " + r.symbolic_text
    assert "signed=False" in r.numeric.summary and "det J = -1" in r.numeric.summary, text


def test_the_unsigned_claim_holds_for_a_permutation():
    r = _check("opt-swap-abs", Swap().eval(), [VolumePreserving(signed=False)]).results[0]
    assert r.verdict.value in ("proved", "holds"), (r.verdict, r.symbolic_text, r.numeric.summary)
    assert "signed=False" in str(r.claim)


def test_the_unsigned_claim_still_refutes_a_map_that_changes_volume():
    r = _check("opt-almost-abs", AlmostKick(1e-3).eval(), [VolumePreserving(signed=False)]).results[0]
    assert r.verdict.value == "violated"


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_within_allows_what_it_states_and_not_more(eps):
    model = AlmostKick(eps).eval()
    strict = _check("opt-within-0", model, [Symplectic()]).results[0]
    assert strict.verdict.value == "violated"  # round-off only: a defect of ε is refuted
    loose = _check("opt-within-1", model, [Symplectic(within=100 * eps)]).results[0]
    assert loose.numeric.verdict.value == "holds", loose.numeric.summary
    # the exact identity fails (residual ε), which does not refute an approximate claim: the measurement decides
    assert loose.symbolic.verdict.value == "undecided" and "within=" in loose.symbolic.summary
    assert loose.verdict.value == "holds"
    assert "stated by the claim" in loose.numeric.tolerance_formula
    assert math.isclose(loose.numeric.tolerance, 100 * eps)
    tight = _check("opt-within-2", model, [Symplectic(within=eps / 100)]).results[0]
    assert tight.numeric.verdict.value == "violated"  # a stated tolerance below the defect never passes


@pytest.mark.parametrize("bad", [0, -1e-3, float("nan"), float("inf"), "1e-3", True])
def test_a_bad_within_is_refused_with_the_fix(bad):
    with pytest.raises(InputError) as info:
        Symplectic(within=bad)
    assert "within" in str(info.value) and "1e-4" in str(info.value)


def test_a_bad_signed_is_refused():
    with pytest.raises(InputError):
        VolumePreserving(signed="no")


# --------------------------------------------------------------------------- the optimiser a Size names
from test_binding_verdicts import Kick  # noqa: E402  (p ← p + c q³: symplectic, one parameter)


def _train_with(name, **size):
    from verify.train.training import train

    architecture(name, claims=[Symplectic()], task="pendulum", sizes={"quick": Size(config={}, steps=5, **size)})(Kick)
    try:
        return train(name, "quick")
    finally:
        unregister(name)


def test_a_size_names_its_optimiser_by_path_or_callable():
    used = []

    def sgd(params, lr):
        used.append(lr)
        return torch.optim.SGD(params, lr=lr)

    by_path = _train_with("opt-sgd-path", optimizer="torch.optim.SGD", optimizer_options={"momentum": 0.9}, lr=1e-3)
    assert len(by_path.history) == 5 and all(math.isfinite(v) for v in by_path.history)
    by_callable = _train_with("opt-sgd-call", optimizer=sgd, lr=1e-3)
    assert used == [1e-3] and len(by_callable.history) == 5


@pytest.mark.parametrize("bad", ["torch.optim.NoSuchOpt", "no_such_package.Opt", "Adam", 42])
def test_an_optimiser_that_does_not_resolve_is_refused_with_the_fix(bad):
    with pytest.raises(InputError) as info:
        _train_with("opt-bad", optimizer=bad)
    assert "optimizer" in str(info.value) and repr(bad)[:10].strip("'") in str(info.value)
