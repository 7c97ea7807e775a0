"""What every property provides: a symbolic obligation, a numeric defect, a tolerance model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from verify.symbolic import Traced

if TYPE_CHECKING:
    from verify.claims import Claim


@dataclass(frozen=True)
class Tolerance:
    """A tolerance with the error model that produced it, printed beside every defect."""

    value: float
    formula: str

    def __str__(self) -> str:
        return f"{self.value:.3g} ({self.formula})"


def eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


class Probe:
    """A model evaluated on a batch of inputs; Jacobians are computed once, on demand, batched."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor) -> None:
        from verify.numeric import batched_jacobian, forward

        self.model = model
        self.x = x
        self._forward = forward
        self._batched_jacobian = batched_jacobian
        self._y: torch.Tensor | None = None
        self._J: torch.Tensor | None = None

    @property
    def y(self) -> torch.Tensor:
        if self._y is None:
            self._y = self._forward(self.model, self.x)
        return self._y

    @property
    def J(self) -> torch.Tensor:
        if self._J is None:
            self._J = self._batched_jacobian(self.model, self.x)
        return self._J


@dataclass(frozen=True)
class Property:
    """A mathematical structure a map R^n -> R^n can have.

    `dim`, when given, is the phase-space dimension the claim is about; the
    checker refuses a model of another dimension rather than guess.
    """

    dim: int | None = None

    name: ClassVar[str] = "property"
    statement: ClassVar[str] = ""  # LaTeX of what is claimed, for every x and every parameter
    obligation: ClassVar[str] = ""  # LaTeX of the per-layer identity that is reduced to 0
    lemma: ClassVar[str] = ""  # why the layer lemmas lift to the network (closure under composition)
    defect_text: ClassVar[str] = ""  # LaTeX of the normalised numeric defect
    needs_inverse: ClassVar[bool] = False

    # -- symbolic -----------------------------------------------------------
    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        """Non-zero entries of the residual of the obligation, by position (empty: proved)."""
        raise NotImplementedError

    def float_residual(self, traced: Traced) -> float:
        """Largest |entry| of the residual on a concrete (float) instance of the block."""
        raise NotImplementedError

    # -- numeric ------------------------------------------------------------
    def defects(self, probe: Probe) -> torch.Tensor:
        """Normalised defect per input, shape (B,), in the model's dtype."""
        raise NotImplementedError

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        raise NotImplementedError

    # -- claims ---------------------------------------------------------------
    def falsely(self, reason: str) -> "Claim":
        """This property as a claim that is known to be false (a negative control)."""
        from verify.claims import Claim

        if not reason:
            raise ValueError("reason='' : a negative control must say why its claim is false")
        return Claim(self, expected=False, reason=reason)

    def __str__(self) -> str:
        return self.name if self.dim is None else f"{self.name}(dim={self.dim})"


def safety_factor() -> float:
    # A dot product of length k computed in floating point has relative error below
    # k*eps (Higham, Thm 3.1); we add one such bound per layer and per coordinate
    # and multiply by 4 for the two products in J^T Ω J and the autograd passes.
    return 4.0


def depth_dim_tolerance(dtype: torch.dtype, dim: int, depth: int, extra: str = "") -> Tolerance:
    c = safety_factor()
    value = c * (depth + dim) * eps(dtype)
    return Tolerance(value, f"{c:g}·(L+n)·eps = {c:g}·({depth}+{dim})·{eps(dtype):.3g}{extra}")


def condition_scale(J: torch.Tensor) -> torch.Tensor:
    """max(1, κ₂(J)) per matrix, as the amplification of round-off in det and inverse.

    Where κ₂ is infinite or beyond 1/eps the computed quantity has no correct digit
    left, so dividing by κ would hide anything; the scale falls back to 1 there and
    the defect is judged unnormalised (a singular Jacobian is then caught, not excused).
    """
    cond = torch.linalg.cond(J)
    limit = 1.0 / eps(J.dtype)
    ok = torch.isfinite(cond) & (cond <= limit)
    return torch.where(ok, cond.clamp_min(1.0), torch.ones_like(cond))

