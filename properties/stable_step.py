"""Stable step: a layer read as one step of a scheme keeps h·λ inside the scheme's stability region.

For dx/dt = f(x) stepped by a Runge–Kutta scheme with stability function R, the
linearised step is stable when |R(h λ)| ≤ 1 for every eigenvalue λ of ∂f/∂x. R comes
exactly from the scheme's tableau; the eigenvalues from the trained weights, at every
drawn input. For a linear field the largest stable step is decided exactly.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import sympy as sp
import torch

from verify.properties.base import Probe, MapProperty, Tolerance, depth_dim_tolerance
from verify.errors import InputError


@functools.lru_cache(maxsize=64)
def stability_polynomials(scheme_name: str) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """Coefficients (ascending powers) of P and Q with R = P/Q, from the exact stability function."""
    from verify.schemes import catalogue
    from verify.schemes.properties import stability_function

    finding = stability_function(catalogue.get(scheme_name))
    if finding.status != "proved":
        raise InputError("scheme", scheme_name, "a scheme whose stability function is known",
                         f"the stability function could not be derived: {finding.derivation}")
    z = sp.Symbol("z")
    expr = sp.sympify(finding.value, locals={"z": z})
    num, den = sp.fraction(sp.together(expr))
    free = (num.free_symbols | den.free_symbols) - {z}
    if free:
        raise InputError("stability function", expr, "a function of z alone", "use a catalogued scheme")
    P = sp.Poly(num, z).all_coeffs()[::-1]
    Q = sp.Poly(den, z).all_coeffs()[::-1]
    return tuple(float(c) for c in P), tuple(float(c) for c in Q), sp.latex(expr)


def _poly(coeffs: tuple[float, ...], z: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(z)
    for c in reversed(coeffs):
        out = out * z + c
    return out


class _VectorField(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.vector_field(x)


def _require(model: torch.nn.Module) -> tuple[str, float]:
    for attr in ("vector_field", "scheme", "h"):
        if not hasattr(model, attr):
            raise InputError(
                f"{type(model).__name__}.{attr}", None, "a model that exposes vector_field(x), scheme (a catalogue name) and h",
                "StableStep is for networks declared as steps of a scheme; add these attributes",
            )
    return str(model.scheme), float(model.h)


@dataclass(frozen=True)
class StableStep(MapProperty):
    name: ClassVar[str] = "StableStep"
    statement: ClassVar[str] = r"|R(h\lambda)| \le 1 \ \ \forall \lambda \in \operatorname{spec}\partial_x f(x),\ \forall x"
    obligation: ClassVar[str] = r"h \le h_{\max}(W) = \sup\{h: |R(h'\lambda)|\le 1\ \forall h'\le h,\ \lambda\in\operatorname{spec}W\}"
    lemma: ClassVar[str] = r"\text{the same field } f \text{ and step } h \text{ are used at every step (weight tying), so one condition covers every layer}"
    defect_text: ClassVar[str] = r"\max(0, \max_\lambda |R(h\lambda)| - 1)"

    def defects(self, probe: Probe) -> torch.Tensor:
        from verify.checking.numeric import batched_jacobian

        scheme, h = _require(probe.model)
        P, Q, _ = stability_polynomials(scheme)
        J = batched_jacobian(_VectorField(probe.model), probe.x, strict=probe.strict)
        z = h * torch.linalg.eigvals(J)
        r = (_poly(P, z) / _poly(Q, z)).abs()
        return (r.amax(dim=-1) - 1).clamp_min(0.0)

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        return depth_dim_tolerance(dtype, dim, depth)

    def symbolic(self, subject: Any) -> Any:
        """The exact largest stable step on the trained linear field when there is one, else the scheme/blocks."""
        if subject.model is not None:
            found = self.derive_trained(subject.model, subject.time_limit)
            if found is not None:
                return found
        return super().symbolic(subject)

    def derive_trained(self, model: torch.nn.Module, time_limit: float) -> Any:
        """Exact largest stable step for a linear field f(x) = W x with the trained W (converted exactly)."""
        from verify.evidence import BlockResult, Proof, Refutation, Verdict
        from verify.schemes import catalogue
        from verify.schemes.properties import max_stable_step

        if getattr(model, "width", 1) or not hasattr(model, "linear_part"):
            return None  # nonlinear field: the spectrum depends on x, judged numerically only
        scheme, h = _require(model)
        start = time.perf_counter()
        bound = _linear_binding(model)
        if bound is None:
            return None  # the field is not the declared linear map: judged numerically only (and the report says why)
        W = model.linear_part().detach().double().cpu().tolist()
        exact = [[sp.Rational(Fraction(v).numerator, Fraction(v).denominator) for v in row] for row in W]
        finding = max_stable_step(catalogue.get(scheme), exact, limit=time_limit)
        seconds = time.perf_counter() - start
        if finding.status == "undecided":
            return None
        h_max = finding.value
        h_exact = sp.Rational(Fraction(h).numerator, Fraction(h).denominator)
        _, _, R = stability_polynomials(scheme)
        ok = bool(sp.Le(h_exact, h_max)) if h_max != sp.oo else True
        block = BlockResult(
            block=f"{scheme} on the trained linear field", verdict=Verdict.PROVED if ok else Verdict.VIOLATED,
            obligation=self.obligation, residual="0" if ok else rf"h - h_{{\max}} = {sp.latex(sp.N(h_exact - h_max, 6))} > 0",
            seconds=seconds,
            instance=None if ok else {"activation": "none (linear field)", "x": [], "parameters": {"W": W},
                                      "residual": float(h_exact - h_max), "seed": 0},
            message=f"R(z) = {R}; {finding.derivation}",
        )
        summary = (f"exact largest stable step of {scheme} for the trained W: h_max = {sp.N(h_max, 8)}; "
                   f"declared h = {h} is {'inside' if ok else 'OUTSIDE'} the stability region")
        cls = Proof if ok else Refutation
        extra = {"lemma": self.lemma, "bound_by": bound} if ok else {}
        return cls(stage="symbolic", verdict=block.verdict, summary=summary, seconds=seconds,
                   statement=self.statement, blocks=[block], **extra)


def _linear_binding(model: torch.nn.Module) -> str | None:
    """The exact decision is about W = model.linear_part(); it counts for the module only if its field is x ↦ W x.

    Checked in float64 on seeded inputs at growing scales (1 to 10³): |f(x) − W x|∞ ≤ 64·n·eps64·(1 + |W|·|x|).
    """
    from verify.precision import float64_copy

    try:
        m64 = float64_copy(model)
    except Exception:
        return None
    W = m64.linear_part().detach()
    n = W.shape[0]
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([s * (2 * torch.rand(64, n, generator=gen, dtype=torch.float64) - 1) for s in (1.0, 10.0, 100.0, 1000.0)])
    x = x.to(W.device)
    with torch.no_grad():
        f = m64.vector_field(x)
    scale = 1 + W.abs().sum(1).max() * x.abs().amax(1)
    worst = float(((f - x @ W.T).abs().amax(1) / scale).max())
    if not worst <= 64 * n * torch.finfo(torch.float64).eps:
        return None
    return (f"the trained W converted exactly to rationals; the module's vector_field agrees with x ↦ W x to {worst:.2g} "
            f"(relative, float64) on 256 inputs at scales 1–10³")
