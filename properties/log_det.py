"""Log-determinants a model reports: the number a flow's likelihood is built on equals log|det J_f(x)|.

A flow's density is p(x) = p_z(f(x))·|det J_f(x)|, computed from the log-determinant the flow *reports* (summed from its
layers' scales), never from J itself. A sign or bookkeeping bug in that sum leaves the round trip intact, so invertibility
checks cannot see it (such bugs shipped in normflows and flowjax, whose tests used transforms with log-det 0). This
property compares the reported number with the Jacobian's own: log|det J| from a pivoted LU of J (torch.linalg.slogdet).

The model reports its log-determinant through a method (default `log_det(x) -> (B,)`; `LogDet(method="...")` names
another); `inverse_method` names the inverse's (log|det J_{f⁻¹}(y)|, checked against the inverse's own Jacobian)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from verify.derive.polynomial import SPoly, to_ring
from verify.derive.symbolic import Traced, Undecidable, _from_ring
from verify.errors import InputError
from verify.properties.base import MapProperty, Probe, Tolerance, eps, jacobian_tolerance

if TYPE_CHECKING:
    from verify.declare.subject import Subject
    from verify.evidence import Evidence


# -- the exact stage: det J of a block by structure, and log|det J| where it is ± a product of exponentials ------------


def _perm_sign(order: list[int]) -> int:
    """Sign of the permutation that sorts `order` (by cycle count)."""
    pos = sorted(range(len(order)), key=lambda k: order[k])
    seen, sign = [False] * len(order), 1
    for i in range(len(order)):
        if not seen[i]:
            j, length = i, 0
            while not seen[j]:
                seen[j], j, length = True, pos[j], length + 1
            sign *= -1 if length % 2 == 0 else 1
    return sign


def structured_det(traced: Traced, factors: list[tuple[list[int], list[int], Any]] | None = None) -> Any:
    """det J exactly, using the structure flow layers have: rows or columns with a single non-zero entry (triangular and
    permutation factors: coupling, actnorm, the L, U and P factors of a 1×1 convolution, squeezes) are expanded by
    Laplace, what is left splits into independent square blocks (one per pixel, say), each eliminated over QQ.
    `factors`, when given, receives every factor of the product as (output rows, input columns, value): a single
    entry ∂y_i/∂x_j for a Laplace pivot, a block's determinant otherwise (what a message can point at)."""
    J, one = traced.jacobian, traced.backend.one
    n = len(J)
    rows, cols = list(range(n)), list(range(n))
    nz_r = {i: {j for j in range(n) if J[i][j]} for i in range(n)}
    nz_c: dict[int, set[int]] = {j: set() for j in range(n)}
    for i, js in nz_r.items():
        for j in js:
            nz_c[j].add(i)
    factor, sign = one, 1

    def drop(i: int, j: int) -> None:
        nonlocal factor, sign
        sign *= -1 if (rows.index(i) + cols.index(j)) % 2 else 1
        factor = factor * J[i][j]
        if factors is not None:
            factors.append(([i], [j], J[i][j]))
        rows.remove(i)
        cols.remove(j)
        for j2 in nz_r.pop(i):
            nz_c[j2].discard(i)
        for i2 in nz_c.pop(j):
            nz_r[i2].discard(j)

    changed = True
    while changed and rows:
        changed = False
        for i in list(rows):
            if i in nz_r and len(nz_r[i]) <= 1:
                if not nz_r[i]:
                    return traced.backend.zero  # a zero row: singular
                drop(i, next(iter(nz_r[i])))
                changed = True
        for j in list(cols):
            if j in nz_c and len(nz_c[j]) <= 1:
                if not nz_c[j]:
                    return traced.backend.zero
                drop(next(iter(nz_c[j])), j)
                changed = True
    if not rows:
        return factor * sign
    # independent blocks: connected components of the bipartite graph of the remaining non-zeros
    parent = {("r", i): ("r", i) for i in rows} | {("c", j): ("c", j) for j in cols}

    def find(a: tuple) -> tuple:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i in rows:
        for j in nz_r[i]:
            parent[find(("r", i))] = find(("c", j))
    comps: dict[tuple, tuple[list[int], list[int]]] = {}
    for i in rows:
        comps.setdefault(find(("r", i)), ([], []))[0].append(i)
    for j in cols:
        comps.setdefault(find(("c", j)), ([], []))[1].append(j)
    row_order, col_order = [], []
    from sympy.polys.matrices import DomainMatrix

    for rs, cs in comps.values():
        if len(rs) != len(cs):
            return traced.backend.zero  # structurally singular
        row_order += rs
        col_order += cs
        ring, flat = to_ring([J[i][j] for i in rs for j in cs], traced.backend.symbols)
        k = len(rs)
        block = DomainMatrix([flat[a * k:(a + 1) * k] for a in range(k)], (k, k), ring.to_domain()).det()
        value = _from_ring(block, traced.backend.symbols) if block else SPoly()
        factor = factor * value
        if factors is not None:
            factors.append((list(rs), list(cs), value))
    sign *= _perm_sign([rows.index(i) for i in row_order]) * _perm_sign([cols.index(j) for j in col_order])
    return factor * sign


def exact_log_abs_det(traced: Traced) -> Any:
    """log|det J| as a polynomial, when det J = ±exp(a₁)···exp(a_k) (flow layers: couplings, scalings, actnorm, LU
    factors, permutations); else Undecidable: a log of another polynomial has no exact form in this algebra."""
    factors: list[tuple[list[int], list[int], Any]] = []
    det = _as_spoly(traced, structured_det(traced, factors))
    meaning = getattr(traced.backend, "meaning", {})
    if _exponential_monomial(det, meaning):
        total = SPoly()
        for g in next(iter(det.t)):
            total = total + meaning[g][1]
        return total
    shown = traced.to_expr(det) if len(det.t) <= 6 else f"a polynomial of {len(det.t)} terms"
    raise Undecidable(f"det J = {shown} is not ± a product of exponentials, so log|det J| has no exact polynomial form "
                      "here and the reported log-determinant cannot be compared with it exactly; the numeric stage "
                      f"decides. {_culprits(traced, factors, meaning)}")


def _as_spoly(traced: Traced, value: Any) -> SPoly:
    """A determinant (or factor) reduced modulo exp(a)·exp(−a) = 1, as an SPoly."""
    value = traced.reduce(value)
    if hasattr(value, "ring") and not isinstance(value, SPoly):
        return _from_ring(value, traced.backend.symbols)
    return value if isinstance(value, SPoly) else (SPoly.const(value) if value else SPoly())


def _exponential_monomial(value: SPoly, meaning: Any) -> bool:
    """± exp(a₁)···exp(a_k) (a constant ±1 included): a log|·| with an exact polynomial form."""
    if len(value.t) != 1:
        return False
    (mono, coeff), = value.t.items()
    return abs(coeff) == 1 and all(meaning.get(g, ("",))[0] == "exp(@)" for g in mono)


def _culprits(traced: Traced, factors: list[tuple[list[int], list[int], Any]], meaning: Any, shown: int = 6) -> str:
    """Which factors of det J are not ± products of exponentials, named by coordinates, and whether they read the
    coordinates they are derivatives in: a factor ∂y_i/∂x_i (or a block of such) that contains x_i itself comes from
    y_i = x_i·g(…, x_i, …), the product rule's x_i·∂g/∂x_i: in a coupling, the conditioner of s and t reads the
    coordinate it moves (the masks overlap). The message then points at those coordinates, not at the scales' form."""
    fix = "Fix: write the layer's scales as exp(·) of its log-scales (as RealNVP and Glow do)"
    bad = [(rs, cs, v) for rs, cs, value in factors
           if not _exponential_monomial(v := _as_spoly(traced, value), meaning)]
    if not bad:  # every factor is exponential but their product is not (a constant): the general fix
        return fix
    gens = {}  # input coordinate j -> the generator index of x_j
    for j, x in enumerate(traced.inputs):
        if isinstance(x, SPoly) and len(x.t) == 1:
            (mono, coeff), = x.t.items()
            if len(mono) == 1 and coeff == 1:
                gens[j] = mono[0]
    parts = [f"∂y_{rs[0]}/∂x_{cs[0]}" if len(rs) == 1 else
             f"the determinant of outputs {_coords(rs)} × inputs {_coords(cs)}" for rs, cs, _ in bad[:shown]]
    text = (f"The factor{'s' if len(bad) > 1 else ''} of det J that {'are' if len(bad) > 1 else 'is'} not ± a product "
            "of exponentials: " + "; ".join(parts) + (f" and {len(bad) - shown} more" if len(bad) > shown else "") + ".")
    reads = sorted({j for rs, cs, v in bad for j in cs if j in rs and j in gens and _depends(v, gens[j], meaning)})
    if not reads:
        return f"{text} {fix}"
    coords = _coords(reads)
    return (f"{text} {'They vary' if len(bad) > 1 else 'It varies'} with x_j for j in {coords}: the derivative of y_j in "
            "x_j depends on x_j, so y_j is not x_j·exp(s) + t with s, t free of x_j. In a coupling layer this means the "
            f"conditioner of s and t reads coordinates it also moves: the masks overlap at {coords}. Fix (a coupling): "
            "condition s and t only on the coordinates the layer passes through unchanged (disjoint masks)")


def _depends(value: Any, gen: int, meaning: Any, seen: set[int] | None = None) -> bool:
    """Whether a polynomial involves generator `gen`, directly or inside the argument of an abstract function."""
    seen = set() if seen is None else seen
    for mono in getattr(value, "t", {}):
        for g in mono:
            if g == gen:
                return True
            if g in seen:
                continue
            seen.add(g)
            arg = meaning.get(g, (None, None))[1] if hasattr(meaning, "get") else None
            if any(_depends(a, gen, meaning, seen) for a in (arg if isinstance(arg, tuple) else (arg,)) if a is not None):
                return True
    return False


def _coords(idx: list[int], shown: int = 8) -> str:
    return "[" + ", ".join(map(str, idx[:shown])) + (f", … ({len(idx)} in all)" if len(idx) > shown else "") + "]"


BATCH_LIMIT = 1e3  # × eps: rows of a batch that move more than this when other rows join are not separate inputs


def batch_dependence(probe: Probe, threshold: bool = True) -> torch.Tensor:
    """Per row, how far f(x) moves when other inputs join the batch: |f([x; x']) − f(x)|∞ / (1 + |f(x)|∞), x' = ½·flip(x)
    + ¼. Zero (below BATCH_LIMIT·eps, kernels may round a larger batch differently) for a model that maps each row
    on its own."""
    x, y = probe.x, probe.y
    mixed = probe.call(torch.cat([x, 0.5 * x.flip(0) + 0.25]))[: x.shape[0]]
    dep = (mixed - y).abs().amax(-1) / (1 + y.abs().amax(-1))
    if not threshold:
        return dep
    return torch.where(dep > BATCH_LIMIT * eps(y.dtype), dep, torch.zeros_like(dep))


def reported_log_det(model: torch.nn.Module, x: torch.Tensor, method: str, strict: bool = True) -> torch.Tensor:
    """The log-determinant `model.<method>(x)` reports, one number per input, shape (B,); with `strict`, a non-finite
    one is refused with the input where it happens (the search probes with strict=False and reports it as `error`)."""
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
    bad = ~torch.isfinite(out)
    if strict and bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise InputError(f"{name}(x)[{row}]", float(out[row]), "a finite log-determinant",
                         f"the model reports a non-finite log-determinant at x={x[row].detach().cpu().tolist()[:8]}: "
                         "check its scales for overflow (exp of an unbounded log-scale) or a log of zero")
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

    def exact_residual(self, traced: Traced) -> dict[str, Any]:
        if traced.reported_log_det is None:
            raise Undecidable("the symbolic block declares no reported log-determinant, so the number the layer "
                              "returns cannot be compared with log|det J| exactly. Fix: declare "
                              "SymbolicBlock(..., log_det=lambda b, x: <the terms the layer's log_det sums>)")
        reported = traced.reported_log_det
        if not isinstance(reported, SPoly):
            reported = SPoly.const(reported) if reported else SPoly()
        r = traced.reduce(reported - exact_log_abs_det(traced))
        return {} if r == 0 else {"log_det": r}

    def float_residual(self, traced: Traced) -> float:
        if traced.reported_log_det is None:
            raise Undecidable("no reported log-determinant")
        sign, logabs = np.linalg.slogdet(np.array(traced.jacobian, dtype=float))
        return abs(float(traced.reported_log_det) - float(logabs)) if sign != 0 else math.inf

    def _exact(self, subject: "Subject") -> "Evidence | None":
        # with inverse_method, the inverse's reported log-det is proved against the inverse's own Jacobian: every block's
        # inverse program becomes a block of its own (SymbolicBlock.inverse_view), proved beside the forward
        if self.inverse_method is None or not subject.blocks:
            return super()._exact(subject)
        blocks = []
        for block in subject.blocks:
            blocks.append(block)
            if block.inverse is not None:
                blocks.append(block.inverse_view())
        return super()._exact(dataclasses.replace(subject, blocks=blocks))

    def __post_init__(self) -> None:
        super().__post_init__()
        for what, value in (("method", self.method), ("inverse_method", self.inverse_method)):
            if value is not None and (not isinstance(value, str) or not value.isidentifier()):
                raise InputError(f"LogDet({what}=...)", value, "the name of a method of the model",
                                 'write LogDet(method="log_det") or the name your flow uses')

    @property
    def binds_log_det(self) -> tuple[str, str | None]:
        """The binding stage compares the twins' reported log-dets with what these methods return."""
        return (self.method, self.inverse_method)

    @property
    def needs_inverse(self) -> bool:  # type: ignore[override]
        return self.inverse_method is not None

    def defects(self, probe: Probe) -> torch.Tensor:
        # the probe answers from the full J at small n, from J assembled in column blocks above (verify/checking/
        # matrix_free.py; κ₂ then a Lanczos estimate never above it): the same numbers where both run
        x = probe.x
        # the reported log-det is read from a batch call: it is a log-det of a map only if every row is its own input.
        # A layer on batch statistics (a BatchNorm left in train mode) makes f(x) depend on the other rows; that is
        # the violation there (measured, with no Jacobian: per-row Jacobians of such a model do not describe it)
        dependence = batch_dependence(probe)
        if bool((dependence > 0).any()):
            return dependence
        # the probe answers from the full J at small n, from J assembled in column blocks above (verify/checking/
        # matrix_free.py; κ₂ then a Lanczos estimate never above it): the same numbers where both run
        _, logabs = probe.slogdet()
        reported = reported_log_det(probe.model, x, self.method, strict=probe.strict).to(logabs.dtype)
        d = (reported - logabs).abs() / ((1 + logabs.abs()) * probe.condition())
        if self.inverse_method is not None:
            y = probe.y
            inv = Probe(_InverseView(probe.model), y, strict=probe.strict)
            _, logabs_inv = inv.slogdet()
            rep_inv = reported_log_det(probe.model, y, self.inverse_method, strict=probe.strict).to(logabs_inv.dtype)
            d = torch.maximum(d, (rep_inv - logabs_inv).abs() / ((1 + logabs_inv.abs()) * inv.condition()))
        return d

    def diagnose(self, model: torch.nn.Module, x: torch.Tensor) -> str:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
        x = x.reshape(1, -1).to(dtype)
        with torch.no_grad():
            probe = Probe(model, x, strict=False)
            dep = float(batch_dependence(probe, threshold=False)[0])
            if dep > BATCH_LIMIT * eps(dtype):
                return (f"f(x) depends on the other inputs of its batch: beside one other input it moves by {dep:.3g} "
                        "(relative), so a layer uses batch statistics (a BatchNorm left in train mode?) and there is no "
                        "map x ↦ f(x) whose log-determinant could be reported; fix: use running statistics (eval mode)")
        J = Probe(model, x, strict=False).J
        _, logabs = torch.linalg.slogdet(J)
        parts = [f"reported {self.method}(x) = {float(reported_log_det(model, x, self.method, strict=False)[0].detach()):.6g}, "
                 f"log|det J| = {float(logabs[0].detach()):.6g}"]
        if self.inverse_method is not None:
            with torch.no_grad():
                y = model(x.clone())
            _, li = torch.linalg.slogdet(Probe(_InverseView(model), y, strict=False).J)
            parts.append(f"reported {self.inverse_method}(f(x)) = "
                         f"{float(reported_log_det(model, y, self.inverse_method, strict=False)[0].detach()):.6g}, "
                         f"log|det J_inverse| = {float(li[0].detach()):.6g}")
        return "; ".join(parts) + " there"

    def tolerance(self, dtype: torch.dtype, dim: int, depth: int) -> Tolerance:
        # log|det J| by LU: backward-stable, so its absolute error is ~(L+√n)·eps·κ(J) (the normalisation's κ); the
        # reported sum of L layer log-scales rounds once per layer, relative to its size (1 + |logdet|)
        return jacobian_tolerance(self.jacobian_kind, dtype, dim, depth)

    def options(self) -> list[str]:
        extra = [] if self.method == "log_det" else [f"method={self.method!r}"]
        if self.inverse_method is not None:
            extra.append(f"inverse_method={self.inverse_method!r}")
        return extra


class _InverseView(torch.nn.Module):
    """The model's inverse as a module (so that its Jacobian is computed by the same batched path)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model.inverse(y)
