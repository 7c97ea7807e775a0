"""Benchmark: our per-element check vs escnn's check_equivariance, on the same C8 and D8 R2Conv layers.

escnn's generic `EquivariantModule.check_equivariance` feeds random noise on a 10×10 grid, draws 20
elements with replacement and asserts at the first failure. On a C8 R2Conv the 45° rotations of noise
are themselves inexact, so it fails a correct layer. Ours enumerates every element, uses smooth
windowed inputs, measures the transform's own floor, and still refutes a layer with one perturbed
filter entry. Run: `python -m verify.bench_equivariance`.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import time
from typing import Any

import torch

from verify.actions import ImageField
from verify.groups import PlaneGroup, field_representation


class _Layer(torch.nn.Module):
    """An R2Conv on plain tensors (optionally with one expanded-filter entry shifted by δ)."""

    def __init__(self, conv: Any, delta: float = 0.0) -> None:
        super().__init__()
        self.conv = conv
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filt, bias = self.conv.expand_parameters()
        if self.delta:
            filt = filt.clone()
            filt[0, 0, 1, 2] += self.delta
        return torch.nn.functional.conv2d(x, filt, bias, padding=self.conv.padding)


def _escnn_check(conv: Any, atol: float, rtol: float) -> dict[str, Any]:
    from escnn.nn import EquivariantModule

    start = time.perf_counter()
    out = io.StringIO()
    passed, max_err = True, None
    with contextlib.redirect_stdout(out):
        try:
            EquivariantModule.check_equivariance(conv, atol=atol, rtol=rtol)
        except AssertionError as exc:
            passed = False
            m = re.search(r"max = ([0-9.eE+-]+)", str(exc))
            max_err = float(m.group(1)) if m else None
    errs = [float(v) for v in re.findall(r"\] ([0-9.eE+-]+) [0-9.eE+-]+ [0-9.eE+-]+\n", out.getvalue())]
    return {"seconds": time.perf_counter() - start, "passed": passed, "max_error_at_failure": max_err,
            "elements_tried": out.getvalue().count("\n") // 2 + (0 if passed else 1),
            "max_error_seen": max(errs + ([max_err] if max_err else [])) if (errs or max_err) else None}


def _ours(G: PlaneGroup, layer: torch.nn.Module, in_type: Any, out_type: Any) -> dict[str, Any]:
    from properties.equivariant import Equivariant, measure_equivariance

    prop = Equivariant(G, ImageField(field_representation(G, in_type)), ImageField(field_representation(G, out_type)),
                       image_size=33, grid_rtol=0.02)
    start = time.perf_counter()
    ev = measure_equivariance(prop, layer.eval(), seed=0, reinit=False)
    return {"seconds": time.perf_counter() - start, "verdict": ev.verdict.value, "elements": len(ev.elements),
            "violating": list(ev.violating), "max_exact_error": max(e for e, lab in zip(ev.errors, ev.labels) if lab == "exact"),
            "max_interpolated_error": max((e for e, lab in zip(ev.errors, ev.labels) if lab == "interpolated"), default=0.0),
            "max_floor": max(ev.floors), "tolerance": ev.tolerance, "summary": ev.summary}


def run() -> dict:
    from escnn import nn as enn

    from models.equivariant_cnns import _patch_escnn_null

    _patch_escnn_null()
    torch.manual_seed(0)
    out: dict[str, Any] = {}
    for G in (PlaneGroup(8), PlaneGroup(8, True)):
        gs = G.escnn_gspace()
        tin = enn.FieldType(gs, [gs.trivial_repr])
        tout = enn.FieldType(gs, [gs.regular_repr] * 2)
        conv = enn.R2Conv(tin, tout, 5, padding=2).eval()
        out[G.name] = {
            # escnn's defaults (atol 1e-7, rtol 1e-5) and the ±10 % that its R2Conv override uses
            "escnn_check_equivariance_default_tol": _escnn_check(conv, 1e-7, 1e-5),
            "escnn_check_equivariance_tol_0.1": _escnn_check(conv, 0.1, 0.1),
            "ours": _ours(G, _Layer(conv), tin, tout),
            "ours_on_perturbed_filter": _ours(G, _Layer(conv, delta=0.5), tin, tout),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, default=str))
