"""Rooted (and bicoloured) trees and exact elementary weights.

Trees are generated once per colouring rule and cached.  Every tree gets an
integer id; its children are a non-increasing tuple of ids, so a tree is
determined by (root colour, children) and subtrees are shared -- elementary
weights are then memoised per id instead of per nested tuple, which keeps the
1205 conditions of order <= 10 at a few hundred microseconds of work each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from typing import Callable, Iterator, Optional, Sequence

from .exact import Elem, Field, RationalField


@dataclass
class TreeCatalogue:
    """All trees up to ``max_order`` for a colouring rule.

    ``colours`` = 1 gives ordinary rooted trees (Runge--Kutta), 2 gives
    bicoloured trees (partitioned RK).  With ``alternating`` only trees whose
    adjacent vertices have different colours are kept: exactly the trees whose
    elementary differentials survive for separable systems q' = f(p), p' = g(q).
    """

    colours: int = 1
    alternating: bool = False
    order: list[int] = field(default_factory=list)
    colour: list[int] = field(default_factory=list)
    children: list[tuple[int, ...]] = field(default_factory=list)
    gamma: list[int] = field(default_factory=list)
    by_order: list[list[int]] = field(default_factory=lambda: [[]])
    built: int = 0

    def ensure(self, n: int) -> None:
        while self.built < n:
            self._build(self.built + 1)

    def _add(self, colour: int, kids: tuple[int, ...]) -> None:
        tid = len(self.order)
        o = 1 + sum(self.order[k] for k in kids)
        g = o
        for k in kids:
            g *= self.gamma[k]
        self.order.append(o)
        self.colour.append(colour)
        self.children.append(kids)
        self.gamma.append(g)
        self.by_order[o].append(tid)

    def _multisets(self, total: int, max_id: int, root_colour: int) -> Iterator[tuple[int, ...]]:
        """Non-increasing id sequences whose orders sum to ``total``."""
        if total == 0:
            yield ()
            return
        for o in range(min(total, self.order[max_id]), 0, -1):
            for tid in reversed(self.by_order[o]):
                if tid > max_id:
                    continue
                if self.alternating and self.colour[tid] == root_colour:
                    continue
                for rest in self._multisets(total - o, tid, root_colour):
                    yield (tid,) + rest

    def _build(self, n: int) -> None:
        self.by_order.append([])
        if n == 1:
            for col in range(self.colours):
                self._add(col, ())
        else:
            last = len(self.order) - 1
            for col in range(self.colours):
                for kids in self._multisets(n - 1, last, col):
                    self._add(col, kids)
        self.built = n

    def ids(self, max_order: int) -> list[int]:
        self.ensure(max_order)
        return [t for o in range(1, max_order + 1) for t in self.by_order[o]]

    def count(self, order: int) -> int:
        self.ensure(order)
        return len(self.by_order[order])

    def bracket(self, tid: int) -> str:
        """Butcher's bracket notation; in two colours white vertices are marked o."""
        mark = "τ" if self.colour[tid] == 0 else "σ"
        kids = self.children[tid]
        if not kids:
            return mark
        parts: list[str] = []
        i = 0
        while i < len(kids):
            j = i
            while j < len(kids) and kids[j] == kids[i]:
                j += 1
            sub = self.bracket(kids[i])
            parts.append(sub if j - i == 1 else f"{sub}^{j - i}")
            i = j
        open_, close = ("[", "]") if self.colour[tid] == 0 else ("{", "}")
        return open_ + ",".join(parts) + close


_CATALOGUES: dict[tuple[int, bool], TreeCatalogue] = {}


def catalogue(colours: int = 1, alternating: bool = False) -> TreeCatalogue:
    key = (colours, alternating)
    if key not in _CATALOGUES:
        _CATALOGUES[key] = TreeCatalogue(colours=colours, alternating=alternating)
    return _CATALOGUES[key]


def tree_counts(max_order: int) -> list[int]:
    """Number of rooted trees of each order 1..max_order (OEIS A000081)."""
    cat = catalogue()
    cat.ensure(max_order)
    return [len(cat.by_order[o]) for o in range(1, max_order + 1)]


# ---------------------------------------------------------------------------
# Elementary weights
# ---------------------------------------------------------------------------


@dataclass
class ConditionResult:
    tree: int
    order: int
    bracket: str
    phi: object  # field element (or scaled integer in the rational fast path)
    inverse_density: Fraction
    holds: bool


class WeightEvaluator:
    """Memoised elementary weights Phi(t) = b^T g(t) for one (partitioned) method.

    ``As``/``bs`` hold one tableau per colour.  For rational methods all
    coefficients are scaled by the common denominator D so that the recursion
    runs on Python ints (Phi_int(t) = D^|t| Phi(t)); this avoids Fraction
    normalisation in the inner loop.
    """

    def __init__(self, field: Field, As: Sequence[Sequence[Sequence[Elem]]],
                 bs: Sequence[Sequence[Elem]], cat: TreeCatalogue):
        self.cat = cat
        self.s = len(bs[0])
        self.rational = isinstance(field, RationalField)
        if self.rational:
            den = 1
            for A in As:
                for r in A:
                    for v in r:
                        den = lcm(den, Fraction(v).denominator)
            for b in bs:
                for v in b:
                    den = lcm(den, Fraction(v).denominator)
            self.D = den
            conv: Callable[[Elem], object] = lambda v: int(Fraction(v) * den)  # noqa: E731
            self.one: object = 1
        else:
            self.D = 1
            conv = lambda v: v  # noqa: E731
            self.one = field.one
        self.field = field
        # sparse rows: list of (j, a_ij) with a_ij != 0
        self.As = [[[(j, conv(v)) for j, v in enumerate(r) if v] for r in A] for A in As]
        self.bs = [[(i, conv(v)) for i, v in enumerate(b) if v] for b in bs]
        self._g: dict[int, list] = {}
        self._Ag: dict[int, list] = {}

    def g(self, tid: int) -> list:
        v = self._g.get(tid)
        if v is None:
            kids = self.cat.children[tid]
            v = [self.one] * self.s
            for k in kids:
                w = self.Ag(k)
                v = [x * y for x, y in zip(v, w)]
            self._g[tid] = v
        return v

    def Ag(self, tid: int) -> list:
        v = self._Ag.get(tid)
        if v is None:
            g = self.g(tid)
            zero = 0 if self.rational else self.field.zero
            rows = self.As[self.cat.colour[tid]]
            v = []
            for r in rows:
                acc = zero
                for j, a in r:
                    acc = acc + a * g[j]
                v.append(acc)
            self._Ag[tid] = v
        return v

    def phi(self, tid: int) -> object:
        g = self.g(tid)
        acc = 0 if self.rational else self.field.zero
        for i, bi in self.bs[self.cat.colour[tid]]:
            acc = acc + bi * g[i]
        return acc

    def check(self, tid: int) -> ConditionResult:
        phi = self.phi(tid)
        o = self.cat.order[tid]
        gam = self.cat.gamma[tid]
        if self.rational:
            holds = phi * gam == self.D ** o
            value: object = Fraction(phi, self.D ** o)  # type: ignore[arg-type]
        else:
            holds = not (phi * gam - 1)  # type: ignore[operator]
            value = phi
        return ConditionResult(tid, o, self.cat.bracket(tid), value, Fraction(1, gam), bool(holds))


def order_from_conditions(ev: WeightEvaluator, max_order: int) -> tuple[int, Optional[ConditionResult], int]:
    """(order, first failing condition or None, number of conditions checked)."""
    cat = ev.cat
    cat.ensure(max_order)
    checked = 0
    for o in range(1, max_order + 1):
        for tid in cat.by_order[o]:
            res = ev.check(tid)
            checked += 1
            if not res.holds:
                return o - 1, res, checked
    return max_order, None, checked


def all_conditions(ev: WeightEvaluator, max_order: int) -> list[ConditionResult]:
    return [ev.check(t) for t in ev.cat.ids(max_order)]
