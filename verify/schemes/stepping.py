"""One step of a catalogued scheme, computed by the engine, and the binding of a scheme-declared module to it.

`step(name, field, x, h)` applies one step of size h of the scheme named in the
catalogue to dx/dt = field(x), batched over the rows of x, in x's dtype. It is
written from the exact catalogue entry (coefficients rounded once to float):

* explicit Butcher tableau: the stages in order;
* implicit Butcher tableau: only with `implicit_tol` (a fixed-point iteration on
  the stage derivatives that stops when h·max|ΔK|_∞ ≤ implicit_tol·(1 + |x|_∞)),
  otherwise refused;
* partitioned tableau (first tableau for q, second for p) on a separable field
  (f_q depends on p only, f_p on q only): the stages are evaluated in the order
  their dependencies allow, which makes Störmer–Verlet and symplectic Euler
  explicit; a partitioned pair that stays implicit needs `implicit_tol`;
* splitting with two operators, on a separable field: operator 0 is the kick
  p ← p + a·h·f_p(q), operator 1 the drift q ← q + a·h·f_q(p) (for a field
  (∂T/∂p, −∂V/∂q) this is models/scheme_nets.py's convention, and `strang` is
  velocity Verlet);
* composition: the base step applied with steps γ_1 h, …, γ_m h in order.

x = (q, p) with q = x[..., :dim_split] (dim_split defaults to half the width).

`bind_scheme(model, name, x)` is the evidence that a module which declares a
scheme performs it: on a float64 deep copy,
(a) forward(x) equals `steps` engine steps of the module's own vector field;
(b) where the module declares a Hamiltonian, its vector field equals
    Ω⁻¹∇H = (∂H/∂p, −∂H/∂q) by autograd of `hamiltonian`; for splittings and
    partitioned schemes the field is separable (Jacobian blocks ∂f_q/∂q and
    ∂f_p/∂p vanish, by torch.func on the inputs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dataclass_field
from functools import lru_cache
from typing import Any, Callable, Sequence, Union

import torch

from verify.derive.binding import float64_copy
from verify.errors import InputError

Tensor = torch.Tensor
Field = Callable[[Tensor], Tensor]

# Round-off allowance of the binding, in units of float64 epsilon per field evaluation in the
# forward pass.  Two correct implementations differ only in the order of their roundings.  Measured
# (tests/test_scheme_binding.py): the registered scheme nets ≤ 4.7e-17, a hand-written RK4 forward
# 3.4e-17 (tolerance/observed ≈ 1700–2900); with weights ×20 (width 32, dim 4, h = 0.5) the autograd
# ∇H against the closed-form field reaches 2e-15 = 2.3 ε per evaluation, so κ = 64 keeps a margin of
# ~28 there. The mutants the binding must catch lie at ≥ 1.8e-10 (h rounded to float32) and ≥ 2.5e-8.
ROUNDOFF_KAPPA = 64.0
TOLERANCE_FORMULA = "κ·ε₆₄·m, κ = 64, ε₆₄ = 2.22e-16, m = steps × field evaluations per step"
MISMATCH_FORMULA = ("per input: (a) |forward(x) − engine(x)|_∞ / (1 + |x|_∞ + |f(x)|_∞); "
                    "(b) |f(x) − (∂H/∂p, −∂H/∂q)|_∞ / (1 + |x|_∞ + |f(x)|_∞) and "
                    "max(|∂f_q/∂q|, |∂f_p/∂p|) / (1 + max|∂f/∂x|); the defect is the largest of these")

_FIXED_POINT_MAX_ITER = 500


# ---------------------------------------------------------------------------
# Plans: the catalogue entry with its coefficients as floats
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _RK:
    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    explicit: bool


@dataclass(frozen=True)
class _PRK:
    Aq: tuple[tuple[float, ...], ...]
    bq: tuple[float, ...]
    Ap: tuple[tuple[float, ...], ...]
    bp: tuple[float, ...]
    order: tuple[tuple[str, int], ...] | None  # evaluation order on separable fields; None: implicit there too


@dataclass(frozen=True)
class _Split:
    steps: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class _Comp:
    base: "_Plan"
    gammas: tuple[float, ...]


_Plan = Union[_RK, _PRK, _Split, _Comp]


def _catalogued(name: str) -> Any:
    from verify.schemes import catalogue
    from verify.schemes.exact import SchemeError

    if not isinstance(name, str):
        raise InputError("scheme", name, "a catalogued scheme name (a string)", "see `verify scheme --list`")
    try:
        return catalogue.get(name)
    except SchemeError:
        raise InputError("scheme", name, f"a catalogued scheme, one of {', '.join(catalogue.names())}",
                         "use one of these names, or add the scheme to verify/schemes/catalogue.py") from None


def _matrix(A: Sequence[Sequence[Any]]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in A)


def _separable_order(Aq: tuple, bq: tuple, Ap: tuple, bp: tuple) -> tuple[tuple[str, int], ...] | None:
    """An order in which the stages Q_i, P_i can be computed on a separable field, or None (a cycle).

    Q_i = q + h Σ_j Aq_ij f_q(P_j) needs P_j where Aq_ij ≠ 0; P_i = p + h Σ_j Ap_ij f_p(Q_j) needs Q_j
    where Ap_ij ≠ 0; the output needs P_j where bq_j ≠ 0 and Q_j where bp_j ≠ 0.
    """
    s = len(bq)

    def needs(node: tuple[str, int]) -> list[tuple[str, int]]:
        kind, i = node
        if kind == "Q":
            return [("P", j) for j in range(s) if Aq[i][j] != 0]
        return [("Q", j) for j in range(s) if Ap[i][j] != 0]

    order: list[tuple[str, int]] = []
    state: dict[tuple[str, int], int] = {}  # 1 = on the path, 2 = done

    def visit(node: tuple[str, int]) -> bool:
        if state.get(node) == 2:
            return True
        if state.get(node) == 1:
            return False
        state[node] = 1
        if not all(visit(n) for n in needs(node)):
            return False
        state[node] = 2
        order.append(node)
        return True

    roots = [("P", j) for j in range(s) if bq[j] != 0] + [("Q", j) for j in range(s) if bp[j] != 0]
    return tuple(order) if all(visit(r) for r in roots) else None


@lru_cache(maxsize=None)
def _plan(name: str) -> _Plan:
    from verify.schemes.tableau import ButcherTableau, Composition, PartitionedTableau, Splitting

    return _plan_of(_catalogued(name), name, (ButcherTableau, PartitionedTableau, Splitting, Composition))


def _plan_of(scheme: Any, name: str, kinds: tuple) -> _Plan:
    ButcherTableau, PartitionedTableau, Splitting, Composition = kinds
    if isinstance(scheme, ButcherTableau):
        return _RK(_matrix(scheme.A), tuple(float(v) for v in scheme.b), scheme.is_explicit)
    if isinstance(scheme, PartitionedTableau):
        Aq, bq = _matrix(scheme.first.A), tuple(float(v) for v in scheme.first.b)
        Ap, bp = _matrix(scheme.second.A), tuple(float(v) for v in scheme.second.b)
        return _PRK(Aq, bq, Ap, bp, _separable_order(Aq, bq, Ap, bp))
    if isinstance(scheme, Splitting):
        if scheme.parts != 2:
            raise InputError("scheme", name, "a splitting into two operators (kick and drift)",
                             "split the field into its q- and p-components")
        return _Split(tuple((int(k), float(a)) for k, a in scheme.steps))
    if isinstance(scheme, Composition):
        return _Comp(_plan_of(scheme.base, name, kinds), tuple(float(g) for g in scheme.gammas))
    raise InputError("scheme", name, "a Butcher tableau, partitioned tableau, splitting or composition",
                     "see `verify scheme --list`")


def _needs_separable(plan: _Plan) -> bool:
    if isinstance(plan, _Comp):
        return _needs_separable(plan.base)
    return isinstance(plan, (_Split, _PRK))


def _is_explicit(plan: _Plan) -> bool:
    if isinstance(plan, _Comp):
        return _is_explicit(plan.base)
    if isinstance(plan, _RK):
        return plan.explicit
    if isinstance(plan, _PRK):
        return plan.order is not None
    return True


def evaluations_per_step(scheme_name: str) -> int:
    """How many field evaluations one engine step of an explicit scheme makes (the m of the tolerance)."""
    return _evaluations(_plan(scheme_name), scheme_name)


def _evaluations(plan: _Plan, name: str) -> int:
    if isinstance(plan, _Comp):
        return len(plan.gammas) * _evaluations(plan.base, name)
    if isinstance(plan, _Split):
        return len(plan.steps)
    if not _is_explicit(plan):
        raise InputError("scheme", name, "an explicit scheme", "implicit steps have no fixed evaluation count")
    if isinstance(plan, _RK):
        return len(plan.b)
    return len(plan.order or ())


def scheme_plan(name: str) -> tuple[str, Any]:
    """('split', [(operator, coefficient)]) or ('rk', (A, b)) in floats, from the exact catalogue entry.

    The flattened form a model steps by: a composition of a splitting is written out as one
    splitting; only explicit tableaux are accepted.  (The engine's own `step` does not use it.)
    """
    from verify.schemes.tableau import ButcherTableau, Composition, Splitting

    scheme = _catalogued(name)
    if isinstance(scheme, Splitting):
        return "split", [(k, float(a)) for k, a in scheme.steps]
    if isinstance(scheme, Composition) and isinstance(scheme.base, Splitting):
        return "split", [(k, float(a) * float(g)) for g in scheme.gammas for k, a in scheme.base.steps]
    if isinstance(scheme, ButcherTableau):
        A = [[float(v) for v in row] for row in scheme.A]
        if not scheme.is_explicit:
            raise InputError("scheme", name, "an explicit tableau (A strictly lower triangular)",
                             "use an explicit method, or a splitting/composition for separable Hamiltonians")
        return "rk", (A, [float(v) for v in scheme.b])
    raise InputError("scheme", name, "a splitting, a composition of a splitting, or an explicit RK tableau",
                     "see `verify scheme --list`")


# ---------------------------------------------------------------------------
# The engine's step
# ---------------------------------------------------------------------------


def _as_step_size(h: float | Tensor, x: Tensor) -> float | Tensor:
    """h as a float, a 0-d tensor, or one value per row (shape x.shape[:-1], broadcast over the last axis)."""
    if isinstance(h, bool) or not isinstance(h, (int, float, Tensor)):
        raise InputError("h", h, "a float or a tensor (0-d, or one value per row of x)", "pass the step size")
    if isinstance(h, Tensor):
        if h.dim() == 0:
            return h.to(x.dtype)
        if tuple(h.shape) == tuple(x.shape[:-1]):
            return h.to(x.dtype).unsqueeze(-1)
        raise InputError("h.shape", tuple(h.shape), f"() or the batch shape {tuple(x.shape[:-1])}",
                         "pass one step size, or one per row of x")
    if not math.isfinite(float(h)):
        raise InputError("h", h, "a finite step size", "pass a finite number")
    return float(h)


def _split_index(x: Tensor, dim_split: int | None, name: str) -> int:
    n = x.shape[-1]
    if dim_split is None:
        if n % 2:
            raise InputError("x.shape[-1]", n, f"an even width (q, p) for the partitioned scheme {name!r}",
                             "pass dim_split=len(q)")
        return n // 2
    if isinstance(dim_split, bool) or not isinstance(dim_split, int) or not 0 < dim_split < n:
        raise InputError("dim_split", dim_split, f"an int in [1, {n - 1}] (the length of q)", "pass len(q)")
    return dim_split


def _evaluate(field: Field, x: Tensor) -> Tensor:
    out = field(x)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError("field(x).shape", shape, f"the state's shape {tuple(x.shape)}",
                         "the vector field must return dx/dt for each row")
    return out


def _rk(plan: _RK, field: Field, x: Tensor, h: Any, tol: float | None, name: str) -> Tensor:
    if not plan.explicit:
        return _fixed_point(plan.A, plan.b, plan.A, plan.b, None, field, x, h, tol, name)
    ks: list[Tensor] = []
    for i, row in enumerate(plan.A):
        terms = [a * ks[j] for j, a in enumerate(row[:i]) if a != 0]
        ks.append(_evaluate(field, x + h * sum(terms) if terms else x))
    return x + h * sum(bi * k for bi, k in zip(plan.b, ks) if bi != 0)


def _prk(plan: _PRK, field: Field, x: Tensor, h: Any, d: int, tol: float | None, name: str) -> Tensor:
    if plan.order is None:
        return _fixed_point(plan.Aq, plan.bq, plan.Ap, plan.bp, d, field, x, h, tol, name)
    q0, p0 = x[..., :d], x[..., d:]
    stage: dict[tuple[str, int], Tensor] = {}
    fq: dict[int, Tensor] = {}  # f_q(P_j): on a separable field it does not depend on q, so q0 is passed
    fp: dict[int, Tensor] = {}  # f_p(Q_j), evaluated with p0

    def f_q(j: int) -> Tensor:
        if j not in fq:
            fq[j] = _evaluate(field, torch.cat([q0, stage[("P", j)]], dim=-1))[..., :d]
        return fq[j]

    def f_p(j: int) -> Tensor:
        if j not in fp:
            fp[j] = _evaluate(field, torch.cat([stage[("Q", j)], p0], dim=-1))[..., d:]
        return fp[j]

    for kind, i in plan.order:
        if kind == "Q":
            terms = [a * f_q(j) for j, a in enumerate(plan.Aq[i]) if a != 0]
            stage[("Q", i)] = q0 + h * sum(terms) if terms else q0
        else:
            terms = [a * f_p(j) for j, a in enumerate(plan.Ap[i]) if a != 0]
            stage[("P", i)] = p0 + h * sum(terms) if terms else p0
    q_terms = [b * f_q(j) for j, b in enumerate(plan.bq) if b != 0]
    p_terms = [b * f_p(j) for j, b in enumerate(plan.bp) if b != 0]
    q1 = q0 + h * sum(q_terms) if q_terms else q0
    p1 = p0 + h * sum(p_terms) if p_terms else p0
    return torch.cat([q1, p1], dim=-1)


def _fixed_point(Aq: tuple, bq: tuple, Ap: tuple, bp: tuple, d: int | None, field: Field, x: Tensor, h: Any,
                 tol: float | None, name: str) -> Tensor:
    """Implicit (partitioned) RK by fixed-point iteration on the stage derivatives K_i = f(stage_i).

    With d None the tableau is one (Aq = Ap); otherwise the first d components use (Aq, bq), the rest (Ap, bp).
    The iteration stops when h·max_i |K_i − K_i'|_∞ ≤ tol·(1 + |x|_∞) on every row.
    """
    if tol is None:
        raise InputError("scheme", name, "an explicit scheme (this one is implicit)",
                         "pass implicit_tol=... (the fixed-point tolerance) to step, or use an explicit scheme")
    if not tol > 0:
        raise InputError("implicit_tol", tol, "a positive tolerance", "pass e.g. implicit_tol=1e-14")
    split = x.shape[-1] if d is None else d
    zero = torch.zeros_like(x)

    def combine(cq: Sequence[float], cp: Sequence[float], K: list[Tensor]) -> Tensor:
        inc_q = sum((a * k[..., :split] for a, k in zip(cq, K) if a != 0), zero[..., :split])
        inc_p = sum((a * k[..., split:] for a, k in zip(cp, K) if a != 0), zero[..., split:])
        return x + h * torch.cat([inc_q, inc_p], dim=-1)

    K = [_evaluate(field, x)] * len(bq)
    scale = 1 + x.detach().abs().amax(dim=-1)
    h_rows = (h.detach().abs().reshape(-1) if isinstance(h, Tensor) and h.dim() else
              torch.as_tensor(abs(float(h)), dtype=x.dtype))
    if h_rows.dim():
        h_rows = h_rows.reshape(scale.shape)
    for _ in range(_FIXED_POINT_MAX_ITER):
        new = [_evaluate(field, combine(Aq[i], Ap[i], K)) for i in range(len(bq))]
        change = torch.stack([(n - k).detach().abs().amax(dim=-1) for n, k in zip(new, K)]).amax(dim=0)
        K = new
        if bool((h_rows * change <= tol * scale).all()):
            break
    else:
        raise InputError("h", float(h_rows.max()),
                         f"a step for which the fixed-point iteration of {name!r} converges to {tol:g} "
                         f"within {_FIXED_POINT_MAX_ITER} iterations (it contracts when h·Lip(f)·|A| < 1)",
                         "use a smaller h or a larger implicit_tol")
    return combine(bq, bp, K)


def _split(plan: _Split, field: Field, x: Tensor, h: Any, d: int) -> Tensor:
    q, p = x[..., :d], x[..., d:]
    for op, a in plan.steps:
        if op == 0:  # kick: the p-component of the field, which on a separable field depends on q only
            p = p + (a * h) * _evaluate(field, torch.cat([q, p], dim=-1))[..., d:]
        else:  # drift: the q-component, a function of p only
            q = q + (a * h) * _evaluate(field, torch.cat([q, p], dim=-1))[..., :d]
    return torch.cat([q, p], dim=-1)


def _apply(plan: _Plan, field: Field, x: Tensor, h: Any, d: int | None, tol: float | None, name: str) -> Tensor:
    if isinstance(plan, _Comp):
        for g in plan.gammas:
            x = _apply(plan.base, field, x, g * h, d, tol, name)
        return x
    if isinstance(plan, _RK):
        return _rk(plan, field, x, h, tol, name)
    assert d is not None
    if isinstance(plan, _PRK):
        return _prk(plan, field, x, h, d, tol, name)
    return _split(plan, field, x, h, d)


def step(scheme_name: str, field: Field, x: Tensor, h: float | Tensor, *, dim_split: int | None = None,
         implicit_tol: float | None = None) -> Tensor:
    """One step of size h of the catalogued scheme for dx/dt = field(x), batched over the rows of x.

    Splittings and partitioned tableaux act on x = (q, p), q = x[..., :dim_split], and assume a
    separable field (f_q a function of p, f_p of q); `bind_scheme` checks that. Implicit schemes
    are solved by fixed-point iteration only when `implicit_tol` is given (see the module doc).
    """
    plan = _plan(scheme_name)
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise InputError("x", type(x).__name__ if not isinstance(x, Tensor) else f"{x.dtype} {tuple(x.shape)}",
                         "a floating-point tensor of states (..., n)", "pass a float tensor, one state per row")
    if not callable(field):
        raise InputError("field", field, "a callable x -> dx/dt", "pass the vector field")
    hh = _as_step_size(h, x)
    d = _split_index(x, dim_split, scheme_name) if _needs_separable(plan) else None
    return _apply(plan, field, x, hh, d, implicit_tol, scheme_name)


# ---------------------------------------------------------------------------
# Binding a scheme-declared module to the engine's step
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemeBinding:
    """Evidence that a module performs `steps` steps of its declared scheme on a (Hamiltonian) field."""

    scheme: str
    holds: bool
    max_mismatch: float  # largest per-input defect (relative, see `mismatch_formula`)
    tolerance: float
    tolerance_formula: str
    mismatch_formula: str
    mismatches: list[float]  # per input: max over (a) and (b)
    step_mismatches: list[float]  # (a)
    field_mismatches: list[float] | None  # (b) field vs Ω⁻¹∇H; None when no Hamiltonian was checked
    separability_defects: list[float] | None  # (b) ∂f_q/∂q, ∂f_p/∂p; None when the scheme needs no separability
    worst_input: list[float]
    worst_part: str  # "(a) step", "(b) Hamiltonian field", "(b) separability"
    steps: int
    h: float
    evaluations: int  # field evaluations per forward (steps × per step)
    n_inputs: int
    dtype: str = "float64"
    message: str = ""
    checked: list[str] = dataclass_field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _interface(model: torch.nn.Module, scheme_name: str, hamiltonian: bool | None) -> tuple[float, int, bool]:
    """The step size, the number of steps and whether a Hamiltonian is checked; InputError when one is missing."""
    cls = type(model).__name__
    if not isinstance(model, torch.nn.Module):
        raise InputError("model", cls, "a torch.nn.Module", "pass the module that declares the scheme")
    if not callable(getattr(model, "vector_field", None)):
        raise InputError(f"{cls}.vector_field", getattr(model, "vector_field", None),
                         "a method vector_field(x) -> dx/dt (same shape as x) that the forward steps",
                         "define vector_field on the module; the binding steps it with the engine's scheme")
    h = getattr(model, "h", None)
    if isinstance(h, Tensor) and h.numel() == 1 and h.is_floating_point():
        h_value = float(h)
    elif isinstance(h, (int, float)) and not isinstance(h, bool):
        h_value = float(h)
    else:
        raise InputError(f"{cls}.h", h if not isinstance(h, Tensor) else f"tensor of shape {tuple(h.shape)}",
                         "the step size as a float attribute or a one-element buffer",
                         "self.register_buffer('h', torch.tensor(h)) in __init__")
    if not math.isfinite(h_value):
        raise InputError(f"{cls}.h", h_value, "a finite step size", "set a finite h")
    steps = getattr(model, "steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"{cls}.steps", steps, "a positive int (how many scheme steps forward takes; default 1)",
                         "set self.steps to the number of weight-tied steps")
    has_h = callable(getattr(model, "hamiltonian", None))
    if hamiltonian and not has_h:
        raise InputError(f"{cls}.hamiltonian", getattr(model, "hamiltonian", None),
                         "a method hamiltonian(x) -> H, one scalar per row (a Hamiltonian claim needs it)",
                         "define hamiltonian(x) = T(p) + V(q) (or the module's H) on the module")
    plan = _plan(scheme_name)
    if not _is_explicit(plan):
        raise InputError("scheme", scheme_name, "an explicit scheme for a binding (the module's step is explicit code)",
                         "declare the explicit scheme the module implements")
    return h_value, steps, bool(has_h if hamiltonian is None else hamiltonian)


def _row_map(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The module function applied to one row (the functional transforms work on single rows)."""
    return lambda xi: fn(xi.unsqueeze(0)).squeeze(0)


def _transformed(compute: Callable[[], Tensor], what: str) -> Tensor:
    """Run a torch.func transform of a module method; a method the transforms cannot trace is an InputError."""
    try:
        return compute()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(what, f"{type(exc).__name__}: {exc}",
                         "a method torch.func.vmap/grad/jacrev can trace on one row (B = 1)",
                         "avoid .item(), in-place writes to the input and data-dependent Python control flow") from exc


def _parts(model: torch.nn.Module, scheme_name: str, x: Tensor, h: float, steps: int, check_h: bool,
           dim_split: int | None) -> dict[str, Tensor]:
    """Per-input relative mismatches of (a) and (b), as tensors of shape (n,)."""
    from torch.func import grad, jacrev, vmap

    plan = _plan(scheme_name)
    f = model.vector_field
    fx = _evaluate(f, x)
    scale = 1 + x.abs().amax(dim=-1) + fx.abs().amax(dim=-1)
    y_model = model(x.clone())  # a fresh copy: a module may free or overwrite its input
    if not isinstance(y_model, Tensor) or y_model.shape != x.shape:
        shape = tuple(y_model.shape) if isinstance(y_model, Tensor) else type(y_model).__name__
        raise InputError(f"{type(model).__name__}(x).shape", shape, f"the input's shape {tuple(x.shape)}",
                         "the forward must return the next state for each row")
    y_engine = x
    for _ in range(steps):
        y_engine = step(scheme_name, f, y_engine, h, dim_split=dim_split)
    out = {"step": (y_model - y_engine).abs().amax(dim=-1) / scale}
    d = _split_index(x, dim_split, scheme_name) if (check_h or _needs_separable(plan)) else None
    if check_h:
        H = _row_map(lambda z: model.hamiltonian(z))
        H0 = model.hamiltonian(x[:1])
        if not isinstance(H0, Tensor) or H0.shape != (1,):
            shape = tuple(H0.shape) if isinstance(H0, Tensor) else type(H0).__name__
            raise InputError(f"{type(model).__name__}.hamiltonian(x).shape", shape, "(B,): one scalar per row",
                             "return H(x) summed over nothing but the state, e.g. T(p) + V(q)")
        g = _transformed(lambda: vmap(grad(H))(x), f"{type(model).__name__}.hamiltonian")
        xh = torch.cat([g[..., d:], -g[..., :d]], dim=-1)  # Ω⁻¹∇H = (∂H/∂p, −∂H/∂q)
        out["hamiltonian"] = (fx - xh).abs().amax(dim=-1) / scale
    if _needs_separable(plan):
        J = _transformed(lambda: vmap(jacrev(_row_map(f)))(x), f"{type(model).__name__}.vector_field")
        blocks = torch.maximum(J[:, :d, :d].abs().flatten(1).amax(dim=-1), J[:, d:, d:].abs().flatten(1).amax(dim=-1))
        out["separable"] = blocks / (1 + J.abs().flatten(1).amax(dim=-1))
    return out


def _rows(x: Tensor, device: torch.device) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() not in (1, 2) or x.numel() == 0:
        raise InputError("x", type(x).__name__ if not isinstance(x, Tensor) else f"{x.dtype} {tuple(x.shape)}",
                         "a non-empty floating-point tensor (B, n) of inputs", "pass a batch of states, one per row")
    x = x.detach().to(device=device, dtype=torch.float64)
    return x.unsqueeze(0) if x.dim() == 1 else x


def _device(model: torch.nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def tolerance(scheme_name: str, steps: int) -> float:
    """The binding's round-off tolerance κ·ε₆₄·m (see TOLERANCE_FORMULA)."""
    return ROUNDOFF_KAPPA * torch.finfo(torch.float64).eps * steps * evaluations_per_step(scheme_name)


def scheme_mismatch_defects(model64: torch.nn.Module, scheme_name: str, *, hamiltonian: bool | None = None,
                            dim_split: int | None = None) -> Callable[[Tensor], Tensor]:
    """Per-input defect x (B, n) -> (B,): the largest of the binding's relative mismatches (a), (b).

    `model64` is evaluated as given (bind_scheme passes a float64 copy in eval mode); inputs are cast
    to its dtype. Compare the defects with `tolerance(scheme_name, steps)`. Differentiable in x, so a
    search engine may ascend it.
    """
    h, steps, check_h = _interface(model64, scheme_name, hamiltonian)
    device = _device(model64)
    dtype = next((t.dtype for t in list(model64.parameters()) + list(model64.buffers()) if t.is_floating_point()),
                 torch.float64)

    def defects(x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
            raise InputError("x", type(x).__name__ if not isinstance(x, Tensor) else tuple(x.shape),
                             "a floating-point tensor (B, n)", "pass a batch of states, one per row")
        parts = _parts(model64, scheme_name, x.to(device=device, dtype=dtype), h, steps, check_h, dim_split)
        return torch.stack(list(parts.values())).amax(dim=0)

    return defects


_PART_NAMES = {"step": "(a) step", "hamiltonian": "(b) Hamiltonian field", "separable": "(b) separability"}


def bind_scheme(model: torch.nn.Module, scheme_name: str, x: Tensor, *, hamiltonian: bool | None = None,
                dim_split: int | None = None) -> SchemeBinding:
    """Check, on a float64 deep copy, that the module performs `steps` steps of `scheme_name` on its field.

    The module provides vector_field(x), h (attribute or buffer), steps (default 1) and, for a
    Hamiltonian claim, hamiltonian(x). hamiltonian=None checks (b) when the module defines
    hamiltonian(), True requires it (InputError when missing), False skips it. Separability is
    checked whenever the scheme is a splitting or a partitioned tableau (or a composition of one).
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError("model", type(model).__name__, "a torch.nn.Module", "pass the module that declares the scheme")
    model64 = float64_copy(model)
    # h is read from the float64 copy: it is the value the copy's forward uses
    h, steps, check_h = _interface(model64, scheme_name, hamiltonian)
    x64 = _rows(x, _device(model64))
    with torch.no_grad():  # torch.func transforms inside still differentiate
        parts = {k: v.detach() for k, v in _parts(model64, scheme_name, x64, h, steps, check_h, dim_split).items()}
    stacked = torch.stack(list(parts.values()))
    per_input = stacked.amax(dim=0)
    if not torch.isfinite(per_input).all():
        row = int((~torch.isfinite(per_input)).nonzero()[0])
        raise InputError("x", x64[row].tolist(), "inputs where the module and its field are finite",
                         "check the module at this input (overflow or a singular field)")
    tol = tolerance(scheme_name, steps)
    worst = int(per_input.argmax())
    part_of_worst = list(parts)[int(stacked[:, worst].argmax())]
    holds = bool(per_input.max() <= tol)
    over = [f"{_PART_NAMES[k]}: max {float(v.max()):.3g} (×{float(v.max()) / tol:.3g} the tolerance) at "
            f"x = {[round(c, 6) for c in x64[int(v.argmax())].tolist()]}"
            for k, v in parts.items() if float(v.max()) > tol]
    what = f"forward = {steps} step(s) of {scheme_name} with h = {h:.17g} on the module's vector field"
    if check_h:
        what += ", which equals Ω⁻¹∇H of its hamiltonian()"
    if "separable" in parts:
        what += " and is separable"
    if holds:
        message = (f"binding holds: {what}; max relative mismatch {float(per_input.max()):.3g} ≤ tolerance "
                   f"{tol:.3g} ({TOLERANCE_FORMULA}) over {len(per_input)} inputs")
        if not check_h:
            message += "; no Hamiltonian was checked (the module defines no hamiltonian())"
    else:
        message = f"binding fails: {what} does not hold within {tol:.3g} ({TOLERANCE_FORMULA}); " + "; ".join(over)
    return SchemeBinding(
        scheme=scheme_name, holds=holds, max_mismatch=float(per_input.max()), tolerance=tol,
        tolerance_formula=TOLERANCE_FORMULA, mismatch_formula=MISMATCH_FORMULA,
        mismatches=per_input.tolist(), step_mismatches=parts["step"].tolist(),
        field_mismatches=parts["hamiltonian"].tolist() if "hamiltonian" in parts else None,
        separability_defects=parts["separable"].tolist() if "separable" in parts else None,
        worst_input=x64[worst].tolist(), worst_part=_PART_NAMES[part_of_worst], steps=steps, h=h,
        evaluations=steps * evaluations_per_step(scheme_name), n_inputs=len(per_input), message=message,
        checked=[_PART_NAMES[k] for k in parts],
    )
