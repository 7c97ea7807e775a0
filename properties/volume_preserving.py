"""Volume-preserving maps: det J = 1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from sympy.polys.matrices import DomainMatrix

from verify.properties.base import Probe, MapProperty, Tolerance, condition_scale, depth_dim_tolerance
from verify.derive.polynomial import to_ring
from verify.derive.symbolic import Traced


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
    name: ClassVar[str] = "VolumePreserving"
    statement: ClassVar[str] = r"\det J_f(x) = 1 \quad \forall x,\ \forall\theta"
    obligation: ClassVar[str] = r"\det J_\ell - 1 = 0"
    lemma: ClassVar[str] = (
        r"\det J_{f\circ g}(x) = \det J_f(g(x))\,\det J_g(x) = 1\cdot 1"
        r"\text{: a composition of volume-preserving layers preserves volume.}"
    )
    defect_text: ClassVar[str] = r"|\det J - 1| \,/\, \max(1, \kappa_2(J))"

    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        det = exact_det(traced)
        one = det.ring.one if hasattr(det, "ring") else traced.backend.one  # PolyElement after elimination
        r = traced.reduce(det - one)
        return {} if r == 0 else {"det": r}

    def float_residual(self, traced: Traced) -> float:
        return abs(float(np.linalg.det(np.array(traced.jacobian, dtype=float))) - 1.0)

    def defects(self, probe: Probe) -> torch.Tensor:
        J = probe.J
        det = torch.linalg.det(J)
        return (det - 1).abs() / condition_scale(J)

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        return depth_dim_tolerance(dtype, dim, depth)
