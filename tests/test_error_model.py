"""The round-off law of the Jacobian properties (properties/base.py: jacobian_tolerance).

* It holds with its stated margin (×2) over many seeds of correct models at several n, in float32 near the data and in
  the float64 oracle at every scale the search visits, on the full and on the matrix-free path.
* A structural defect just above the new tolerance, and far below the old law 4·(L+n)·eps, is refuted (the detection
  power the tighter law buys).
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from verify.checking import matrix_free as mf
from verify.checking.domains import Box
from verify.checking.numeric import measure
from verify.models.wide_maps import CouplingFlow, NonSymplecticBlock, ScaledCoordinate, sympnet
from verify.properties import LogDet, Symplectic, VolumePreserving
from verify.properties.base import Probe, depth_dim_tolerance, jacobian_tolerance
from verify.checking.api import _depth

MARGIN = 2.0  # what the law promises over every measured genuine defect (benchmarks/error_model.py)


def _models(prop: str, n: int, seed: int) -> torch.nn.Module:
    if prop == "Symplectic":
        return sympnet(n, layers=4, width=16, seed=seed)
    if prop == "VolumePreserving":
        return CouplingFlow(n, layers=3, width=16, seed=seed).eval()
    return CouplingFlow(n, layers=3, width=16, affine=True, channels=2, seed=seed).eval()


def _defects(p: object, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return p.defects(Probe(model, x, strict=False)).detach()


@pytest.mark.parametrize("prop", ["Symplectic", "VolumePreserving", "LogDet"])
@pytest.mark.parametrize("n", [4, 16, 64, 128])
def test_law_holds_with_its_margin_over_seeds(prop: str, n: int) -> None:
    p = {"Symplectic": Symplectic(), "VolumePreserving": VolumePreserving(), "LogDet": LogDet()}[prop]
    worst32, worst64 = 0.0, 0.0
    seeds = 8 if n <= 64 else 2
    inputs = 64 if n <= 64 else 3
    for seed in range(seeds):
        model = _models(prop, n, seed)
        L = _depth(model)
        tol32 = jacobian_tolerance(p.jacobian_kind, torch.float32, n, L).value
        tol64 = jacobian_tolerance(p.jacobian_kind, torch.float64, n, L).value
        m64 = _models(prop, n, seed).double()
        gen = torch.Generator().manual_seed(100 + seed)
        # float32 is held to its tolerance within ×2 the data (verify/checking/domains.NEAR_DATA); the float64 oracle
        # at every scale the search visits (×1e-6 … ×1000)
        near = (torch.rand(inputs, n, generator=gen, dtype=torch.float64) * 2 - 1) * 2
        far = torch.cat([(torch.rand(inputs, n, generator=gen, dtype=torch.float64) * 2 - 1) * s
                         for s in (1e-6, 1e-3, 10.0, 100.0, 1000.0)])
        d32 = _defects(p, model, near.float())
        d64 = _defects(p, m64, torch.cat([near, far]))
        assert torch.isfinite(d32).all() and torch.isfinite(d64).all()
        worst32 = max(worst32, float(d32.max()) / tol32)
        worst64 = max(worst64, float(d64.max()) / tol64)
    assert worst32 <= 1 / MARGIN, f"{prop} n={n}: float32 defect at {worst32:.3g} of the tolerance (law promises ≤ 0.5)"
    assert worst64 <= 1 / MARGIN, f"{prop} n={n}: float64 defect at {worst64:.3g} of the tolerance (law promises ≤ 0.5)"


def _planted(prop: str, n: int, delta: float) -> torch.nn.Module:
    if prop == "Symplectic":
        return NonSymplecticBlock(sympnet(n, layers=4, width=16, seed=0), delta, k=n // 3).eval()
    return ScaledCoordinate(CouplingFlow(n, layers=3, width=16, seed=0).eval(), delta, k=n // 3).eval()


@pytest.mark.parametrize("prop,n,dtype", [("Symplectic", 64, torch.float64), ("Symplectic", 256, torch.float64),
                                          ("Symplectic", 256, torch.float32), ("VolumePreserving", 256, torch.float32),
                                          ("VolumePreserving", 256, torch.float64)])
def test_a_defect_between_the_new_and_the_old_tolerance_is_refuted(prop: str, n: int, dtype: torch.dtype) -> None:
    p = Symplectic() if prop == "Symplectic" else VolumePreserving()
    L = _depth(_planted(prop, n, 0.0))
    new = jacobian_tolerance(p.jacobian_kind, dtype, n, L).value
    old = depth_dim_tolerance(dtype, n, L).value
    # the defect per unit δ, read in float64 at data-scale inputs, so that the planted one sits at 2.5× the new tolerance
    x = (torch.rand(4, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1)
    unit = float(_defects(p, _planted(prop, n, 1e-6).double(), x).max()) / 1e-6
    delta = 2.5 * new / unit
    model = _planted(prop, n, delta)
    if dtype == torch.float64:
        model = model.double()
    planted = float(_defects(p, copy.deepcopy(model).double(), x).max())  # .double() converts in place: a copy
    assert 2 * new < planted < old / 2, f"planted {planted:.3g}: not between the new {new:.3g} and the old {old:.3g}"
    with mf.using(seconds=5.0):
        ev = measure(p, model, dim=n, depth=L, domain=Box([-1.0] * n, [1.0] * n), seed=0,
                     oracle=dtype == torch.float64)
    assert ev.verdict.value == "violated", ev.summary
    assert math.isclose(ev.tolerance, new)
    if dtype == torch.float64:
        assert ev.classification == "structural", ev.summary
