"""Conformally symplectic maps: JᵀΩJ = e^{−γh}Ω, the structure of dissipative Hamiltonian flows and of the optimisers
read as their discretisations (heavy-ball momentum is conformal symplectic with factor μ; Nesterov's method is not:
França, Jordan, Vidal 2020)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from verify.derive.symbolic import Traced
from verify.errors import InputError
from verify.properties.base import Probe
from verify.properties.symplectic import Symplectic, _half, omega_form, omega_matrix


def _state_halves(n: int) -> int:
    """P, for a state x = (θ, v) of dimension n = 2P: the claim pairs each parameter with its velocity (momentum
    buffer); an odd n has no such pairing (an optimiser with no velocity state, plain gradient descent, say)."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0 or n % 2:
        raise InputError(
            "dim", n, "an even dimension 2P: the state x = (θ, v) of a momentum method, P parameters θ and a velocity "
            "(momentum buffer) v of the same size (or (q, p) of a dissipative flow)",
            "a conformally symplectic claim is about a map of (θ, v): pass the optimiser's state with its velocity, "
            "e.g. x = cat(θ, momentum_buffer) for torch.optim.SGD(momentum=μ); an optimiser with no velocity state "
            "(plain gradient descent θ ← θ − lr·∇f(θ), a map of θ alone) has no ω to scale: claim something else")
    return n // 2


def _raw_form(J: list[list[Any]], zero: Any) -> dict[tuple[int, int], Any]:
    """Upper-triangular entries of JᵀΩJ itself (omega_form subtracts its `one` from the (i, i+d) entries)."""
    return omega_form(J, zero, zero)


def _residual_against_own_factor(form: dict[tuple[int, int], Any], d: int) -> tuple[Any, dict[tuple[int, int], Any]]:
    """(c, JᵀΩJ − cΩ) with c = (JᵀΩJ)_{0,d}: the layer is conformally symplectic iff the residual is 0 and c is constant."""
    c = form[(0, d)]
    return c, {(i, j): (v - c if j == i + d else v) for (i, j), v in form.items()}


@dataclass(frozen=True)
class ConformalSymplectic(Symplectic):
    """JᵀΩJ = μΩ with the constant factor μ = e^{−γh} (γ = `rate`, h = `step`), for every x.

    Per layer the symbolic obligation is JᵀΩJ = c·Ω with c a constant of the layer (free of x and of the abstract
    functions' values): the layer's own factor, reported. Factors multiply under composition, so the network is
    conformally symplectic with the product; whether that product is the claimed e^{−γh} depends on the trained
    hyper-parameters and is measured by the numeric stage (whose defect is JᵀΩJ − e^{−γh}Ω, so a wrong rate is a
    violation with the measured factor in its diagnosis)."""

    rate: float = 0.0
    step: float = 1.0

    name: ClassVar[str] = "ConformalSymplectic"
    statement: ClassVar[str] = r"J_f(x)^\top \Omega\, J_f(x) = e^{-\gamma h}\,\Omega \quad \forall x"
    obligation: ClassVar[str] = (r"J_\ell^\top \Omega J_\ell - c_\ell\,\Omega = 0,\ c_\ell = (J_\ell^\top\Omega J_\ell)_{1,d+1}"
                                 r"\text{ free of } x")
    lemma: ClassVar[str] = (
        r"(J_f J_g)^\top\Omega(J_f J_g) = J_g^\top(c_f\Omega)J_g = c_f c_g\,\Omega\text{: a composition of conformally "
        r"symplectic layers is conformally symplectic, with the product of their factors (the rates add).}"
    )
    defect_text: ClassVar[str] = r"\max_{ij}|(J^\top\Omega J-e^{-\gamma h}\Omega)_{ij}| \,/\, \max(1,\|J\|_2^2)"

    def __post_init__(self) -> None:
        super().__post_init__()
        for label, v in (("rate", self.rate), ("step", self.step)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"ConformalSymplectic({label}=...)", v, "a finite number",
                                 "write e.g. ConformalSymplectic(rate=0.105, step=1.0), or "
                                 "ConformalSymplectic.with_factor(0.9) for a heavy-ball momentum of 0.9")
        if self.step <= 0:
            raise InputError("ConformalSymplectic(step=...)", self.step, "a step h > 0",
                             "pass the optimiser's or integrator's step, e.g. step=1.0 (one iteration)")

    @classmethod
    def with_factor(cls, factor: float, **options: Any) -> "ConformalSymplectic":
        """The claim JᵀΩJ = factor·Ω (e.g. heavy-ball momentum μ): rate = −ln(factor) per unit step."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
            raise InputError("ConformalSymplectic.with_factor(factor)", factor, "a factor e^{−γh} > 0",
                             "pass the momentum coefficient, e.g. with_factor(0.9)")
        return cls(rate=-math.log(factor), step=1.0, **options)

    @property
    def factor(self) -> float:
        return math.exp(-self.rate * self.step)

    def options(self) -> list[str]:
        return [f"rate={self.rate:.6g}", f"step={self.step:g}", f"factor={self.factor:.6g}"]

    # -- symbolic -------------------------------------------------------------
    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        d = _state_halves(len(traced.jacobian))
        c, res = _residual_against_own_factor(_raw_form(traced.jacobian, traced.backend.zero), d)
        out = {f"({i},{j})": traced.reduce(v) for (i, j), v in res.items()}
        out = {k: v for k, v in out.items() if v != 0}
        c = traced.reduce(c)
        meaning = getattr(traced.backend, "meaning", {})
        state = [g for g in _generators(c) if g in meaning]
        if state:
            # c depends on the input (or the abstract functions' values there): no constant rate
            out["c = (JᵀΩJ)_(0,d) depends on x"] = c
        if c == 0:
            out["c = 0 (the map collapses phase space)"] = traced.backend.one
        return out

    def float_residual(self, traced: Traced) -> float:
        d = _state_halves(len(traced.jacobian))
        _, res = _residual_against_own_factor(_raw_form(traced.jacobian, 0.0), d)
        return max((abs(v) for v in res.values()), default=0.0)

    def symbolic(self, subject: Any) -> Any:
        """The per-layer proof (JᵀΩJ = c_ℓΩ, c_ℓ free of x), then the claimed factor against Π c_ℓ evaluated at the
        module's own bound parameters: the proof covers every parameter value, the claim one factor, so the proof
        stands for the claim only when the module's numbers give that factor (else `violated`, with both numbers; with
        no bound module, `undecided`)."""
        import dataclasses

        from verify.evidence import Verdict

        found = super().symbolic(subject)
        if found is None or found.verdict is not Verdict.PROVED or self.within is not None:
            return found
        layers = subject.notes.get("layers")
        if not isinstance(layers, list) or not layers:
            return dataclasses.replace(found, verdict=Verdict.UNDECIDED, summary=(
                f"{found.summary}; each layer's factor c_ℓ is an expression of its parameters, and no module is bound "
                f"to evaluate it, so whether Π c_ℓ = {self.factor:.6g} (the claim) is left to the numeric stage"))
        try:
            factor, parts = _bound_factor(layers)
        except Exception as exc:  # a factor that cannot be evaluated: the claim's rate is not decided here
            return dataclasses.replace(found, verdict=Verdict.UNDECIDED, summary=(
                f"{found.summary}; the layers' factor could not be evaluated at the module's parameters "
                f"({type(exc).__name__}: {exc}), so the claimed factor is left to the numeric stage"))
        dtype = _storage_dtype(subject, layers)
        # the parameters are stored in the module's dtype: each rounded by eps/2, through a product of len(parts)
        # polynomial factors of low degree; 4·L·eps·|claimed| covers that with a margin of 2 and more
        allowed = 4.0 * len(parts) * float(torch.finfo(dtype).eps) * max(1.0, abs(self.factor))
        shown = " · ".join(f"{c} = {v:.9g}" for c, v in parts)
        if abs(factor - self.factor) <= allowed:
            return dataclasses.replace(found, summary=(
                f"{found.summary}; factor at the module's own parameters: {shown}, product {factor:.9g} = claimed "
                f"e^(−γh) = {self.factor:.9g} (to {allowed:.2g}, the storage rounding of {dtype})"), bound_by="")
        return dataclasses.replace(found, verdict=Verdict.VIOLATED, summary=(
            f"every layer is conformally symplectic (JᵀΩJ = c_ℓΩ exactly, c_ℓ free of x), but at the module's own "
            f"parameters {shown}: the network's factor is {factor:.9g}, not the claimed e^(−γh) = {self.factor:.9g} "
            f"(rate γh = {-math.log(factor) if factor > 0 else math.inf:.6g}, claimed {self.rate * self.step:.6g})"))

    # -- numeric ----------------------------------------------------------------
    def defects(self, probe: Probe) -> torch.Tensor:
        mu = self.factor
        _state_halves(probe.n)  # before any Jacobian work: an odd state has no (θ, v) pairs
        if not probe.full(self.jacobian_kind):
            return probe.symplectic_norm(factor=mu) / probe.norm2().square().clamp_min(1.0)
        J = probe.J
        om = omega_matrix(J.shape[-1], J.dtype, J.device)
        r = J.transpose(-1, -2) @ om @ J - mu * om
        scale = torch.linalg.matrix_norm(J, ord=2).square().clamp_min(1.0)
        return r.abs().amax(dim=(-1, -2)) / scale

    def defect_parts(self, probe: Probe) -> dict[str, torch.Tensor] | None:
        """The defect whole and in two parts, each normalised as `defects`: how far JᵀΩJ is from c(x)·Ω with c(x) its
        own factor at x (the mean of its upper-right block's diagonal), and |c(x) − e^{−γh}|. The float64 oracle's storage
        judgement holds each part to its own allowance (verify/checking/numeric.py): moving a stored momentum by its
        float32 precision moves c(x), never JᵀΩJ's departure from a multiple of Ω, so a non-conformal term below float32
        resolution is not excused by the factor's storage allowance. None on the matrix-free path (the full J is
        needed for c(x)): the judgement then uses the whole defect."""
        _state_halves(probe.n)
        if not probe.full(self.jacobian_kind):
            return None
        J = probe.J
        d = J.shape[-1] // 2
        om = omega_matrix(J.shape[-1], J.dtype, J.device)
        form = J.transpose(-1, -2) @ om @ J
        c = torch.diagonal(form[..., :d, d:], dim1=-2, dim2=-1).mean(-1)
        scale = torch.linalg.matrix_norm(J, ord=2).square().clamp_min(1.0)
        off = (form - c[..., None, None] * om).abs().amax(dim=(-1, -2))
        whole = (form - self.factor * om).abs().amax(dim=(-1, -2))
        # the whole defect stays a part of its own: splitting can only add detections, never excuse what it did not
        return {"JᵀΩJ − e^(−γh)Ω, the whole defect": whole / scale, "JᵀΩJ − c(x)Ω, c(x) its own factor": off / scale,
                "c(x) − e^(−γh)": (c - self.factor).abs() / scale}

    def diagnose(self, model: torch.nn.Module, x: torch.Tensor) -> str:
        """The factor the map has at x (the mean of the diagonal of JᵀΩJ's upper-right block), against the claimed one,
        and how far JᵀΩJ is from any multiple of Ω there."""
        from verify.checking.numeric import batched_jacobian

        n = int(x.shape[-1])
        if n > 256:
            return ""
        try:
            J = batched_jacobian(model, x.reshape(1, n))[0].double()
        except Exception:  # a diagnosis is a courtesy: the verdict does not depend on it
            return ""
        d = n // 2
        om = omega_matrix(n, J.dtype, J.device)
        form = J.T @ om @ J
        c = float(torch.diagonal(form[:d, d:]).mean())
        off = float((form - c * om).abs().max())
        rate = f"rate γh = {-math.log(c):.4g}" if c > 0 else "no rate (c ≤ 0)"
        if off <= 1e-6 * max(1.0, abs(c)):
            return (f"JᵀΩJ = c·Ω at this input with c = {c:.6g} ({rate}), claimed e^(−γh) = {self.factor:.6g}: "
                    f"conformally symplectic with another factor")
        return (f"JᵀΩJ is no multiple of Ω here: best factor c = {c:.4g}, off by {off:.3g} (max entry of JᵀΩJ − cΩ); "
                f"claimed e^(−γh) = {self.factor:.6g}")


def _generators(p: Any) -> set[int]:
    """The generator indices a value of the exact backend uses (none for a plain number)."""
    from verify.derive.polynomial import SPoly

    if isinstance(p, SPoly):  # monomials are sorted tuples of generator indices
        return {i for mono in p.t for i in mono}
    if hasattr(p, "monoms"):  # a sympy PolyElement after reduction: dense exponent tuples over the same generators
        return {i for mono in p.monoms() for i, e in enumerate(mono) if e}
    return set()


def _bound_factor(layers: list) -> tuple[float, list[tuple[str, float]]]:
    """Π c_ℓ over the bound layers, each c_ℓ = (J_ℓᵀΩJ_ℓ)_(0,d) from the exact trace of its block, evaluated at the
    layer's own parameters (float64); and (c_ℓ as text, value) per layer."""
    from verify.derive.binding import _resolve
    from verify.derive.proofs import trace_exact

    total, parts = 1.0, []
    for k, bound in enumerate(layers):
        t = trace_exact(bound.block)
        d = _half(len(t.jacobian))
        c = t.reduce(_raw_form(t.jacobian, t.backend.zero)[(0, d)])
        expr = t.to_expr(c) if hasattr(c, "t") or hasattr(c, "monoms") else c
        import sympy as sp

        expr = sp.sympify(expr)
        values = {name: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                  for name, v in _resolve(bound, f"layer {k}").values.items()}
        subs = {sym: values[str(sym)] for sym in expr.free_symbols if str(sym) in values}
        missing = [str(sym) for sym in expr.free_symbols if str(sym) not in values]
        if missing:
            raise ValueError(f"c = {expr} uses {missing}, which are not parameters of the bound module")
        value = float(expr.subs(subs))
        total *= value
        parts.append((f"c_{k} = {expr}", value))
    return total, parts


def _storage_dtype(subject: Any, layers: list) -> torch.dtype:
    """The dtype the module stores its numbers in: the bound layers belong to its float64 copy, so the trained model's,
    else (symbolic stage only) the dtype the architecture builds its modules in."""
    arch = getattr(subject, "architecture", None)
    if subject.model is None and arch is not None and getattr(arch, "default_dtype", None) is not None:
        return arch.default_dtype
    for module in [subject.model] + [bound.module for bound in layers]:
        if module is not None:
            for t in list(module.parameters()) + list(module.buffers()):
                if t.is_floating_point():
                    return t.dtype
    return torch.float64
