"""LogDet: the log-determinant a flow reports equals log|det J| (forward, and the inverse's against its own Jacobian).

Models: an affine coupling on R^4 whose scale is a small MLP of the first half. `flip` reports −log|det J| (the sign bug
a round trip cannot see); `offset` adds a constant to one direction's report; `inverse_flip` gets only the inverse wrong."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from verify.checking.domains import Box
from verify.checking.numeric import measure
from verify.errors import InputError
from verify.evidence import Verdict
from verify.properties import Invertible, LogDet


class Coupling(nn.Module):
    def __init__(self, seed: int, flip: bool = False, inverse_flip: bool = False, offset: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 4))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
        self.flip, self.inverse_flip, self.offset = flip, inverse_flip, offset

    def _st(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(a).chunk(2, -1)
        return torch.tanh(s), t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, :2], x[:, 2:]
        s, t = self._st(a)
        return torch.cat([a, b * torch.exp(s) + t], -1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = y[:, :2], y[:, 2:]
        s, t = self._st(a)
        return torch.cat([a, (b - t) * torch.exp(-s)], -1)

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        s, _ = self._st(x[:, :2])
        return (-1 if self.flip else 1) * s.sum(-1) + self.offset

    def inverse_log_det(self, y: torch.Tensor) -> torch.Tensor:
        s, _ = self._st(y[:, :2])
        return (1 if self.inverse_flip else -1) * s.sum(-1)


def _check(prop, model):
    return measure(prop, model.eval(), dim=4, depth=1, domain=Box([-2.0] * 4, [2.0] * 4), seed=0)


@pytest.mark.parametrize("seed", range(3))
def test_a_correct_flow_holds_both_ways(seed):
    ev = _check(LogDet(inverse_method="inverse_log_det"), Coupling(seed))
    assert ev.verdict is Verdict.HOLDS, ev.summary


@pytest.mark.parametrize("kwargs", [dict(flip=True), dict(inverse_flip=True), dict(offset=1e-4)])
def test_a_wrong_log_det_is_refuted_while_the_round_trip_holds(kwargs):
    model = Coupling(0, **kwargs)
    assert _check(Invertible(), model).verdict is Verdict.HOLDS
    ev = _check(LogDet(inverse_method="inverse_log_det"), model)
    assert ev.verdict is Verdict.VIOLATED, ev.summary


def test_a_model_that_reports_no_log_det_is_an_error_naming_the_method():
    ev = _check(LogDet(method="log_jac_det"), Coupling(0))
    assert ev.verdict is Verdict.ERROR and "log_jac_det" in ev.summary, ev.summary


def test_a_bad_method_name_is_refused_when_the_claim_is_made():
    with pytest.raises(InputError, match="method"):
        LogDet(method="not a name")
