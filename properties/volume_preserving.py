"""Volume-preserving maps: det J = 1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sympy.polys.matrices import DomainMatrix

from verify.properties.base import Probe, MapProperty, Tolerance, condition_scale, jacobian_tolerance
from verify.derive.polynomial import to_ring
from verify.derive.symbolic import Traced


def _dtype(model: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _triangular(J: list[list[Any]]) -> bool:
    n = len(J)
    lower = all(J[i][j] == 0 for i in range(n) for j in range(i + 1, n))
    upper = all(J[i][j] == 0 for i in range(n) for j in range(i))
    return lower or upper


def exact_det(traced: Traced) -> Any:
    J = traced.jacobian
    if _triangular(J):
        # the common case (shears, coupling layers): no elimination needed
        det = traced.backend.one
        for i in range(len(J)):
            det = det * J[i][i]
        return det
    n = len(J)
    ring, flat = to_ring([e for row in J for e in row], traced.backend.symbols)
    rows = [flat[i * n : (i + 1) * n] for i in range(n)]
    return DomainMatrix(rows, (n, n), ring.to_domain()).det()


@dataclass(frozen=True)
class VolumePreserving(MapProperty):
    """det J = +1 (volume and orientation preserved); `signed=False` claims |det J| = 1 (volume only, so a
    permutation or a reflection qualifies)."""

    signed: bool = True

    name: ClassVar[str] = "VolumePreserving"
    statement: ClassVar[str] = r"\det J_f(x) = 1 \quad \forall x,\ \forall\theta"
    obligation: ClassVar[str] = r"\det J_\ell - 1 = 0"
    lemma: ClassVar[str] = (
        r"\det J_{f\circ g}(x) = \det J_f(g(x))\,\det J_g(x) = 1\cdot 1"
        r"\text{: a composition of volume-preserving layers preserves volume.}"
    )
    defect_text: ClassVar[str] = r"|\det J - 1| \,/\, \max(1, \kappa_2(J))"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.signed, bool):
            from verify.errors import InputError

            raise InputError("VolumePreserving(signed=...)", self.signed, "True (det J = +1) or False (|det J| = 1)",
                             "write VolumePreserving() or VolumePreserving(signed=False)")
        if not self.signed:  # the statement, obligation and defect of |det J| = 1 (instance attributes shadow the class)
            object.__setattr__(self, "statement", r"|\det J_f(x)| = 1 \quad \forall x,\ \forall\theta")
            object.__setattr__(self, "obligation", r"(\det J_\ell)^2 - 1 = 0")
            object.__setattr__(self, "lemma", r"|\det J_{f\circ g}(x)| = |\det J_f(g(x))|\,|\det J_g(x)| = 1\cdot 1"
                                              r"\text{: layers that preserve volume up to orientation compose.}")
            object.__setattr__(self, "defect_text", r"||\det J| - 1| \,/\, \max(1, \kappa_2(J))")

    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        det = exact_det(traced)
        one = det.ring.one if hasattr(det, "ring") else traced.backend.one  # PolyElement after elimination
        r = traced.reduce(det - one) if self.signed else traced.reduce(det * det - one)
        return {} if r == 0 else {"det": r}

    def float_residual(self, traced: Traced) -> float:
        det = float(np.linalg.det(np.array(traced.jacobian, dtype=float)))
        return abs((det if self.signed else abs(det)) - 1.0)

    jacobian_kind: ClassVar[str] = "logdet"

    def defects(self, probe: Probe) -> torch.Tensor:
        if not probe.full(self.jacobian_kind):
            # J assembled in column blocks (exact LU), κ̂₂ a Lanczos estimate never above κ₂
            sign, logabs = probe.slogdet()
            det = (sign if self.signed else sign.abs()) * torch.exp(logabs)
            return (det - 1).abs() / probe.condition()
        J = probe.J
        det = torch.linalg.det(J)
        return ((det if self.signed else det.abs()) - 1).abs() / condition_scale(J)

    def diagnose(self, model: torch.nn.Module, x: torch.Tensor) -> str:
        with torch.no_grad():
            probe = Probe(model, x.reshape(1, -1).to(_dtype(model)), strict=False)
            if probe.full(self.jacobian_kind):
                det = float(torch.linalg.det(probe.J[0]))
            else:
                sign, logabs = probe.slogdet()
                det = float(sign[0] * torch.exp(logabs[0]))
        if self.signed and det < 0 and abs(abs(det) - 1.0) < 1e-3:
            return (f"det J = {det:.6g} there: the map preserves volume but reverses orientation (a reflection or an odd "
                    "permutation); if that is what you mean, claim VolumePreserving(signed=False), i.e. |det J| = 1")
        return f"det J = {det:.6g} there"

    def options(self) -> list[str]:
        return [] if self.signed else ["signed=False"]

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        return jacobian_tolerance(self.jacobian_kind, dtype, dim, depth)
