"""Exact arithmetic back-ends for scheme coefficients.

Two fields are used:

* :class:`RationalField` -- elements are :class:`fractions.Fraction`;
* :class:`NumberField` -- a finite extension Q(phi) given by a primitive
  element, with elements stored as integer coefficient vectors over the
  power basis 1, phi, ..., phi^(n-1) plus one common denominator.

sympy's own ``ANP`` elements are exact too, but a product in a degree-8 field
costs ~0.7 ms there; the integer-vector representation below is ~20x faster,
which is what makes order conditions up to order 9 affordable for the
four-stage Gauss method.  Zero tests are exact (an element is zero iff all its
coordinates are), signs are decided with exact rational interval arithmetic on
an isolating interval of phi, so no floating-point decision is ever taken.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable, Sequence, Union

import sympy as sp


class SchemeError(ValueError):
    """Invalid scheme data or an operation the exact back-end cannot perform."""


# ---------------------------------------------------------------------------
# Rational field
# ---------------------------------------------------------------------------


class RationalField:
    """The field Q, elements are ``Fraction``."""

    degree = 1
    real = True

    def __init__(self) -> None:
        self.zero = Fraction(0)
        self.one = Fraction(1)

    def __repr__(self) -> str:
        return "QQ"

    def describe(self) -> str:
        return "the rationals Q"

    def from_fraction(self, q: Fraction | int) -> Fraction:
        return Fraction(q)

    def convert(self, expr: sp.Expr) -> Fraction:
        expr = sp.sympify(expr)
        if not expr.is_Rational:
            raise SchemeError(f"{expr} is not rational")
        return Fraction(int(expr.p), int(expr.q))

    def to_sympy(self, a: Fraction) -> sp.Expr:
        a = Fraction(a)
        return sp.Rational(a.numerator, a.denominator)

    def sign(self, a: Fraction) -> int:
        return (a > 0) - (a < 0)

    def to_float(self, a: Fraction) -> float:
        return float(a)

    def rational_value(self, a: Fraction) -> Fraction | None:
        return Fraction(a)

    def coordinates(self, a: Fraction) -> list[Fraction]:
        """Coordinates over the power basis (length ``degree``)."""
        return [Fraction(a)]


QQ_FIELD = RationalField()


# ---------------------------------------------------------------------------
# Number field
# ---------------------------------------------------------------------------


class NFElem:
    """Element sum(nums[k] * phi**k) / den of a :class:`NumberField`."""

    __slots__ = ("field", "nums", "den")

    def __init__(self, field: "NumberField", nums: Sequence[int], den: int = 1):
        g = math.gcd(den, *nums)
        if den < 0:
            g = -g
        if g != 1:
            nums = [x // g for x in nums]
            den //= g
        self.field = field
        self.nums = tuple(nums)
        self.den = den

    # -- coercion -----------------------------------------------------------
    def _coerce(self, other: object) -> "NFElem":
        if isinstance(other, NFElem):
            if other.field is not self.field:
                raise SchemeError("cannot mix elements of different number fields")
            return other
        if isinstance(other, (int, Fraction)):
            return self.field.from_fraction(other)
        return NotImplemented  # type: ignore[return-value]

    # -- arithmetic ---------------------------------------------------------
    def __add__(self, other: object) -> "NFElem":
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        if self.den == o.den:
            return NFElem(self.field, [x + y for x, y in zip(self.nums, o.nums)], self.den)
        d1, d2 = self.den, o.den
        return NFElem(self.field, [x * d2 + y * d1 for x, y in zip(self.nums, o.nums)], d1 * d2)

    __radd__ = __add__

    def __neg__(self) -> "NFElem":
        return NFElem(self.field, [-x for x in self.nums], self.den)

    def __sub__(self, other: object) -> "NFElem":
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return self + (-o)

    def __rsub__(self, other: object) -> "NFElem":
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return o + (-self)

    def __mul__(self, other: object) -> "NFElem":
        if isinstance(other, (int, Fraction)):
            q = Fraction(other)
            return NFElem(self.field, [x * q.numerator for x in self.nums], self.den * q.denominator)
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        n = len(self.nums)
        prod = [0] * (2 * n - 1)
        for i, x in enumerate(self.nums):
            if x:
                for j, y in enumerate(o.nums):
                    if y:
                        prod[i + j] += x * y
        res = prod[:n]
        table = self.field._reduction
        for k in range(n, 2 * n - 1):
            ck = prod[k]
            if ck:
                row = table[k - n]
                for j in range(n):
                    res[j] += ck * row[j]
        return NFElem(self.field, res, self.den * o.den)

    __rmul__ = __mul__

    def inverse(self) -> "NFElem":
        return self.field.inverse(self)

    def __truediv__(self, other: object) -> "NFElem":
        if isinstance(other, (int, Fraction)):
            q = Fraction(other)
            if q == 0:
                raise ZeroDivisionError("division by zero in number field")
            return self * (1 / q)
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return self * o.inverse()

    def __rtruediv__(self, other: object) -> "NFElem":
        o = self._coerce(other)
        if o is NotImplemented:
            return NotImplemented
        return o * self.inverse()

    def __pow__(self, k: int) -> "NFElem":
        if k < 0:
            return self.inverse() ** (-k)
        result = self.field.one
        base = self
        while k:
            if k & 1:
                result = result * base
            base = base * base
            k >>= 1
        return result

    def __bool__(self) -> bool:
        return any(self.nums)

    def __eq__(self, other: object) -> bool:
        o = self._coerce(other) if isinstance(other, (int, Fraction, NFElem)) else NotImplemented
        if o is NotImplemented:
            return NotImplemented
        return not (self - o)

    def __hash__(self) -> int:
        return hash((self.nums, self.den))

    def __repr__(self) -> str:
        return f"NFElem({self.nums}/{self.den})"


class NumberField:
    """Q(phi) for a primitive element phi of the given algebraic generators.

    ``phi`` is scaled to an algebraic integer so that the reduction table
    (phi**k mod minpoly) has integer entries and products stay in integers.
    """

    def __init__(self, generators: Sequence[sp.Expr]):
        from sympy.polys.numberfields import primitive_element

        x = sp.Dummy("x")
        self.generators = tuple(generators)
        g0 = self.generators[0]
        if (len(self.generators) == 1 and g0.is_Pow and g0.base.is_Rational and g0.base > 0
                and g0.exp in (sp.Rational(1, 2), sp.Rational(1, 3))):
            # a single square or cube root r^(1/n): sympy has already extracted perfect powers from r,
            # so x^n - r is irreducible and is the minimal polynomial -- no primitive-element search
            n_ = int(1 / g0.exp)
            minpoly, coeffs, reps = x ** n_ - g0.base, [1], [[1, 0]]
        else:
            minpoly, coeffs, reps = primitive_element(list(self.generators), x, ex=True)
        mp = sp.Poly(minpoly, x, domain=sp.QQ)
        mp_coeffs = [Fraction(int(sp.Rational(cf).p), int(sp.Rational(cf).q)) for cf in mp.all_coeffs()]
        # clear denominators, then scale phi -> lc * phi to make the minpoly monic integral
        den = 1
        for cf in mp_coeffs:
            den = den * cf.denominator // math.gcd(den, cf.denominator)
        ints = [int(cf * den) for cf in mp_coeffs]
        n = len(ints) - 1
        lc = ints[0]
        self.degree = n
        self._scale = lc
        # monic minpoly of phi = lc*theta: x^n + sum_k ints[n-k] * lc^(n-1-k) x^k
        mono = [0] * (n + 1)
        mono[n] = 1
        for k in range(n):
            mono[k] = ints[n - k] * lc ** (n - 1 - k)
        self.minpoly = tuple(mono)  # low -> high
        theta_expr = sum(sp.Integer(int(c)) * g for c, g in zip(coeffs, self.generators))
        self.phi_expr = sp.Integer(lc) * theta_expr
        # reduction table: phi^k mod minpoly for k = n .. 2n-2, integer vectors
        table = []
        cur = [-mono[k] for k in range(n)]  # phi^n
        for _ in range(n - 1):
            table.append(list(cur))
            # multiply by phi
            top = cur[-1]
            nxt = [0] + cur[:-1]
            if top:
                nxt = [nxt[k] - top * mono[k] for k in range(n)]
            cur = nxt
        self._reduction = table
        self.zero = NFElem(self, [0] * n, 1)
        self.one = NFElem(self, [1] + [0] * (n - 1), 1)
        self.phi = NFElem(self, [0, 1] + [0] * (n - 2), 1) if n > 1 else self.one
        # generator g_i = r_i(theta) = r_i(phi / lc), reps are high -> low
        self._genmap: dict[sp.Expr, NFElem] = {}
        for g, rep in zip(self.generators, reps):
            rep = [Fraction(int(sp.Rational(r).p), int(sp.Rational(r).q)) for r in rep][::-1]
            self._genmap[g] = self.from_coordinates([r / Fraction(lc) ** k for k, r in enumerate(rep)])
        self._phi_value = complex(sp.N(self.phi_expr, 30))
        self.real = abs(self._phi_value.imag) < 1e-20
        self._interval: tuple[Fraction, Fraction] | None = None

    def __repr__(self) -> str:
        return "QQ<" + ", ".join(str(g) for g in self.generators) + ">"

    def describe(self) -> str:
        return (f"the number field Q({', '.join(map(str, self.generators))}) of degree {self.degree}, "
                f"represented over a primitive element with integral minimal polynomial")

    # -- construction -------------------------------------------------------
    def from_fraction(self, q: Fraction | int) -> NFElem:
        q = Fraction(q)
        return NFElem(self, [q.numerator] + [0] * (self.degree - 1), q.denominator)

    def from_coordinates(self, coords: Sequence[Fraction]) -> NFElem:
        coords = [Fraction(c) for c in coords] + [Fraction(0)] * (self.degree - len(coords))
        den = 1
        for c in coords:
            den = den * c.denominator // math.gcd(den, c.denominator)
        return NFElem(self, [int(c * den) for c in coords], den)

    def coordinates(self, a: NFElem) -> list[Fraction]:
        return [Fraction(x, a.den) for x in a.nums]

    def convert(self, expr: sp.Expr) -> NFElem:
        """Evaluate a sympy expression built from rationals and the generators."""
        expr = sp.sympify(expr)
        if expr.is_Rational:
            return self.from_fraction(Fraction(int(expr.p), int(expr.q)))
        if expr in self._genmap:
            return self._genmap[expr]
        if expr.is_Add:
            acc = self.zero
            for t in expr.args:
                acc = acc + self.convert(t)
            return acc
        if expr.is_Mul:
            acc = self.one
            for t in expr.args:
                acc = acc * self.convert(t)
            return acc
        if expr.is_Pow and expr.exp.is_Integer:
            return self.convert(expr.base) ** int(expr.exp)
        if expr.is_Pow and expr.exp.is_Rational:
            # e.g. 2**(2/3) when 2**(1/3) is a generator: reduce to an integer power
            for g, val in self._genmap.items():
                if g.is_Pow and g.base == expr.base and g.exp.is_Rational:
                    ratio = sp.Rational(expr.exp) / g.exp
                    if ratio.is_Integer:
                        return val ** int(ratio)
        raise SchemeError(f"cannot represent {expr} in {self!r}")

    def inverse(self, a: NFElem) -> NFElem:
        if not a:
            raise ZeroDivisionError("division by zero in number field")
        x = sp.Dummy("x")
        f = sp.Poly([sp.Rational(v, a.den) for v in reversed(a.nums)], x, domain=sp.QQ)
        m = sp.Poly(list(reversed(self.minpoly)), x, domain=sp.QQ)
        inv = f.invert(m)
        coeffs = [Fraction(int(c.p), int(c.q)) for c in reversed(inv.all_coeffs())]
        return self.from_coordinates(coeffs)

    # -- inspection ---------------------------------------------------------
    def rational_value(self, a: NFElem) -> Fraction | None:
        if any(a.nums[1:]):
            return None
        return Fraction(a.nums[0], a.den)

    def to_sympy(self, a: NFElem) -> sp.Expr:
        q = self.rational_value(a)
        if q is not None:
            return sp.Rational(q.numerator, q.denominator)
        expr = sum(sp.Rational(v, a.den) * self.phi_expr ** k for k, v in enumerate(a.nums) if v)
        if self.degree <= 4:
            expr = sp.expand(expr)
        return expr

    def to_float(self, a: NFElem) -> float:
        lo, hi = self._eval_interval(a, 60)
        return float((lo + hi) / 2)

    def _isolating_interval(self) -> tuple[Fraction, Fraction]:
        if self._interval is None:
            if not self.real:
                raise SchemeError(f"{self!r} is not a real field; signs are undefined")
            x = sp.Dummy("x")
            m = sp.Poly(list(reversed(self.minpoly)), x, domain=sp.QQ)
            val = self._phi_value.real
            candidates = [iv for iv, _ in m.intervals()]
            eps = None
            while True:
                hits = [(a, b) for a, b in candidates if float(a) - 1e-9 <= val <= float(b) + 1e-9]
                if len(hits) == 1:
                    a, b = hits[0]
                    self._interval = (Fraction(int(sp.Rational(a).p), int(sp.Rational(a).q)),
                                      Fraction(int(sp.Rational(b).p), int(sp.Rational(b).q)))
                    break
                eps = (eps or 1e-6) / 1e3
                candidates = [iv for iv, _ in m.intervals(eps=eps)]
        return self._interval

    def _minpoly_at(self, t: Fraction) -> Fraction:
        acc = Fraction(0)
        for c in reversed(self.minpoly):
            acc = acc * t + c
        return acc

    def _refine(self) -> None:
        lo, hi = self._isolating_interval()
        mid = (lo + hi) / 2
        s_lo = self._minpoly_at(lo)
        s_mid = self._minpoly_at(mid)
        if s_mid == 0:
            self._interval = (mid, mid)
        elif (s_lo > 0) == (s_mid > 0):
            self._interval = (mid, hi)
        else:
            self._interval = (lo, mid)

    def _eval_interval(self, a: NFElem, bits: int = 0) -> tuple[Fraction, Fraction]:
        lo, hi = self._isolating_interval()
        while bits and hi - lo > Fraction(1, 2 ** bits):
            self._refine()
            lo, hi = self._interval  # type: ignore[misc]
        rlo = rhi = Fraction(0)
        for k in range(self.degree - 1, -1, -1):
            cands = (rlo * lo, rlo * hi, rhi * lo, rhi * hi)
            c = Fraction(a.nums[k], a.den)
            rlo, rhi = min(cands) + c, max(cands) + c
        return rlo, rhi

    def sign(self, a: NFElem) -> int:
        """Exact sign of a real element: exact zero test, then interval refinement."""
        if not a:
            return 0
        for _ in range(4000):
            lo, hi = self._eval_interval(a)
            if lo > 0:
                return 1
            if hi < 0:
                return -1
            for _ in range(8):
                self._refine()
        raise SchemeError("sign determination did not converge")  # pragma: no cover


Field = Union[RationalField, NumberField]
Elem = Union[Fraction, NFElem]


# ---------------------------------------------------------------------------
# Building a field for a collection of exact coefficients
# ---------------------------------------------------------------------------


def algebraic_atoms(exprs: Iterable[sp.Expr]) -> list[sp.Expr]:
    """Non-rational algebraic building blocks (surds, roots of unity, CRootOf).

    Raises SchemeError on anything that is not an algebraic number
    (symbols, pi, floats) because exact decisions would then be impossible.
    """
    found: list[sp.Expr] = []
    seen: set[sp.Expr] = set()

    def walk(e: sp.Expr) -> None:
        if e.is_Rational:
            return
        if isinstance(e, sp.Float):
            raise SchemeError(f"floating-point number {e} inside an exact coefficient")
        if e.is_Pow and e.exp.is_Rational and not e.exp.is_Integer and not e.base.free_symbols:
            if e not in seen:
                seen.add(e)
                found.append(e)
            walk(e.base)
            return
        if e is sp.I or isinstance(e, (sp.CRootOf, sp.AlgebraicNumber)):
            if e not in seen:
                seen.add(e)
                found.append(e)
            return
        if e.is_Add or e.is_Mul or (e.is_Pow and e.exp.is_Integer):
            for a in e.args:
                walk(a)
            return
        raise SchemeError(f"{e} is not an algebraic number built from rationals and radicals")

    for e in exprs:
        walk(sp.sympify(e))
    return found


_FIELD_CACHE: dict[frozenset, NumberField] = {}


def field_for(exprs: Iterable[sp.Expr]) -> Field:
    """Smallest convenient exact field containing all ``exprs``."""
    exprs = list(exprs)
    atoms = algebraic_atoms(exprs)
    if not atoms:
        return QQ_FIELD
    key = frozenset(atoms)
    if key not in _FIELD_CACHE:
        # rational powers with a common base generate each other: keep only the
        # finest one per base so the primitive element stays small
        by_base: dict[sp.Expr, sp.Expr] = {}
        others: list[sp.Expr] = []
        for a in atoms:
            if a.is_Pow and a.exp.is_Rational and a.base.is_Rational:
                q = sp.Rational(1, sp.Rational(a.exp).q)
                g = a.base ** q
                by_base.setdefault(a.base, g)
                if sp.Rational(by_base[a.base].exp).q < sp.Rational(g.exp).q:
                    by_base[a.base] = g
            else:
                others.append(a)
        gens = list(by_base.values()) + others
        _FIELD_CACHE[key] = _build_field(key, gens)
    return _FIELD_CACHE[key]


_FIELD_TIMEOUTS: dict[frozenset, float] = {}  # fields whose construction was stopped by a time limit: seconds spent


def _build_field(key: frozenset, gens: list[sp.Expr]) -> NumberField:
    """Build Q(gens); it runs under the caller's time limit (a property's). A construction that a limit stopped is
    remembered, and the next property is refused at once unless it has more than twice that time (instead of
    spending its own limit on the same construction again)."""
    import time

    from verify.timelimit import remaining

    spent = _FIELD_TIMEOUTS.get(key)
    left = remaining()
    if spent is not None and left is not None and left <= 2 * spent:
        raise SchemeError(f"building the number field Q({', '.join(map(str, gens))}) did not finish in {spent:.3g} s "
                          f"(stopped by the time limit); with {left:.3g} s left now it is not retried (raise the time "
                          f"limit to more than twice that to try again)")
    t0 = time.monotonic()
    try:
        return NumberField(gens)
    except BaseException:
        if remaining() is not None and remaining() <= 1e-3:  # stopped by the time limit (not by an error of its own)
            _FIELD_TIMEOUTS[key] = max(_FIELD_TIMEOUTS.get(key, 0.0), time.monotonic() - t0)
        raise


def to_elements(field: Field, exprs: Iterable[sp.Expr]) -> list[Elem]:
    return [field.convert(e) for e in exprs]
