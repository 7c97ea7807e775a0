"""Rooted trees and elementary weights."""

from fractions import Fraction
from itertools import accumulate

from verify.schemes import catalogue as C
from verify.schemes import order_conditions, tree_counts
from verify.schemes.trees import catalogue


def test_tree_counts_per_order_and_cumulative_up_to_10():
    counts = tree_counts(10)
    assert counts == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]
    assert list(accumulate(counts)) == [1, 2, 4, 8, 17, 37, 85, 200, 486, 1205]


def test_densities_of_small_trees():
    cat = catalogue()
    dens = {cat.bracket(t): cat.gamma[t] for t in cat.ids(4)}
    assert dens == {"τ": 1, "[τ]": 2, "[[τ]]": 6, "[τ^2]": 3, "[[[τ]]]": 24, "[[τ^2]]": 12,
                    "[[τ],τ]": 8, "[τ^3]": 4}


def test_bicoloured_tree_counts():
    general = catalogue(2)
    general.ensure(4)
    assert [general.count(o) for o in range(1, 5)] == [2, 4, 14, 52]
    separable = catalogue(2, alternating=True)
    assert [separable.count(o) for o in range(1, 5)] == [2, 2, 4, 8]


def test_all_1205_conditions_for_rk4():
    res = order_conditions(C.get("rk4"), 10)
    assert len(res) == 1205
    assert all(r.holds for r in res if r.order <= 4)
    assert not all(r.holds for r in res if r.order == 5)
    # a known elementary weight: Phi([tau^2]) = sum b_i c_i^2 = 1/3 for RK4
    cat = catalogue()
    r = next(r for r in res if cat.bracket(r.tree) == "[τ^2]")
    assert r.phi == Fraction(1, 3) and r.inverse_density == Fraction(1, 3)


def test_condition_residuals_in_surd_field_are_exact():
    res = order_conditions(C.get("gauss-legendre-3"), 7)
    assert all(r.holds for r in res if r.order <= 6)
    assert not all(r.holds for r in res if r.order == 7)


def test_exact_order_checks_are_fast():
    # generous multiples of the bench.py targets so the test is robust on slow CI machines
    import time

    from verify.schemes import order, symplectic

    t0 = time.perf_counter()
    assert len(order_conditions(C._FACTORIES["rk4"](), 10)) == 1205
    assert time.perf_counter() - t0 < 2.5
    t0 = time.perf_counter()
    assert symplectic(C._FACTORIES["gauss-legendre-4"]()).holds is True
    assert time.perf_counter() - t0 < 5.0
    t0 = time.perf_counter()
    assert order(C._FACTORIES["dormand-prince-5"]()).value == 5
    assert time.perf_counter() - t0 < 0.5
