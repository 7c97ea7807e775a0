"""Benchmark of the exact scheme calculus (run: ``python -m benchmarks.schemes``).

All timings are taken in one process.  "cold" includes building the number
field (primitive element) and, where stated, generating the trees; "warm"
repeats the call with those caches filled.  The naive baseline evaluates the
same order conditions with plain sympy expressions and ``sympy.simplify``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import sympy as sp

from verify.schemes import catalogue as C
from verify.schemes import exact, trees
from verify.schemes.properties import order, order_conditions, symplectic
from verify.timelimit import run_with_time_limit

TARGETS_MS = {
    "gauss3_order": 50.0,
    "dopri5_order": 50.0,
    "rk4_1205_conditions": 500.0,
    "gauss4_symplectic": 1000.0,
}


def _clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000.0, out


def naive_order(t: Any, max_order: int) -> int:
    """Order by sympy expressions + simplify, no memoisation (the baseline)."""
    A = sp.Matrix(t.A)
    b = sp.Matrix(t.b)
    cat = trees.catalogue()
    cat.ensure(max_order)

    def g(tid: int) -> sp.Matrix:
        v = sp.ones(t.stages, 1)
        for k in cat.children[tid]:
            w = A * g(k)
            v = sp.Matrix([v[i] * w[i] for i in range(t.stages)])
        return v

    p = 0
    for o in range(1, max_order + 1):
        for tid in cat.by_order[o]:
            phi = (b.T * g(tid))[0]
            if sp.simplify(phi - sp.Rational(1, cat.gamma[tid])) != 0:
                return p
        p = o
    return p


def _fresh(name: str) -> Any:
    """A new instance (no cached field or stability data) of a catalogue scheme."""
    exact._FIELD_CACHE.clear()
    return C._FACTORIES[name]()


def run() -> dict:
    res: dict[str, Any] = {}
    # sympy imports some modules lazily on first use of radicals; do that outside the timings
    order(C._FACTORIES["sdirk2-order3"]())

    # tree generation up to order 10 (done once per process, then cached)
    trees._CATALOGUES.clear()
    ms, _ = _clock(lambda: trees.tree_counts(10))
    res["trees_up_to_10_generation_ms"] = ms

    # cold: construction (validation builds the number field Q(sqrt(15))) + order
    ms, (g3, f) = _clock(lambda: (lambda t: (t, order(t)))(_fresh("gauss-legendre-3")))
    res["gauss3_build_and_order_ms_cold"] = ms
    res["gauss3_order"] = f.value
    ms, _ = _clock(lambda: order(g3))
    res["gauss3_order_ms"] = ms

    ms, (dp, f) = _clock(lambda: (lambda t: (t, order(t)))(_fresh("dormand-prince-5")))
    res["dopri5_build_and_order_ms"] = ms
    ms, f = _clock(lambda: order(dp))
    res["dopri5_order_ms"] = ms
    res["dopri5_order"] = f.value

    rk = _fresh("rk4")
    ms, conds = _clock(lambda: order_conditions(rk, 10))
    res["rk4_1205_conditions_ms"] = ms
    res["rk4_conditions_checked"] = len(conds)
    res["rk4_conditions_holding"] = sum(c.holds for c in conds)

    # includes building the degree-8 number field Q(sqrt(30), w2, w2') from scratch
    ms, (g4, f) = _clock(lambda: (lambda t: (t, symplectic(t)))(_fresh("gauss-legendre-4")))
    res["gauss4_build_and_symplectic_ms"] = ms
    ms, f = _clock(lambda: symplectic(g4))
    res["gauss4_symplectic_ms"] = ms
    res["gauss4_symplectic"] = f.holds
    res["gauss4_field_degree"] = g4.field.degree
    ms, f = _clock(lambda: order(g4))
    res["gauss4_order_ms"] = ms
    res["gauss4_order"] = f.value

    ms, (ssp, f) = _clock(lambda: (lambda t: (t, order(t)))(_fresh("ssprk53")))
    res["ssp53_build_and_order_ms"] = ms
    res["ssp53_order"] = f.value

    # naive baseline on the same Gauss-3 problem (trees up to order 7)
    g3n = _fresh("gauss-legendre-3")
    t0 = time.perf_counter()
    ok, p = run_with_time_limit(naive_order, 300.0, g3n, 7)
    res["naive_gauss3_order_ms"] = (time.perf_counter() - t0) * 1000.0
    res["naive_gauss3_order"] = p if ok else "timeout (300 s)"
    res["speedup_gauss3_vs_naive_warm"] = res["naive_gauss3_order_ms"] / max(res["gauss3_order_ms"], 1e-9)
    res["speedup_gauss3_vs_naive_cold"] = (res["naive_gauss3_order_ms"]
                                           / max(res["gauss3_build_and_order_ms_cold"], 1e-9))

    res["targets_ms"] = TARGETS_MS
    res["targets_met"] = {
        "gauss3_order": res["gauss3_build_and_order_ms_cold"] <= TARGETS_MS["gauss3_order"],
        "dopri5_order": res["dopri5_build_and_order_ms"] <= TARGETS_MS["dopri5_order"],
        "rk4_1205_conditions": res["rk4_1205_conditions_ms"] <= TARGETS_MS["rk4_1205_conditions"],
        "gauss4_symplectic": res["gauss4_build_and_symplectic_ms"] <= TARGETS_MS["gauss4_symplectic"],
        "ssp53_order_is_3": res["ssp53_order"] == 3,
    }
    return res


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2, default=str))
