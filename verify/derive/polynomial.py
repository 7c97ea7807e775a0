"""A small sparse polynomial over QQ, tuned for layer Jacobians.

Layer obligations involve hundreds of generators (weights, σ(z_i), σ'(z_i), ...)
but each monomial touches at most a handful. sympy's PolyRing stores a monomial as
a dense exponent tuple over all generators, so every product costs O(#generators);
here a monomial is the sorted tuple of its generator indices (with repetition),
so a product is a tuple concatenation and sort. Conversion to sympy (for display,
determinants and reduction modulo relations) is exact.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import sympy as sp
from sympy.external.gmpy import MPQ

Mono = tuple  # sorted generator indices, with repetition: x0²x3 -> (0, 0, 3)


class SPoly:
    __slots__ = ("t",)

    def __init__(self, terms: dict[Mono, Any] | None = None) -> None:
        self.t: dict[Mono, Any] = terms or {}

    @staticmethod
    def const(c: Any) -> "SPoly":
        c = MPQ(c) if not isinstance(c, sp.Rational) else MPQ(int(c.p), int(c.q))
        return SPoly({(): c} if c else {})

    @staticmethod
    def gen(i: int) -> "SPoly":
        return SPoly({(i,): MPQ(1)})

    def _coerce(self, other: Any) -> "SPoly":
        return other if isinstance(other, SPoly) else SPoly.const(other)

    def __add__(self, other: Any) -> "SPoly":
        other = self._coerce(other)
        if not other.t:
            return self
        if not self.t:
            return other
        out = dict(self.t)
        for m, c in other.t.items():
            v = out.get(m)
            if v is None:
                out[m] = c
            else:
                v = v + c
                if v:
                    out[m] = v
                else:
                    del out[m]
        return SPoly(out)

    __radd__ = __add__

    def __neg__(self) -> "SPoly":
        return SPoly({m: -c for m, c in self.t.items()})

    def __sub__(self, other: Any) -> "SPoly":
        return self + (-self._coerce(other))

    def __rsub__(self, other: Any) -> "SPoly":
        return self._coerce(other) - self

    def __mul__(self, other: Any) -> "SPoly":
        if not isinstance(other, SPoly):
            if isinstance(other, (int, sp.Rational)) or type(other) is type(MPQ(1)):
                c = MPQ(other) if not isinstance(other, sp.Rational) else MPQ(int(other.p), int(other.q))
                return SPoly({m: v * c for m, v in self.t.items()}) if c else SPoly()
            other = self._coerce(other)
        if not self.t or not other.t:
            return SPoly()
        if len(other.t) == 1 and () in other.t:
            c = other.t[()]
            return SPoly({m: v * c for m, v in self.t.items()})
        if len(self.t) == 1 and () in self.t:
            c = self.t[()]
            return SPoly({m: v * c for m, v in other.t.items()})
        out: dict[Mono, Any] = {}
        for m1, c1 in self.t.items():
            for m2, c2 in other.t.items():
                m = tuple(sorted(m1 + m2)) if m1 and m2 else (m1 or m2)
                v = out.get(m)
                out[m] = c1 * c2 if v is None else v + c1 * c2
        return SPoly({m: c for m, c in out.items() if c})

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SPoly):
            return self.t == other.t
        if isinstance(other, (int, sp.Rational)):
            return self.t == SPoly.const(other).t
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(frozenset(self.t.items()))

    def __bool__(self) -> bool:
        return bool(self.t)

    def __repr__(self) -> str:
        return f"SPoly({len(self.t)} terms)"

    def as_expr(self, symbols: Sequence[sp.Symbol]) -> sp.Expr:
        terms = []
        for m, c in self.t.items():
            term = sp.Rational(int(c.numerator), int(c.denominator))
            for i in m:
                term *= symbols[i]
            terms.append(term)
        return sp.Add(*terms)


def to_ring(polys: Iterable[SPoly], symbols: Sequence[sp.Symbol]):
    """The sympy PolyRing over the generators that occur, and the polynomials in it (for det / rem)."""
    polys = list(polys)
    used = sorted({i for p in polys for m in p.t for i in m})
    ring = sp.polys.rings.PolyRing([symbols[i] for i in used] or [sp.Symbol("_one")], sp.QQ, sp.polys.orderings.lex)
    pos = {i: k for k, i in enumerate(used)}
    n = len(ring.gens)

    def convert(p: SPoly):
        d = {}
        for m, c in p.t.items():
            e = [0] * n
            for i in m:
                e[pos[i]] += 1
            d[tuple(e)] = sp.QQ(int(c.numerator), int(c.denominator))
        return ring.from_dict(d) if d else ring.zero

    return ring, [convert(p) for p in polys]
