"""Dense univariate polynomials over an exact field (coefficient lists, low -> high),
and exact real-root reasoning used by the stability decisions."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence

import sympy as sp

from .exact import Elem, Field, NumberField, RationalField

Poly = list  # list of field elements, index = power


def trim(p: Sequence[Elem]) -> Poly:
    p = list(p)
    while p and not p[-1]:
        p.pop()
    return p


def add(p: Sequence[Elem], q: Sequence[Elem], F: Field) -> Poly:
    n = max(len(p), len(q))
    return trim([(p[i] if i < len(p) else F.zero) + (q[i] if i < len(q) else F.zero) for i in range(n)])


def neg(p: Sequence[Elem]) -> Poly:
    return [-x for x in p]


def sub(p: Sequence[Elem], q: Sequence[Elem], F: Field) -> Poly:
    return add(p, neg(q), F)


def mul(p: Sequence[Elem], q: Sequence[Elem], F: Field) -> Poly:
    if not p or not q:
        return []
    out = [F.zero] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        if x:
            for j, y in enumerate(q):
                if y:
                    out[i + j] = out[i + j] + x * y
    return trim(out)


def scale(p: Sequence[Elem], c: Elem) -> Poly:
    return trim([x * c for x in p])


def divmod_(p: Sequence[Elem], q: Sequence[Elem], F: Field) -> tuple[Poly, Poly]:
    p, q = trim(p), trim(q)
    if not q:
        raise ZeroDivisionError("polynomial division by zero")
    r = list(p)
    quo = [F.zero] * max(len(p) - len(q) + 1, 0)
    inv_lc = F.one / q[-1]
    while len(r) >= len(q) and r:
        k = len(r) - len(q)
        c = r[-1] * inv_lc
        quo[k] = c
        for i, y in enumerate(q):
            r[k + i] = r[k + i] - c * y
        r = trim(r[:-1] if not r[-1] else r)
    return trim(quo), r


def gcd(p: Sequence[Elem], q: Sequence[Elem], F: Field) -> Poly:
    a, b = trim(p), trim(q)
    while b:
        a, b = b, divmod_(a, b, F)[1]
    if not a:
        return []
    return scale(a, F.one / a[-1])


def compose_neg(p: Sequence[Elem]) -> Poly:
    """p(-x)."""
    return [x if k % 2 == 0 else -x for k, x in enumerate(p)]


def evaluate(p: Sequence[Elem], x: object, F: Field) -> Elem:
    acc = F.zero
    for c in reversed(p):
        acc = acc * x + c
    return acc


def abs2_on_imaginary_axis(p: Sequence[Elem], F: Field) -> Poly:
    """|p(iy)|^2 as a polynomial in y (p with real coefficients)."""
    even = [F.zero] * len(p)
    odd = [F.zero] * len(p)
    for k, c in enumerate(p):
        sgn = -1 if (k // 2) % 2 else 1
        if k % 2 == 0:
            even[k] = c * sgn
        else:
            odd[k] = c * sgn
    return add(mul(even, even, F), mul(odd, odd, F), F)


def to_sympy(p: Sequence[Elem], F: Field, x: sp.Symbol) -> sp.Expr:
    return sp.Add(*[F.to_sympy(c) * x ** k for k, c in enumerate(p)])


def latex_poly(p: Sequence[Elem], F: Field, x: sp.Symbol) -> str:
    return sp.latex(sp.Poly(to_sympy(p, F, x), x).as_expr()) if p else "0"


# ---------------------------------------------------------------------------
# Hurwitz test (Routh array) with exact signs
# ---------------------------------------------------------------------------


def is_hurwitz(p: Sequence[Elem], F: Field) -> bool:
    """True iff every root of p lies in the open left half-plane.

    Routh's criterion: all first-column entries nonzero and of one sign; a zero
    in the first column already means a root with Re >= 0.
    """
    p = trim(p)
    n = len(p) - 1
    if n <= 0:
        return True
    hi = list(reversed(p))  # a0 z^n + a1 z^(n-1) + ...
    r0 = hi[0::2]
    r1 = hi[1::2]
    first = [hi[0]]
    rows = [r0, r1]
    for _ in range(n):
        a, b = rows[-2], rows[-1]
        if not b or not b[0]:
            return False
        first.append(b[0])
        if len(first) == n + 1:
            break
        new = []
        for i in range(len(a) - 1):
            bi1 = b[i + 1] if i + 1 < len(b) else F.zero
            new.append((b[0] * a[i + 1] - a[0] * bi1) / b[0])
        rows.append(new)
    signs = {F.sign(v) for v in first}
    return len(first) == n + 1 and 0 not in signs and len(signs) == 1


# ---------------------------------------------------------------------------
# Where a real polynomial first becomes negative on [0, oo)
# ---------------------------------------------------------------------------


@dataclass
class SignBoundary:
    value: Optional[sp.Expr]  # None means +oo
    numeric: float
    derivation: str


def _rational_companion(p: Sequence[Elem], F: Field, x: sp.Symbol) -> sp.Poly:
    """Nonzero rational polynomial whose roots contain every root of p.

    Over a number field this is the norm, Res_t(m(t), p(x, t)) -- no float ever
    decides a root.
    """
    rats = [F.rational_value(c) for c in p]
    if all(r is not None for r in rats):
        return sp.Poly([sp.Rational(r.numerator, r.denominator) for r in reversed(rats)], x, domain=sp.QQ)
    assert isinstance(F, NumberField)
    t = sp.Dummy("t")
    mu = sp.Poly(list(reversed(F.minpoly)), t, domain=sp.QQ)
    expr = sp.Add(*[sp.Rational(v, c.den) * x ** k * t ** j for k, c in enumerate(p) for j, v in enumerate(c.nums) if v])
    res = sp.resultant(mu.as_expr(), expr, t)
    return sp.Poly(res, x, domain=sp.QQ)


def _exact_root(N: sp.Poly, a: sp.Rational, b: sp.Rational, x: sp.Symbol) -> sp.Expr:
    if a == b:
        return sp.Rational(a)
    for f, _ in sp.factor_list(N.as_expr(), x)[1]:
        fp = sp.Poly(f, x, domain=sp.QQ)
        if fp.degree() < 1 or fp.count_roots(a, b) == 0:
            continue
        if fp.degree() <= 2:
            for r in sp.roots(fp, x):
                if r.is_real and a <= r <= b:
                    return sp.nsimplify(sp.radsimp(r)) if fp.degree() == 2 else r
        idx = fp.count_roots(None, a)
        return sp.CRootOf(fp.as_expr(), x, idx) if hasattr(sp, "CRootOf") else sp.RootOf(fp, idx)
    raise RuntimeError("root not found in its isolating interval")  # pragma: no cover


def first_sign_loss(p: Sequence[Elem], F: Field, what: str = "F") -> SignBoundary:
    """sup{r >= 0 : p(x) >= 0 for all x in [0, r]} exactly.

    Real roots of (a rational multiple of) p are isolated exactly; the sign of
    p between consecutive roots is decided at a rational test point with exact
    field arithmetic, so the answer is either +oo or a root of p, returned as
    an exact algebraic number (rational, surd, or CRootOf).
    """
    p = trim(p)
    x = sp.Symbol("x")
    if not p:
        return SignBoundary(None, float("inf"), f"{what} vanishes identically, so it is >= 0 everywhere")
    N = _rational_companion(p, F, x)
    N = sp.Poly(sp.quo(N, sp.gcd(N, N.diff(x))), x, domain=sp.QQ)  # square-free part
    while N.degree() > 0 and N.eval(0) == 0:
        N = sp.Poly(sp.quo(N, sp.Poly(x, x)), x, domain=sp.QQ)
    ivs = [(sp.Rational(a), sp.Rational(b)) for (a, b), _ in N.intervals()] if N.degree() > 0 else []
    # refine until intervals lie strictly in (0, oo) or strictly below, and are disjoint
    eps = None
    while any(a <= 0 <= b and not (a == b == 0) for a, b in ivs) or any(
            ivs[i][1] >= ivs[i + 1][0] and ivs[i] != ivs[i + 1] for i in range(len(ivs) - 1)):
        eps = (eps or sp.Rational(1, 10 ** 3)) / 10 ** 3
        ivs = sorted((sp.Rational(a), sp.Rational(b)) for (a, b), _ in N.intervals(eps=eps))
    ivs = sorted(iv for iv in ivs if iv[0] > 0)
    tests: list[sp.Rational] = []
    if ivs:
        tests.append(ivs[0][0] / 2)
        for (a1, b1), (a2, b2) in zip(ivs, ivs[1:]):
            tests.append((b1 + a2) / 2)
        tests.append(ivs[-1][1] + 1)
    else:
        tests.append(sp.Integer(1))

    def sign_at(t: sp.Rational) -> int:
        return F.sign(evaluate(p, Fraction(int(t.p), int(t.q)), F))

    if sign_at(tests[0]) < 0:
        return SignBoundary(sp.Integer(0), 0.0,
                            f"{what} < 0 immediately to the right of 0 (at the test point {tests[0]})")
    for k, (a, b) in enumerate(ivs):
        if sign_at(tests[k + 1]) < 0:
            r = _exact_root(N, a, b, x)
            return SignBoundary(r, float(sp.N(r, 20)),
                                f"{what} >= 0 on [0, r] and < 0 just beyond r (test point {tests[k + 1]}), "
                                f"where r is the root of {sp.factor(N.as_expr())} in [{a}, {b}]: r = {r}")
    return SignBoundary(None, float("inf"),
                        f"{what} >= 0 between and beyond all of its {len(ivs)} positive real roots "
                        f"(exact sign tests at {', '.join(map(str, tests))})")
