"""Derived properties of schemes, each returned as a :class:`Finding`.

Conventions for :class:`Finding`:

* yes/no properties: ``holds`` is the answer, ``status`` is ``'proved'`` when
  it holds, ``'refuted'`` when it does not;
* quantities (order, intervals, R(z)): ``value`` carries the quantity,
  ``holds`` is ``True`` once it has been determined and ``status`` is
  ``'proved'``;
* ``status == 'undecided'`` (and ``holds is None``) when a step ran out of
  time or the available theory gives no verdict; the derivation says why.

Every computation runs under a time limit (:mod:`.timelimit`), so no
property can hang the caller.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from fractions import Fraction
from math import factorial
from typing import Any, Callable, Literal, Optional, Sequence

import sympy as sp

from . import poly as P
from .exact import Elem, Field, SchemeError, field_for
from .tableau import ButcherTableau, Composition, PartitionedTableau, Scheme, Splitting
from verify.timelimit import run_with_time_limit
from .trees import WeightEvaluator, all_conditions, catalogue, order_from_conditions

Status = Literal["proved", "refuted", "undecided"]

DEFAULT_LIMIT = 20.0
Z = sp.Symbol("z")


@dataclass(frozen=True)
class Finding:
    name: str
    value: object
    holds: Optional[bool]
    derivation: str
    seconds: float
    status: Status


def _verdict(name: str, holds: Optional[bool], derivation: str, value: object = None) -> tuple:
    status: Status = "undecided" if holds is None else ("proved" if holds else "refuted")
    return (value if value is not None else holds, holds, derivation, status)


def _quantity(value: object, derivation: str) -> tuple:
    return (value, True, derivation, "proved")


def _run(name: str, compute: Callable[[], tuple], limit: float) -> Finding:
    t0 = time.perf_counter()
    try:
        ok, out = run_with_time_limit(compute, limit)
    except SchemeError as exc:
        return Finding(name, None, None, f"not decided: {exc}", time.perf_counter() - t0, "undecided")
    except Exception as exc:  # noqa: BLE001 - one failing property must not abort a whole analysis
        return Finding(name, None, None, f"not decided: internal error {type(exc).__name__}: {exc}",
                       time.perf_counter() - t0, "undecided")
    dt = time.perf_counter() - t0
    if not ok:
        return Finding(name, None, None, f"time limit of {limit:g} s exceeded; no verdict", dt, "undecided")
    value, holds, derivation, status = out
    return Finding(name, value, holds, derivation, dt, status)


def _fmt_elem(F: Field, v: Elem) -> str:
    return str(F.to_sympy(v))


def _rk(scheme: Scheme) -> ButcherTableau:
    if isinstance(scheme, Composition):
        scheme = scheme.flatten()
    if not isinstance(scheme, ButcherTableau):
        raise SchemeError(f"{scheme.name} is not a Runge-Kutta method (it is {scheme.kind})")
    return scheme


# ---------------------------------------------------------------------------
# Order
# ---------------------------------------------------------------------------


def _rk_order_compute(t: ButcherTableau, max_order: int, b: Optional[Sequence] = None) -> tuple:
    F = t.field
    A, bb, _ = t.exact
    if b is not None:
        bb = [F.convert(v) for v in b]
    ev = WeightEvaluator(F, [A], [bb], catalogue())
    p, fail, checked = order_from_conditions(ev, max_order + 1)
    counts = sum(len(catalogue().by_order[o]) for o in range(1, p + 1))
    if fail is None:
        return _quantity(p, f"all {checked} order conditions Phi(t) = 1/gamma(t) hold for |t| <= {p} "
                            f"(checked up to the limit {max_order + 1}; the order is at least {p})")
    phi = F.to_sympy(fail.phi) if not isinstance(fail.phi, Fraction) else sp.Rational(fail.phi.numerator, fail.phi.denominator)
    return _quantity(p, f"all {counts} conditions Phi(t) = 1/gamma(t) for the rooted trees with |t| <= {p} hold "
                        f"exactly (arithmetic in {F.describe()}); the tree t = {fail.bracket} of order {fail.order} "
                        f"fails: Phi(t) = {phi} != 1/gamma(t) = {fail.inverse_density}")


def _prk_order_compute(t: PartitionedTableau, max_order: int, separable: bool) -> tuple:
    F = t.field
    A1 = [[F.convert(v) for v in r] for r in t.first.A]
    A2 = [[F.convert(v) for v in r] for r in t.second.A]
    b1 = [F.convert(v) for v in t.first.b]
    b2 = [F.convert(v) for v in t.second.b]
    cat = catalogue(2, alternating=separable)
    ev = WeightEvaluator(F, [A1, A2], [b1, b2], cat)
    p, fail, checked = order_from_conditions(ev, max_order + 1)
    kind = ("bicoloured trees with alternating colours (the only elementary differentials of separable "
            "systems q' = f(p), p' = g(q))" if separable else "all bicoloured trees (general partitioned systems)")
    if fail is None:
        return _quantity(p, f"all {checked} conditions over {kind} hold up to order {p}; order is at least {p}")
    phi = F.to_sympy(fail.phi) if not isinstance(fail.phi, Fraction) else sp.Rational(fail.phi.numerator, fail.phi.denominator)
    return _quantity(p, f"conditions Phi(t) = 1/gamma(t) over {kind} hold for |t| <= {p} "
                        f"({checked - 1} trees checked exactly); tree {fail.bracket} (τ: first component, "
                        f"σ: second) of order {fail.order} fails: Phi = {phi} != {fail.inverse_density}")


# -- free Lie algebra computations for splittings ---------------------------


def _series_product(s1: dict, s2: dict, N: int, F: Field) -> dict:
    out: dict = {}
    for w1, c1 in s1.items():
        for w2, c2 in s2.items():
            if len(w1) + len(w2) <= N:
                w = w1 + w2
                out[w] = out.get(w, F.zero) + c1 * c2
    return {w: c for w, c in out.items() if c}


def _exp_letter(k: int, a: Elem, N: int, F: Field) -> dict:
    return {(k,) * n: (a ** n) * Fraction(1, factorial(n)) if n else F.one for n in range(N + 1)}


def _splitting_series(sp_: Splitting, N: int, sign: int = 1) -> tuple[dict, Field]:
    F = sp_.field
    S = {(): F.one}
    for k, a in sp_.steps:
        S = _series_product(S, _exp_letter(k, F.convert(a) * sign, N, F), N, F)
    return S, F


def _exact_flow_series(parts: int, N: int, F: Field) -> dict:
    """exp(h (X_0 + ... + X_{parts-1})) truncated at degree N."""
    out: dict = {}
    for n in range(N + 1):
        for w in itertools.product(range(parts), repeat=n):
            out[w] = F.one * Fraction(1, factorial(n))
    return out


def _splitting_order_compute(s: Splitting, max_order: int) -> tuple:
    N = max_order + 1
    S, F = _splitting_series(s, N)
    E = _exact_flow_series(s.parts, N, F)
    for n in range(1, N + 1):
        bad = [w for w in itertools.product(range(s.parts), repeat=n)
               if (S.get(w, F.zero) - E[w])]
        if bad:
            w = bad[0]
            word = "".join(f"X{k}" for k in w)
            return _quantity(n - 1, f"the product of exponentials agrees with exp(h(X0+...+X{s.parts - 1})) "
                                    f"in the free associative algebra up to degree {n - 1} (exact BCH-type "
                                    f"expansion, all words checked); the coefficient of {word} differs: "
                                    f"{_fmt_elem(F, S.get(w, F.zero))} != 1/{factorial(n)}")
    return _quantity(N, f"agreement with the exact flow in all words up to degree {N} (order at least {N})")


def order(scheme: Scheme, max_order: int = 10, limit: float = DEFAULT_LIMIT) -> Finding:
    """Classical order (for partitioned methods: on general partitioned systems)."""
    if isinstance(scheme, Composition):
        flat = scheme.flatten()
        f = order(flat, max_order, limit)
        return Finding("order", f.value, f.holds, "composition written as one method: " + f.derivation,
                       f.seconds, f.status)
    if isinstance(scheme, ButcherTableau):
        return _run("order", lambda: _rk_order_compute(scheme, max_order), limit)
    if isinstance(scheme, PartitionedTableau):
        return _run("order", lambda: _prk_order_compute(scheme, min(max_order, 6), False), limit)
    if isinstance(scheme, Splitting):
        return _run("order", lambda: _splitting_order_compute(scheme, min(max_order, 6)), limit)
    raise SchemeError(f"unsupported scheme type {type(scheme).__name__}")


def separable_order(scheme: Scheme, max_order: int = 8, limit: float = DEFAULT_LIMIT) -> Finding:
    """Order of a partitioned method on separable systems q' = f(p), p' = g(q)."""
    if isinstance(scheme, Composition):
        scheme = scheme.flatten()
    if not isinstance(scheme, PartitionedTableau):
        return Finding("order (separable problems)", None, None, "only defined for partitioned methods", 0.0,
                       "undecided")
    return _run("order (separable problems)", lambda: _prk_order_compute(scheme, max_order, True), limit)


def embedded_order(t: ButcherTableau, max_order: int = 10, limit: float = DEFAULT_LIMIT) -> Finding:
    if t.b_embedded is None:
        return Finding("order of embedded method", None, None, "no embedded weights", 0.0, "undecided")
    return _run("order of embedded method", lambda: _rk_order_compute(t, max_order, t.b_embedded), limit)


def order_conditions(t: ButcherTableau, max_order: int) -> list:
    """All order conditions up to ``max_order`` with exact residual tests."""
    F = t.field
    A, b, _ = t.exact
    return all_conditions(WeightEvaluator(F, [A], [b], catalogue()), max_order)


def composition_conditions(c: Composition, limit: float = DEFAULT_LIMIT) -> Finding:
    """Order from the classical composition conditions for symmetric order-2 bases."""

    def compute() -> tuple:
        F = field_for(list(c.gammas))
        g = [F.convert(x) for x in c.gammas]
        s1 = sum(g, F.zero) - 1
        s3 = sum((x * x * x for x in g), F.zero)
        pal = all(not (g[i] - g[-1 - i]) for i in range(len(g)))
        base_sym = symmetric(c.base, limit)
        base_ord = order(c.base, 4, limit)
        lines = [f"sum gamma_i - 1 = {_fmt_elem(F, s1)}", f"sum gamma_i^3 = {_fmt_elem(F, s3)}",
                 f"palindromic: {pal}", f"base symmetric: {base_sym.holds}", f"base order: {base_ord.value}"]
        if not s1 and not s3 and pal and base_sym.holds and base_ord.value == 2:
            return _quantity(4, "; ".join(lines) + " => order >= 4 (symmetric composition of a symmetric "
                                                   "order-2 method with sum gamma = 1, sum gamma^3 = 0; HLW GNI II.4)")
        if not s1:
            return _quantity(base_ord.value, "; ".join(lines) + " => the composition conditions only guarantee "
                                                                "the order of the base method")
        return _quantity(0, "; ".join(lines) + " => inconsistent (sum gamma != 1)")

    return _run("order (composition conditions)", compute, limit)


# ---------------------------------------------------------------------------
# Stage order
# ---------------------------------------------------------------------------


def stage_order(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    def compute() -> tuple:
        t = _rk(scheme)
        F = t.field
        A, b, c = t.exact
        s = t.stages
        q = 0
        reason = ""
        for k in range(1, 2 * s + 2):
            Bk = sum((bi * ci ** (k - 1) for bi, ci in zip(b, c)), F.zero) - Fraction(1, k)
            if Bk:
                reason = f"B({k}) fails: sum b_i c_i^{k - 1} - 1/{k} = {_fmt_elem(F, Bk)}"
                break
            bad = None
            for i in range(s):
                Ck = sum((A[i][j] * c[j] ** (k - 1) for j in range(s)), F.zero) - c[i] ** k * Fraction(1, k)
                if Ck:
                    bad = (i, Ck)
                    break
            if bad:
                reason = f"C({k}) fails in stage {bad[0] + 1}: sum_j a_ij c_j^{k - 1} - c_i^{k}/{k} = {_fmt_elem(F, bad[1])}"
                break
            q = k
        return _quantity(q, f"B({q}) and C({q}) hold exactly; {reason}")

    return _run("stage order", compute, limit)


# ---------------------------------------------------------------------------
# Symplecticity and quadratic invariants
# ---------------------------------------------------------------------------


def _M_matrix(t: ButcherTableau) -> list[list[Elem]]:
    A, b, _ = t.exact
    s = t.stages
    return [[b[i] * A[i][j] + b[j] * A[j][i] - b[i] * b[j] for j in range(s)] for i in range(s)]


def _dj_used_stages(t: ButcherTableau) -> list[int]:
    A, b, _ = t.exact
    s = t.stages
    used = {i for i in range(s) if b[i]}
    frontier = list(used)
    while frontier:
        i = frontier.pop()
        for j in range(s):
            if A[i][j] and j not in used:
                used.add(j)
                frontier.append(j)
    return sorted(used)


def _rk_symplectic(t: ButcherTableau, what: str) -> tuple:
    F = t.field
    A, b, _ = t.exact
    used = _dj_used_stages(t)
    s = t.stages
    note = ""
    if len(used) < s:
        # stages that never influence the result (e.g. FSAL stages with b = 0) are dropped first:
        # the reduced method produces the same numerical solution
        note = (f"stages {[i + 1 for i in range(s) if i not in used]} never influence the result and are removed "
                f"(DJ-reduction); ")
    M = [[b[i] * A[i][j] + b[j] * A[j][i] - b[i] * b[j] for j in used] for i in used]
    for ii, i in enumerate(used):
        for jj, j in enumerate(used):
            if M[ii][jj]:
                return _verdict(what, False, note + f"m_ij = b_i a_ij + b_j a_ji - b_i b_j = "
                                                    f"{_fmt_elem(F, M[ii][jj])} != 0 for (i, j) = ({i + 1}, {j + 1}); "
                                                    f"M = 0 is necessary for DJ-irreducible methods "
                                                    f"(HLW GNI VI.4, Cooper 1987; S-reducibility by equal stages "
                                                    f"is not checked)")
    return _verdict(what, True, note + f"M = BA + A^T B - b b^T = 0 exactly ({len(used)}x{len(used)} entries "
                                       f"checked in {F.describe()}); HLW GNI Thm VI.4.3 / IV.2.2")


def _prk_symplectic(t: PartitionedTableau) -> tuple:
    F = t.field
    A1 = [[F.convert(v) for v in r] for r in t.first.A]
    A2 = [[F.convert(v) for v in r] for r in t.second.A]
    b1 = [F.convert(v) for v in t.first.b]
    b2 = [F.convert(v) for v in t.second.b]
    s = t.stages
    for i in range(s):
        for j in range(s):
            m = b1[i] * A2[i][j] + b2[j] * A1[j][i] - b1[i] * b2[j]
            if m:
                return _verdict("symplectic", False,
                                f"b_i â_ij + b̂_j a_ji - b_i b̂_j = {_fmt_elem(F, m)} != 0 at (i, j) = ({i + 1}, {j + 1}) "
                                f"(condition (4.8) of HLW GNI Thm VI.4.6 violated; necessary for irreducible pairs)")
    same_b = all(not (x - y) for x, y in zip(b1, b2))
    if same_b:
        return _verdict("symplectic", True, "b_i â_ij + b̂_j a_ji = b_i b̂_j for all i, j and b_i = b̂_i "
                                            "(HLW GNI Thm VI.4.6): symplectic for all Hamiltonian systems")
    return _verdict("symplectic", True, "b_i â_ij + b̂_j a_ji = b_i b̂_j for all i, j (HLW GNI Thm VI.4.6); "
                                        "b != b̂, so symplecticity is guaranteed for separable H = T(p) + U(q) only")


def symplectic(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    if isinstance(scheme, ButcherTableau):
        return _run("symplectic", lambda: _rk_symplectic(scheme, "symplectic"), limit)
    if isinstance(scheme, PartitionedTableau):
        return _run("symplectic", lambda: _prk_symplectic(scheme), limit)
    if isinstance(scheme, Splitting):
        return Finding("symplectic", True, True,
                       "every sub-flow is the exact flow of a Hamiltonian vector field (assumed for a splitting "
                       "of a Hamiltonian), exact Hamiltonian flows are symplectic and symplectic maps are closed "
                       "under composition", 0.0, "proved")

    def compute() -> tuple:
        base = symplectic(scheme.base, limit)
        if base.holds:
            return _verdict("symplectic", True, f"closure: every factor Phi_(gamma h) of the base "
                                                 f"'{scheme.base.name}' is symplectic ({base.derivation}), and "
                                                 f"compositions of symplectic maps are symplectic")
        flat = symplectic(scheme.flatten(), limit)
        return (flat.value, flat.holds, "base not symplectic, so closure gives nothing; composition written as "
                                        "one method: " + flat.derivation, flat.status)

    return _run("symplectic", compute, limit)


def quadratic_invariants(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    """Conservation of all quadratic invariants y^T C y (RK: same condition M = 0)."""
    name = "preserves quadratic invariants"

    def compute() -> tuple:
        t = _rk(scheme)
        return _rk_symplectic(t, name)

    if isinstance(scheme, PartitionedTableau):
        return _run(name, lambda: _verdict(name, *_prk_quadratic(scheme)), limit)
    if isinstance(scheme, Splitting):
        return Finding(name, None, None, "depends on the sub-flows; not decided for an abstract splitting", 0.0,
                       "undecided")
    return _run(name, compute, limit)


def _prk_quadratic(t: PartitionedTableau) -> tuple:
    v = _prk_symplectic(t)
    if v[1]:
        return (True, "the symplecticity conditions of HLW GNI Thm IV.2.4 hold, so all quadratic invariants of the "
                      "form Q(y, z) = y^T D z are preserved")
    return (v[1], v[2])


# ---------------------------------------------------------------------------
# Symmetry
# ---------------------------------------------------------------------------


def _find_symmetry_permutation(tabs: Sequence[tuple[list, list, list]], s: int, F: Field) -> Optional[list[int]]:
    """A permutation sigma with a_ij + a_{sigma(i) sigma(j)} = b_j, b_i = b_sigma(i) for every tableau."""
    A0, b0, c0 = tabs[0]
    cand = [[k for k in range(s) if not (c0[i] + c0[k] - 1) and all(not (b[i] - b[k]) for _, b, _ in tabs)]
            for i in range(s)]
    sigma: list[int] = [-1] * s

    def ok(i: int) -> bool:
        for j in range(s):
            if sigma[j] < 0:
                continue
            for A, b, _ in tabs:
                if A[i][j] + A[sigma[i]][sigma[j]] - b[j]:
                    return False
                if A[j][i] + A[sigma[j]][sigma[i]] - b[i]:
                    return False
        return True

    def search(i: int) -> bool:
        if i == s:
            return True
        for k in cand[i]:
            if k in sigma:
                continue
            sigma[i] = k
            if ok(i) and search(i + 1):
                return True
            sigma[i] = -1
        return False

    return list(sigma) if search(0) else None


def _rk_symmetric(t: ButcherTableau) -> tuple:
    F = t.field
    tab = t.exact
    sigma = _find_symmetry_permutation([tab], t.stages, F)
    if sigma is not None:
        return _verdict("symmetric", True, f"a_ij + a_(σi)(σj) = b_j and b_i = b_σi hold exactly with "
                                           f"σ = {[k + 1 for k in sigma]} (HLW GNI Thm V.2.3)")
    Pp, Qp = _stability_polys(t)
    lhs = P.sub(P.mul(Pp, P.compose_neg(Pp), F), P.mul(Qp, P.compose_neg(Qp), F), F)
    if lhs:
        return _verdict("symmetric", False, "R(z) R(-z) != 1 (a symmetric method satisfies R(-z) = 1/R(z))")
    A, b, _ = tab
    return _adjoint_comparison(F, [A], [b], catalogue(), "R(z) R(-z) = 1 but no symmetry permutation exists; ")


def _adjoint(A: list, b: list, F: Field) -> tuple[list, list]:
    """Coefficients of the adjoint method: a*_ij = b_(s+1-j) - a_(s+1-i, s+1-j), b*_i = b_(s+1-i)."""
    s = len(b)
    return ([[b[s - 1 - j] - A[s - 1 - i][s - 1 - j] for j in range(s)] for i in range(s)],
            [b[s - 1 - i] for i in range(s)])


def _adjoint_comparison(F: Field, As: list, bs: list, cat, prefix: str, max_order: int = 6) -> tuple:
    """Refute symmetry by a tree whose elementary weight differs from the adjoint's.

    Equal B-/P-series coefficients for every tree are necessary for Phi = Phi*;
    a single differing weight is therefore an exact refutation.
    """
    adj = [_adjoint(A, b, F) for A, b in zip(As, bs)]
    ev = WeightEvaluator(F, As, bs, cat)
    ev_adj = WeightEvaluator(F, [a for a, _ in adj], [b for _, b in adj], cat)
    for tid in cat.ids(max_order):
        o = cat.order[tid]
        if ev.rational:
            # the rational fast path scales weights by D^|t|, and D differs between the two methods
            diff = Fraction(ev.phi(tid), ev.D ** o) - Fraction(ev_adj.phi(tid), ev_adj.D ** o)
        else:
            diff = ev.phi(tid) - ev_adj.phi(tid)
        if diff:
            shown = diff if ev.rational else F.to_sympy(diff)
            return _verdict("symmetric", False, prefix + f"the elementary weight of the tree {cat.bracket(tid)} "
                                                         f"differs from that of the adjoint method (difference "
                                                         f"{shown}), so Phi_h != Phi*_h")
    return _verdict("symmetric", None, prefix + f"the weights of the method and its adjoint agree for all trees "
                                                f"up to order {max_order}; no verdict")


def _prk_symmetric(t: PartitionedTableau) -> tuple:
    F = t.field
    full = []
    for x in (t.first, t.second):
        full.append(([[F.convert(v) for v in r] for r in x.A], [F.convert(v) for v in x.b],
                     [F.convert(v) for v in x.c]))
    sigma = _find_symmetry_permutation(full, t.stages, F)
    if sigma is not None:
        return _verdict("symmetric", True, f"both tableaux satisfy a_ij + a_(σi)(σj) = b_j, b_i = b_σi with the "
                                           f"same σ = {[k + 1 for k in sigma]}")
    As = [A for A, _, _ in full]
    bs = [b for _, b, _ in full]
    return _adjoint_comparison(F, As, bs, catalogue(2), "no common symmetry permutation exists; ")


def symmetric(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    if isinstance(scheme, ButcherTableau):
        return _run("symmetric", lambda: _rk_symmetric(scheme), limit)
    if isinstance(scheme, PartitionedTableau):
        return _run("symmetric", lambda: _prk_symmetric(scheme), limit)
    if isinstance(scheme, Splitting):
        return _run("symmetric", lambda: _splitting_symmetric(scheme), limit)

    def compute() -> tuple:
        Fg = field_for(list(scheme.gammas))
        g = [Fg.convert(x) for x in scheme.gammas]
        pal = all(not (g[i] - g[-1 - i]) for i in range(len(g)))
        if pal:
            base = symmetric(scheme.base, limit)
            if base.holds:
                return _verdict("symmetric", True, "palindromic step sizes gamma_i = gamma_(m+1-i) and a "
                                                   "symmetric base method: the adjoint reverses the product and "
                                                   "maps each factor to itself")
        flat = symmetric(scheme.flatten(), limit)
        return (flat.value, flat.holds, "composition written as one method: " + flat.derivation, flat.status)

    return _run("symmetric", compute, limit)


def _splitting_symmetric(s: Splitting) -> tuple:
    m = s.merged()
    Fm = field_for([a for _, a in m])
    if all(m[i][0] == m[-1 - i][0] and not (Fm.convert(m[i][1]) - Fm.convert(m[-1 - i][1])) for i in range(len(m))):
        return _verdict("symmetric", True, "after merging adjacent flows of the same part the sequence is "
                                           "palindromic; exact flows are symmetric, so the adjoint (the reversed "
                                           "product) equals the method")
    N = 6
    S, F = _splitting_series(s, N)
    Sm, _ = _splitting_series(s, N, -1)
    prod = _series_product(S, Sm, N, F)
    bad = [w for w, c in prod.items() if w and c]
    if bad:
        return _verdict("symmetric", False, f"Phi_h o Phi_(-h) != id: the word {''.join(f'X{k}' for k in bad[0])} "
                                            f"has coefficient {_fmt_elem(F, prod[bad[0]])} in the exact series")
    return _verdict("symmetric", None, f"Phi_h o Phi_(-h) = id up to degree {N} but not palindromic")


# ---------------------------------------------------------------------------
# Linear stability
# ---------------------------------------------------------------------------


def _charpoly_reversed(M: list[list[Elem]], F: Field) -> list[Elem]:
    """det(I - zM) as coefficients low -> high (Faddeev--LeVerrier, exact)."""
    n = len(M)
    c = [F.zero] * (n + 1)
    c[n] = F.one
    Mk = [[F.zero] * n for _ in range(n)]
    for k in range(1, n + 1):
        AM = [[sum((M[i][l] * Mk[l][j] for l in range(n) if M[i][l]), F.zero) for j in range(n)] for i in range(n)]
        Mk = [[AM[i][j] + (c[n - k + 1] if i == j else F.zero) for j in range(n)] for i in range(n)]
        tr = sum((sum((M[i][l] * Mk[l][i] for l in range(n) if M[i][l]), F.zero) for i in range(n)), F.zero)
        c[n - k] = -tr * Fraction(1, k)
    # det(xI - M) = sum c_k x^k  =>  det(I - zM) = sum c_k z^(n-k)
    return P.trim(list(reversed(c)))


def _stability_polys(t: ButcherTableau) -> tuple[list[Elem], list[Elem]]:
    """Reduced P, Q with R = P/Q and Q(0) = 1."""
    hit = t.__dict__.get("_stability_polys")  # cached on the (frozen) instance itself
    if hit is not None:
        return hit
    F = t.field
    A, b, _ = t.exact
    s = t.stages
    Q = _charpoly_reversed(A, F)
    Ab = [[A[i][j] - b[j] for j in range(s)] for i in range(s)]
    Pp = _charpoly_reversed(Ab, F)
    g = P.gcd(Pp, Q, F)
    if len(g) > 1:
        Pp = P.divmod_(Pp, g, F)[0]
        Q = P.divmod_(Q, g, F)[0]
    q0 = Q[0]
    Pp = P.scale(Pp, F.one / q0)
    Q = P.scale(Q, F.one / q0)
    t.__dict__["_stability_polys"] = (Pp, Q)
    return Pp, Q


def stability_function(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    def compute() -> tuple:
        t = _rk(scheme)
        F = t.field
        Pp, Q = _stability_polys(t)
        R = P.to_sympy(Pp, F, Z) / P.to_sympy(Q, F, Z)
        return _quantity(R, rf"R(z) = \det(I - zA + z\mathbb{{1}}b^T)/\det(I - zA) = {sp.latex(R)} "
                            f"(exact characteristic polynomials, common factors cancelled)")

    return _run("stability function", compute, limit)


def _A_stable(t: ButcherTableau) -> tuple:
    F = t.field
    Pp, Q = _stability_polys(t)
    if len(Q) > 1 and not P.is_hurwitz(P.compose_neg(Q), F):
        return (False, "R has a pole with Re z <= 0 (Q(-z) is not Hurwitz by the exact Routh array)")
    E = P.sub(P.abs2_on_imaginary_axis(Q, F), P.abs2_on_imaginary_axis(Pp, F), F)
    bd = P.first_sign_loss(E, F, "E(y) = |Q(iy)|^2 - |P(iy)|^2")
    pole_txt = ("R is a polynomial (no poles)" if len(Q) == 1 else
                "all poles of R lie in Re z > 0 (Q(-z) is Hurwitz: exact Routh array)")
    if bd.value is None:
        return (True, f"{pole_txt}; {bd.derivation}; so |R(iy)| <= 1 on the imaginary axis and, by the maximum "
                      f"principle, |R(z)| <= 1 for Re z <= 0")
    return (False, f"{pole_txt}; but {bd.derivation}: |R(iy)| > 1 there")


def a_stable(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    return _run("A-stable", lambda: _verdict("A-stable", *_A_stable(_rk(scheme))), limit)


def l_stable(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    def compute() -> tuple:
        t = _rk(scheme)
        ok, why = _A_stable(t)
        Pp, Q = _stability_polys(t)
        at_inf = len(Pp) < len(Q)
        if not ok:
            return _verdict("L-stable", False, "not A-stable: " + why)
        if at_inf:
            return _verdict("L-stable", True, f"A-stable and deg P = {len(Pp) - 1} < deg Q = {len(Q) - 1}, "
                                              f"so R(oo) = 0")
        F = t.field
        lim = Pp[-1] / Q[-1] if len(Pp) == len(Q) else None
        return _verdict("L-stable", False, f"A-stable but R(oo) = {_fmt_elem(F, lim) if lim is not None else 'oo'} != 0")

    return _run("L-stable", compute, limit)


def _psd(M: list[list[Elem]], F: Field) -> tuple[bool, str]:
    """Exact positive semidefiniteness by symmetric Gaussian elimination."""
    M = [list(r) for r in M]
    idx = list(range(len(M)))
    while idx:
        piv = next((k for k in idx if M[k][k]), None)
        if piv is None:
            for i in idx:
                for j in idx:
                    if M[i][j]:
                        return False, (f"m_{i + 1}{i + 1} = 0 but m_{i + 1}{j + 1} = {_fmt_elem(F, M[i][j])} != 0 "
                                       f"(a 2x2 principal minor is negative)")
            return True, "remaining Schur complement is zero"
        if F.sign(M[piv][piv]) < 0:
            return False, f"pivot {_fmt_elem(F, M[piv][piv])} < 0 in the exact LDL^T factorisation"
        d = M[piv][piv]
        rest = [k for k in idx if k != piv]
        for i in rest:
            for j in rest:
                M[i][j] = M[i][j] - M[i][piv] * M[piv][j] / d
        idx = rest
    return True, "all pivots of the exact LDL^T factorisation are >= 0"


def algebraically_stable(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    def compute() -> tuple:
        t = _rk(scheme)
        F = t.field
        _, b, _ = t.exact
        for i, bi in enumerate(b):
            if F.sign(bi) < 0:
                return _verdict("algebraically stable", False, f"b_{i + 1} = {_fmt_elem(F, bi)} < 0")
        ok, why = _psd(_M_matrix(t), F)
        if ok:
            return _verdict("algebraically stable", True, f"b >= 0 and M = BA + A^T B - bb^T is positive "
                                                          f"semidefinite: {why}")
        return _verdict("algebraically stable", False, f"M = BA + A^T B - bb^T is not positive semidefinite: {why}")

    return _run("algebraically stable", compute, limit)


def _interval_finding(name: str, fn: Callable[[], P.SignBoundary], limit: float, what: str) -> Finding:
    def compute() -> tuple:
        bd = fn()
        val = sp.oo if bd.value is None else bd.value
        return _quantity(val, f"{what}: {bd.derivation}; value = {val} ≈ {bd.numeric:.15g}")

    return _run(name, compute, limit)


def real_stability_interval(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    """r such that |R(x)| <= 1 on [-r, 0] (value is sympy.oo if unbounded)."""

    def fn() -> P.SignBoundary:
        t = _rk(scheme)
        F = t.field
        Pp, Q = _stability_polys(t)
        Pm, Qm = P.compose_neg(Pp), P.compose_neg(Q)
        G = P.sub(P.mul(Qm, Qm, F), P.mul(Pm, Pm, F), F)
        return P.first_sign_loss(G, F, "G(x) = Q(-x)^2 - P(-x)^2")

    return _interval_finding("real stability interval", fn, limit, "|R(-x)| <= 1 iff G(x) >= 0")


def imaginary_stability_interval(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> Finding:
    """r such that |R(iy)| <= 1 for |y| <= r."""

    def fn() -> P.SignBoundary:
        t = _rk(scheme)
        F = t.field
        Pp, Q = _stability_polys(t)
        E = P.sub(P.abs2_on_imaginary_axis(Q, F), P.abs2_on_imaginary_axis(Pp, F), F)
        return P.first_sign_loss(E, F, "E(y) = |Q(iy)|^2 - |P(iy)|^2")

    return _interval_finding("imaginary stability interval", fn, limit, "|R(iy)| <= 1 iff E(y) >= 0")


def layer_matrix(W: Any) -> sp.Matrix:
    """Exact square matrix from nested lists (ints, Fractions, sympy numbers, strings like '1/3')."""
    from .tableau import exact_number

    try:
        rows = [list(r) for r in W]
    except TypeError as exc:
        raise SchemeError("W must be a square matrix given as a list of rows") from exc
    if not rows or any(len(r) != len(rows) for r in rows):
        raise SchemeError(f"W must be a non-empty square matrix, got row lengths {[len(r) for r in rows]}")
    return sp.Matrix([[exact_number(v, f"W[{i}][{j}]") for j, v in enumerate(r)] for i, r in enumerate(rows)])


def max_stable_step(scheme: Scheme, W: Any, limit: float = DEFAULT_LIMIT) -> Finding:
    """Largest h with |R(h' lambda)| <= 1 for all 0 <= h' <= h and all eigenvalues lambda of W.

    For each eigenvalue lambda = alpha + i beta, F(h) = |Q(h lambda)|^2 -
    |P(h lambda)|^2 is a real polynomial in h; its first sign loss on [0, oo) is
    computed exactly, and h_max is the minimum over eigenvalues.
    """

    def compute() -> tuple:
        t = _rk(scheme)
        Ft = t.field
        Pp, Q = _stability_polys(t)
        p = [Ft.to_sympy(v) for v in Pp]
        q = [Ft.to_sympy(v) for v in Q]
        Wm = layer_matrix(W)
        best: Optional[sp.Expr] = None
        best_num = float("inf")
        lines = []
        for lam in Wm.eigenvals():
            alpha, beta = sp.re(lam), sp.im(lam)
            if lam == 0:
                lines.append("lambda = 0: R(0) = 1, no restriction")
                continue
            n = max(len(p), len(q))
            pw = [sp.expand_complex((alpha + sp.I * beta) ** k) for k in range(2 * n)]
            coeffs = []
            for m in range(2 * n - 1):
                acc = sp.Integer(0)
                for j in range(min(m, n - 1) + 1):
                    l = m - j
                    if l >= n:
                        continue
                    qj = q[j] if j < len(q) else 0
                    ql = q[l] if l < len(q) else 0
                    pj = p[j] if j < len(p) else 0
                    pl = p[l] if l < len(p) else 0
                    # Re(lambda^j conj(lambda)^l)
                    prod = sp.expand(pw[j] * sp.conjugate(pw[l]))
                    acc += (qj * ql - pj * pl) * sp.re(prod)
                coeffs.append(sp.expand(acc))
            F = field_for(coeffs)
            poly_ = P.trim([F.convert(cf) for cf in coeffs])
            bd = P.first_sign_loss(poly_, F, f"F(h) = |Q(h λ)|^2 - |P(h λ)|^2 for λ = {lam}")
            lines.append(f"λ = {lam}: {bd.derivation}")
            if bd.numeric < best_num:
                best, best_num = bd.value, bd.numeric
        val = sp.oo if best is None else best
        return _quantity(val, f"eigenvalues of W = {Wm.tolist()}; " + "; ".join(lines) + f"; h_max = {val}")

    return _run("largest stable step", compute, limit)


# ---------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------


def analyse(scheme: Scheme, limit: float = DEFAULT_LIMIT) -> list[Finding]:
    """All properties that apply to the kind of scheme, in a fixed order."""
    out = [order(scheme, limit=limit)]
    rk_like = isinstance(scheme, ButcherTableau) or (
        isinstance(scheme, Composition) and isinstance(scheme.flatten(), ButcherTableau))
    if isinstance(scheme, ButcherTableau) and scheme.b_embedded is not None:
        out.append(embedded_order(scheme, limit=limit))
    if isinstance(scheme, PartitionedTableau) or (
            isinstance(scheme, Composition) and isinstance(scheme.flatten(), PartitionedTableau)):
        out.append(separable_order(scheme, limit=limit))
        if isinstance(scheme, PartitionedTableau):
            for part in (scheme.first, scheme.second):
                f = order(part, limit=limit)
                out.append(Finding(f"order of component '{part.name}'", f.value, f.holds, f.derivation,
                                   f.seconds, f.status))
    if isinstance(scheme, Composition):
        out.append(composition_conditions(scheme, limit=limit))
    if rk_like:
        out.append(stage_order(scheme, limit=limit))
    out.append(symplectic(scheme, limit=limit))
    out.append(symmetric(scheme, limit=limit))
    if rk_like:
        out.append(quadratic_invariants(scheme, limit=limit))
        out.append(stability_function(scheme, limit=limit))
        out.append(a_stable(scheme, limit=limit))
        out.append(l_stable(scheme, limit=limit))
        out.append(algebraically_stable(scheme, limit=limit))
        out.append(real_stability_interval(scheme, limit=limit))
        out.append(imaginary_stability_interval(scheme, limit=limit))
    return out
