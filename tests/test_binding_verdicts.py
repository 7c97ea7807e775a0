"""Binding decides whether a proof counts: through check(), the public API, on what users actually write.

A proof is about a symbolic form; only a form bound to the module (twin vs code, searched like any claim) makes a
claim `proved`. Forms that cannot be bound give `error`, forms that do not describe the code give `violated`, and a
module with no declared form gets one generated from its code (torch.fx) or is checked numerically only, saying so.
"""
import torch
from torch import nn

from verify.properties import Symplectic, VolumePreserving
from verify import Builder, Size, SymbolicBlock, architecture, check
from verify.declare.registry import unregister


class Kick(nn.Module):
    """p ← p + c q³ (symplectic), with no twin of its own."""

    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.tensor([0.3]))

    def forward(self, x):
        return torch.cat([x[:, :1], x[:, 1:] + self.c * x[:, :1] ** 3], dim=-1)


def _kick_block(cfg):
    return [SymbolicBlock("cubic kick", 2, lambda b, x: Builder.concat(x[:1], x[1:] + (x[:1] * x[:1] * x[:1]).hadamard(b.vector("c", 1))))]


def _run(name, blocks, model, claims=(Symplectic(),)):
    architecture(name, claims=list(claims), blocks=blocks, sizes={"quick": Size(config={})})(lambda: model)
    try:
        return check(name, model=model, dim=2, rollout_steps=0, n_inputs=1024, max_examples=20)
    finally:
        unregister(name)


def test_a_bound_twin_proves_and_the_report_says_what_it_was_bound_to():
    r = _run("bind-ok", _kick_block, Kick().eval()).results[0]
    assert r.verdict.value == "proved"
    assert r.binding is not None and r.binding.verdict.value == "holds" and "bound by name" in r.binding.method
    assert r.binding.n_inputs > 500 and "scales" in r.binding.summary  # half the claim's budget: float64 vs float64


def test_an_identity_twin_does_not_describe_the_module():
    ident = lambda cfg: [SymbolicBlock("identity", 2, lambda b, x: x)]  # noqa: E731
    r = _run("bind-ident", ident, Kick().eval()).results[0]
    assert r.symbolic.verdict.value == "proved"  # the identity is symplectic ...
    assert r.verdict.value == "violated"  # ... but it is not this module
    assert "does not describe the module" in r.binding.summary


def test_a_twin_of_another_dimension_is_an_error_never_a_proof():
    wide = lambda cfg: [SymbolicBlock("4-d kick", 4, lambda b, x: x)]  # noqa: E731
    r = _run("bind-dim", wide, Kick().eval()).results[0]
    assert r.verdict.value == "error" and "4" in r.binding.summary


def test_a_twin_symbol_without_a_parameter_is_an_error_that_names_it():
    def renamed(cfg):
        return [SymbolicBlock("kick", 2, lambda b, x: Builder.concat(x[:1], x[1:] + (x[:1] * x[:1] * x[:1]).hadamard(b.vector("gain", 1))))]

    r = _run("bind-name", renamed, Kick().eval()).results[0]
    assert r.verdict.value == "error" and "gain" in r.binding.summary


def test_a_violation_far_out_in_the_code_is_not_proved_by_a_correct_twin():
    class FarBug(Kick):
        def forward(self, x):
            y = super().forward(x)
            return y + 1e-4 * torch.cat([x[:, :1] * (x.abs().amax(-1, keepdim=True) > 50).to(x.dtype), 0 * x[:, 1:]], -1)

    r = _run("bind-far", _kick_block, FarBug().eval(), claims=(Symplectic(), VolumePreserving())).results
    assert all(c.verdict.value == "violated" for c in r), [c.verdict.value for c in r]


def test_a_module_without_a_twin_is_proved_from_its_own_code():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Kick(), Kick()])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    r = check(Net().eval(), claims=[Symplectic(), VolumePreserving()], dim=2, rollout_steps=0, n_inputs=1024, max_examples=20)
    for c in r.results:
        assert c.verdict.value == "proved", c.symbolic_text
        assert "generated from the module's code" in c.binding.method


def test_an_untraceable_module_is_checked_numerically_and_says_so():
    class Branchy(Kick):
        def forward(self, x):
            if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace it
                return x
            return super().forward(x)

    class Atan(Kick):
        def forward(self, x):  # an operation the symbolic algebra does not know
            return torch.cat([x[:, :1], x[:, 1:] + self.c * torch.atan(x[:, :1])], dim=-1)

    for model in (Branchy(), Atan()):
        r = check(model.eval(), claims=[Symplectic()], dim=2, rollout_steps=0, n_inputs=256, max_examples=10).results[0]
        assert r.verdict.value == "holds", r.numeric.summary  # never `proved` without a bound symbolic form
        assert r.symbolic.verdict.value == "undecided" and "numerically only" in r.symbolic.summary


def test_the_same_seed_gives_the_same_evidence():
    from verify.models.mutants import mutant

    m = mutant("Symplectic", 1e-3, "region-hard", 2)
    a = check(m, claims=[Symplectic()], dim=2, rollout_steps=0, seed=3).results[0].numeric.to_dict()
    b = check(m, claims=[Symplectic()], dim=2, rollout_steps=0, seed=3).results[0].numeric.to_dict()
    for key in ("seconds",):
        a.pop(key), b.pop(key)
    a["search"].pop("seconds"), b["search"].pop("seconds")
    assert a == b
