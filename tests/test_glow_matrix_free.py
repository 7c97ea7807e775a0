"""The Glow code (models/flows.py) on the matrix-free path (n > 64): Invertible by round trips normalised by a Lanczos
κ̂₂, LogDet (forward and inverse) by an exact LU of J assembled in blocks of rows, each within its memory plan, and a
memory limit that no method fits refused with the numbers (error, never holds). A 3×8×8 Glow (n = 192) untrained, so
that the test costs seconds; glow-shapes32 (n = 3072) runs the same code path (benchmarks/matrix_free.py --glow)."""
from __future__ import annotations

import pytest
import torch

from verify.checking import matrix_free as mf
from verify.checking.domains import Box
from verify.checking.numeric import measure
from verify.checking.search import Budget
from verify.evidence import Verdict
from verify.models.flows import LOG_DET, Glow
from verify.properties import Invertible

N = 3 * 8 * 8
TINY = Budget(n_inputs=2, starts=0, steps=0, examples=0, resolution=0.0, shrink=False)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # tests/conftest.py
    yield


def _glow() -> Glow:
    torch.manual_seed(0)
    model = Glow(channels=3, height=8, width=8, steps=1, hidden=4, levels=2)
    with torch.no_grad():  # away from the identity, so that the log-det is far from zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("prop, method", [(Invertible(), "lanczos"), (LOG_DET, "exact")])
def test_glow_checks_matrix_free_within_its_memory_plan(prop, method):
    model = _glow()
    ev = measure(prop, model, dim=N, depth=model.depth, domain=Box([-0.5] * N, [0.5] * N), seed=0, budget=TINY)
    assert ev.verdict is Verdict.HOLDS, ev.summary
    plan = ev.search["plan"]
    assert plan["method"] == method and plan["n"] == N, plan
    assert plan["bytes_per_input"] <= plan["limit"]
    assert ev.n_inputs >= 2


def test_glow_beyond_the_memory_limit_is_refused_with_the_numbers_never_holds():
    model = _glow()
    with mf.using(memory_limit=10_000):
        ev = measure(Invertible(), model, dim=N, depth=model.depth, domain=Box([-0.5] * N, [0.5] * N), budget=TINY)
    assert ev.verdict is Verdict.ERROR, ev.summary
    assert "memory per input" in ev.summary and "limit 10 kB" in ev.summary, ev.summary
