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

import math
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

# Limits on a coefficient written as text (a scheme file is input from anywhere): parsing and building the number
# is bounded by these before anything is evaluated, so `10**10**10`, `2^2^2^2^2^2` or a 10⁶-digit integer are refused
# in microseconds instead of hanging or filling memory.
MAX_TEXT = 2000  # characters per coefficient
MAX_DEPTH = 40  # nesting depth of the expression tree
MAX_BITS = 8192  # bound on the size (bits) of any integer met while the number is built
MAX_EXPONENT = 1000  # |p| of an exponent p/q
MAX_ROOT = 32  # q of an exponent p/q and n of root(x, n): the degree a single radical adds


def _limit_error(where: str, value: object, what: str) -> SchemeError:
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
    return SchemeError(f"{where} = {shown!r} is refused: {what}. Fix: write the coefficient as a plain exact number "
                       f"(integers and fractions of at most {MAX_BITS} bits, exponents that are integers or fractions "
                       f"p/q with |p| <= {MAX_EXPONENT} and q <= {MAX_ROOT}, no exponent towers)")


def _literal_bits(text: str) -> int:
    """Upper bound on the bits of the exact rational a numeric literal denotes (without converting it)."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text)
    except InvalidOperation:
        return MAX_BITS + 1
    if not d.is_finite():
        return MAX_BITS + 1
    sign, digits, exp = d.as_tuple()
    return int((len(digits) + abs(int(exp))) * 3.33) + 1


def _exponent(node: "ast.AST", where: str, text: str) -> sp.Rational:
    """An exponent: an integer or a fraction p/q of integer literals (optionally signed). Nothing else, so there are
    no towers: the size of a power is known before it is computed."""
    import ast

    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand

    def integer(n: "ast.AST") -> int | sp.Rational:
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)) and isinstance(n.operand, ast.Constant):
            v = integer(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.Constant) and type(n.value) is int and n.value.bit_length() <= 64:
            return n.value
        if isinstance(n, ast.Constant) and type(n.value) is float and n is node:  # a decimal exponent such as 0.5
            lit = ast.get_source_segment(text.replace("^", "**"), n) or ""
            if _literal_bits(lit) <= 64:
                return sp.Rational(lit)
        raise _limit_error(where, text, "an exponent must be an integer or a fraction p/q of integers (no exponent "
                                        "towers or expressions in exponents)")

    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        p, q = integer(node.left), integer(node.right)
    else:
        p, q = integer(node), 1
    if q == 0:
        raise SchemeError(f"{where} = {text!r}: division by zero in an exponent")
    e = sp.Rational(sign * p, q)
    if abs(e.p) > MAX_EXPONENT or e.q > MAX_ROOT:
        raise _limit_error(where, text, f"the exponent {e} is outside |p| <= {MAX_EXPONENT}, q <= {MAX_ROOT}")
    return e


def _parse_coefficient(text: str, where: str) -> sp.Expr:
    """Parse a coefficient written as text without evaluating arbitrary code and within size limits.

    The grammar: integer and decimal literals, + - * / and ** (or ^, as in sympy), parentheses, sqrt(x), cbrt(x),
    root(x, n), Rational(p, q) and I. The expression tree is walked once to bound its depth and the size of every
    integer it will produce; only then is it built, node by node, in exact sympy arithmetic.
    """
    import ast

    if len(text) > MAX_TEXT:
        raise _limit_error(where, text, f"it is {len(text)} characters long (at most {MAX_TEXT})")
    src = text.replace("^", "**")  # sympy's convention: ^ is a power (with ** precedence)
    try:
        tree = ast.parse(src, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        msg = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise SchemeError(f"{where} = {text[:60]!r} cannot be parsed as an exact number (expected e.g. '1/3' or "
                          f"'sqrt(3)/6'): {msg}") from None
    # depth, iteratively (a recursive walk is what a deep expression would overflow)
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _limit_error(where, text, f"it is nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    def bits(node: "ast.AST") -> int:
        """Upper bound on the bits of the integers building this node's value (checked against MAX_BITS)."""
        if isinstance(node, ast.Constant):
            if type(node.value) is int:
                b = node.value.bit_length() + 1
            elif type(node.value) is float:
                b = _literal_bits(ast.get_source_segment(src, node) or "")
            else:
                raise SchemeError(f"{where} = {text[:60]!r}: {node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            b = 1
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            b = bits(node.operand)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            b = bits(node.left) + bits(node.right) + 1  # sizes of numerator plus denominator: (ad + bc)/(bd)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            b = bits(node.left) + bits(node.right)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            e = _exponent(node.right, where, text)
            b = bits(node.left) * max(1, abs(e.p))
        elif isinstance(node, ast.Call):
            b = sum(bits(a) for a in node.args) if node.args else 1
        else:
            raise SchemeError(f"{where} = {text[:60]!r} is not a plain exact number; allowed are integers, fractions, "
                              f"exact decimals, + - * / ^ ( ) and {sorted(_ALLOWED_NAMES)}")
        if b > MAX_BITS:
            raise _limit_error(where, text, f"its numbers would exceed {MAX_BITS} bits (about {int(MAX_BITS / 3.32)} "
                                            "decimal digits)")
        return b

    bits(tree)

    def build(node: "ast.AST") -> sp.Expr:
        if isinstance(node, ast.Constant):
            if type(node.value) is int:
                return sp.Integer(node.value)
            return sp.Rational(ast.get_source_segment(src, node))  # the literal's text: 0.1 is exactly 1/10
        if isinstance(node, ast.Name):
            if node.id == "I":
                return sp.I
            raise SchemeError(f"{where} = {text[:60]!r}: the name {node.id!r} is not allowed; allowed are "
                              f"{sorted(_ALLOWED_NAMES)}")
        if isinstance(node, ast.UnaryOp):
            v = build(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                base, e = build(node.left), _exponent(node.right, where, text)
                if base == 0 and e < 0:
                    raise SchemeError(f"{where} = {text[:60]!r}: division by zero")
                return sp.Pow(base, e)
            a, b = build(node.left), build(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if b == 0:
                raise SchemeError(f"{where} = {text[:60]!r}: division by zero")
            return a / b
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_NAMES - {"I"} \
                and not node.keywords:
            name, args = node.func.id, node.args
            want = {"sqrt": 1, "cbrt": 1, "root": 2, "Rational": 2}[name]
            if len(args) != want and not (name == "Rational" and len(args) == 1):
                raise SchemeError(f"{where} = {text[:60]!r}: {name}() takes {want} argument(s)")
            if name == "sqrt":
                return sp.sqrt(build(args[0]))
            if name == "cbrt":
                return sp.cbrt(build(args[0]))
            if name == "root":
                n = _exponent(args[1], where, text)
                if n.q != 1 or not 1 <= n.p <= MAX_ROOT:
                    raise _limit_error(where, text, f"root(x, n) needs an integer 1 <= n <= {MAX_ROOT}")
                return sp.root(build(args[0]), int(n.p))
            num = build(args[0])
            den = build(args[1]) if len(args) == 2 else sp.Integer(1)
            if den == 0:
                raise SchemeError(f"{where} = {text[:60]!r}: division by zero")
            return num / den
        raise SchemeError(f"{where} = {text[:60]!r} is not a plain exact number; allowed are integers, fractions, "
                          f"exact decimals, + - * / ^ ( ) and {sorted(_ALLOWED_NAMES)}")

    return build(tree)


def exact_number(value: Any, where: str = "coefficient") -> sp.Expr:
    """Convert ``value`` to an exact sympy number or raise :class:`SchemeError`.

    Accepted: int, Fraction, sympy Rational/algebraic expressions, strings such
    as ``'1/3'``, ``'sqrt(3)/6'`` or exact decimals ``'0.25'`` (parsed within the
    limits above: no code is evaluated, and no number is built beyond them).
    """
    if isinstance(value, bool):
        raise SchemeError(f"{where} = {value!r} is a bool; expected an exact number")
    if isinstance(value, int):
        if value.bit_length() > MAX_BITS:
            raise _limit_error(where, f"<an integer of {value.bit_length()} bits>", f"it has more than {MAX_BITS} bits")
        return sp.Integer(value)
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, (float, sp.Float)) or (
        isinstance(value, numbers.Real) and not isinstance(value, (sp.Basic, numbers.Rational))
    ):
        if not math.isfinite(float(value)):
            raise SchemeError(f"{where} = {value!r} is not a finite number; expected an exact number such as '1/3'")
        raise SchemeError(
            f"{where} = {value!r} is a floating-point number, but exact coefficients are required "
            f"(a float is only an approximation of the intended value). Fix: {_float_hint(float(value))}, "
            f"or build the scheme with from_floats(..., tolerance=1e-14) to convert with nsimplify."
        )
    if isinstance(value, str):
        text = value.strip()
        bad_chars = set(text) - set("0123456789+-*/()., ^\t" + string.ascii_letters)
        names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) - _ALLOWED_NAMES
        if bad_chars or names or "_" in text:
            raise SchemeError(f"{where} = {value[:60]!r} is not a plain exact number; allowed are integers, "
                              f"fractions, exact decimals, + - * / ^ ( ) and {sorted(_ALLOWED_NAMES)}")
        if not text:
            raise SchemeError(f"{where} = {value!r} is empty; expected an exact number such as '1/3'")
        return exact_number(_parse_coefficient(text, where), where)
    if isinstance(value, sp.Basic):
        expr = sp.sympify(value)
        if expr.has(sp.zoo, sp.oo, sp.nan, -sp.oo):
            raise SchemeError(f"{where} = {value} is not finite (a division by zero?); expected a number")
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
        c_given = self.c is not None
        c = _vector(self.c, s, "c") if c_given else row_sums
        be = None if self.b_embedded is None else _vector(self.b_embedded, s, "b_embedded")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "b_embedded", be)
        object.__setattr__(self, "conversions", tuple(self.conversions))
        object.__setattr__(self, "_c_given", c_given)
        if c_given:
            # Decided here without the number field (whose construction can take long for many distinct radicals, and
            # runs later under the properties' time limit): exactly for rationals, else to 50 significant digits, which
            # refutes every mismatch that is not below 1e-40; the exact check follows when the field is built.
            for i, (ci, ri) in enumerate(zip(c, row_sums)):
                d = ci - ri
                if d.is_Rational:
                    differs = d != 0
                else:
                    v = sp.N(d, 50)
                    differs = bool(abs(v) > sp.Float("1e-40")) if v.is_number else False
                if differs:
                    raise SchemeError(
                        f"c[{i}] = {ci} but the row sum of A[{i}] is {ri}; "
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
        """(A, b, c) as elements of :attr:`field` (where c was given, the row-sum condition is checked exactly here)."""
        F = self.field
        A = [[F.convert(v) for v in r] for r in self.A]
        c = [F.convert(v) for v in self.c]
        if getattr(self, "_c_given", False):
            for i, (ci, row) in enumerate(zip(c, A)):
                if ci != sum(row[1:], row[0]):
                    raise SchemeError(f"c[{i}] = {self.c[i]} differs from the row sum of A[{i}] (by less than 1e-40, "
                                      f"found exactly in {F.describe()}); omit c to derive it from A")
        return A, [F.convert(v) for v in self.b], c

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
