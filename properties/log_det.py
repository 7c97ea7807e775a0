"""Log-determinants a model reports: the number a flow's likelihood is built on equals log|det J_f(x)|.

A flow's density is p(x) = p_z(f(x))·|det J_f(x)|, computed from the log-determinant the flow *reports* (summed from its
layers' scales), never from J itself. A sign or bookkeeping bug in that sum leaves the round trip intact, so invertibility
checks cannot see it (such bugs shipped in normflows and flowjax, whose tests used transforms with log-det 0). This
property compares the reported number with the Jacobian's own: log|det J| from a pivoted LU of J (torch.linalg.slogdet).

The model reports its log-determinant through a method (default `log_det(x) -> (B,)`; `LogDet(method="...")` names
another); `inverse_method` names the inverse's (log|det J_{f⁻¹}(y)|, checked against the inverse's own Jacobian)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from verify.errors import InputError
from verify.properties.base import MapProperty, Probe, Tolerance, depth_dim_tolerance


def reported_log_det(model: torch.nn.Module, x: torch.Tensor, method: str) -> torch.Tensor:
    """The log-determinant `model.<method>(x)` reports, checked to be one finite-or-not number per input, shape (B,)."""
    fn = getattr(model, method, None)
    name = f"{type(model).__name__}.{method}"
    if not callable(fn):
        raise InputError(name, fn, f"a method {method}(x) returning log|det J_f(x)| per input, shape (B,)",
                         f"implement {name} (a flow's summed layer log-scales), or name the method the model has with "
                         "LogDet(method=...), or drop the LogDet claim")
    out = fn(x.clone())
    if isinstance(out, (tuple, list)):
        raise InputError(f"{name}(x)", f"a {type(out).__name__} of {len(out)}", "one tensor of shape (B,)",
                         f"{name} returns several values: wrap it so that it returns the log-determinant alone")
    if not isinstance(out, torch.Tensor):
        raise InputError(f"{name}(x)", type(out).__name__, "a tensor of shape (B,)", "return a tensor")
    if out.shape == (x.shape[0], 1):
        out = out[:, 0]
    if out.shape != (x.shape[0],):
        raise InputError(f"{name}(x).shape", tuple(out.shape), f"({x.shape[0]},): one log-determinant per input",
                         "sum the per-layer log-determinants over every dimension but the batch")
    return out


@dataclass(frozen=True)
class LogDet(MapProperty):
    """The reported log-determinant equals log|det J_f(x)| (and, with `inverse_method`, the inverse's its own)."""

    method: str = "log_det"
    inverse_method: str | None = None

    name: ClassVar[str] = "LogDet"
    jacobian_kind: ClassVar[str] = "logdet"
    statement: ClassVar[str] = r"\mathrm{logdet}_f(x) = \log|\det J_f(x)| \quad \forall x,\ \forall\theta"
    obligation: ClassVar[str] = r"\mathrm{logdet}_\ell(x) - \log|\det J_\ell(x)| = 0"
    lemma: ClassVar[str] = (
        r"\log|\det J_{f\circ g}(x)| = \log|\det J_f(g(x))| + \log|\det J_g(x)|"
        r"\text{: a sum of correct per-layer log-determinants is the network's.}"
    )
    defect_text: ClassVar[str] = (
        r"|\mathrm{logdet}_f(x) - \log|\det J|| \,/\, \big((1+|\log|\det J||)\max(1,\kappa_2(J))\big)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for what, value in (("method", self.method), ("inverse_method", self.inverse_method)):
            if value is not None and (not isinstance(value, str) or not value.isidentifier()):
                raise InputError(f"LogDet({what}=...)", value, "the name of a method of the model",
                                 'write LogDet(method="log_det") or the name your flow uses')

    @property
    def needs_inverse(self) -> bool:  # type: ignore[override]
        return self.inverse_method is not None

    def defects(self, probe: Probe) -> torch.Tensor:
        # the probe answers from the full J at small n, from J assembled in column blocks above (verify/checking/
        # matrix_free.py; κ₂ then a Lanczos estimate never above it): the same numbers where both run
        x = probe.x
        _, logabs = probe.slogdet()
        reported = reported_log_det(probe.model, x, self.method).to(logabs.dtype)
        d = (reported - logabs).abs() / ((1 + logabs.abs()) * probe.condition())
        if self.inverse_method is not None:
            y = probe.y
            inv = Probe(_InverseView(probe.model), y, strict=probe.strict)
            _, logabs_inv = inv.slogdet()
            rep_inv = reported_log_det(probe.model, y, self.inverse_method).to(logabs_inv.dtype)
            d = torch.maximum(d, (rep_inv - logabs_inv).abs() / ((1 + logabs_inv.abs()) * inv.condition()))
        return d

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        # log|det J| by LU: backward-stable, so its absolute error is ~n·eps·κ(J) (the normalisation's κ); the reported
        # sum of L layer log-scales rounds once per layer and per coordinate, relative to its size (1 + |logdet|)
        return depth_dim_tolerance(dtype, dim, depth)

    def __str__(self) -> str:
        text = super().__str__()
        extra = [] if self.method == "log_det" else [f"method={self.method!r}"]
        if self.inverse_method is not None:
            extra.append(f"inverse_method={self.inverse_method!r}")
        if not extra:
            return text
        return text[:-1] + ", " + ", ".join(extra) + ")" if text.endswith(")") else f"{text}({', '.join(extra)})"


class _InverseView(torch.nn.Module):
    """The model's inverse as a module (so that its Jacobian is computed by the same batched path)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model.inverse(y)
