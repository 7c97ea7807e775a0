"""Symbolic building blocks: a layer written once, evaluated exactly or numerically.

A block is a small program over vectors (affine maps with symbolic parameters,
abstract elementwise activations, gradients of abstract potentials, ...). The
same program runs on three backends:

* ``collect``: sympy expressions, for display and to count the symbols needed;
* ``ring``: exact polynomials over QQ in the parameters and in *symbols for the
  values and derivatives of the abstract functions* (σ(z_i), σ'(z_i), ∂_iV,
  ∂_i∂_jV = ∂_j∂_iV). The Jacobian is propagated alongside the values by the
  chain rule, so no sympy ``Subs``/``Derivative`` object ever reaches a zero test
  and an identity such as JᵀΩJ − Ω = 0 is decided by exact polynomial arithmetic;
* ``float``: concrete numbers (σ = tanh, a fixed smooth potential) to turn a
  non-zero residual into a concrete counterexample;
* ``torch``: the block instantiated with a module's own tensors and functions,
  batched over inputs (``trace_torch``), so that verify.derive.binding can check that the
  twin computes what the module computes.

Because the activation stays abstract, a proof covers every activation function
and every parameter value of the block.

Concrete functions (``Builder.act_known``: tanh, sigmoid, exp, softplus, sin, cos)
get one symbol for their value and carry their real derivative identity
(tanh' = 1 − tanh², σ' = σ(1 − σ), exp' = exp, softplus' = σ, sin' = cos,
cos' = −sin, with sin² + cos² = 1 as a relation): a block that writes out
a derivative by hand, such as ``1 − tanh(z)²``, is then proved to be a gradient
only through that identity. These are the twins generated from torch code
(verify.derive.fx_twin); hand-written twins keep abstract activations.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import sympy as sp

from verify.derive.polynomial import SPoly, to_ring

if TYPE_CHECKING:  # torch is imported only where the torch backend runs, so the exact stage stays light
    import torch

Row = dict  # sparse Jacobian row: column index -> scalar

# concrete elementwise functions whose derivative the exact backend can state in terms of values it already has
KNOWN_FUNCTIONS = ("tanh", "sigmoid", "exp", "softplus", "sin", "cos")


class Undecidable(Exception):
    """An obligation this exact algebra cannot decide for this block (the message says why, and the fix): the symbolic
    stage ends `undecided`, never `proved` and never `violated`."""


def _check_known(fname: str) -> None:
    if fname not in KNOWN_FUNCTIONS:
        raise ValueError(f"unknown concrete function {fname!r}; expected one of {KNOWN_FUNCTIONS}")


def matrix_entry(name: str, i: int, j: int, rows: int, cols: int) -> str:
    """The parameter name of entry (i, j) of a rows×cols matrix parameter (Builder.matrix's convention)."""
    return f"{name}_{i}{j}" if rows < 10 and cols < 10 else f"{name}_{i}_{j}"


class _Backend:
    """Scalar arithmetic and leaf creation; subclasses decide what a scalar is."""

    jacobian = True
    zero: Any
    one: Any

    def const(self, value: sp.Rational) -> Any:
        raise NotImplementedError

    def param(self, name: str) -> Any:
        raise NotImplementedError

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        """Value and derivative of an abstract scalar function at `arg`."""
        raise NotImplementedError

    def exp(self, arg: Any) -> Any:
        raise NotImplementedError

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        """Value and derivative of a concrete function (one of KNOWN_FUNCTIONS) at `arg`."""
        raise NotImplementedError

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        """Gradient and (symmetric) Hessian of an abstract potential at `args`."""
        raise NotImplementedError


class _Collect(_Backend):
    jacobian = False

    def __init__(self) -> None:
        self.zero, self.one = sp.Integer(0), sp.Integer(1)
        self.params: dict[str, sp.Symbol] = {}
        self.opaque: dict[tuple, tuple[str, str, sp.Expr]] = {}  # key -> (kind, label, meaning)

    def const(self, value: sp.Rational) -> Any:
        return sp.Rational(value)

    def param(self, name: str) -> Any:
        return self.params.setdefault(name, sp.Symbol(name))

    def _key(self, *parts: Any) -> tuple:
        return tuple(sp.expand(p) if isinstance(p, sp.Basic) else p for p in parts)

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        f = sp.Function(fname)
        key = self._key("apply", fname, arg)
        self.opaque.setdefault(key, ("apply", fname, f(arg)))
        return f(arg), None

    def exp(self, arg: Any) -> Any:
        self.opaque.setdefault(self._key("exp", arg), ("exp", "exp", sp.exp(arg)))
        return sp.exp(arg)

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        _check_known(fname)
        value = {
            "tanh": sp.tanh, "sigmoid": lambda z: 1 / (1 + sp.exp(-z)), "exp": sp.exp,
            "softplus": lambda z: sp.log(1 + sp.exp(z)), "sin": sp.sin, "cos": sp.cos,
        }[fname](arg)
        self.opaque.setdefault(self._key("known", fname, arg), ("known", fname, value))
        return value, None

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        key = self._key("grad", fname, *args)
        dummies = sp.symbols(f"_u0:{len(args)}")
        V = sp.Function(fname)(*dummies)
        grad = [sp.Subs(sp.diff(V, u), dummies, tuple(args)) for u in dummies]
        self.opaque.setdefault(key, ("grad", fname, sp.Function(fname)(*args)))
        return grad, []


class _Ring(_Backend):
    """Exact backend: sparse polynomials over QQ (see verify.derive.polynomial)."""

    def __init__(self, symbols: Sequence[sp.Symbol], names: dict[str, int]) -> None:
        self.symbols = list(symbols)
        self.gens = [SPoly.gen(i) for i in range(len(symbols))]
        self.zero, self.one = SPoly(), SPoly.const(1)
        self.names = names  # parameter name -> generator index
        self.pool = list(range(len(names), len(symbols)))  # generators for abstract-function symbols
        self.meaning: dict[int, tuple[str, Any]] = {}  # generator index -> (label, argument), for reports
        self.cache: dict[tuple, Any] = {}
        self.relations: list[Any] = []  # polynomials known to vanish (a Gröbner basis: disjoint leading terms)

    def _take(self, label: str, arg: Any = None) -> Any:
        if not self.pool:
            raise RuntimeError("symbolic backend ran out of generators; the block is not deterministic")
        i = self.pool.pop(0)
        # printing the argument is costly; it is done only for residuals that are shown
        self.meaning[i] = (label, arg)
        return self.gens[i]

    def describe(self, i: int) -> str:
        label, arg = self.meaning[i]
        if arg is None:
            return label
        if isinstance(arg, tuple):
            shown = ", ".join(str(a.as_expr(self.symbols)) for a in arg)
        else:
            shown = str(arg.as_expr(self.symbols))
        return label.replace("@", shown)

    def const(self, value: sp.Rational) -> Any:
        return SPoly.const(sp.Rational(value))

    def param(self, name: str) -> Any:
        return self.gens[self.names[name]]

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        key = ("apply", fname, arg)
        if key not in self.cache:
            self.cache[key] = (self._take(f"{fname}(@)", arg), self._take(f"{fname}'(@)", arg))
        return self.cache[key]

    def exp(self, arg: Any) -> Any:
        key = ("exp", arg)
        if key not in self.cache:
            self.cache[key] = self._take("exp(@)", arg)
            mirror = self.cache.get(("exp", -arg))
            if mirror is not None:
                # exp(a)·exp(−a) = 1 is the one identity of exp that layer inverses rely on
                self.relations.append(self.cache[key] * mirror - self.one)
        return self.cache[key]

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        _check_known(fname)
        if fname == "exp":
            e = self.exp(arg)  # shares exp's symbols and its exp(a)·exp(−a) = 1 relation
            return e, e
        key = ("known", fname, arg)
        if key not in self.cache:
            if fname == "tanh":
                s = self._take("tanh(@)", arg)
                self.cache[key] = (s, self.one - s * s)
            elif fname == "sigmoid":
                s = self._take("sigmoid(@)", arg)
                self.cache[key] = (s, s - s * s)
            elif fname == "softplus":
                u = self._take("softplus(@)", arg)
                self.cache[key] = (u, self.apply_known("sigmoid", arg)[0])
            else:
                s, c = self._sincos(arg)
                self.cache[key] = (s, c) if fname == "sin" else (c, -s)
        return self.cache[key]

    def _sincos(self, arg: Any) -> tuple[Any, Any]:
        key = ("sincos", arg)
        if key not in self.cache:
            s, c = self._take("sin(@)", arg), self._take("cos(@)", arg)
            # leading term s² (s is the older generator) is coprime to every other relation's: still a Gröbner basis
            self.relations.append(s * s + c * c - self.one)
            self.cache[key] = (s, c)
        return self.cache[key]

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        key = ("grad", fname, *args)
        if key not in self.cache:
            k = len(args)
            at = tuple(args)
            grad = [self._take(f"∂_{i}{fname}(@)", at) for i in range(k)]
            hess: list[list[Any]] = [[None] * k for _ in range(k)]
            for i in range(k):
                for j in range(i, k):
                    # one symbol for ∂_i∂_j V and ∂_j∂_i V: the Hessian of a C² potential is symmetric
                    hess[i][j] = hess[j][i] = self._take(f"∂_{i}∂_{j}{fname}(@)", at)
            self.cache[key] = (grad, hess)
        return self.cache[key]


class _Float(_Backend):
    """Concrete instance: σ = tanh (and "dsigma" = 1 − tanh²), V(u) = log cosh(r·u) + ½ Σ cos(u_i), seeded parameters."""

    def __init__(self, seed: int, scale: float = 1.0) -> None:
        self.zero, self.one = 0.0, 1.0
        self.seed = seed
        self.rng = random.Random(seed)
        self.scale = scale
        self.values: dict[str, float] = {}
        self.directions: dict[tuple[str, int], list[float]] = {}

    def const(self, value: sp.Rational) -> Any:
        return float(value)

    def param(self, name: str) -> Any:
        if name not in self.values:
            # drawn from (seed, name) alone, so fixing some values (the input x) leaves the others unchanged
            self.values[name] = round(random.Random(f"{self.seed}:{name}").gauss(0.0, self.scale), 3)
        return self.values[name]

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        t = math.tanh(arg)
        if fname == "dsigma":  # a layer that uses σ' of its activation (a closed-form gradient)
            return 1.0 - t * t, -2.0 * t * (1.0 - t * t)
        return t, 1.0 - t * t

    def exp(self, arg: Any) -> Any:
        return math.exp(arg)

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        _check_known(fname)
        if fname == "tanh":
            t = math.tanh(arg)
            return t, 1.0 - t * t
        if fname == "exp":
            e = self.exp(arg)
            return e, e
        if fname in ("sigmoid", "softplus"):
            e = math.exp(-abs(arg))  # overflow-free forms
            sig = 1.0 / (1.0 + e) if arg >= 0 else e / (1.0 + e)
            if fname == "sigmoid":
                return sig, sig * (1.0 - sig)
            return max(arg, 0.0) + math.log1p(e), sig
        if fname == "sin":
            return math.sin(arg), math.cos(arg)
        return math.cos(arg), -math.sin(arg)

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        k = len(args)
        r = self.directions.setdefault((fname, k), [round(self.rng.gauss(0, 1), 3) for _ in range(k)])
        s = sum(ri * ai for ri, ai in zip(r, args))
        th = math.tanh(s)
        grad = [th * r[i] - 0.5 * math.sin(args[i]) for i in range(k)]
        hess = [
            [(1 - th * th) * r[i] * r[j] - (0.5 * math.cos(args[i]) if i == j else 0.0) for j in range(k)]
            for i in range(k)
        ]
        return grad, hess


@dataclass
class Vec:
    """A vector of scalars with its Jacobian with respect to the block's input."""

    b: "Builder"
    vals: list[Any]
    jac: list[Row] | None

    def __len__(self) -> int:
        return len(self.vals)

    def __getitem__(self, s: slice) -> "Vec":
        if not isinstance(s, slice):
            s = slice(s, s + 1)
        return Vec(self.b, self.vals[s], None if self.jac is None else self.jac[s])

    def _zip(self, other: "Vec", sign: int) -> "Vec":
        if len(self) != len(other):
            raise ValueError(f"vector lengths differ: {len(self)} vs {len(other)}")
        vals = [a + b if sign > 0 else a - b for a, b in zip(self.vals, other.vals)]
        jac = None
        if self.jac is not None and other.jac is not None:
            jac = [_row_axpy(r1, r2, sign) for r1, r2 in zip(self.jac, other.jac)]
        return Vec(self.b, vals, jac)

    def __add__(self, other: "Vec") -> "Vec":
        return self._zip(other, +1)

    def __sub__(self, other: "Vec") -> "Vec":
        return self._zip(other, -1)

    def __neg__(self) -> "Vec":
        return self.scale(-1)

    def scale(self, c: Any) -> "Vec":
        """Multiply by a scalar (a number, or a backend scalar such as a parameter)."""
        if isinstance(c, (int, sp.Rational)):
            c = self.b.backend.const(sp.Rational(c))
        vals = [c * v for v in self.vals]
        jac = None if self.jac is None else [_row_scale(r, c) for r in self.jac]
        return Vec(self.b, vals, jac)

    def __mul__(self, other: "Vec") -> "Vec":
        """Elementwise product of two vectors that both depend on the input (product rule)."""
        vals = [a * c for a, c in zip(self.vals, other.vals)]
        jac = None
        if self.jac is not None and other.jac is not None:
            jac = [_row_axpy(_row_scale(ra, c), _row_scale(rc, a), +1)
                   for a, c, ra, rc in zip(self.vals, other.vals, self.jac, other.jac)]
        return Vec(self.b, vals, jac)

    def hadamard(self, coeffs: Sequence[Any]) -> "Vec":
        """Elementwise product with coefficients that do not depend on the input (parameters)."""
        vals = [c * v for c, v in zip(coeffs, self.vals)]
        jac = None if self.jac is None else [_row_scale(r, c) for c, r in zip(coeffs, self.jac)]
        return Vec(self.b, vals, jac)


def _row_axpy(r1: Row, r2: Row, sign: int) -> Row:
    """r1 + r2 (sign > 0) or r1 − r2, entry by entry (a column in both rows included)."""
    out = dict(r1)
    for k, v in r2.items():
        if k in out:
            out[k] = out[k] + v if sign > 0 else out[k] - v
        else:
            out[k] = v if sign > 0 else -v
    return out


def _row_scale(r: Row, c: Any) -> Row:
    return {k: c * v for k, v in r.items()}


@dataclass
class Mat:
    """A matrix of parameters (rows of scalars)."""

    rows: list[list[Any]]

    @property
    def T(self) -> "Mat":
        return Mat([list(col) for col in zip(*self.rows)])

    def __add__(self, other: "Mat") -> "Mat":
        return Mat([[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(self.rows, other.rows)])

    def __matmul__(self, v: Vec) -> Vec:
        if len(self.rows[0]) != len(v):
            raise ValueError(f"matrix has {len(self.rows[0])} columns, vector has length {len(v)}")
        zero = v.b.backend.zero
        vals = []
        jac: list[Row] | None = [] if v.jac is not None else None
        for row in self.rows:
            acc = zero
            jrow: Row = {}
            for w, x, jx in zip(row, v.vals, v.jac if v.jac is not None else [None] * len(v)):
                if w == 0:
                    continue
                acc = acc + w * x
                if jx is not None:
                    for k, val in jx.items():
                        jrow[k] = jrow[k] + w * val if k in jrow else w * val
            vals.append(acc)
            if jac is not None:
                jac.append(jrow)
        return Vec(v.b, vals, jac)


class Builder:
    """What a block's program sees: parameters, abstract functions and vector helpers."""

    def __init__(self, backend: _Backend) -> None:
        self.backend = backend

    # parameters -------------------------------------------------------------
    def scalar(self, name: str) -> Any:
        return self.backend.param(name)

    def vector(self, name: str, n: int) -> list[Any]:
        return [self.backend.param(f"{name}_{i}") for i in range(n)]

    def matrix(self, name: str, rows: int, cols: int) -> Mat:
        return Mat([[self.backend.param(matrix_entry(name, i, j, rows, cols))
                     for j in range(cols)] for i in range(rows)])

    def bias(self, name: str, n: int) -> Vec:
        return self.constant_vec(self.vector(name, n))

    def constant_vec(self, vals: Sequence[Any]) -> Vec:
        jac = None if not self.backend.jacobian else [{} for _ in vals]
        return Vec(self, list(vals), jac)

    # nonlinearities -----------------------------------------------------------
    def _elementwise(self, value_and_derivative: Callable[[Any], tuple[Any, Any]], v: Vec) -> Vec:
        vals, jac = [], [] if v.jac is not None else None
        for i, x in enumerate(v.vals):
            val, der = value_and_derivative(x)
            vals.append(val)
            if jac is not None:
                jac.append(_row_scale(v.jac[i], der))
        return Vec(self, vals, jac)

    def act(self, fname: str, v: Vec) -> Vec:
        """Elementwise abstract function fname(v_i), differentiable, otherwise arbitrary."""
        return self._elementwise(lambda x: self.backend.apply(fname, x), v)

    def act_known(self, fname: str, v: Vec) -> Vec:
        """Elementwise concrete function (one of KNOWN_FUNCTIONS), with its real derivative identity."""
        return self._elementwise(lambda x: self.backend.apply_known(fname, x), v)

    def exp(self, v: Vec) -> Vec:
        vals, jac = [], [] if v.jac is not None else None
        for i, x in enumerate(v.vals):
            e = self.backend.exp(x)
            vals.append(e)
            if jac is not None:
                jac.append(_row_scale(v.jac[i], e))
        return Vec(self, vals, jac)

    def grad(self, fname: str, v: Vec) -> Vec:
        """∇V(v) for an abstract C² potential V (its Hessian is symmetric)."""
        grad, hess = self.backend.gradient(fname, v.vals)
        jac = None
        if v.jac is not None:
            jac = (Mat(hess) @ Vec(self, [self.backend.zero] * len(v), v.jac)).jac
        return Vec(self, list(grad), jac)

    @staticmethod
    def concat(*parts: Vec) -> Vec:
        b = parts[0].b
        vals = [x for p in parts for x in p.vals]
        jac = None if parts[0].jac is None else [r for p in parts for r in p.jac]
        return Vec(b, vals, jac)

    def state(self, n: int) -> Vec:
        names = [f"x_{i}" for i in range(n)]
        vals = [self.backend.param(nm) for nm in names]
        jac = [{i: self.backend.one} for i in range(n)] if self.backend.jacobian else None
        return Vec(self, vals, jac)


Program = Callable[[Builder, Vec], Vec]


@dataclass(frozen=True)
class SymbolicBlock:
    """One layer type of an architecture, as a program over its phase-space vector.

    `forward` maps the input vector to the output vector. `inverse`, when given,
    is the explicit inverse the implementation uses; the Invertible property
    checks inverse∘forward = id exactly.
    """

    name: str
    dim: int
    forward: Program
    inverse: Program | None = None
    description: str = ""
    # the log-determinant the layer *reports* (what its code's log_det returns), as a program (b, x) -> Vec whose
    # entries are summed: a flow's likelihood is built on this number, not on J, so LogDet proves
    # reported − log|det J| = 0 for it; `inverse_log_det` is the inverse's report, as a program of the inverse's input y
    log_det: Program | None = None
    inverse_log_det: Program | None = None

    def __repr__(self) -> str:
        inv = ", with inverse" if self.inverse else ""
        ld = ", with log-det" if self.log_det else ""
        return f"SymbolicBlock({self.name!r}, dim={self.dim}{inv}{ld})"

    def inverse_view(self) -> "SymbolicBlock":
        """The inverse as a block of its own (its forward is this block's inverse program, its reported log-det the
        inverse's), so that the inverse's log-determinant is proved against the inverse's own Jacobian."""
        return _inverse_view(self)


@dataclass
class Traced:
    """A block evaluated on one backend: outputs, Jacobian (dense), and bookkeeping."""

    inputs: list[Any]
    outputs: list[Any]
    jacobian: list[list[Any]]
    backend: _Backend
    inverse_of_outputs: list[Any] | None = None
    meaning: dict[str, str] = field(default_factory=dict)
    reported_log_det: Any | None = None  # the sum of the block's log_det program at the input (None: none declared)

    def reduce(self, value: Any) -> Any:
        """An exact residual modulo the identities of the abstract functions (e.g. exp(a)exp(−a) = 1)."""
        relations = getattr(self.backend, "relations", None)
        if relations and hasattr(value, "ring") and not isinstance(value, SPoly):
            # a PolyElement from an elimination (a dense determinant): back to the backend's generators
            value = _from_ring(value, self.backend.symbols)
        if not relations or not isinstance(value, SPoly):
            return value
        _, (v, *rels) = to_ring([value, *relations], self.backend.symbols)
        return v.rem(rels)

    def to_expr(self, value: Any) -> sp.Expr:
        if isinstance(value, SPoly):
            return value.as_expr(self.backend.symbols)
        return value.as_expr() if hasattr(value, "as_expr") else sp.sympify(value)


def _from_ring(value: Any, symbols: Sequence[sp.Symbol]) -> SPoly:
    from sympy.external.gmpy import MPQ

    index = {sym: i for i, sym in enumerate(symbols)}
    gens = value.ring.symbols
    terms = {}
    for monom, coeff in value.terms():
        mono = tuple(sorted(index[g] for g, e in zip(gens, monom) for _ in range(e)))
        terms[mono] = MPQ(int(coeff.numerator), int(coeff.denominator))
    return SPoly(terms)


def _dense(rows: list[Row], n: int, zero: Any) -> list[list[Any]]:
    return [[r.get(j, zero) for j in range(n)] for r in rows]


def _inverse_view_uncached(block: SymbolicBlock) -> SymbolicBlock:
    if block.inverse is None:
        raise ValueError(f"block {block.name!r} has no inverse program; fix: give the SymbolicBlock an inverse=")
    return SymbolicBlock(f"{block.name} (inverse)", block.dim, block.inverse, block.forward, block.description,
                         log_det=block.inverse_log_det, inverse_log_det=block.log_det)


_VIEWS: dict[int, tuple[SymbolicBlock, SymbolicBlock]] = {}


def _inverse_view(block: SymbolicBlock) -> SymbolicBlock:
    # one view object per block, so that the exact trace of the view is cached like the block's own
    hit = _VIEWS.get(id(block))
    if hit is None or hit[0] is not block:
        hit = (block, _inverse_view_uncached(block))
        _VIEWS[id(block)] = hit
    return hit[1]


def _sum(backend: _Backend, v: Any) -> Any:
    vals = v.vals if isinstance(v, Vec) else list(v)
    total = backend.zero
    for t in vals:
        total = total + t
    return total


def reported_log_det(block: SymbolicBlock, b: Builder, x: Vec) -> Any | None:
    """The block's reported log-determinant at x (the sum of its log_det program's entries), None when it declares none."""
    if block.log_det is None:
        return None
    return _sum(b.backend, block.log_det(b, Vec(b, list(x.vals), None)))


def _run(block: SymbolicBlock, backend: _Backend, with_inverse: bool) -> tuple[Builder, Vec, Vec, Vec | None]:
    b = Builder(backend)
    x = b.state(block.dim)
    y = block.forward(b, x)
    if len(y) != block.dim:
        raise ValueError(
            f"block {block.name!r} returned a vector of length {len(y)}; expected dim={block.dim}. "
            "Fix: a phase-space layer must map R^n to R^n"
        )
    back = None
    if with_inverse and block.inverse is not None:
        # only the values of inverse(forward(x)) are needed, so no Jacobian is carried
        back = block.inverse(b, Vec(b, y.vals, None))
    return b, x, y, back


def collect(block: SymbolicBlock) -> tuple[list[sp.Expr], list[sp.Expr], _Collect]:
    """Sympy expressions of the block's outputs (and the symbol inventory)."""
    backend = _Collect()
    _, x, y, _ = _run(block, backend, with_inverse=True)
    return x.vals, y.vals, backend


class _Fingerprint(_Float):
    """A float run that only counts the distinct abstract-function applications.

    Arguments equal as polynomials evaluate to equal floats, so counting distinct
    (rounded) values never undercounts in practice; an overcount only leaves unused
    generators. This replaces a sympy pass that cost most of a proof's time.
    """

    jacobian = False

    def __init__(self) -> None:
        super().__init__(seed=12345)
        self.keys: set[tuple] = set()
        self.needed = 0

    def _new(self, key: tuple, count: int) -> None:
        if key not in self.keys:
            self.keys.add(key)
            self.needed += count

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        self._new(("apply", fname, round(arg, 9)), 2)
        return super().apply(fname, arg)

    def exp(self, arg: Any) -> Any:
        self._new(("exp", round(arg, 9)), 1)
        return super().exp(arg)

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        r = round(arg, 9)
        if fname in ("tanh", "sigmoid", "softplus"):
            self._new(("known", fname, r), 1)
        if fname == "softplus":
            self._new(("known", "sigmoid", r), 1)  # its derivative is the sigmoid symbol
        if fname in ("sin", "cos"):
            self._new(("sincos", r), 2)
        return super().apply_known(fname, arg)  # exp is counted by self.exp

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        k = len(args)
        self._new(("grad", fname, tuple(round(a, 9) for a in args)), k + k * (k + 1) // 2)
        return super().gradient(fname, args)


def trace_exact(block: SymbolicBlock) -> Traced:
    """The block over QQ[parameters, abstract-function symbols], with its exact Jacobian."""
    inventory = _Fingerprint()
    b0, x0, _, _ = _run(block, inventory, with_inverse=True)
    reported_log_det(block, b0, x0)  # its symbols are counted too
    names = list(inventory.values)
    n_opaque = inventory.needed
    symbols = [sp.Symbol(nm) for nm in names] + [sp.Symbol(f"_s{i}") for i in range(n_opaque)]
    backend = _Ring(symbols, {nm: i for i, nm in enumerate(names)})
    b, x, y, back = _run(block, backend, with_inverse=True)
    traced = Traced(
        inputs=x.vals,
        outputs=y.vals,
        jacobian=_dense(y.jac, block.dim, backend.zero),
        backend=backend,
        inverse_of_outputs=None if back is None else back.vals,
        reported_log_det=reported_log_det(block, b, x),
    )
    traced.meaning = _LazyMeaning(backend)
    return traced


class _LazyMeaning(dict):
    """Generator name -> what it stands for, printed on first use."""

    def __init__(self, backend: _Ring) -> None:
        super().__init__()
        self._by_name = {backend.symbols[i].name: i for i in backend.meaning}
        self._backend = backend

    def get(self, name: str, default: Any = None) -> Any:
        g = self._by_name.get(name)
        return default if g is None else self._backend.describe(g)


def trace_float(block: SymbolicBlock, seed: int, x: Sequence[float] | None = None,
                values: Mapping[str, float] | None = None) -> Traced:
    """A concrete instance of the block: seeded parameters, σ = tanh, a fixed smooth potential.

    `values` fixes parameters by name (e.g. a module's own weights); the others are drawn from the seed.
    """
    backend = _Float(seed)
    for name, v in (values or {}).items():
        backend.values[name] = float(v)
    if x is not None:
        for i, xi in enumerate(x):
            backend.values[f"x_{i}"] = float(xi)
    b, xv, y, back = _run(block, backend, with_inverse=True)
    return Traced(
        inputs=xv.vals,
        outputs=y.vals,
        jacobian=_dense(y.jac, block.dim, 0.0),
        backend=backend,
        inverse_of_outputs=None if back is None else back.vals,
        reported_log_det=reported_log_det(block, b, xv),
    )


def float_parameters(traced: Traced) -> dict[str, float]:
    assert isinstance(traced.backend, _Float)
    return dict(traced.backend.values)



# --- torch backend: the block instantiated with a module's own tensors ----------------


class _Torch(_Backend):
    """A scalar is a float64 tensor: shape (B,) for anything that depends on the input, 0-d for a parameter.

    `param` reads a bound value, `apply` calls the bound callable (the module's own
    activation) on a (B,) tensor, and `gradient` differentiates the bound *scalar
    potential* by autograd. A hand-written gradient is deliberately not accepted: the
    proof assumes ∇V has a symmetric Hessian, which only holds for the gradient of a
    potential, so the twin differentiates the module's potential and the binding then
    compares that with whatever gradient the module's code computes.
    """

    jacobian = False

    def __init__(self, values: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> None:
        self.zero, self.one = 0.0, 1.0
        self.values = values
        self.functions = functions

    def const(self, value: sp.Rational) -> Any:
        return float(value)

    def param(self, name: str) -> Any:
        if name not in self.values:
            from verify.errors import InputError

            raise InputError("block symbol", name, "a value bound to it", "bind a tensor to the symbol's base name "
                             "(a module parameter of that name, or Bound(parameters={...}))")
        return self.values[name]

    def _function(self, fname: str) -> Callable[..., Any]:
        if fname not in self.functions:
            from verify.errors import InputError

            raise InputError("abstract function", fname, "a callable bound to it",
                             f"bind the module's own function: Bound(functions={{{fname!r}: module.<function>}})")
        return self.functions[fname]

    @staticmethod
    def _tensor(value: Any) -> "torch.Tensor":
        import torch

        if isinstance(value, torch.Tensor):
            return value
        return torch.tensor(float(value), dtype=torch.float64)

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        t = self._tensor(arg)
        out = self._function(fname)(t)
        if getattr(out, "shape", None) != t.shape:
            from verify.errors import InputError

            raise InputError(f"shape of {fname}(z)", tuple(getattr(out, "shape", ())), f"{tuple(t.shape)} (elementwise)",
                             f"bind an elementwise function to {fname!r}")
        return out, None

    def exp(self, arg: Any) -> Any:
        import torch

        return torch.exp(self._tensor(arg))

    def apply_known(self, fname: str, arg: Any) -> tuple[Any, Any]:
        """A concrete function (a twin generated from the code) is the torch function itself."""
        import torch

        _check_known(fname)
        fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "exp": torch.exp, "softplus": torch.nn.functional.softplus,
              "sin": torch.sin, "cos": torch.cos}[fname]
        return fn(self._tensor(arg)), None

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        import torch

        from verify.errors import InputError

        V = self._function(fname)
        z = torch.stack(torch.broadcast_tensors(*[self._tensor(a) for a in args]), dim=-1)
        if z.dim() == 1:  # every argument was a parameter: a batch of one
            z = z.unsqueeze(0)
        # keep the graph when the caller differentiates the twin (gradient ascent on a mismatch)
        track = torch.is_grad_enabled() and z.requires_grad
        with torch.enable_grad():
            zz = z if track else z.detach().requires_grad_(True)
            v = V(zz)
            if not isinstance(v, torch.Tensor) or v.shape != zz.shape[:-1]:
                raise InputError(
                    f"shape of {fname}(z) for z of shape {tuple(zz.shape)}", tuple(getattr(v, "shape", ())),
                    f"{tuple(zz.shape[:-1])}: a scalar potential per input",
                    f"bind the module's scalar potential to {fname!r} (the twin takes its gradient by autograd); "
                    "a hand-written gradient is not accepted, since the proof assumes ∇V has a symmetric Hessian",
                )
            (g,) = torch.autograd.grad(v.sum(), zz, create_graph=track)
        if len(args) and all(not isinstance(a, torch.Tensor) or a.dim() == 0 for a in args):
            g = g[0]
        return list(g.unbind(-1)), []


def trace_torch(
    block: SymbolicBlock,
    x: "torch.Tensor",
    values: Mapping[str, "torch.Tensor"],
    functions: Mapping[str, Callable[..., Any]],
    inverse: bool = False,
    log_det: bool | str = False,
) -> "torch.Tensor":
    """The block's forward (or its inverse program) on a batch x of shape (B, n), float64; with `log_det`, the log-det
    the block reports (its log_det program, or inverse_log_det with `inverse`) at x, shape (B,).

    `values` maps the block's scalar symbol names (a_0, K_01, h, ...) to 0-d float64
    tensors; `functions` maps each abstract function to a callable: an elementwise one
    for `act`, a scalar potential (B, k) -> (B,) for `grad` (differentiated by autograd).
    """
    import torch

    from verify.errors import InputError

    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != block.dim:
        raise InputError("input shape", tuple(getattr(x, "shape", ())), f"(B, {block.dim}) for block {block.name!r}",
                         "pass a batch of phase-space points of the block's dimension")
    if x.dtype != torch.float64:
        raise InputError("input dtype", x.dtype, "torch.float64", "call with x.double(): the twin runs in float64")
    clash = [k for k in values if k.startswith("x_") and k[2:].isdigit()]
    if clash:
        raise InputError("block symbol", clash[0], "a name other than x_<i> (the state)", "rename the parameter")
    for name, v in values.items():
        if isinstance(v, torch.Tensor) and v.dtype != torch.float64:
            raise InputError(f"dtype of the value bound to {name!r}", v.dtype, "torch.float64",
                             "bind the tensors of a float64 copy of the module")
    program = block.inverse if inverse else block.forward
    if log_det:
        program = block.inverse_log_det if inverse else block.log_det
        if program is None:
            raise InputError("log-det program of block", block.name, "a block with log_det= (and inverse_log_det=)",
                             "declare the log-determinant the layer reports on its SymbolicBlock")
    if program is None:
        raise InputError("inverse of block", block.name, "a block with an inverse program",
                         "give the SymbolicBlock an inverse= program, or do not ask for the inverse twin")
    columns = list(x.unbind(1))
    backend = _Torch({**values, **{f"x_{i}": c for i, c in enumerate(columns)}}, functions)
    b = Builder(backend)
    y = program(b, Vec(b, columns, None))
    if log_det:
        terms = [backend._tensor(v) for v in (y.vals if isinstance(y, Vec) else list(y))]
        terms = [v.expand(x.shape[0]) if v.dim() == 0 else v for v in terms]
        if log_det == "terms":  # (B, k): what the reported log-det sums (its rounding scale is Σ|term|)
            return torch.stack(terms, dim=1) if terms else x.new_zeros(x.shape[0], 0)
        t = backend._tensor(_sum(backend, terms))
        return t.expand(x.shape[0]) if t.dim() == 0 else t
    if len(y) != block.dim:
        raise InputError(f"output length of block {block.name!r}", len(y), f"dim={block.dim}",
                         "a phase-space layer must map R^n to R^n")
    out = [backend._tensor(v) for v in y.vals]
    return torch.stack([v.expand(x.shape[0]) if v.dim() == 0 else v for v in out], dim=1)
