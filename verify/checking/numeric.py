"""The numeric stage of a map property: batched defects searched by the one engine, with a float64 oracle.

A trained model is probed on the device and dtype it runs in. Defects are computed in
vectorised passes (torch.func.vmap over jacrev); the search engine (verify/checking/search.py)
draws inputs at growing scales, ascends the float64 defect from many starts and runs a
targeted hypothesis search. Every input it keeps is replayed on a float64 copy of the
model: a structural violation survives the cast, round-off shrinks by ~1e9.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import time
import weakref
from typing import Any

import torch

from verify.properties.base import HALF_PRECISION, MapProperty, Probe, eps
from verify.checking.domains import NEAR_DATA, Domain
from verify.errors import InputError, explain
from verify.precision import LAMBDA_STORAGE, STORAGE_DRAWS, STORAGE_RULE, CopyError, copy_path, float64_copy, stored_precision
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
    """Call the model (or its inverse) on a fresh copy of a batch and check what comes back (finiteness only when
    strict). A fresh copy, because some modules free or overwrite the tensor they are given (memcnn's
    InvertibleModuleWrapper(keep_input=False) releases its input's storage after the call)."""
    fn = model if method == "forward" else getattr(model, method)
    y = fn(x.clone())
    name = type(model).__name__ + ("" if method == "forward" else f".{method}")
    if isinstance(y, (tuple, list)):
        raise InputError(
            f"{name}(x)", f"a {type(y).__name__} of {len(y)}", "a tensor of the input's shape",
            f"{name} returns several values (FrEIA's modules return (z, log_jac_det), for one): wrap it so that "
            f"{'forward' if method == 'forward' else method}(x) returns the output tensor alone, and check the wrapper",
        )
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


# -- Jacobians ---------------------------------------------------------------------------------------------------
# The fast path is one vectorised reverse-mode pass per chunk (torch.func.vmap over jacrev). Code that vmap rejects
# (in-place writes into a solver's buffer, a log-det accumulated in place, data-dependent control flow, an
# autograd.Function without setup_context) falls back to classic autograd over the whole chunk, one reverse pass per
# output coordinate (the rows of a batch are independent inputs of the map, checked once per model); a checkpointing
# autograd.Function that refuses torch.autograd.grad (memcnn's) falls back to .backward() per output coordinate, each
# after a fresh forward. The path that ran is recorded per model and stated in the evidence.
JACOBIAN_PATHS = {
    "vmap": "torch.func.vmap(jacrev) over each chunk",
    "grad": "classic autograd over each chunk, one reverse pass (torch.autograd.grad) per output coordinate",
    "backward": "classic autograd over each chunk, a fresh forward and .backward() per output coordinate",
}
_JACOBIAN_PATH: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[str, str]]" = weakref.WeakKeyDictionary()


def jacobian_path(model: torch.nn.Module) -> tuple[str, str]:
    """(the path the model's Jacobians were computed by, why the faster ones could not run) or ("", "")."""
    return _JACOBIAN_PATH.get(model, ("", ""))


def _jac_vmap(model: torch.nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    def single(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0).clone()).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(single))
    return torch.cat([jac(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


def _jac_autograd(model: torch.nn.Module, x: torch.Tensor, chunk: int, use_backward: bool) -> torch.Tensor:
    graph = torch.is_grad_enabled() and x.requires_grad and not use_backward  # the ascent differentiates J itself
    parts = []
    for i in range(0, x.shape[0], chunk):
        xc = x[i : i + chunk]
        with torch.enable_grad():
            leaf = xc if graph else xc.detach().clone().requires_grad_(True)
            rows = []
            if not use_backward:
                y = model(leaf.clone())
                for k in range(y.shape[-1]):
                    (g,) = torch.autograd.grad(y[:, k].sum(), leaf, retain_graph=True, create_graph=graph,
                                               allow_unused=True)
                    rows.append(torch.zeros_like(leaf) if g is None else g)
            else:
                # plain .backward() (a checkpointing Function refuses autograd.grad and backward(inputs=...)); the
                # parameters stop requiring grad meanwhile, so that nothing accumulates in their .grad
                params = [p for p in model.parameters() if p.requires_grad]
                try:
                    for p in params:
                        p.requires_grad_(False)
                    for k in range(xc.shape[-1]):
                        fresh = xc.detach().clone().requires_grad_(True)
                        y = model(fresh.clone())
                        y[:, k].sum().backward()
                        rows.append(torch.zeros_like(fresh) if fresh.grad is None else fresh.grad)
                finally:
                    for p in params:
                        p.requires_grad_(True)
        J = torch.stack(rows, dim=1)
        parts.append(J if graph else J.detach())
    return torch.cat(parts)


def _rows_independent(model: torch.nn.Module, x: torch.Tensor, J: torch.Tensor, use_backward: bool) -> None:
    """The classic-autograd paths read row k's Jacobian from the gradient of a sum over the batch, which is right only
    when the model treats each row as its own input: checked once per model against single-row calls."""
    k = min(2, x.shape[0])
    single = torch.cat([_jac_autograd(model, x[i : i + 1].detach(), 1, use_backward) for i in range(k)])
    diff = float((single - J[:k].detach()).abs().max())
    scale = 1.0 + float(single.abs().max())
    limit = 1e3 * float(torch.finfo(J.dtype).eps) * scale
    if not diff <= limit:
        raise InputError(
            f"{type(model).__name__}: Jacobian of row 0 in a batch vs alone", f"differs by {diff:.3g}",
            f"the same (≤ {limit:.3g}): each row of a batch is one input of the map",
            "make the model treat each input independently (eval() mode, no batch statistics or cross-row terms)")


def batched_jacobian(model: torch.nn.Module, x: torch.Tensor, chunk: int = 4096, strict: bool = True) -> torch.Tensor:
    """J_f(x) for every row of x, shape (B, n, n): vectorised where torch.func can, by classic autograd where not."""
    known, _ = _JACOBIAN_PATH.get(model, ("", ""))
    order = list(JACOBIAN_PATHS)
    if known:
        order = order[order.index(known):]
    failures: list[str] = []
    J: torch.Tensor | None = None
    last: BaseException | None = None
    for path in order:
        try:
            if path == "vmap":
                J = _jac_vmap(model, x, chunk)
            else:
                J = _jac_autograd(model, x, chunk, use_backward=path == "backward")
                if known != path:
                    _rows_independent(model, x, J, use_backward=path == "backward")
            break
        except InputError:
            raise
        except Exception as exc:  # this path cannot run on this model's code: the next (slower) one may
            failures.append(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            last = exc
    if J is None:
        assert last is not None
        raise last
    used = order[len(failures)]
    if used != known:
        _JACOBIAN_PATH[model] = (used, "; ".join(failures))
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


def _extra_arguments(fn: Any) -> list[str]:
    """Required parameters of fn beyond the first (the batch): arguments the checker cannot supply."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in kinds]
    if not positional:
        return []  # forward(*xs): takes the batch as its first variadic argument
    extra = [p for p in positional[1:] if p.default is p.empty]
    extra += [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty]
    return [p.name for p in extra]


def preflight(model: torch.nn.Module, dim: int, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a model that cannot be measured as a deterministic map R^dim -> R^dim."""
    stochastic = [m for m in model.modules() if isinstance(m, _STOCHASTIC)]
    if model.training and stochastic:
        raise InputError(
            "model.training", True, "a model in eval() mode, so that it is one deterministic map",
            f"call model.eval() before checking: it contains {stochastic[0]!r}, whose output changes "
            "from call to call in train mode",
        )
    extra = _extra_arguments(model.forward)
    if extra:
        try:
            sig = str(inspect.signature(model.forward))
        except (TypeError, ValueError):
            sig = "(...)"
        call = ", ".join(f"{n}=..." for n in extra)
        raise InputError(
            f"{type(model).__name__}.forward{sig}: required argument(s) {', '.join(repr(n) for n in extra)}",
            "not supplied by the checker", "forward(x) that maps one batch of shape (B, n) to (B, n) with no further "
            "argument", f"wrap the module so that forward(x) supplies {', '.join(extra)}: `def forward(self, x): return "
            f"self.net(x, {call})` (and inverse likewise), and check the wrapper",
        )
    x = torch.linspace(-1, 1, 2 * dim, dtype=dtype, device=device).reshape(2, dim)
    with torch.no_grad():
        try:
            y1 = forward(model, x)
        except InputError:
            raise
        except Exception as exc:
            text = str(exc)
            if re.search(r"shape|size|dimension|mat1 and mat2", text, re.IGNORECASE) and not re.search(r"dtype", text):
                raise InputError(
                    "model(x)", f"{type(exc).__name__}: {exc}", f"a model that accepts a batch of shape (B, {dim})",
                    f"check the claim's dimension ({dim}) against the model's input size",
                ) from exc
            raise  # the model's or its library's own exception: measure() reports it with its stage and known fix
        y2 = forward(model, x)
    if not torch.equal(y1, y2):
        raise InputError(
            "model(x) twice", "different outputs", "the same output for the same input",
            "make the model deterministic (eval() mode, no sampling in forward)",
        )


def oracle_copy(model: torch.nn.Module, dim: int, dtype: torch.dtype, device: torch.device
                ) -> tuple[torch.nn.Module | None, str]:
    """The float64 copy the oracle replays inputs on, and how it was made (or None and why there is none).

    A deep copy is the same map by construction. A copy made another way (non-leaf attributes detached, or the
    factory re-run with the trained state dict) might miss some state the module keeps outside its state dict: it is
    compared with the model on the preflight inputs and refused beyond a relative 1e-2 (a missed state differs at
    order one; float16/bfloat16 computations inside a float32 model differ by up to ~1e-2)."""
    if dtype == torch.float64:
        return model, "the model runs in float64 (it is its own oracle)"
    try:
        m64 = float64_copy(model)
    except CopyError as exc:
        return None, f"no float64 copy could be made ({exc.value})"
    how = copy_path(m64)
    x = torch.linspace(-1, 1, 2 * dim, dtype=dtype, device=device).reshape(2, dim)
    try:
        with torch.no_grad():
            y = forward(model, x)
            y64 = forward(m64, x.to(torch.float64))
    except Exception as exc:  # the copy does not run: no oracle, and the evidence says why
        return None, f"the float64 copy ({how}) does not run: {type(exc).__name__}: {exc}"
    if not how.startswith("deepcopy(model)"):
        diff = float((y64 - y.to(torch.float64)).abs().max() / (1 + y.abs().max()))
        if not diff <= 1e-2:
            return None, (f"the float64 copy ({how}) is not the same map: relative difference {diff:.3g} > 1e-2 on the "
                          "preflight inputs")
    return m64, how


def _ratio(prop: MapProperty, model: torch.nn.Module, dtype: torch.dtype, tol: float, detach: bool) -> Any:
    """r(x) = defect(x)/tolerance on `model` in `dtype`; NaN where the model overflows (the engine counts it as worst)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        d = prop.defects(Probe(model, x.to(dtype), strict=False))
        d = d.detach() if detach else d
        return d.to(torch.float64) / tol

    return fn


def storage_judgement(prop: MapProperty, model: torch.nn.Module, model64: torch.nn.Module, xs: torch.Tensor,
                      r64: torch.Tensor, tol64: float, seed: int, chunk: int = 1024, first: int = 64
                      ) -> dict[str, Any] | None:
    """Which float64 excesses the precision the parameters were stored in explains (verify/precision.py).

    Every input whose float64 ratio exceeds 1 is replayed on STORAGE_DRAWS float64 copies with every stored number
    moved by its storage precision; the input stays structural when d64 > tol64 + λ_s·(largest change of d64 over
    the draws). Inputs are taken worst first, and the first one that stays structural settles it (a violation); a
    genuine model whose excess is all storage has every flagged input replayed. None when nothing exceeds."""
    flagged = r64 > 1.0
    if not bool(flagged.any()):
        return None
    cand = xs[flagged][torch.argsort(r64[flagged], descending=True)]
    gen = torch.Generator().manual_seed(7919 * seed + 17)
    draws = [float64_copy(model, gen) for _ in range(STORAGE_DRAWS)]

    # a property whose defect has parts with different sensitivities to the stored numbers (ConformalSymplectic: the
    # conformal factor moves with a stored momentum, JᵀΩJ's departure from any multiple of Ω does not) names them, and
    # each part is held to its own allowance: else the factor's storage allowance would excuse a non-conformal term
    parts_of = getattr(prop, "defect_parts", None)
    names: list[str] = []

    def d64(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probe = Probe(m, x.to(torch.float64), strict=False)
            parts = parts_of(probe) if callable(parts_of) else None
            if parts is not None:
                names[:] = list(parts)
                return torch.stack([v.detach().to(torch.float64) for v in parts.values()], dim=-1)
            names[:] = []
            return prop.defects(probe).detach().to(torch.float64).unsqueeze(-1)

    checked = 0
    worst: dict[str, Any] = {}
    first = max(1, min(first, cand.shape[0]))  # the worst inputs first: one structural input settles it
    sizes = [first] + [chunk] * max(0, math.ceil((cand.shape[0] - first) / chunk))
    pos = 0
    for size in sizes:
        x = cand[pos : pos + size]
        pos += size
        if x.shape[0] == 0:
            break
        base = d64(model64, x)
        spread = torch.zeros_like(base)
        for m in draws:
            spread = torch.maximum(spread, (d64(m, x) - base).abs())
        allowance = LAMBDA_STORAGE * spread
        ratio = base / (tol64 + allowance)
        ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)  # (B, parts)
        checked += int(x.shape[0])
        i, k = divmod(int(torch.argmax(ratio)), ratio.shape[-1])
        if not worst or float(ratio[i, k]) > worst["ratio"]:
            worst = {"ratio": float(ratio[i, k]), "x": x[i], "defect64": float(base[i, k]),
                     "allowance": float(allowance[i, k]), **({"part": names[k]} if names else {})}
        if worst["ratio"] > 1.0:
            break
    return {**worst, "structural": worst["ratio"] > 1.0, "flagged": int(flagged.sum()), "checked": checked,
            "draws": STORAGE_DRAWS, "lambda": LAMBDA_STORAGE, "stored": stored_precision(model), "rule": STORAGE_RULE}


def _vs(a: float, b: float) -> str:
    """`a ≤ b` or `a > b` with the relation computed from the very numbers printed (more digits when 3 do not tell
    them apart): a message never contradicts its own numbers."""
    for digits in (3, 6, 17):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb or digits == 17:
            return f"{ta} {'≤' if a <= b else '>'} {tb}"
    return ""


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
    stage = "numeric (preflight)"
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
        stage = "numeric (float64 copy)"
        model64, how64 = oracle_copy(model, dim, dtype, device) if oracle else (None, "oracle off")
        own = model64 is model  # a float64 model is its own oracle: evaluate it once, differentiably, and reuse it
        objective = Objective(
            ratio=_ratio(prop, model, dtype, tol.value, detach=not own),
            ratio64=None if model64 is None or own else _ratio(prop, model64, torch.float64, tol64.value, detach=False),
        )
        if objective.ratio64 is not None and any(k != "float64" for k in stored_precision(model)):
            # a float64 excess of a model with numbers stored coarser than float64 is judged against their storage
            # precision (storage_judgement), which may excuse it: it ends the search early only when the judgement of
            # the worst sampled inputs already confirms it as structural
            def confirm64(xs: torch.Tensor, r64: torch.Tensor) -> bool:
                top = torch.topk(r64, min(64, r64.numel())).indices
                found64 = storage_judgement(prop, model, model64, xs[top], r64[top], tol64.value, seed, budget.chunk)
                return found64 is not None and bool(found64["structural"])

            objective = dataclasses.replace(objective, confirm64=confirm64)
        stage = "numeric (method)"
        mf_plan, cost = None, None
        if getattr(prop, "jacobian_kind", None) is not None:
            # the Jacobian method is chosen before anything large is computed (a memory estimate per input; refused
            # with the numbers when nothing fits: MemoryRefused is an InputError, reported as `error` below)
            from verify.checking import matrix_free as mf

            mf_plan = mf.plan(prop.jacobian_kind, dim, torch.float64 if model64 is not None else dtype, device)
            if not mf_plan.sound:
                return _estimate_only(prop, model, domain, dim, mf_plan, seed, start)
            if mf_plan.method != "full":
                budget, cost = cost_aware_budget(prop, objective, domain, budget, dim, device, seed, mf_plan, dtype)
                try:  # the ascent differentiates the defect, which keeps every intermediate: does one input still fit?
                    mf.plan(prop.jacobian_kind, dim, torch.float64 if model64 is not None else dtype, device, graph=True)
                except mf.MemoryRefused as exc:
                    budget = dataclasses.replace(budget, starts=0, note=f"{budget.note}; no gradient ascent: {exc}")
                    cost["note"] = budget.note
                    cost["scaled"] = True
        stage = "numeric (search)"
        found = search(objective, domain, seed=seed, budget=budget, device=device)
        if own:  # the same numbers against the same tolerance (tol == tol64 in float64)
            found.ratios64, found.cand_ratios64 = found.ratios, found.cand_ratios
        storage = None
        if model64 is not None and found.ratios64 is not None:
            stage = "numeric (storage precision)"
            xs = torch.cat([found.x, found.candidates])
            r64 = torch.cat([found.ratios64, found.cand_ratios64])
            finite = torch.isfinite(r64)
            if bool(finite.all()):  # a non-finite defect is reported as such (_measurement), not judged here
                storage = storage_judgement(prop, model, model64, xs, r64, tol64.value, seed, budget.chunk,
                                            first=64 if cost is None else 1)
    except Exception as exc:  # bad input, or any exception from the model or its library: error evidence
        from verify.errors import describe

        summary, expected, fix = explain(exc, stage, type(model).__name__)
        return Failure(stage="numeric", verdict=Verdict.ERROR, summary=summary, seconds=time.perf_counter() - start,
                       expected=expected, fix=fix, exception="" if isinstance(exc, InputError) else describe(exc))
    paths = {"oracle": how64}
    jpath, jwhy = jacobian_path(model)
    if jpath:
        paths["jacobian"] = JACOBIAN_PATHS[jpath] + (f" (faster paths could not run: {jwhy})" if jwhy else "")
    if mf_plan is not None and mf_plan.method != "full":
        from verify.checking import matrix_free as mf

        ppath, pwhy = mf.product_path(model)
        paths["matrix_free"] = mf_plan.statement + (f"; products by {mf.PATHS[ppath]}" if ppath else "") + (
            f" (torch.func could not run: {pwhy})" if pwhy else "")
        paths["plan"] = mf_plan.record()  # type: ignore[assignment]
        if cost is not None:
            paths["cost"] = cost  # type: ignore[assignment]
    return _measurement(prop, model, found, tol, tol64, dtype, device, seed, domain, paths, storage, start)


def cost_aware_budget(prop: MapProperty, objective: Objective, domain: Domain, budget: Budget, dim: int,
                      device: torch.device, seed: int, mf_plan: Any, dtype: torch.dtype
                      ) -> tuple[Budget, dict[str, Any]]:
    """The search budget scaled to what one input costs once the Jacobian work is matrix-free (n large).

    One input is timed on the model's dtype and on the float64 oracle (the first call, path checks included: an
    overestimate). The stated defaults (8192 samples, 32 ascent starts × 16 steps, 60 hypothesis examples, shrinking)
    are kept when they fit in Policy.seconds; otherwise: the ascent takes ≤ 40 % (4 steps, 2 neighbours, a gradient
    counted as 4 float64 evaluations: reverse mode costs a small multiple of the evaluation it differentiates),
    hypothesis ≤ 10 %, sampling the rest (at least 2 inputs), no data-scale resolution stage (a ball of radius 0.1 of
    the half-width is unreachable by sampling in hundreds of dimensions anyway), no coordinate-wise shrinking (3·n·digits
    evaluations); the evidence states the inputs searched and this arithmetic."""
    from verify.checking import matrix_free as mf

    pol = mf.policy()
    gen = torch.Generator().manual_seed(7 * seed + 3)
    x1 = domain.draw(1, 1.0, gen).to(device)
    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            fn(x1)
        first = time.perf_counter() - t0
        if first > pol.seconds / 40:  # costly: the first call (path checks included) is the estimate, an overestimate
            return first
        t0 = time.perf_counter()  # cheap: the first call's one-time path checks would dominate; time a warm one
        with torch.no_grad():
            fn(x1)
        return time.perf_counter() - t0

    c = timed(objective.ratio)
    c64 = timed(objective.ratio64) if objective.ratio64 is not None else 0.0
    each = c + c64
    grad = 4 * (c64 if objective.ratio64 is not None else c)
    scales = len(list(domain.scales()))
    default = (budget.n_inputs * each + budget.starts * budget.steps * (grad + (budget.population + 1) * (c64 or c))
               + budget.examples * c + (16 + budget.starts) * each)
    S = pol.seconds
    record: dict[str, Any] = {"seconds_per_input_model": c, "seconds_per_input_float64": c64,
                              "seconds_limit": S, "default_budget_seconds": default}
    if default <= S:
        # a small budget fits, but its coordinate-wise shrink of a counterexample (3·n·digits evaluations: one pass
        # alone is 3·n) can cost far more than the search at large n: at n = 4096 with 0.3 s an input, an hour
        shrink_pass = 3 * dim * (c64 or c)
        if budget.shrink and shrink_pass > S:
            note = (f"cost-aware: one input costs {c:.3g} s ({str(dtype).replace('torch.', '')}) + {c64:.3g} s (float64 "
                    f"oracle) with the {mf_plan.method} method at n = {dim}; the budget as given fits in {S:g} s "
                    f"(~{default:.0f} s) but one pass of the coordinate-wise shrink would take ~{shrink_pass:.0f} s: "
                    "no shrinking (the worst input is reported as found)")
            record.update(scaled=True, n_inputs=budget.n_inputs, starts=budget.starts, steps=budget.steps,
                          population=budget.population, examples=budget.examples, note=note)
            return dataclasses.replace(budget, shrink=False, note=note), record
        record["scaled"] = False
        return budget, record
    steps, population = min(budget.steps, 4), min(budget.population, 2)
    per_start = steps * (grad + (population + 1) * (c64 or c)) + each
    starts = min(budget.starts, int(0.4 * S / per_start)) if budget.starts > 0 else 0
    starts = starts - starts % 2 if starts > 1 else starts
    examples = min(budget.examples, int(0.1 * S / max(c, 1e-9)))
    # fixed costs: the timing input above, the ascent's end points and hypothesis' best replayed as candidates on both
    spent = starts * per_start + examples * c + (2 + starts) * each
    n_inputs = max(2, min(budget.n_inputs, int((S - spent) / max(each, 1e-9))))
    chunk = max(1, min(budget.chunk, 64))
    note = (f"cost-aware: one input costs {c:.3g} s ({str(dtype).replace('torch.', '')}) + {c64:.3g} s (float64 "
            f"oracle) with the {mf_plan.method} method at n = {dim}; the default budget would take ~{default:.0f} s, so "
            f"within {S:g} s: {n_inputs} sampled inputs over {scales} scales, {starts} ascent starts × {steps} steps, "
            f"{examples} hypothesis examples, no resolution stage, no shrinking")
    record.update(scaled=True, n_inputs=n_inputs, starts=starts, steps=steps, population=population, examples=examples,
                  note=note)
    scaled = dataclasses.replace(budget, n_inputs=n_inputs, starts=starts, steps=steps, population=population,
                                 examples=examples, resolution_cap=0, shrink=False, replay_samples=False, chunk=chunk,
                                 note=note)
    return scaled, record


def _estimate_only(prop: MapProperty, model: torch.nn.Module, domain: Domain, dim: int, mf_plan: Any, seed: int,
                   start: float) -> Failure:
    """No sound method fits at this size (log|det J| beyond the exact LU's reach): the stochastic Lanczos estimate on
    two data-scale inputs is reported, and the claim is `undecided` (an estimate without a bound is not a verdict)."""
    from verify.checking import matrix_free as mf

    pol = mf.policy()
    gen = torch.Generator().manual_seed(7 * seed + 5)
    dtype = model_dtype(model)
    work = torch.float32 if dtype in HALF_PRECISION else dtype
    x = domain.draw(2, 1.0, gen).to(model_device(model)).to(dtype)
    with torch.no_grad():
        est, se = mf.slq_logdet(lambda v: mf.vjp(model, x, mf.jvp(model, x, v)).to(work), 2, dim, work, x.device,
                                pol.slq_probes, pol.slq_steps, pol.seed + 2)
        rep = ""
        method = getattr(prop, "method", None)
        if isinstance(method, str) and callable(getattr(model, method, None)):
            from verify.properties.log_det import reported_log_det

            r = reported_log_det(model, x, method)
            rep = f"; the model reports {', '.join(f'{float(v):.4g}' for v in r)}"
    text = ", ".join(f"{float(e):.4g} ± {float(s):.2g}" for e, s in zip(est, se))
    return Failure(
        stage="numeric", verdict=Verdict.UNDECIDED, seconds=time.perf_counter() - start,
        summary=(f"{prop.name} at n = {dim}: {mf_plan.statement}. Estimate of log|det J| at two data-scale inputs: "
                 f"{text} (mean ± standard error over the probes; Lanczos quadrature bias not included){rep}"),
        expected=f"log|det J| computed exactly (an LU of J) at n = {dim}",
        fix=(f"allow the exact method: verify.checking.matrix_free.using(exact_max_dim={dim}) (an LU of "
             f"{(2 / 3) * dim ** 3:.2g} flops and {dim * dim * 8 / 1e9:.2g} GB per float64 input), or check the claim "
             "at a smaller size of the same architecture"))


def _measurement(prop: MapProperty, model: torch.nn.Module, found: SearchResult, tol: Any, tol64: Any, dtype: torch.dtype,
                 device: torch.device, seed: int, domain: Domain, paths: dict[str, str],
                 storage: dict[str, Any] | None, start: float) -> Measurement | Failure:
    how64 = paths["oracle"]
    jpath_text = paths.get("jacobian", "")
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
    # a cost-scaled budget may run no ascent and no hypothesis, and has no resolution stage: the summary names what ran
    scaled = isinstance(paths.get("cost"), dict) and bool(paths["cost"].get("scaled"))
    ran = "gradient and smoothed ascent, hypothesis" if not scaled else ", ".join(name for name, did in (
        ("gradient and smoothed ascent", int(found.methods.get("gradient", {}).get("starts", 0)) > 0),
        ("hypothesis", int(found.methods.get("hypothesis", {}).get("examples", 0)) > 0)) if did) or "sampling only"
    res_text = "" if scaled else (f"; resolution ρ = {res['resolution']:.3g} of the half-width at the data scale "
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
    # structural: the float64 copy exceeds its tolerance *and* the precision the parameters were stored in does not
    # explain the excess (verify/precision.py); without storage judgement (nothing stored coarser) the plain rule
    structural = has64 and worst64_r > 1.0 and (storage is None or storage["structural"])
    excused = has64 and worst64_r > 1.0 and storage is not None and not storage["structural"]
    near = [(found.ratios, found.x), (found.cand_ratios, found.candidates)]
    near_r = max(float(r[domain.near_data(xs)].max()) if bool(domain.near_data(xs).any()) else -math.inf for r, xs in near)
    near_max = near_r * tol.value
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
    ce, ce_dtype = found.counterexample, found.counterexample_dtype
    ce_defect = None if ce is None else found.counterexample_ratio * (tol.value if ce_dtype == "model" else tol64.value)
    if ce is not None and ce_dtype == "float64" and not structural:
        ce = ce_defect = None  # shrunk on the float64 copy, but the parameters' storage precision explains the excess
    if ce is not None and ce_dtype == "float64" and storage is not None:
        ce, ce_defect = storage["x"], storage["defect64"]  # the input the storage judgement confirmed as structural
    dt = str(dtype).replace("torch.", "")
    scales = ", ".join(found.methods["sampling"]["scales"])
    if not has64:
        oracle_text = f"no float64 oracle ({how64}): a violation below {dt} resolution could not be seen"
    elif storage is not None:
        sd, sa = storage["defect64"], storage["allowance"]
        oracle_text = (f"float64 max {_vs(max64, tol64.value)}; storage precision of the parameters "
                       f"({', '.join(f'{n} {k}' for k, n in storage['stored'].items()) or 'none stored coarser'} numbers): "
                       f"at the {'confirmed' if storage['structural'] else 'worst'} input the float64 defect"
                       + (f" ({storage['part']})" if storage.get("part") else "") + " "
                       f"{_vs(sd, tol64.value + sa)} = float64 tolerance {tol64.value:.3g} + storage allowance {sa:.3g} "
                       f"({storage['checked']} of {storage['flagged']} flagged inputs replayed on {storage['draws']} draws)")
    else:
        oracle_text = f"float64 max {_vs(max64, tol64.value)}"
    if verdict is Verdict.HOLDS:
        summary = (f"max defect {_vs(worst, tol.value)} (tolerance) over {n_total} inputs (scales ×{scales} of the data "
                   f"box, {ran}){res_text}; {oracle_text}"
                   + (f"; the {dt} excess is beyond ×{NEAR_DATA:g} the data (near it: {_vs(near_max, tol.value)}), where "
                      "only the float64 oracle judges (the defect's own evaluation has no correct digit left there)"
                      if far_excess else ""))
    elif classification == "round-off":
        summary = (f"max defect within ×{NEAR_DATA:g} the data {_vs(near_max, tol.value)} (tolerance) (round-off: "
                   f"{oracle_text})" + (f"; counterexample ({dt}) x = {_short(ce)}" if ce is not None else ""))
    else:
        summary = (f"max defect {_vs(worst, tol.value)} (tolerance) (structural: {oracle_text}"
                   + ("" if storage is not None else " (float64 tolerance)") + ")"
                   + (f"; counterexample ({dt if ce_dtype == 'model' else ce_dtype}) x = {_short(ce)}" if ce is not None else ""))
    if verdict is not Verdict.HOLDS:
        hint = _diagnosis(prop, model, ce if ce is not None else (worst64_x if structural else worst_x))
        if hint:
            summary += f"; {hint}"
    if jpath_text and not jpath_text.startswith(JACOBIAN_PATHS["vmap"]):
        summary += f"; Jacobians by {jpath_text.split(' (faster')[0]} (vmap could not run on this code: see the evidence)"
    if "matrix_free" in paths:
        # the evidence says which method ran, what it can and cannot miss, and how many inputs were searched
        summary += f"; method: {paths['matrix_free']}"
        cost = paths.get("cost")
        if isinstance(cost, dict) and cost.get("scaled"):
            summary += f"; search budget {cost['note']}"
    observed = near_r * tol.value if math.isfinite(near_r) else float(d.max())
    storage_record = None if storage is None else {
        k: (v.cpu().tolist() if isinstance(v, torch.Tensor) else v) for k, v in storage.items()}
    return Measurement(
        stage="numeric",
        verdict=verdict,
        summary=summary,
        seconds=time.perf_counter() - start,
        property=prop.name,
        defect=prop.defect_text,
        dtype=dt,
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
        counterexample_defect=ce_defect,
        search={
            "counterexample_dtype": (dt if ce_dtype == "model" else ce_dtype),
            "domain": domain.describe(),
            "oracle": how64,
            **({"jacobian": paths["jacobian"]} if "jacobian" in paths else {}),
            **({k: paths[k] for k in ("matrix_free", "plan", "cost") if k in paths}),
            **({"storage": storage_record} if storage_record is not None else {}),
            "storage_excused": bool(excused),
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
