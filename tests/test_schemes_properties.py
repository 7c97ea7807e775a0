"""Derived properties against literature values, plus negative cases."""

import pytest
import sympy as sp

from verify.schemes import (ButcherTableau, Composition, a_stable, algebraically_stable, analyse,
                            composition_conditions, embedded_order, imaginary_stability_interval, l_stable,
                            max_stable_step, order, quadratic_invariants, real_stability_interval,
                            separable_order, stability_function, stage_order, symmetric, symplectic)
from verify.schemes import catalogue as C

LIT = C.LITERATURE


@pytest.mark.parametrize("name", sorted(LIT))
def test_catalogue_entry_matches_literature(name):
    stages, p, sympl, astab, lstab, alg, symm = LIT[name]
    s = C.get(name)
    assert s.stages == stages
    f = order(s)
    assert f.status == "proved" and f.value == p, f.derivation
    checks = [(symplectic, sympl), (symmetric, symm), (a_stable, astab), (l_stable, lstab),
              (algebraically_stable, alg)]
    for fn, expected in checks:
        if expected is None:
            continue
        res = fn(s)
        assert res.holds is expected, (fn.__name__, res.derivation)
        assert res.status == ("proved" if expected else "refuted")
        assert res.derivation


def test_catalogue_literature_covers_every_entry():
    assert set(LIT) == set(C.names())


def test_rk4_stability_intervals_exact():
    rk4 = C.get("rk4")
    real = real_stability_interval(rk4)
    assert real.status == "proved"
    assert abs(float(real.value) - 2.785293563405282) < 1e-12
    # the boundary is where R(-r) = 1: r is a root of the cubic factor of 1 - R(-x)
    x = sp.Symbol("x")
    assert abs(sp.N((1 - (1 - x + x**2 / 2 - x**3 / 6 + x**4 / 24)).subs(x, real.value), 30)) < 1e-25
    imag = imaginary_stability_interval(rk4)
    assert imag.value == 2 * sp.sqrt(2)


def test_rk4_stability_function_is_taylor_polynomial():
    z = sp.Symbol("z")
    R = stability_function(C.get("rk4")).value
    assert sp.expand(R - (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24)) == 0


def test_gauss_stability_function_is_diagonal_pade():
    z = sp.Symbol("z")
    R = stability_function(C.get("gauss-legendre-2")).value
    assert sp.simplify(R - (1 + z / 2 + z**2 / 12) / (1 - z / 2 + z**2 / 12)) == 0
    # Gauss-4 coefficients live in a degree-8 number field, yet R is rational
    R4 = stability_function(C.get("gauss-legendre-4")).value
    num, den = sp.fraction(sp.together(R4))
    assert sp.Poly(num, z).degree() == 4 and sp.Poly(den, z).degree() == 4
    assert sp.simplify(R4.subs(z, -z) * R4 - 1) == 0


def test_forward_euler_on_rotation_damping_layer():
    W = [[-1, 2], [-2, -1]]
    f = max_stable_step(C.get("forward-euler"), W)
    assert f.status == "proved" and f.value == sp.Rational(2, 5)
    g = max_stable_step(C.get("backward-euler"), W)
    assert g.value == sp.oo
    h = max_stable_step(C.get("rk4"), [[0, 1], [-1, 0]])
    assert h.value == 2 * sp.sqrt(2)


def test_max_stable_step_rejects_float_layer():
    f = max_stable_step(C.get("forward-euler"), [[-0.5]])
    assert f.status == "undecided" and "float" in f.derivation


def test_explicit_methods_are_never_A_stable():
    for name in ["forward-euler", "heun", "rk4", "dormand-prince-5", "ssprk53"]:
        assert a_stable(C.get(name)).holds is False


def test_ssp53_is_exactly_third_order():
    f = order(C.get("ssprk53"))
    assert f.value == 3 and f.status == "proved"
    assert "order 4 fails" in f.derivation or "of order 4" in f.derivation


def test_embedded_orders():
    assert embedded_order(C.get("dormand-prince-5")).value == 4
    assert embedded_order(C.get("bogacki-shampine")).value == 2
    assert embedded_order(C.get("fehlberg45")).value == 5
    assert embedded_order(C.get("rk4")).status == "undecided"


def test_stage_orders():
    assert stage_order(C.get("gauss-legendre-3")).value == 3
    assert stage_order(C.get("radau-iia-3")).value == 3
    assert stage_order(C.get("radau-ia-3")).value == 2
    assert stage_order(C.get("lobatto-iiic-3")).value == 2
    assert stage_order(C.get("rk4")).value == 1


def test_quadratic_invariants_follow_symplecticity():
    assert quadratic_invariants(C.get("gauss-legendre-3")).holds is True
    assert quadratic_invariants(C.get("rk4")).holds is False
    assert quadratic_invariants(C.get("trapezoidal")).holds is False


def test_fsal_stage_is_dropped_before_refuting_symplecticity():
    f = symplectic(C.get("dormand-prince-5"))
    assert f.holds is False and "DJ-reduction" in f.derivation


def test_partitioned_orders():
    sv = C.get("stormer-verlet")
    assert separable_order(sv).value == 2
    assert separable_order(C.get("lobatto-iiia-iiib-3")).value == 4
    assert separable_order(C.get("symplectic-euler")).value == 1
    assert separable_order(C.get("yoshida4-verlet")).value == 4
    assert separable_order(C.get("rk4")).status == "undecided"


def test_symplectic_euler_pair_condition():
    f = symplectic(C.get("symplectic-euler"))
    assert f.holds is True and "4.6" in f.derivation


def test_non_symplectic_pair_is_refuted():
    from verify.schemes import PartitionedTableau
    pair = PartitionedTableau(C.get("heun"), C.get("explicit-midpoint"), name="bad-pair")
    assert symplectic(pair).holds is False


def test_composition_conditions():
    f = composition_conditions(C.get("yoshida4-verlet"))
    assert f.value == 4 and "sum gamma_i^3 = 0" in f.derivation
    nonsym = Composition(C.get("stormer-verlet"), [sp.Rational(1, 3), sp.Rational(2, 3)], name="x")
    g = composition_conditions(nonsym)
    assert g.value == 2
    assert order(nonsym).value == 2
    assert symmetric(nonsym).holds is False


def test_composition_of_non_symplectic_base_is_decided_exactly():
    comp = Composition(C.get("rk4"), [sp.Rational(1, 2), sp.Rational(1, 2)], name="rk4-twice")
    f = symplectic(comp)
    assert f.holds is False and "closure gives nothing" in f.derivation
    assert order(comp).value == 4


def test_suzuki_fractal_order_and_symplecticity():
    s = C.get("suzuki4-verlet")
    assert order(s).value == 4
    assert symplectic(s).holds is True and "closure" in symplectic(s).derivation
    assert symmetric(s).holds is True


def test_splitting_orders_from_free_algebra():
    assert order(C.get("strang")).value == 2
    assert order(C.get("lie-trotter")).value == 1
    assert order(C.get("yoshida4-strang")).value == 4
    assert symmetric(C.get("lie-trotter")).holds is False


def test_sdirk_gamma_matters():
    # the order-3 SDIRK with gamma = (3 - sqrt(3))/6 is not A-stable
    g = (3 - sp.sqrt(3)) / 6
    t = ButcherTableau([[g, 0], [1 - 2 * g, g]], [sp.Rational(1, 2)] * 2, name="sdirk-bad-gamma")
    assert order(t).value == 3
    assert a_stable(t).holds is False


def test_analyse_reports_every_property_with_derivation_and_timing():
    findings = analyse(C.get("radau-iia-3"))
    names = [f.name for f in findings]
    for needed in ["order", "stage order", "symplectic", "symmetric", "preserves quadratic invariants",
                   "stability function", "A-stable", "L-stable", "algebraically stable",
                   "real stability interval", "imaginary stability interval"]:
        assert needed in names
    assert all(f.derivation and f.seconds >= 0 and f.status in ("proved", "refuted", "undecided")
               for f in findings)


def test_headline_facts_from_the_issue():
    for s in range(1, 5):
        g = C.get(f"gauss-legendre-{s}")
        assert order(g).value == 2 * s
        assert symplectic(g).holds is True
        assert a_stable(g).holds is True
        assert symmetric(g).holds is True
    rk4 = C.get("rk4")
    assert symplectic(rk4).holds is False and symplectic(rk4).status == "refuted"
    assert a_stable(rk4).holds is False
    sv = C.get("stormer-verlet")
    assert symplectic(sv).holds is True and symmetric(sv).holds is True and order(sv).value == 2
    for name in ["radau-ia-2", "radau-ia-3", "radau-iia-2", "radau-iia-3"]:
        s = C.get(name)
        assert order(s).value == 2 * s.stages - 1
        assert l_stable(s).holds is True and algebraically_stable(s).holds is True
