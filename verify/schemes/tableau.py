"""Immutable, exact descriptions of time-discretisation schemes.

* :class:`ButcherTableau` -- an s-stage Runge--Kutta method (A, b, c);
* :class:`PartitionedTableau` -- a partitioned RK pair, the first tableau
  integrating the first component (positions q), the second the second
  component (momenta p);
* :class:`Splitting` -- a product of exact sub-flows phi^[k]_{a h};
* :class:`Composition` -- a base method applied with step sizes gamma_i h.

Coefficients are sympy numbers (Rational, surds, algebraic numbers).  Python
floats are refused because a float such as 0.1 is not the number the
literature means; :meth:`ButcherTableau.from_floats` converts them with
``nsimplify`` under an explicit tolerance and records every conversion.
"""

from __future__ import annotations

import numbers
import re
import string
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any, Optional, Sequence, Union

import sympy as sp

from .exact import Elem, Field, SchemeError, algebraic_atoms, field_for

__all__ = [
    "SchemeError",
    "ButcherTableau",
    "PartitionedTableau",
    "Splitting",
    "Composition",
    "Scheme",
    "exact_number",
]


def _float_hint(value: float) -> str:
    try:
        guess = sp.nsimplify(value, rational=True, tolerance=1e-12)
        q = sp.Rational(guess)
        if q.q != 1:
            return f"pass sympy.Rational({q.p}, {q.q}) or the string '{q.p}/{q.q}'"
        return f"pass the integer {q.p}"
    except Exception:  # pragma: no cover - nsimplify failure only changes the hint
        return "pass a sympy.Rational or a string such as '1/3'"


_ALLOWED_NAMES = {"sqrt", "cbrt", "root", "Rational", "I"}


def exact_number(value: Any, where: str = "coefficient") -> sp.Expr:
    """Convert ``value`` to an exact sympy number or raise :class:`SchemeError`.

    Accepted: int, Fraction, sympy Rational/algebraic expressions, strings such
    as ``'1/3'``, ``'sqrt(3)/6'`` or exact decimals ``'0.25'``.
    """
    if isinstance(value, bool):
        raise SchemeError(f"{where} = {value!r} is a bool; expected an exact number")
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, (float, sp.Float)) or (
        isinstance(value, numbers.Real) and not isinstance(value, (sp.Basic, numbers.Rational))
    ):
        raise SchemeError(
            f"{where} = {value!r} is a floating-point number, but exact coefficients are required "
            f"(a float is only an approximation of the intended value). Fix: {_float_hint(float(value))}, "
            f"or build the scheme with from_floats(..., tolerance=1e-14) to convert with nsimplify."
        )
    if isinstance(value, str):
        text = value.strip()
        # sympify evaluates Python code: only plain arithmetic on numbers and a few radical functions
        # may reach it, so tableau files from elsewhere cannot run code
        bad_chars = set(text) - set("0123456789+-*/()., ^\t" + string.ascii_letters)
        names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) - _ALLOWED_NAMES
        if bad_chars or names or "_" in text:
            raise SchemeError(f"{where} = {value!r} is not a plain exact number; allowed are integers, "
                              f"fractions, exact decimals, + - * / ^ ( ) and {sorted(_ALLOWED_NAMES)}")
        try:
            expr = sp.sympify(text, rational=True)
        except (sp.SympifyError, SyntaxError, TypeError) as exc:
            raise SchemeError(f"{where} = {value!r} cannot be parsed as an exact number "
                              f"(expected e.g. '1/3' or 'sqrt(3)/6'): {exc}") from exc
        return exact_number(expr, where)
    if isinstance(value, sp.Basic):
        expr = sp.sympify(value)
        if expr.free_symbols:
            raise SchemeError(f"{where} = {value} contains symbols {sorted(map(str, expr.free_symbols))}; "
                              f"expected a number")
        if expr.atoms(sp.Float):
            raise SchemeError(
                f"{where} = {value} contains the float {sorted(expr.atoms(sp.Float))[0]}; exact coefficients "
                f"are required. Fix: {_float_hint(float(sorted(expr.atoms(sp.Float))[0]))}, or use from_floats"
                f"(..., tolerance=...)."
            )
        if not expr.is_number:
            raise SchemeError(f"{where} = {value} is not a number")
        try:
            algebraic_atoms([expr])
        except SchemeError as exc:
            raise SchemeError(f"{where} = {value}: {exc}; exact decisions need algebraic coefficients") from exc
        return expr
    raise SchemeError(f"{where} = {value!r} has unsupported type {type(value).__name__}; "
                      f"expected int, Fraction, sympy number or a string like '1/3'")


def _to_float_exact(value: Any, where: str, tolerance: float,
                    constants: Sequence[sp.Expr], log: list[str]) -> sp.Expr:
    if isinstance(value, (float, sp.Float)) or (
        isinstance(value, numbers.Real) and not isinstance(value, (int, numbers.Rational, sp.Basic))
    ):
        f = float(value)
        guess = sp.nsimplify(f, constants=list(constants), tolerance=tolerance, rational=not constants)
        err = abs(float(guess) - f)
        if err > tolerance:
            raise SchemeError(f"{where} = {f!r}: nsimplify found {guess} with error {err:.3g} "
                              f"> tolerance {tolerance:g}")
        log.append(f"{where}: {f!r} -> {guess} (|error| = {err:.2e} <= tolerance {tolerance:g})")
        return exact_number(guess, where)
    return exact_number(value, where)


def _matrix(rows: Any, where: str) -> tuple[tuple[sp.Expr, ...], ...]:
    try:
        rows = [list(r) for r in rows]
    except TypeError as exc:
        raise SchemeError(f"{where} must be a list of rows") from exc
    s = len(rows)
    if s == 0:
        raise SchemeError(f"{where} is empty; a scheme needs at least one stage")
    for i, r in enumerate(rows):
        if len(r) != s:
            raise SchemeError(f"{where} must be square ({s}x{s}) but row {i} has {len(r)} entries")
    return tuple(tuple(exact_number(v, f"{where}[{i}][{j}]") for j, v in enumerate(r))
                 for i, r in enumerate(rows))


def _vector(vals: Any, s: int, where: str) -> tuple[sp.Expr, ...]:
    try:
        vals = list(vals)
    except TypeError as exc:
        raise SchemeError(f"{where} must be a list") from exc
    if len(vals) != s:
        raise SchemeError(f"{where} has length {len(vals)} but A has {s} stages")
    return tuple(exact_number(v, f"{where}[{i}]") for i, v in enumerate(vals))


def _fmt(e: sp.Expr) -> str:
    return str(e).replace("**", "^")


@dataclass(frozen=True, eq=True)
class ButcherTableau:
    """An s-stage Runge--Kutta method, validated and exact.

    ``c`` may be omitted and is then derived as the row sums of ``A``; when it
    is given it must equal the row sums exactly.
    """

    A: Any
    b: Any
    c: Any = None
    name: str = "unnamed"
    b_embedded: Any = None
    conversions: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        A = _matrix(self.A, "A")
        s = len(A)
        b = _vector(self.b, s, "b")
        row_sums = tuple(sp.Add(*row) for row in A)
        if self.c is None:
            c = row_sums
        else:
            c = _vector(self.c, s, "c")
        be = None if self.b_embedded is None else _vector(self.b_embedded, s, "b_embedded")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "b_embedded", be)
        object.__setattr__(self, "conversions", tuple(self.conversions))
        if self.c is not None:
            F = self.field
            for i, (ci, ri) in enumerate(zip(c, row_sums)):
                if F.convert(ci) != F.convert(ri):
                    raise SchemeError(
                        f"c[{i}] = {ci} but the row sum of A[{i}] is {sp.nsimplify(ri)}; "
                        f"the row-sum condition c_i = sum_j a_ij must hold exactly "
                        f"(omit c to derive it from A)"
                    )

    # -- constructors ----------------------------------------------------------
    @classmethod
    def from_floats(cls, A: Any, b: Any, c: Any = None, *, tolerance: float,
                    name: str = "unnamed", constants: Sequence[sp.Expr] = (),
                    b_embedded: Any = None) -> "ButcherTableau":
        """Build a tableau from floats, converting each with ``nsimplify``.

        Every float is replaced by the simplest exact number found by
        ``sympy.nsimplify`` within ``tolerance`` (optionally using the given
        ``constants`` such as ``[sympy.sqrt(3)]``); the conversions are listed in
        the ``conversions`` attribute of the result.
        """
        if not (tolerance > 0):
            raise SchemeError("tolerance must be a positive number")
        log: list[str] = []
        conv = lambda v, w: _to_float_exact(v, w, tolerance, constants, log)  # noqa: E731
        A2 = [[conv(v, f"A[{i}][{j}]") for j, v in enumerate(r)] for i, r in enumerate(A)]
        b2 = [conv(v, f"b[{i}]") for i, v in enumerate(b)]
        c2 = None if c is None else [conv(v, f"c[{i}]") for i, v in enumerate(c)]
        be2 = None if b_embedded is None else [conv(v, f"b_embedded[{i}]") for i, v in enumerate(b_embedded)]
        if c2 is not None:
            # converted c must agree with converted row sums; keep the A-derived one
            # and record the difference if any (float data rarely agree to the last bit)
            rs = [sp.Add(*r) for r in A2]
            for i, (ci, ri) in enumerate(zip(c2, rs)):
                if sp.nsimplify(ci - ri) != 0:
                    if abs(float(ci - ri)) > tolerance * len(A2):
                        raise SchemeError(f"c[{i}] = {ci} differs from the row sum {ri} of the converted A "
                                          f"by more than the tolerance")
                    log.append(f"c[{i}]: replaced {ci} by the row sum {ri}")
            c2 = None
        return cls(A2, b2, c2, name=name, b_embedded=be2, conversions=tuple(log))

    # -- basic data ------------------------------------------------------------
    @property
    def stages(self) -> int:
        return len(self.A)

    @property
    def kind(self) -> str:
        s = self.stages
        A = self.A
        if all(A[i][j] == 0 for i in range(s) for j in range(i, s)):
            return "explicit"
        if all(A[i][j] == 0 for i in range(s) for j in range(i + 1, s)):
            diag = {A[i][i] for i in range(s)}
            return "singly diagonally implicit" if len(diag) == 1 else "diagonally implicit"
        return "fully implicit"

    @property
    def is_explicit(self) -> bool:
        return self.kind == "explicit"

    def coefficients(self) -> list[sp.Expr]:
        out = [v for r in self.A for v in r] + list(self.b) + list(self.c)
        if self.b_embedded is not None:
            out += list(self.b_embedded)
        return out

    @cached_property
    def field(self) -> Field:
        """Exact field containing every coefficient (Q or a number field)."""
        return field_for(self.coefficients())

    @cached_property
    def exact(self) -> tuple[list[list[Elem]], list[Elem], list[Elem]]:
        """(A, b, c) as elements of :attr:`field`."""
        F = self.field
        return ([[F.convert(v) for v in r] for r in self.A], [F.convert(v) for v in self.b],
                [F.convert(v) for v in self.c])

    # -- presentation ------------------------------------------------------------
    def __repr__(self) -> str:
        b = ", ".join(map(_fmt, self.b))
        c = ", ".join(map(_fmt, self.c))
        return f"ButcherTableau(name={self.name!r}, stages={self.stages}, kind={self.kind!r}, c=[{c}], b=[{b}])"

    def __str__(self) -> str:
        rows = [[_fmt(ci)] + [_fmt(a) for a in r] for ci, r in zip(self.c, self.A)]
        rows.append([""] + [_fmt(v) for v in self.b])
        if self.b_embedded is not None:
            rows.append([""] + [_fmt(v) for v in self.b_embedded])
        width = max(len(x) for r in rows for x in r)
        lines = [f"{self.name} ({self.stages} stages, {self.kind})"]
        for k, r in enumerate(rows):
            if k == self.stages:
                lines.append("-" * (width + 1) + "+" + "-" * ((width + 1) * self.stages))
            lines.append(r[0].rjust(width) + " | " + " ".join(x.rjust(width) for x in r[1:]))
        return "\n".join(lines)

    def latex(self) -> str:
        s = self.stages
        lines = [r"\begin{array}{c|" + "c" * s + "}"]
        for ci, r in zip(self.c, self.A):
            lines.append(sp.latex(ci) + " & " + " & ".join(sp.latex(a) for a in r) + r" \\")
        lines.append(r"\hline")
        lines.append(" & " + " & ".join(sp.latex(v) for v in self.b) + r" \\")
        if self.b_embedded is not None:
            lines.append(" & " + " & ".join(sp.latex(v) for v in self.b_embedded) + r" \\")
        lines.append(r"\end{array}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        d = {"name": self.name, "A": [[str(v) for v in r] for r in self.A],
             "b": [str(v) for v in self.b], "c": [str(v) for v in self.c]}
        if self.b_embedded is not None:
            d["b_embedded"] = [str(v) for v in self.b_embedded]
        return d

    @classmethod
    def from_json(cls, data: dict) -> "ButcherTableau":
        if not isinstance(data, dict):
            raise SchemeError("a tableau JSON document must be an object with keys 'A', 'b' and optionally 'c'")
        missing = [k for k in ("A", "b") if k not in data]
        if missing:
            raise SchemeError(f"tableau JSON is missing {missing}; expected keys 'A', 'b' and optionally 'c'")
        return cls(data["A"], data["b"], data.get("c"), name=str(data.get("name", "from-json")),
                   b_embedded=data.get("b_embedded"))


@dataclass(frozen=True)
class PartitionedTableau:
    """A partitioned RK method: ``first`` for q' = f(p), ``second`` for p' = g(q).

    For a general partitioned system y' = f(y, z), z' = g(y, z) the first
    tableau integrates y, the second z.
    """

    first: ButcherTableau
    second: ButcherTableau
    name: str = "unnamed"
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.first, ButcherTableau) or not isinstance(self.second, ButcherTableau):
            raise SchemeError("PartitionedTableau needs two ButcherTableau instances")
        if self.first.stages != self.second.stages:
            raise SchemeError(f"the two tableaux must have the same number of stages "
                              f"({self.first.stages} != {self.second.stages})")

    @property
    def stages(self) -> int:
        return self.first.stages

    @property
    def kind(self) -> str:
        return f"partitioned ({self.first.kind} / {self.second.kind})"

    @cached_property
    def field(self) -> Field:
        return field_for(self.first.coefficients() + self.second.coefficients())

    def __repr__(self) -> str:
        return (f"PartitionedTableau(name={self.name!r}, stages={self.stages}, "
                f"first={self.first.name!r}, second={self.second.name!r})")

    def __str__(self) -> str:
        return f"{self.name} (partitioned)\nfirst component:\n{self.first}\nsecond component:\n{self.second}"

    def latex(self) -> str:
        return self.first.latex() + r"\qquad" + "\n" + self.second.latex()


@dataclass(frozen=True)
class Splitting:
    """Product of exact sub-flows of f = f^[0] + f^[1] + ...

    ``steps`` lists ``(k, a)`` pairs in the order of application: the map is
    phi^[k_m]_{a_m h} o ... o phi^[k_1]_{a_1 h}.
    """

    steps: Any
    name: str = "unnamed"
    parts: int = 2
    note: str = ""

    def __post_init__(self) -> None:
        steps = []
        for i, st in enumerate(self.steps):
            try:
                k, a = st
            except (TypeError, ValueError) as exc:
                raise SchemeError(f"steps[{i}] must be a pair (operator index, coefficient)") from exc
            if not isinstance(k, int) or not 0 <= k < self.parts:
                raise SchemeError(f"steps[{i}] operator index {k!r} must be an int in [0, {self.parts})")
            steps.append((k, exact_number(a, f"steps[{i}] coefficient")))
        if not steps:
            raise SchemeError("a splitting needs at least one step")
        object.__setattr__(self, "steps", tuple(steps))

    @property
    def stages(self) -> int:
        return len(self.steps)

    @property
    def kind(self) -> str:
        return "splitting"

    def merged(self) -> tuple[tuple[int, sp.Expr], ...]:
        """Adjacent flows of the same operator combined (exact flows form a group)."""
        out: list[tuple[int, sp.Expr]] = []
        for k, a in self.steps:
            if out and out[-1][0] == k:
                out[-1] = (k, out[-1][1] + a)
            else:
                out.append((k, a))
        return tuple((k, a) for k, a in out if a != 0)

    @cached_property
    def field(self) -> Field:
        return field_for([a for _, a in self.steps])

    def __repr__(self) -> str:
        body = " o ".join(f"phi[{k}]_({_fmt(a)} h)" for k, a in reversed(self.steps))
        return f"Splitting(name={self.name!r}: {body})"

    __str__ = __repr__

    def latex(self) -> str:
        return r" \circ ".join(rf"\varphi^{{[{k + 1}]}}_{{{sp.latex(a)}\,h}}" for k, a in reversed(self.steps))


Base = Union[ButcherTableau, PartitionedTableau, Splitting]


@dataclass(frozen=True)
class Composition:
    """Psi_h = Phi_{gamma_m h} o ... o Phi_{gamma_1 h} for a base method Phi."""

    base: Any
    gammas: Any
    name: str = "unnamed"
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.base, (ButcherTableau, PartitionedTableau, Splitting, Composition)):
            raise SchemeError("the base of a composition must be a tableau, a partitioned tableau, "
                              "a splitting or a composition")
        gs = tuple(exact_number(g, f"gammas[{i}]") for i, g in enumerate(self.gammas))
        if not gs:
            raise SchemeError("a composition needs at least one step size")
        object.__setattr__(self, "gammas", gs)

    @property
    def stages(self) -> int:
        return len(self.gammas) * self.base.stages

    @property
    def kind(self) -> str:
        return f"composition of {self.base.name}"

    @cached_property
    def field(self) -> Field:
        return field_for(list(self.gammas))

    def __repr__(self) -> str:
        gs = ", ".join(map(_fmt, self.gammas))
        return f"Composition(name={self.name!r}, base={self.base.name!r}, gammas=[{gs}])"

    def __str__(self) -> str:
        return repr(self)

    def latex(self) -> str:
        return r" \circ ".join(rf"\Phi_{{{sp.latex(g)}\,h}}" for g in reversed(self.gammas)) + \
            rf"\quad(\Phi = \text{{{self.base.name}}})"

    def flatten(self) -> "Union[ButcherTableau, PartitionedTableau, Splitting]":
        """The composition written as one method of the base's kind (built once).

        A composition of RK steps is again an RK method: block (k, k) of the big
        A is gamma_k A, block (k, l) for l < k is gamma_l 1 b^T, b = (gamma_k b)_k.
        """
        return self._flat

    @cached_property
    def _flat(self) -> "Union[ButcherTableau, PartitionedTableau, Splitting]":
        base = self.base.flatten() if isinstance(self.base, Composition) else self.base
        gs = self.gammas
        if isinstance(base, Splitting):
            steps = [(k, g * a) for g in gs for k, a in base.steps]
            return Splitting(steps, name=self.name, parts=base.parts)

        def big(t: ButcherTableau) -> ButcherTableau:
            s, m = t.stages, len(gs)
            A = [[sp.Integer(0)] * (s * m) for _ in range(s * m)]
            for k in range(m):
                for i in range(s):
                    for l in range(k):
                        for j in range(s):
                            A[k * s + i][l * s + j] = gs[l] * t.b[j]
                    for j in range(s):
                        A[k * s + i][k * s + j] = gs[k] * t.A[i][j]
            b = [g * bj for g in gs for bj in t.b]
            return ButcherTableau([[sp.expand(v) for v in r] for r in A], [sp.expand(v) for v in b],
                                  name=f"{self.name} [{t.name}]")

        if isinstance(base, ButcherTableau):
            return big(base)
        return PartitionedTableau(big(base.first), big(base.second), name=self.name)


Scheme = Union[ButcherTableau, PartitionedTableau, Splitting, Composition]
