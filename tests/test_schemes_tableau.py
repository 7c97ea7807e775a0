"""Construction, validation and presentation of exact schemes."""

from fractions import Fraction

import pytest
import sympy as sp

from verify.schemes import ButcherTableau, Composition, PartitionedTableau, SchemeError, Splitting
from verify.schemes import catalogue as C


def test_c_is_derived_from_row_sums_when_omitted():
    t = ButcherTableau([[0, 0], ["1/2", 0]], [0, 1])
    assert t.c == (0, sp.Rational(1, 2))


def test_strings_fractions_and_surds_are_exact():
    t = ButcherTableau([["1/4", "1/4 - sqrt(3)/6"], ["1/4 + sqrt(3)/6", Fraction(1, 4)]], ["0.5", "1/2"])
    assert t.b == (sp.Rational(1, 2), sp.Rational(1, 2))
    assert t.A[0][1] == sp.Rational(1, 4) - sp.sqrt(3) / 6
    assert t.c[0] == sp.Rational(1, 2) - sp.sqrt(3) / 6 or sp.simplify(t.c[0] - (sp.Rational(1, 2) - sp.sqrt(3) / 6)) == 0


def test_inconsistent_c_is_rejected_with_explanation():
    with pytest.raises(SchemeError, match=r"c\[1\].*row sum"):
        ButcherTableau([[0, 0], ["1/2", 0]], [0, 1], [0, "1/3"])


def test_surd_c_is_checked_exactly():
    r = sp.sqrt(3) / 6
    with pytest.raises(SchemeError):
        ButcherTableau([[sp.Rational(1, 4), sp.Rational(1, 4) - r], [sp.Rational(1, 4) + r, sp.Rational(1, 4)]],
                       [sp.Rational(1, 2)] * 2, [sp.Rational(1, 2) - r, sp.Rational(1, 2) + r + sp.Rational(1, 10**30)])


def test_non_square_A_is_rejected():
    with pytest.raises(SchemeError, match="square"):
        ButcherTableau([[0, 0], [1]], [1, 0])


def test_wrong_length_b_is_rejected():
    with pytest.raises(SchemeError, match="length"):
        ButcherTableau([[0, 0], [1, 0]], [1])


def test_float_is_refused_with_value_expectation_and_fix():
    with pytest.raises(SchemeError) as info:
        ButcherTableau([[0, 0], [1 / 3, 0]], [0, 1])
    msg = str(info.value)
    assert "A[1][0]" in msg and "0.333" in msg
    assert "exact" in msg
    assert "sympy.Rational(1, 3)" in msg and "'1/3'" in msg


def test_sympy_float_inside_expression_is_refused():
    with pytest.raises(SchemeError, match="float"):
        ButcherTableau([[sp.Float(0.5)]], [1])


def test_symbols_are_refused():
    with pytest.raises(SchemeError, match="symbols"):
        ButcherTableau([[sp.Symbol("x")]], [1])
    with pytest.raises(SchemeError, match="not a plain exact number"):
        ButcherTableau([["x"]], [1])


def test_transcendental_coefficients_are_refused():
    with pytest.raises(SchemeError, match="algebraic"):
        ButcherTableau([[sp.pi / 4]], [1], name="pi-method")


def test_from_floats_converts_only_within_tolerance_and_records_it():
    t = ButcherTableau.from_floats([[0, 0], [2 / 3, 0]], [0.25, 0.75], tolerance=1e-14, name="ralston-float")
    assert t.A[1][0] == sp.Rational(2, 3)
    assert any("2/3" in c for c in t.conversions)
    assert t == ButcherTableau(t.A, t.b, name="ralston-float", conversions=t.conversions)


def test_from_floats_with_surd_constants():
    g = 0.5 - 3 ** 0.5 / 6
    t = ButcherTableau.from_floats([[0.25, g - 0.25], [0.75 - g, 0.25]], [0.5, 0.5], tolerance=1e-12,
                                   constants=[sp.sqrt(3)])
    assert sp.simplify(t.c[0] - (sp.Rational(1, 2) - sp.sqrt(3) / 6)) == 0


def test_from_floats_requires_positive_tolerance():
    with pytest.raises(SchemeError, match="tolerance"):
        ButcherTableau.from_floats([[0.5]], [1.0], tolerance=0)


def test_tableau_is_immutable_and_hashable():
    t = C.get("rk4")
    with pytest.raises(Exception):
        t.b = (1,)  # type: ignore[misc]
    assert hash(t) == hash(C.rk4())
    assert t == C.rk4()


def test_repr_and_latex_are_readable():
    t = C.get("rk4")
    r = repr(t)
    assert "rk4" in r and "stages=4" in r and "explicit" in r and "1/6" in r
    tex = t.latex()
    assert tex.startswith(r"\begin{array}{c|cccc}") and r"\frac{1}{6}" in tex and r"\hline" in tex
    assert "1/2" in str(t)


def test_kinds():
    assert C.get("rk4").kind == "explicit"
    assert C.get("sdirk2-order3").kind == "singly diagonally implicit"
    assert C.get("gauss-legendre-2").kind == "fully implicit"


def test_json_round_trip():
    t = C.get("gauss-legendre-2")
    assert ButcherTableau.from_json(t.to_json()) == ButcherTableau(t.A, t.b, t.c, name=t.name)
    with pytest.raises(SchemeError, match="missing"):
        ButcherTableau.from_json({"A": [["1"]]})


def test_partitioned_requires_equal_stage_counts():
    with pytest.raises(SchemeError, match="same number of stages"):
        PartitionedTableau(C.get("rk4"), C.get("heun"))


def test_splitting_and_composition_validation():
    with pytest.raises(SchemeError):
        Splitting([(2, 1)])
    with pytest.raises(SchemeError):
        Composition(C.get("implicit-midpoint"), [])
    with pytest.raises(SchemeError):
        Composition(C.get("implicit-midpoint"), [0.5, 0.5])


def test_composition_flattens_to_runge_kutta():
    comp = Composition(C.get("implicit-midpoint"), [sp.Rational(1, 2), sp.Rational(1, 2)])
    flat = comp.flatten()
    assert flat.A == ((sp.Rational(1, 4), 0), (sp.Rational(1, 2), sp.Rational(1, 4)))
    assert flat.b == (sp.Rational(1, 2), sp.Rational(1, 2))


def test_catalogue_has_at_least_30_named_schemes_and_aliases():
    assert len(C.names()) >= 30
    assert C.get("RK4") is C.get("rk44")
    with pytest.raises(SchemeError, match="unknown scheme"):
        C.get("no-such-method")


def test_strings_cannot_execute_code():
    for evil in ["__import__('os').system('true')", "(1).__class__", "exec('1')", "open('x')"]:
        with pytest.raises(SchemeError, match="not a plain exact number"):
            ButcherTableau([[evil]], [1])
    assert ButcherTableau([["cbrt(2) - cbrt(2)"]], ["2^0"]).b == (1,)
