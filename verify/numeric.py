"""The numeric stage: batched defects, a hypothesis search for the worst input, a float64 oracle.

A trained model is probed on the device and dtype it runs in. Defects are
computed for a large seeded batch in one vectorised pass (torch.func.vmap over
jacrev), then hypothesis searches for a worse input, steered by
`hypothesis.target` and shrinking any violation to a small counterexample. The
same inputs are replayed on a float64 copy of the model: a structural violation
survives the cast, round-off shrinks by ~1e9.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from properties.base import Probe, Property
from verify.errors import InputError
from verify.evidence import Failure, Measurement, Verdict

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


def forward(model: torch.nn.Module, x: torch.Tensor, method: str = "forward") -> torch.Tensor:
    """Call the model (or its inverse) on a batch and check what comes back."""
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
    if bad.any():
        row = int(bad.any(dim=-1).nonzero()[0])
        raise NonFiniteOutput(
            f"{name}(x)[{row}]", y[row].detach().cpu().tolist(), "finite numbers",
            f"the model returns NaN/inf at x={x[row].detach().cpu().tolist()}; check its weights "
            "(a diverged training run?) and its operations (division, log, exp overflow)",
        )
    return y


def batched_jacobian(model: torch.nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """J_f(x) for every row of x, shape (B, n, n), with one vectorised reverse-mode pass per chunk."""

    def single(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(single))
    parts = [jac(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    J = torch.cat(parts)
    if not torch.isfinite(J).all():
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


@dataclass(frozen=True)
class SearchSpace:
    """Where inputs are drawn: the data box, and the same box enlarged (beyond the data)."""

    low: Sequence[float]
    high: Sequence[float]
    beyond: float = 2.0

    def outer(self) -> tuple[list[float], list[float]]:
        lo, hi = [], []
        for a, b in zip(self.low, self.high):
            c, h = (a + b) / 2, (b - a) / 2 * self.beyond
            lo.append(c - h)
            hi.append(c + h)
        return lo, hi


def _draw(space: SearchSpace, n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    lo_in = torch.tensor(space.low, dtype=torch.float64)
    hi_in = torch.tensor(space.high, dtype=torch.float64)
    lo_out, hi_out = (torch.tensor(v, dtype=torch.float64) for v in space.outer())
    half = n // 2
    u1 = torch.rand(half, len(space.low), generator=gen, dtype=torch.float64)
    u2 = torch.rand(n - half, len(space.low), generator=gen, dtype=torch.float64)
    x = torch.cat([lo_in + u1 * (hi_in - lo_in), lo_out + u2 * (hi_out - lo_out)])
    return x.to(dtype)


def _defects(prop: Property, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    d = prop.defects(Probe(model, x)).detach()
    if not torch.isfinite(d).all():
        row = int((~torch.isfinite(d)).nonzero()[0])
        raise NonFiniteOutput(
            f"{prop.name} defect", float(d[row]), "a finite defect",
            f"the defect is not finite at x={x[row].cpu().tolist()}; the model is singular or overflows there",
        )
    return d


def _hypothesis_search(
    prop: Property, model: torch.nn.Module, space: SearchSpace, tol: float, seed: int,
    max_examples: int, dtype: torch.dtype, device: torch.device,
) -> dict:
    """Steer hypothesis towards the worst input; a violation is shrunk to a small counterexample."""
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    lo, hi = space.outer()
    coords = [st.floats(min_value=a, max_value=b, allow_nan=False, allow_infinity=False) for a, b in zip(lo, hi)]
    seen = {"worst": -1.0, "worst_x": None, "last_fail": None, "last_fail_defect": None, "examples": 0}

    @hseed(seed)
    @settings(
        max_examples=max_examples, deadline=None, database=None, derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.target, Phase.shrink],
    )
    @given(st.tuples(*coords))
    def probe(values: tuple) -> None:
        x = torch.tensor([values], dtype=dtype, device=device)
        d = float(_defects(prop, model, x)[0])
        seen["examples"] += 1
        target(d / tol, label="defect / tolerance")
        if d > seen["worst"]:
            seen["worst"], seen["worst_x"] = d, list(values)
        if d > tol:
            seen["last_fail"], seen["last_fail_defect"] = list(values), d
            raise AssertionError(f"defect {d:.3g} > tolerance {tol:.3g}")

    counterexample = None
    try:
        probe()
    except AssertionError:
        # hypothesis replays the shrunk example last, so the last failure is the minimal one
        counterexample = (seen["last_fail"], seen["last_fail_defect"])
    return {
        "examples": seen["examples"],
        "worst": seen["worst"],
        "worst_x": seen["worst_x"],
        "counterexample": counterexample,
    }


def measure(
    prop: Property,
    model: torch.nn.Module,
    *,
    dim: int,
    depth: int,
    space: SearchSpace,
    seed: int = 0,
    n_inputs: int = 2048,
    max_examples: int = 150,
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
        tol = prop.tolerance(dtype, dim, depth)
        gen = torch.Generator().manual_seed(seed)
        x = _draw(space, n_inputs, gen, dtype).to(device)
        d = _defects(prop, model, x)
        search = _hypothesis_search(prop, model, space, tol.value, seed, max_examples, dtype, device)
        d64 = None
        tol64 = prop.tolerance(torch.float64, dim, depth)
        if oracle:
            model64 = model if dtype == torch.float64 else copy.deepcopy(model).to(torch.float64)
            d64 = _defects(prop, model64, x.to(torch.float64))
            extra = [v for v in (search["worst_x"], (search["counterexample"] or [None])[0]) if v is not None]
            if extra:
                d64_extra = _defects(prop, model64, torch.tensor(extra, dtype=torch.float64, device=device))
                d64 = torch.cat([d64, d64_extra])
        if d64 is not None and search["counterexample"] is None and float(d64.max()) > tol64.value:
            # structural, yet below the model dtype's tolerance: shrink a counterexample on the float64 copy
            search64 = _hypothesis_search(prop, model64, space, tol64.value, seed, max_examples, torch.float64, device)
            if search64["counterexample"] is not None:
                search["counterexample"] = search64["counterexample"]
                search["counterexample_dtype"] = "float64"
    except InputError as exc:
        return Failure(
            stage="numeric", verdict=Verdict.ERROR, summary=str(exc),
            seconds=time.perf_counter() - start, expected=exc.expected, fix=exc.fix,
        )

    i = int(torch.argmax(d))
    worst, worst_x = float(d[i]), x[i].cpu().tolist()
    if search["worst"] > worst:
        worst, worst_x = search["worst"], search["worst_x"]
    max64 = float(d64.max()) if d64 is not None else math.nan
    structural = d64 is not None and max64 > tol64.value
    exceeded = worst > tol.value
    if structural:
        verdict, classification = Verdict.VIOLATED, "structural"
    elif exceeded:
        verdict, classification = Verdict.VIOLATED, "round-off"
    else:
        verdict, classification = Verdict.HOLDS, "none"
    q = torch.quantile(d.double().cpu(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
    ce = search["counterexample"]
    if verdict is Verdict.HOLDS:
        summary = f"max defect {worst:.3g} ≤ tolerance {tol.value:.3g} over {n_inputs + search['examples']} inputs"
    else:
        summary = (
            f"max defect {worst:.3g} > tolerance {tol.value:.3g} ({classification}: "
            f"float64 defect {max64:.3g} vs float64 tolerance {tol64.value:.3g})"
        )
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
        n_inputs=n_inputs + search["examples"],
        max_defect=worst,
        quantiles={"50%": float(q[0]), "90%": float(q[1]), "99%": float(q[2])},
        worst_input=worst_x,
        tolerance=tol.value,
        tolerance_formula=tol.formula,
        max_defect_float64=max64,
        tolerance_float64=tol64.value,
        classification=classification,
        counterexample=None if ce is None else ce[0],
        counterexample_defect=None if ce is None else ce[1],
        search={
            "counterexample_dtype": search.get("counterexample_dtype", str(dtype).replace("torch.", "")),
            "batch": n_inputs,
            "hypothesis_examples": search["examples"],
            "hypothesis_worst": search["worst"],
            "box_low": list(space.low),
            "box_high": list(space.high),
            "beyond_factor": space.beyond,
        },
        defects_sample=d.cpu().tolist()[:4096],
        defects_sample_float64=[] if d64 is None else d64.cpu().tolist()[:4096],
    )

