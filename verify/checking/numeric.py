"""The numeric stage of a map property: batched defects searched by the one engine, with a float64 oracle.

A trained model is probed on the device and dtype it runs in. Defects are computed in
vectorised passes (torch.func.vmap over jacrev); the search engine (verify/checking/search.py)
draws inputs at growing scales, ascends the float64 defect from many starts and runs a
targeted hypothesis search. Every input it keeps is replayed on a float64 copy of the
model: a structural violation survives the cast, round-off shrinks by ~1e9.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import torch

from verify.properties.base import HALF_PRECISION, MapProperty, Probe, eps
from verify.checking.domains import NEAR_DATA, Domain
from verify.errors import InputError
from verify.evidence import Failure, Measurement, Verdict
from verify.checking.search import Budget, Objective, SearchResult, search

_STOCHASTIC = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)


class NonFiniteOutput(InputError):
    pass


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: torch.nn.Module) -> torch.device:
    for p in list(model.parameters()) + list(model.buffers()):
        return p.device
    return torch.device("cpu")


def forward(model: torch.nn.Module, x: torch.Tensor, method: str = "forward", strict: bool = True) -> torch.Tensor:
    """Call the model (or its inverse) on a batch and check what comes back (finiteness only when strict)."""
    fn = model if method == "forward" else getattr(model, method)
    y = fn(x)
    name = type(model).__name__ + ("" if method == "forward" else f".{method}")
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name}(x)", type(y).__name__, "a tensor", "return a tensor of shape (B, n)")
    if y.shape != x.shape:
        raise InputError(
            f"{name}(x).shape", tuple(y.shape), f"the input's shape {tuple(x.shape)} (a map R^n -> R^n)",
            "return the next phase-space state for each input row",
        )
    bad = ~torch.isfinite(y)
    if strict and bad.any():
        row = int(bad.any(dim=-1).nonzero()[0])
        raise NonFiniteOutput(
            f"{name}(x)[{row}]", y[row].detach().cpu().tolist(), "finite numbers",
            f"the model returns NaN/inf at x={x[row].detach().cpu().tolist()}; check its weights "
            "(a diverged training run?) and its operations (division, log, exp overflow)",
        )
    return y


def batched_jacobian(model: torch.nn.Module, x: torch.Tensor, chunk: int = 4096, strict: bool = True) -> torch.Tensor:
    """J_f(x) for every row of x, shape (B, n, n), with one vectorised reverse-mode pass per chunk."""

    def single(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(single))
    try:
        parts = [jac(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    except RuntimeError as exc:
        if "vmap" not in str(exc):
            raise
        # code vmap rejects (data-dependent control flow, .item(), in-place writes into an input): one reverse-mode
        # Jacobian per input instead; slower, the same numbers
        jac1 = torch.func.jacrev(single)
        parts = [torch.stack([jac1(xi) for xi in x])]
    J = torch.cat(parts)
    if strict and not torch.isfinite(J).all():
        row = int((~torch.isfinite(J)).flatten(1).any(-1).nonzero()[0])
        raise NonFiniteOutput(
            "J_f(x)", "NaN/inf", "a finite Jacobian",
            f"the Jacobian is not finite at x={x[row].detach().cpu().tolist()}; check for non-differentiable "
            "operations or overflow",
        )
    return J


def loop_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The baseline the benchmark compares against: one autograd Jacobian per sample."""
    out = []
    for xi in x:
        out.append(torch.autograd.functional.jacobian(lambda z: model(z.unsqueeze(0)).squeeze(0), xi))
    return torch.stack(out)


def preflight(model: torch.nn.Module, dim: int, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a model that cannot be measured as a deterministic map R^dim -> R^dim."""
    stochastic = [m for m in model.modules() if isinstance(m, _STOCHASTIC)]
    if model.training and stochastic:
        raise InputError(
            "model.training", True, "a model in eval() mode, so that it is one deterministic map",
            f"call model.eval() before checking: it contains {stochastic[0]!r}, whose output changes "
            "from call to call in train mode",
        )
    x = torch.linspace(-1, 1, 2 * dim, dtype=dtype, device=device).reshape(2, dim)
    with torch.no_grad():
        try:
            y1 = forward(model, x)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                "model(x)", f"{type(exc).__name__}: {exc}", f"a model that accepts a batch of shape (B, {dim})",
                "check the claim's dimension against the model's input size",
            ) from exc
        y2 = forward(model, x)
    if not torch.equal(y1, y2):
        raise InputError(
            "model(x) twice", "different outputs", "the same output for the same input",
            "make the model deterministic (eval() mode, no sampling in forward)",
        )


def float64_copy(model: torch.nn.Module) -> tuple[torch.nn.Module | None, str]:
    """A float64 copy of the model for the oracle, or (None, why) when it cannot be made."""
    if model_dtype(model) == torch.float64:
        return model, "the model runs in float64"
    try:
        m64 = copy.deepcopy(model).to(torch.float64)
    except Exception as exc:  # a module that cannot be copied: the oracle is skipped, and the evidence says so
        return None, f"no float64 copy ({type(exc).__name__}: {exc})"
    left = [n for n, t in list(m64.named_parameters()) + list(m64.named_buffers())
            if t.is_floating_point() and t.dtype != torch.float64]
    if left:
        return None, f"the float64 copy still holds {left[:3]} in another dtype"
    return m64, "deepcopy(model).to(float64)"


def _ratio(prop: MapProperty, model: torch.nn.Module, dtype: torch.dtype, tol: float, detach: bool) -> Any:
    """r(x) = defect(x)/tolerance on `model` in `dtype`; NaN where the model overflows (the engine counts it as worst)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        d = prop.defects(Probe(model, x.to(dtype), strict=False))
        d = d.detach() if detach else d
        return d.to(torch.float64) / tol

    return fn


def measure(
    prop: MapProperty,
    model: torch.nn.Module,
    *,
    dim: int,
    depth: int,
    domain: Domain,
    seed: int = 0,
    budget: Budget = Budget(),
    oracle: bool = True,
) -> Measurement | Failure:
    """Check one property on one trained model; never raises on a bad model, returns a Failure."""
    start = time.perf_counter()
    dtype, device = model_dtype(model), model_device(model)
    try:
        if prop.dim is not None and prop.dim != dim:
            raise InputError(
                f"{prop.name}(dim=...)", prop.dim, f"the model's phase-space dimension {dim}",
                f"declare {prop.name}(dim={dim}) or check the model that matches the claim",
            )
        preflight(model, dim, dtype, device)
        tol = prop.claimed_tolerance(dtype, dim, depth)
        if dtype in HALF_PRECISION:
            name = str(dtype).replace("torch.", "")
            tol = dataclasses.replace(tol, formula=(
                f"{tol.formula}; the model runs in {name}: its outputs and Jacobian are computed in {name}, the "
                f"defect's linear algebra in float32 (torch.linalg has no {name} kernels), and the tolerance is "
                f"{name}'s (eps = {eps(dtype):.3g})"))
        tol64 = prop.claimed_tolerance(torch.float64, dim, depth)
        model64, how64 = float64_copy(model) if oracle else (None, "oracle off")
        objective = Objective(
            ratio=_ratio(prop, model, dtype, tol.value, detach=True),
            ratio64=None if model64 is None else _ratio(prop, model64, torch.float64, tol64.value, detach=False),
        )
        found = search(objective, domain, seed=seed, budget=budget, device=device)
    except InputError as exc:
        return Failure(
            stage="numeric", verdict=Verdict.ERROR, summary=str(exc),
            seconds=time.perf_counter() - start, expected=exc.expected, fix=exc.fix,
        )
    return _measurement(prop, model, found, tol, tol64, dtype, device, seed, domain, how64, start)


def _measurement(prop: MapProperty, model: torch.nn.Module, found: SearchResult, tol: Any, tol64: Any, dtype: torch.dtype,
                 device: torch.device, seed: int, domain: Domain, how64: str, start: float) -> Measurement | Failure:
    worst_r, worst_x = found.worst()
    worst = worst_r * tol.value
    has64 = found.ratios64 is not None
    worst64_r, worst64_x = found.worst(oracle=True) if has64 else (math.nan, None)
    max64 = worst64_r * tol64.value if has64 else math.nan
    n_total = int(found.x.shape[0] + found.candidates.shape[0]) + int(found.methods.get("hypothesis", {}).get("examples", 0))
    n_total += sum(int(m.get("starts", 0)) * int(m.get("steps", 0)) for k, m in found.methods.items() if k in ("gradient", "smoothed"))
    n_total += int(found.methods.get("resolution", {}).get("inputs", 0))
    res = found.methods.get("resolution", {})
    # the coverage at the data scale, stated: the smallest region that sampling resolves there
    res_text = (f"; resolution ρ = {res['resolution']:.3g} of the half-width at the data scale "
                f"({res['data_scale_inputs']} samples there)" if "resolution" in res else "")
    if not math.isfinite(worst) or (has64 and not math.isfinite(max64)):
        x_bad = worst_x if not math.isfinite(worst) else worst64_x
        return Failure(
            stage="numeric", verdict=Verdict.ERROR, seconds=time.perf_counter() - start,
            summary=(f"{prop.name} defect is not finite at x={_short(x_bad)} (|x|∞ = {float(x_bad.abs().max()):.3g}): "
                     "the model overflows or divides by zero there, so the claim cannot be checked at that input"),
            expected="finite outputs and Jacobians wherever the claim is made",
            fix="fix the overflow, or restrict the claim to where it is meant: "
                f"{prop.name}(where=(low, high)) (the search grows outward from the data box, ×10³ by default)",
        )
    structural = has64 and worst64_r > 1.0
    near = [(found.ratios, found.x), (found.cand_ratios, found.candidates)]
    near_r = max(float(r[domain.near_data(xs)].max()) if bool(domain.near_data(xs).any()) else -math.inf for r, xs in near)
    exceeded = near_r > 1.0
    far_excess = worst_r > 1.0 and not exceeded  # reported, not a verdict (see verify/domains.NEAR_DATA)
    if structural:
        verdict, classification = Verdict.VIOLATED, "structural"
    elif exceeded:
        verdict, classification = Verdict.VIOLATED, "round-off"
    else:
        verdict, classification = Verdict.HOLDS, "none"
    d = found.ratios * tol.value
    q = torch.quantile(d.double().cpu(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
    ce = found.counterexample
    scales = ", ".join(found.methods["sampling"]["scales"])
    if verdict is Verdict.HOLDS:
        summary = (f"max defect {worst:.3g} {'>' if far_excess else '≤'} tolerance {tol.value:.3g} over {n_total} inputs "
                   f"(scales ×{scales} of the data box, gradient and smoothed ascent, hypothesis){res_text}; float64 max "
                   f"{max64:.3g} ≤ {tol64.value:.3g}"
                   + (f"; the {str(dtype).replace('torch.', '')} excess is beyond ×{NEAR_DATA:g} the data, where only the "
                      "float64 oracle judges (the defect's own evaluation has no correct digit left there)" if far_excess else ""))
    else:
        summary = (f"max defect {worst:.3g} {'>' if exceeded else '≤'} tolerance {tol.value:.3g} ({classification}: "
                   f"float64 defect {max64:.3g} {'>' if structural else '≤'} float64 tolerance {tol64.value:.3g})"
                   + (f"; counterexample ({found.counterexample_dtype}) x = {_short(ce)}" if ce is not None else ""))
        hint = _diagnosis(prop, model, ce if ce is not None else (worst64_x if structural else worst_x))
        if hint:
            summary += f"; {hint}"
    observed = near_r * tol.value if math.isfinite(near_r) else float(d.max())
    return Measurement(
        stage="numeric",
        verdict=verdict,
        summary=summary,
        seconds=time.perf_counter() - start,
        property=prop.name,
        defect=prop.defect_text,
        dtype=str(dtype).replace("torch.", ""),
        device=str(device),
        seed=seed,
        n_inputs=n_total,
        max_defect=worst,
        quantiles={"50%": float(q[0]), "90%": float(q[1]), "99%": float(q[2])},
        worst_input=worst_x.cpu().tolist(),
        tolerance=tol.value,
        tolerance_formula=tol.formula,
        max_defect_float64=max64,
        tolerance_float64=tol64.value,
        classification=classification,
        counterexample=None if ce is None else ce.cpu().tolist(),
        counterexample_defect=None if ce is None else found.counterexample_ratio * (
            tol.value if found.counterexample_dtype == "model" else tol64.value),
        search={
            "counterexample_dtype": (str(dtype).replace("torch.", "") if found.counterexample_dtype == "model"
                                     else found.counterexample_dtype),
            "domain": domain.describe(),
            "oracle": how64,
            "methods": found.coverage(),
            "seconds": found.seconds,
            "calibration_ratio": tol.value / observed if observed > 0 else math.inf,
            "near_data_worst_ratio": near_r,
            "near_data_rule": f"the model's dtype is held to its tolerance within ×{NEAR_DATA:g} the data; beyond, the "
                              "float64 oracle alone decides",
        },
        defects_sample=d.cpu().tolist()[:4096],
        defects_sample_float64=[] if found.ratios64 is None else (found.ratios64 * tol64.value).cpu().tolist()[:4096],
    )


def _diagnosis(prop: MapProperty, model: torch.nn.Module, x: torch.Tensor | None) -> str:
    """The property's own reading of the violation at x; a diagnosis that fails says nothing rather than hide the verdict."""
    if x is None:
        return ""
    try:
        return prop.diagnose(model, x)
    except Exception:  # noqa: BLE001 - the verdict stands without the sentence
        return ""


def _short(x: torch.Tensor | None) -> str:
    if x is None:
        return "None"
    vals = x.flatten().cpu().tolist()
    text = "[" + ", ".join(f"{v:.4g}" for v in vals[:8]) + (", …" if len(vals) > 8 else "") + "]"
    return text
