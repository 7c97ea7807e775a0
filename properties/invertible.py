"""Invertible maps: an inverse exists and the implementation computes it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from verify.properties.base import MapProperty, Probe, Tolerance
from verify.errors import InputError
from verify.derive.symbolic import Traced


class NoInverse(Exception):
    pass


@dataclass(frozen=True)
class Invertible(MapProperty):
    name: ClassVar[str] = "Invertible"
    statement: ClassVar[str] = r"f^{-1}(f(x)) = x \text{ and } f(f^{-1}(y)) = y \quad \forall x, y,\ \forall\theta"
    obligation: ClassVar[str] = r"\ell^{-1}(\ell(x)) - x = 0 \text{ for the inverse the layer implements}"
    lemma: ClassVar[str] = (
        r"(f\circ g)^{-1} = g^{-1}\circ f^{-1}"
        r"\text{: a composition of invertible layers is inverted by running the layer inverses in reverse order.}"
    )
    defect_text: ClassVar[str] = (
        r"\max(\|f^{-1}(f(x))-x\|_\infty, \|f(f^{-1}(x))-x\|_\infty) \,/\,"
        r" \big((1+\|x\|_\infty+\|f(x)\|_\infty)\max(1,\kappa_2(J))\big)"
    )
    needs_inverse: ClassVar[bool] = True
    jacobian_kind: ClassVar[str] = "condition"
    # An iterative inverse (fixed point, Newton) is only as good as its iterations: the claim states how good, as the
    # relative round-trip error max(|f⁻¹(f(x)) − x|∞, |f(f⁻¹(x)) − x|∞)/(1 + |x|∞ + |f(x)|∞) it allows (not divided by
    # κ₂(J): the stated accuracy is the whole allowance, so choose it above round-off). None: round-off only.
    inverse_accuracy: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        a = self.inverse_accuracy
        if a is not None and not (isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a < 1):
            raise InputError("Invertible(inverse_accuracy=...)", a, "a number in (0, 1): the relative round-trip error "
                             "the model's iterative inverse is claimed to reach", "write e.g. "
                             "Invertible(inverse_accuracy=1e-5), or leave it out for an exact inverse (round-off only)")

    def numeric(self, subject: Any, domain: Any, settings: Any) -> Any:
        if self.inverse_accuracy is not None:
            # an iterative inverse costs its iterations at every input, and its failures grow with the input's size
            # (out of distribution), which the search's scales cover: no extra data-scale resolution samples
            budget = dataclasses.replace(settings.budget, resolution_cap=0)
            if (subject.dim or 0) > 16:  # an image-sized input costs iterations × blocks passes per round trip
                budget = dataclasses.replace(budget, n_inputs=min(budget.n_inputs, 2048), starts=min(budget.starts, 16),
                                             steps=min(budget.steps, 8), examples=min(budget.examples, 20))
            settings = dataclasses.replace(settings, budget=budget)
        return super().numeric(subject, domain, settings)

    def options(self) -> list[str]:
        return [] if self.inverse_accuracy is None else [f"inverse_accuracy={self.inverse_accuracy:g}"]

    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        if traced.inverse_of_outputs is None:
            raise NoInverse("the symbolic block declares no inverse, so invertibility cannot be proved exactly")
        res = {}
        for i, (back, x) in enumerate(zip(traced.inverse_of_outputs, traced.inputs)):
            r = traced.reduce(back - x)
            if r != 0:
                res[f"x_{i}"] = r
        return res

    def float_residual(self, traced: Traced) -> float:
        if traced.inverse_of_outputs is None:
            raise NoInverse("no inverse")
        return max(abs(b - x) for b, x in zip(traced.inverse_of_outputs, traced.inputs))

    def defects(self, probe: Probe) -> torch.Tensor:
        model = probe.model
        inverse = getattr(model, "inverse", None)
        if not callable(inverse):
            raise InputError(
                "model.inverse", inverse, "a method inverse(y) that maps a batch (B, n) back",
                f"implement {type(model).__name__}.inverse or drop the Invertible claim",
            )
        x, y = probe.x, probe.y
        back = probe.call(y, method="inverse")
        there = probe.call(probe.call(x, method="inverse"))
        err = torch.maximum((back - x).abs().amax(-1), (there - x).abs().amax(-1))
        size = 1 + x.abs().amax(-1) + y.abs().amax(-1)
        if self.inverse_accuracy is not None:
            return err / size  # the stated accuracy is relative to the size alone (see inverse_accuracy)
        # κ₂(J) from the full J at small n, else a Lanczos estimate κ̂₂ ≤ κ₂ (Probe.condition): never excuses more
        return err / (size * probe.condition())

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        if self.inverse_accuracy is not None:
            return Tolerance(float(self.inverse_accuracy), f"stated by the claim: inverse_accuracy={self.inverse_accuracy:g} "
                                                           "(relative round-trip error of the iterative inverse)")
        # A round trip through L layers rounds each layer's update twice (there and back), u = eps/2 each, relative to
        # 1 + |x| + |f(x)|: L·eps; the increments themselves cancel (the inverse recomputes them from the same values)
        # up to the propagated round-off, which the normalisation by κ₂(J) covers; ×1.5 for that propagation. This is
        # the calibrated model: 4·(L+n)·eps sat 40–120× above what trained networks measure (0.2–1.1 eps).
        c = 1.5
        e = float(torch.finfo(dtype).eps)
        return Tolerance(c * max(depth, 1) * e, f"{c:g}·L·eps = {c:g}·{max(depth, 1)}·{e:.3g} (two roundings of u = eps/2 "
                                                  "per layer and round trip, ×1.5 for their propagation)")
