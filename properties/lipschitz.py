"""Lipschitz(L): ‖f(x) − f(y)‖₂ ≤ L‖x − y‖₂ for all x, y, decided by two bounds that bracket Lip(f).

* **Certified upper bound** (the symbolic stage; verify/derive/operator_norms.py): the product of per-layer operator
  norms computed soundly from the module's own weights (float64 SVD of linear maps, the Fourier-domain singular values
  of the *convolution* operator rather than the reshaped kernel, a table of activation constants, 1 + Lip(g) for a
  residual block), each with its rounding margin. A module it has no rule for leaves the bound unknown: `undecided`.
* **Lower bound** (the numeric stage; the one search engine over the claim's domain): max over inputs x of the local
  operator norm ‖J_f(x)‖₂ (float64, exact SVD for n ≤ 256, power iteration with jvp/vjp beyond, which is also a lower
  bound), then at the best x the difference quotient ‖f(x + t·v) − f(x)‖/t along the top singular direction v, less
  its float64 rounding allowance: a lower bound of Lip(f) that assumes nothing about differentiability.

Verdict: `proved` when upper ≤ L; `violated` when lower > L; `undecided` between (or with no upper bound).
Both bounds are about the map the module's stored numbers define, evaluated in float64 (its float64 copy).

`Lipschitz(L, branches="name")` claims instead that every module of `model.name` (a list of modules, or a method
returning one) is L-Lipschitz: for an i-ResNet, each residual branch g_b, and with L < 1 the evidence derives
invertibility (Banach): every block x ↦ x + g_b(x) is a bijection, its fixed-point inverse x ← y − g_b(x) contracts by
c_b = Lip(g_b), and n iterations from x₀ = y leave an error ≤ c_bⁿ/(1 − c_b)·‖g_b(y)‖ (the a-priori bound); n is read
from the model's `inverse_iterations` where it has one.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch

from verify.errors import InputError, VerifyError
from verify.evidence import BlockResult, Failure, Measurement, Proof, Verdict
from verify.properties.base import Property

# violated only when the float64 lower bound exceeds L by more than this (relative): far above the float64 rounding
# of a Jacobian, its SVD and a difference quotient (~(depth + n)·eps64 ≈ 1e-14), far below any real excess
LOWER_MARGIN = 1e-9
# up to this dimension the search also samples the data box densely enough to resolve a ball of radius ρ = 0.1 of the
# half-width anywhere in it (Budget.resolution; reached up to 4 dimensions within its cap): a Lipschitz excess confined
# to a small region with a hard edge has no gradient to climb outside it, so density is the only way in (the power page,
# benchmarks/power.py: a region-hard excess of 1e-5 in 4-D was missed without it). Above it the cap would not reach
# ρ = 0.1 and a local norm costs an SVD per input, so the stage is off there and the evidence says so
RESOLVED_DIM = 4

METHOD = ("upper: product of per-layer certified operator norms (float64 SVD; convolutions by the DFT of the circular "
          "embedding; activation table; 1 + Lip(g) per residual block), rounded upward; lower: the search engine's "
          "max of ‖J_f(x)‖₂ (float64) over the domain, confirmed by a difference quotient at the best input")


def _rel(a: float, b: float) -> str:
    """`a ≤ b` / `a > b` from the printed numbers themselves (more digits when 4 do not separate them)."""
    for digits in (4, 7, 17):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb or digits == 17:
            return f"{ta} {'≤' if a <= b else '>'} {tb}"
    return ""


@dataclass(frozen=True)
class LipschitzMeasurement(Measurement):
    """Both bounds of one claim: the certified upper bound, the searched lower bound, per layer and per branch."""

    L: float = math.nan
    upper_bound: float | None = None  # None: unknown (a module without a rule)
    lower_bound: float = math.nan
    local_norm: float = math.nan  # ‖J(x*)‖₂ at the witness
    witness_direction: Sequence[float] = ()
    method: str = METHOD
    targets: Sequence[Mapping[str, Any]] = ()  # per map (the model, or each branch): bounds, layers, witness
    derived: Mapping[str, Any] = field(default_factory=dict)  # Banach: invertibility derived from the branch bounds

    def extra_markdown(self) -> list[str]:
        lines = [f"Bounds: certified upper {_fmt(self.upper_bound)}, lower {_fmt(self.lower_bound)} "
                 f"(‖J(x*)‖₂ = {_fmt(self.local_norm)}), claimed L = {self.L:g}. Method: {self.method}.", "",
                 "| map | upper bound | lower bound | expression | layer | layer bound | how |", "|---|---|---|---|---|---|---|"]
        for t in self.targets:
            layers = t.get("layers") or [{"layer": "—", "bound": math.nan, "method": t.get("upper_why", "")}]
            for i, row in enumerate(layers):
                head = (f"{t['name']} | {_fmt(t.get('upper'))} | {_fmt(t.get('lower'))} | {t.get('expression', '')}"
                        if i == 0 else " | | | ")
                lines.append(f"| {head} | {row['layer']} | {_fmt(row['bound'])} | {row['method']} |")
        lines.append("")
        if self.derived:
            lines += [f"Derived: {self.derived.get('summary', '')}", ""]
        return lines


def _fmt(v: Any) -> str:
    if v is None:
        return "unknown"
    try:
        return f"{float(v):.6g}"
    except (TypeError, ValueError):
        return str(v)


class _Callable(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@dataclass(frozen=True, init=False)
class Lipschitz(Property):
    """‖f(x) − f(y)‖ ≤ L‖x − y‖ (ℓ²) everywhere the claim is made; `branches=` claims it of each residual branch."""

    L: float = 1.0
    branches: str | None = None

    name: ClassVar[str] = "Lipschitz"
    statement: ClassVar[str] = r"\|f(x)-f(y)\|_2 \le L\,\|x-y\|_2 \quad \forall x, y"
    lemma: ClassVar[str] = (r"\mathrm{Lip}(f\circ g) \le \mathrm{Lip}(f)\,\mathrm{Lip}(g),\ "
                            r"\mathrm{Lip}(x + g(x)) \le 1 + \mathrm{Lip}(g),\ \mathrm{Lip}(W) = \|W\|_2")
    defect_text: ClassVar[str] = r"\|J_f(x)\|_2 \text{ (float64), a lower bound of } \mathrm{Lip}(f)"

    def __init__(self, L: float, *, branches: str | None = None, dim: int | None = None,
                 where: Any = None) -> None:
        ok = isinstance(L, (int, float)) and not isinstance(L, bool) and math.isfinite(L) and L > 0
        if not ok:
            raise InputError("Lipschitz(L=...)", L, "a positive finite number (the claimed Lipschitz constant)",
                             "write e.g. Lipschitz(1.0); for a residual branch's contraction Lipschitz(0.9, branches=...)")
        if branches is not None and (not isinstance(branches, str) or not branches.isidentifier()):
            raise InputError("Lipschitz(branches=...)", branches, "the name of the model's attribute or method that "
                             "gives its residual branches", 'write Lipschitz(0.9, branches="branches")')
        object.__setattr__(self, "L", float(L))
        object.__setattr__(self, "branches", branches)
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "within", None)
        if branches is not None:
            # a claim about the branches is another claim than one about the whole map: its own name, so that an
            # architecture can make both and each is reported and tested on its own
            object.__setattr__(self, "name", f"Lipschitz({branches})")
        self.__post_init__()

    def __str__(self) -> str:
        extra = [f"{self.L:g}"] + ([f"branches={self.branches!r}"] if self.branches else [])
        if self.dim is not None:
            extra.append(f"dim={self.dim}")
        return f"Lipschitz({', '.join(extra)})"

    # -- what is bounded ----------------------------------------------------------------------------------------
    def targets(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
        """The maps the claim is about: the model, or each of its declared residual branches."""
        if self.branches is None:
            return [(type(model).__name__, model)]
        got = getattr(model, self.branches, None)
        if callable(got) and not isinstance(got, torch.nn.Module):
            got = got()
        if got is None or isinstance(got, (str, bytes)) or not hasattr(got, "__iter__"):
            raise InputError(f"{type(model).__name__}.{self.branches}", got,
                             "a list of the residual branch modules g_b (the model computes x ← x + g_b(x))",
                             f"give the model an attribute {self.branches} (an nn.ModuleList of branches), or drop "
                             "branches= to claim the bound of the whole map")
        out = [(f"{self.branches}[{i}]", g) for i, g in enumerate(got)]
        if not out or not all(isinstance(g, torch.nn.Module) for _, g in out):
            raise InputError(f"{type(model).__name__}.{self.branches}", got, "a non-empty list of nn.Module branches",
                             "return the branch modules themselves")
        return out

    def _upper(self, model: torch.nn.Module, dim: int) -> list[dict[str, Any]]:
        """Certified upper bound per target (None with the reason where there is none)."""
        from verify.checking.numeric import model_device, model_dtype
        from verify.derive.operator_norms import certified_bound

        dtype, device = model_dtype(model), model_device(model)
        gen = torch.Generator().manual_seed(0)
        probe = torch.cat([s * torch.randn(4, dim, generator=gen, dtype=torch.float64) for s in (0.5, 2.0, 20.0)])
        probe = probe.to(device=device, dtype=dtype)
        out = []
        for name, g in self.targets(model):
            start = time.perf_counter()
            try:
                b = certified_bound(g, probe, name)
                out.append({"name": name, "upper": b.value, "layers": [r.as_row() for r in b.layers],
                            "expression": b.expression, "structure_check": b.structure_check,
                            "seconds": time.perf_counter() - start})
            except VerifyError as exc:  # an unknown module or a structure that is not the forward: no bound, said why
                out.append({"name": name, "upper": None, "upper_why": str(exc), "layers": [], "expression": "",
                            "seconds": time.perf_counter() - start})
        return out

    # -- the protocol ---------------------------------------------------------------------------------------------
    def symbolic(self, subject: Any) -> Any:
        """The certified upper bound from the module's structure and trained weights (None without a model)."""
        model = subject.model
        if model is None or subject.dim is None:
            return None
        start = time.perf_counter()
        ups = self._upper(model, subject.dim)
        seconds = time.perf_counter() - start
        unknown = [u for u in ups if u["upper"] is None]
        if unknown:
            return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=seconds,
                           summary=f"no certified upper bound for {unknown[0]['name']}: {unknown[0]['upper_why']}",
                           expected="modules with a certified Lipschitz rule (verify/derive/operator_norms.py)",
                           fix="see the message: declare lipschitz_structure() or use known layers; the lower bound "
                               "(numeric stage) can still refute the claim")
        worst = max(ups, key=lambda u: u["upper"])
        blocks = [BlockResult(block=f"{u['name']}: {row['layer']} ({row['kind']})", verdict=Verdict.PROVED,
                              obligation=r"\mathrm{Lip}(\ell) \le \text{bound}", residual=f"{row['bound']:.6g}",
                              seconds=u["seconds"], message=row["method"])
                  for u in ups for row in u["layers"]]
        what = "every branch" if self.branches else "the map"
        text = (f"certified upper bound of {what}: {worst['name']} {_rel(worst['upper'], self.L)} = L "
                f"(= {worst['expression'] or '1'}; per-layer operator norms of the trained weights in float64 with "
                "rounding margins; structure: " + worst["structure_check"] + ")")
        if worst["upper"] <= self.L:
            return Proof(stage="symbolic", verdict=Verdict.PROVED, summary=text, seconds=seconds,
                         statement=self.statement, lemma=self.lemma, blocks=blocks or [BlockResult(
                             block=worst["name"], verdict=Verdict.PROVED, obligation=r"\mathrm{Lip} \le L",
                             residual=f"{worst['upper']:.6g}", seconds=seconds)],
                         bound_by="certified from the module's own trained weights (float64 copy), structure checked "
                                  "against its forward")
        return Failure(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=seconds,
                       summary=f"{text}: the upper bound does not prove the claim; the lower bound decides whether it is refuted",
                       expected=f"a certified bound ≤ L = {self.L:g}", fix="tighter per-layer bounds (spectral "
                       "normalisation with the true operator norm) or a larger L")

    def numeric(self, subject: Any, domain: Any, settings: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._numeric(subject, domain, settings, start)
        except Exception as exc:  # bad input or the model's own exception: error evidence, never a pass
            from verify.errors import describe, explain

            summary, expected, fix = explain(exc, "numeric", subject.name)
            return Failure(stage="numeric", verdict=Verdict.ERROR, summary=summary, seconds=time.perf_counter() - start,
                           expected=expected, fix=fix, exception="" if isinstance(exc, VerifyError) else describe(exc))

    def _numeric(self, subject: Any, domain: Any, settings: Any, start: float) -> Any:
        from verify.checking.numeric import model_dtype, preflight, model_device
        from verify.checking.search import Objective, search
        from verify.derive.operator_norms import local_norm
        from verify.precision import float64_copy

        model, dim = subject.model, subject.dim
        if dim is None or domain is None:
            return Failure(stage="numeric", verdict=Verdict.ERROR, summary="dim=None: the input dimension is unknown",
                           expected="dim=... or a claim with dim", fix="pass dim=n to check()")
        if self.dim is not None and self.dim != dim:
            raise InputError("Lipschitz(dim=...)", self.dim, f"the model's dimension {dim}",
                             f"declare Lipschitz({self.L:g}, dim={dim}) or check the model that matches the claim")
        dtype, device = model_dtype(model), model_device(model)
        preflight(model, dim, dtype, device)
        ups = self._upper(model, dim)
        m64 = float64_copy(model)
        m64.eval()
        targets64 = dict(self.targets(m64))
        budget = dataclasses.replace(
            settings.budget, n_inputs=min(settings.budget.n_inputs, 2048 if dim <= 16 else 256),
            starts=min(settings.budget.starts, 16 if dim <= 16 else 8), steps=min(settings.budget.steps, 12 if dim <= 16 else 8),
            examples=min(settings.budget.examples, 20 if dim <= 16 else 10),
            resolution_cap=settings.budget.resolution_cap if dim <= RESOLVED_DIM else 0,
            chunk=min(settings.budget.chunk, 256))
        rows, best = [], None
        for up in ups:
            g = targets64[up["name"]]

            def ratio(x: torch.Tensor, g: torch.nn.Module = g) -> torch.Tensor:
                s, _ = local_norm(g, x.to(device=device))
                return s / self.L

            found = search(Objective(ratio=ratio, ratio64=None), domain, seed=settings.seed, budget=budget, device=device)
            r, x = found.worst()
            x = x.unsqueeze(0).to(torch.float64)
            with torch.no_grad():
                s, v = local_norm(g, x)
                t = 1e-6 * (1.0 + float(x.abs().max()))
                fx, fy = g(x), g(x + t * v)
            diff = float((fy - fx).norm())
            # |fl(f(y)) − fl(f(x))| errs by ≤ 2·(depth+n)·eps64·(‖f(x)‖ + ‖f(y)‖) (generous), divided by t‖v‖ = t
            allowance = 2 * (subject.depth + dim) * 2.3e-16 * (float(fx.norm()) + float(fy.norm())) / t
            quotient = diff / t
            if not (math.isfinite(quotient) and math.isfinite(float(s[0])) and math.isfinite(r)):
                # an overflow is not a small local norm: the claim cannot be judged there (never a pass)
                return Failure(stage="numeric", verdict=Verdict.ERROR, seconds=time.perf_counter() - start,
                               summary=(f"the local norm of {up['name']} is not finite at x = {_short(x[0].cpu().tolist())} "
                                        f"(‖J(x)‖₂ = {float(s[0]):.3g}, quotient {quotient:.3g}): the map overflows there"),
                               expected="finite outputs and Jacobians wherever the claim is made",
                               fix=f"fix the overflow, or restrict the claim: Lipschitz({self.L:g}, where=(low, high))")
            lower = max(0.0, quotient - allowance)
            row = {**up, "lower": lower, "local_norm": float(s[0]), "quotient": quotient, "quotient_allowance": allowance,
                   "t": t, "witness": x[0].cpu().tolist(), "direction": v[0].cpu().tolist(),
                   "search": found.coverage(), "search_seconds": found.seconds, "inputs": int(found.x.shape[0])}
            rows.append(row)
            if best is None or lower / self.L > best["lower"] / self.L:
                best = row
        assert best is not None
        uppers = [r["upper"] for r in rows]
        upper = None if any(u is None for u in uppers) else max(uppers)
        lower = max(r["lower"] for r in rows)
        what = "the map" if self.branches is None else f"branch {best['name']}"
        if lower > self.L * (1 + LOWER_MARGIN):
            verdict, cls = Verdict.VIOLATED, "structural"
            summary = (f"lower bound {_rel(lower, self.L)} = L at {what}: ‖f(x+tv) − f(x)‖/t = {best['quotient']:.6g} "
                       f"(t = {best['t']:.2g}, less its float64 rounding allowance {best['quotient_allowance']:.2g}; "
                       f"‖J(x)‖₂ = {best['local_norm']:.6g}) at x = {_short(best['witness'])}"
                       + ("" if upper is None else f"; certified upper bound {upper:.6g}"))
        elif upper is not None and upper <= self.L:
            verdict, cls = Verdict.HOLDS, "none"
            summary = (f"certified upper bound {_rel(upper, self.L)} = L; the search's largest local norm "
                       f"{best['local_norm']:.6g} (lower bound {lower:.6g}) is consistent with it")
        else:
            verdict, cls = Verdict.UNDECIDED, "none"
            why = (f"certified upper bound {_rel(upper, self.L)}" if upper is not None else
                   "no certified upper bound (" + next(r["upper_why"] for r in rows if r["upper"] is None) + ")")
            summary = f"undecided: lower bound {_rel(lower, self.L)} = L but {why}"
        derived = self._banach(model, rows)
        if derived:
            summary += "; " + derived["summary"]
        n_inputs = sum(r["inputs"] for r in rows)
        return LipschitzMeasurement(
            stage="numeric", verdict=verdict, summary=summary, seconds=time.perf_counter() - start,
            property=self.name, defect=self.defect_text, dtype="float64", device=str(device), seed=settings.seed,
            n_inputs=n_inputs, max_defect=lower, worst_input=best["witness"], tolerance=self.L,
            tolerance_formula="the claimed L (a violation needs the float64 lower bound above L·(1 + 1e-9))",
            max_defect_float64=lower, tolerance_float64=self.L, classification=cls,
            counterexample=best["witness"] if verdict is Verdict.VIOLATED else None,
            counterexample_defect=lower if verdict is Verdict.VIOLATED else None,
            search={"counterexample_dtype": "float64", "domain": domain.describe(),
                    "oracle": "every bound is computed on the float64 copy (the map the stored numbers define)",
                    "methods": best["search"],  # the search of the map that gave the largest lower bound
                    "budget_rule": (f"{budget.n_inputs} samples, {budget.starts}×{budget.steps} ascent steps, "
                                    f"{budget.examples} hypothesis examples per map; "
                                    + (f"the resolution stage up to {RESOLVED_DIM} dimensions (a ball of ρ = "
                                       f"{budget.resolution:g} of the half-width anywhere in the data box)"
                                       if budget.resolution_cap else
                                       f"no resolution stage above {RESOLVED_DIM} dimensions (its cap would not reach "
                                       f"ρ = {budget.resolution:g}; an excess confined to a small hard-edged region may "
                                       "be missed)")),
                    "calibration_ratio": self.L / lower if lower > 0 else math.inf},
            L=self.L, upper_bound=upper, lower_bound=lower, local_norm=best["local_norm"],
            witness_direction=best["direction"],
            targets=[{k: v for k, v in r.items() if k not in ("search",)} for r in rows], derived=derived)

    def _banach(self, model: torch.nn.Module, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Invertibility derived from the branch bounds: Lip(g_b) < 1 for every branch ⇒ each block is a bijection."""
        if self.branches is None:
            return {}
        n = getattr(model, "inverse_iterations", None)
        cs = [r["upper"] for r in rows]
        if any(c is None or not c < 1 for c in cs):
            bad = next(r for r in rows if r["upper"] is None or not r["upper"] < 1)
            return {"available": False, "summary": (
                f"invertibility is NOT derived: {bad['name']} has certified Lip "
                + ("unknown" if bad["upper"] is None else f"{bad['upper']:.6g}, not < 1")
                + " (Banach's fixed-point theorem needs a contraction)")}
        c = max(cs)
        per = [{"branch": r["name"], "contraction": r["upper"],
                **({"a_priori_error_factor": r["upper"] ** n / (1 - r["upper"])} if isinstance(n, int) else {})}
               for r in rows]
        text = (f"invertibility derived (Banach): every branch is a contraction, largest certified Lip(g) = {c:.6g} < 1, "
                f"so each block x ↦ x + g(x) is a bijection of Rⁿ and x ← y − g(x) converges to its inverse")
        if isinstance(n, int):
            text += (f"; with the model's n = {n} iterations from x₀ = y the a-priori error is ≤ cⁿ/(1 − c)·‖g(y)‖ = "
                     f"{c ** n / (1 - c):.3g}·‖g(y)‖ per block")
        return {"available": True, "contraction": c, "iterations": n, "branches": per, "summary": text}


def _short(x: Sequence[float]) -> str:
    vals = list(x)
    return "[" + ", ".join(f"{v:.4g}" for v in vals[:6]) + (", …" if len(vals) > 6 else "") + "]"
