"""Named schemes with exact coefficients and their literature properties.

Sources: Hairer--Norsett--Wanner I (HNW), Hairer--Wanner II (HW),
Hairer--Lubich--Wanner, Geometric Numerical Integration (GNI), Butcher (2016),
Gottlieb--Shu--Tadmor / Spiteri--Ruuth for SSP methods, Yoshida (1990),
Suzuki (1990).

``LITERATURE`` lists the expected properties that the tests check against.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional

import sympy as sp
from sympy import Rational as R, sqrt

from .tableau import ButcherTableau, Composition, PartitionedTableau, Scheme, SchemeError, Splitting

_FACTORIES: dict[str, Callable[[], Scheme]] = {}
_ALIASES: dict[str, str] = {}


def _register(name: str, *aliases: str) -> Callable[[Callable[[], Scheme]], Callable[[], Scheme]]:
    def deco(fn: Callable[[], Scheme]) -> Callable[[], Scheme]:
        _FACTORIES[name] = fn
        for a in aliases:
            _ALIASES[_key(a)] = name
        _ALIASES[_key(name)] = name
        return fn

    return deco


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def names() -> list[str]:
    return list(_FACTORIES)


def get(name: str) -> Scheme:
    """Scheme by (case/punctuation-insensitive) name or alias; built once and shared."""
    key = _key(name)
    if key not in _ALIASES:
        raise SchemeError(f"unknown scheme {name!r}; known: {', '.join(names())}")
    return _build(_ALIASES[key])


@lru_cache(maxsize=None)
def _build(canonical: str) -> Scheme:
    return _FACTORIES[canonical]()


# ---------------------------------------------------------------------------
# Explicit methods
# ---------------------------------------------------------------------------


@_register("forward-euler", "euler", "explicit-euler")
def forward_euler() -> ButcherTableau:
    return ButcherTableau([[0]], [1], name="forward-euler")


@_register("explicit-midpoint", "midpoint")
def explicit_midpoint() -> ButcherTableau:
    return ButcherTableau([[0, 0], [R(1, 2), 0]], [0, 1], name="explicit-midpoint")


@_register("heun", "explicit-trapezoid")
def heun() -> ButcherTableau:
    return ButcherTableau([[0, 0], [1, 0]], [R(1, 2), R(1, 2)], name="heun")


@_register("ralston")
def ralston() -> ButcherTableau:
    return ButcherTableau([[0, 0], [R(2, 3), 0]], [R(1, 4), R(3, 4)], name="ralston")


@_register("kutta3", "rk3")
def kutta3() -> ButcherTableau:
    return ButcherTableau([[0, 0, 0], [R(1, 2), 0, 0], [-1, 2, 0]], [R(1, 6), R(2, 3), R(1, 6)], name="kutta3")


@_register("rk4", "classical-rk4", "rk44")
def rk4() -> ButcherTableau:
    h = R(1, 2)
    return ButcherTableau([[0, 0, 0, 0], [h, 0, 0, 0], [0, h, 0, 0], [0, 0, 1, 0]],
                          [R(1, 6), R(1, 3), R(1, 3), R(1, 6)], name="rk4")


@_register("three-eighths", "3/8-rule", "rk38")
def three_eighths() -> ButcherTableau:
    return ButcherTableau([[0, 0, 0, 0], [R(1, 3), 0, 0, 0], [R(-1, 3), 1, 0, 0], [1, -1, 1, 0]],
                          [R(1, 8), R(3, 8), R(3, 8), R(1, 8)], name="three-eighths")


@_register("ssprk22", "ssp22")
def ssprk22() -> ButcherTableau:
    return ButcherTableau([[0, 0], [1, 0]], [R(1, 2), R(1, 2)], name="ssprk22")


@_register("ssprk33", "ssp33", "shu-osher")
def ssprk33() -> ButcherTableau:
    return ButcherTableau([[0, 0, 0], [1, 0, 0], [R(1, 4), R(1, 4), 0]], [R(1, 6), R(1, 6), R(2, 3)],
                          name="ssprk33")


# Spiteri & Ruuth (2002) publish SSPRK(5,3) with 14 significant digits (the
# optimal coefficients are roots of a polynomial system with no known closed
# form).  A is taken as the exact decimals printed there; b_1..b_4 are then
# solved exactly from the four order-3 conditions (linear in b) with b_5 kept
# at its published value, so the rational tableau is third order exactly and
# differs from the published b by < 1e-13.
_SSP53_A = [
    [0, 0, 0, 0, 0],
    ["0.37726891511710", 0, 0, 0, 0],
    ["0.37726891511710", "0.37726891511710", 0, 0, 0],
    ["0.16352294089771", "0.16352294089771", "0.16352294089771", 0, 0],
    ["0.14904059394856", "0.14831273384724", "0.14831273384724", "0.34217696850008", 0],
]
_SSP53_B_PUBLISHED = ["0.19707596384481", "0.11780316509765", "0.11709725193772", "0.27015874934251",
                      "0.29786487010104"]


@_register("ssprk53", "ssp53")
def ssprk53() -> ButcherTableau:
    A = sp.Matrix([[sp.Rational(v) for v in r] for r in _SSP53_A])
    c = [sum(A.row(i)) for i in range(5)]
    b5 = sp.Rational(_SSP53_B_PUBLISHED[4])
    bs = sp.symbols("b1:5")
    b = list(bs) + [b5]
    Ac = A * sp.Matrix(c)
    eqs = [sum(b) - 1, sum(bi * ci for bi, ci in zip(b, c)) - R(1, 2),
           sum(bi * ci ** 2 for bi, ci in zip(b, c)) - R(1, 3), sum(bi * x for bi, x in zip(b, Ac)) - R(1, 6)]
    sol = sp.solve(eqs, bs, dict=True)[0]
    bvals = [sol[x] for x in bs] + [b5]
    return ButcherTableau(A.tolist(), bvals, name="ssprk53",
                          note="Spiteri-Ruuth SSPRK(5,3): A = published 14-digit decimals (exact), b_1..b_4 "
                               "re-solved exactly from the order-3 conditions (|change| < 1e-13)")


@_register("dormand-prince-5", "dopri5", "dp5", "rk45")
def dopri5() -> ButcherTableau:
    A = [
        [0] * 7,
        [R(1, 5)] + [0] * 6,
        [R(3, 40), R(9, 40)] + [0] * 5,
        [R(44, 45), R(-56, 15), R(32, 9)] + [0] * 4,
        [R(19372, 6561), R(-25360, 2187), R(64448, 6561), R(-212, 729)] + [0] * 3,
        [R(9017, 3168), R(-355, 33), R(46732, 5247), R(49, 176), R(-5103, 18656)] + [0] * 2,
        [R(35, 384), 0, R(500, 1113), R(125, 192), R(-2187, 6784), R(11, 84), 0],
    ]
    b = [R(35, 384), 0, R(500, 1113), R(125, 192), R(-2187, 6784), R(11, 84), 0]
    be = [R(5179, 57600), 0, R(7571, 16695), R(393, 640), R(-92097, 339200), R(187, 2100), R(1, 40)]
    return ButcherTableau(A, b, [0, R(1, 5), R(3, 10), R(4, 5), R(8, 9), 1, 1], name="dormand-prince-5",
                          b_embedded=be)


@_register("bogacki-shampine", "bs3", "ode23")
def bogacki_shampine() -> ButcherTableau:
    A = [[0, 0, 0, 0], [R(1, 2), 0, 0, 0], [0, R(3, 4), 0, 0], [R(2, 9), R(1, 3), R(4, 9), 0]]
    return ButcherTableau(A, [R(2, 9), R(1, 3), R(4, 9), 0], [0, R(1, 2), R(3, 4), 1], name="bogacki-shampine",
                          b_embedded=[R(7, 24), R(1, 4), R(1, 3), R(1, 8)])


@_register("cash-karp", "rkck")
def cash_karp() -> ButcherTableau:
    A = [
        [0] * 6,
        [R(1, 5)] + [0] * 5,
        [R(3, 40), R(9, 40)] + [0] * 4,
        [R(3, 10), R(-9, 10), R(6, 5)] + [0] * 3,
        [R(-11, 54), R(5, 2), R(-70, 27), R(35, 27)] + [0] * 2,
        [R(1631, 55296), R(175, 512), R(575, 13824), R(44275, 110592), R(253, 4096), 0],
    ]
    b = [R(37, 378), 0, R(250, 621), R(125, 594), 0, R(512, 1771)]
    be = [R(2825, 27648), 0, R(18575, 48384), R(13525, 55296), R(277, 14336), R(1, 4)]
    return ButcherTableau(A, b, [0, R(1, 5), R(3, 10), R(3, 5), 1, R(7, 8)], name="cash-karp", b_embedded=be)


@_register("fehlberg45", "rkf45")
def fehlberg45() -> ButcherTableau:
    A = [
        [0] * 6,
        [R(1, 4)] + [0] * 5,
        [R(3, 32), R(9, 32)] + [0] * 4,
        [R(1932, 2197), R(-7200, 2197), R(7296, 2197)] + [0] * 3,
        [R(439, 216), -8, R(3680, 513), R(-845, 4104)] + [0] * 2,
        [R(-8, 27), 2, R(-3544, 2565), R(1859, 4104), R(-11, 40), 0],
    ]
    b = [R(25, 216), 0, R(1408, 2565), R(2197, 4104), R(-1, 5), 0]
    be = [R(16, 135), 0, R(6656, 12825), R(28561, 56430), R(-9, 50), R(2, 55)]
    return ButcherTableau(A, b, [0, R(1, 4), R(3, 8), R(12, 13), 1, R(1, 2)], name="fehlberg45", b_embedded=be)


# ---------------------------------------------------------------------------
# Implicit methods
# ---------------------------------------------------------------------------


@_register("backward-euler", "implicit-euler", "radau-iia-1")
def backward_euler() -> ButcherTableau:
    return ButcherTableau([[1]], [1], name="backward-euler")


@_register("implicit-midpoint")
def implicit_midpoint() -> ButcherTableau:
    return ButcherTableau([[R(1, 2)]], [1], name="implicit-midpoint")


@_register("trapezoidal", "crank-nicolson", "trapezoid")
def trapezoidal() -> ButcherTableau:
    return ButcherTableau([[0, 0], [R(1, 2), R(1, 2)]], [R(1, 2), R(1, 2)], name="trapezoidal")


def gauss_legendre(s: int) -> ButcherTableau:
    """Gauss--Legendre collocation with exact (surd) coefficients, s = 1..4."""
    if s == 1:
        return ButcherTableau([[R(1, 2)]], [1], name="gauss-legendre-1")
    if s == 2:
        r = sqrt(3) / 6
        return ButcherTableau([[R(1, 4), R(1, 4) - r], [R(1, 4) + r, R(1, 4)]], [R(1, 2), R(1, 2)],
                              [R(1, 2) - r, R(1, 2) + r], name="gauss-legendre-2")
    if s == 3:
        q = sqrt(15)
        A = [[R(5, 36), R(2, 9) - q / 15, R(5, 36) - q / 30],
             [R(5, 36) + q / 24, R(2, 9), R(5, 36) - q / 24],
             [R(5, 36) + q / 30, R(2, 9) + q / 15, R(5, 36)]]
        return ButcherTableau(A, [R(5, 18), R(4, 9), R(5, 18)], [R(1, 2) - q / 10, R(1, 2), R(1, 2) + q / 10],
                              name="gauss-legendre-3")
    if s == 4:
        # Butcher (1964); HNW I, Table II.7.4: nodes 1/2 -+ w2, 1/2 -+ w2' are the roots of the
        # shifted Legendre quartic, w2^2 = (15 + 2 sqrt(30))/140.
        t = sqrt(30)
        w1, w1p = R(1, 8) - t / 144, R(1, 8) + t / 144
        w2, w2p = sqrt((15 + 2 * t) / 35) / 2, sqrt((15 - 2 * t) / 35) / 2
        w3, w3p = w2 * (R(1, 6) + t / 24), w2p * (R(1, 6) - t / 24)
        w4, w4p = w2 * (R(1, 21) + 5 * t / 168), w2p * (R(1, 21) - 5 * t / 168)
        w5, w5p = w2 - 2 * w3, w2p - 2 * w3p
        A = [[w1, w1p - w3 + w4p, w1p - w3 - w4p, w1 - w5],
             [w1 - w3p + w4, w1p, w1p - w5p, w1 - w3p - w4],
             [w1 + w3p + w4, w1p + w5p, w1p, w1 + w3p - w4],
             [w1 + w5, w1p + w3 + w4p, w1p + w3 - w4p, w1]]
        A = [[sp.expand(v) for v in r] for r in A]
        return ButcherTableau(A, [2 * w1, 2 * w1p, 2 * w1p, 2 * w1],
                              [R(1, 2) - w2, R(1, 2) - w2p, R(1, 2) + w2p, R(1, 2) + w2], name="gauss-legendre-4")
    raise SchemeError("exact Gauss-Legendre tableaux are provided for s = 1..4")


for _s in range(1, 5):
    _register(f"gauss-legendre-{_s}", f"gauss{_s}", f"gl{_s}")(lambda _s=_s: gauss_legendre(_s))


@_register("radau-ia-2")
def radau_ia_2() -> ButcherTableau:
    return ButcherTableau([[R(1, 4), R(-1, 4)], [R(1, 4), R(5, 12)]], [R(1, 4), R(3, 4)], [0, R(2, 3)],
                          name="radau-ia-2")


@_register("radau-ia-3")
def radau_ia_3() -> ButcherTableau:
    r = sqrt(6)
    A = [[R(1, 9), (-1 - r) / 18, (-1 + r) / 18],
         [R(1, 9), (88 + 7 * r) / 360, (88 - 43 * r) / 360],
         [R(1, 9), (88 + 43 * r) / 360, (88 - 7 * r) / 360]]
    return ButcherTableau(A, [R(1, 9), (16 + r) / 36, (16 - r) / 36], [0, (6 - r) / 10, (6 + r) / 10],
                          name="radau-ia-3")


@_register("radau-iia-2")
def radau_iia_2() -> ButcherTableau:
    return ButcherTableau([[R(5, 12), R(-1, 12)], [R(3, 4), R(1, 4)]], [R(3, 4), R(1, 4)], [R(1, 3), 1],
                          name="radau-iia-2")


@_register("radau-iia-3", "radau5")
def radau_iia_3() -> ButcherTableau:
    r = sqrt(6)
    A = [[(88 - 7 * r) / 360, (296 - 169 * r) / 1800, (-2 + 3 * r) / 225],
         [(296 + 169 * r) / 1800, (88 + 7 * r) / 360, (-2 - 3 * r) / 225],
         [(16 - r) / 36, (16 + r) / 36, R(1, 9)]]
    return ButcherTableau(A, [(16 - r) / 36, (16 + r) / 36, R(1, 9)], [(4 - r) / 10, (4 + r) / 10, 1],
                          name="radau-iia-3")


@_register("lobatto-iiia-2")
def lobatto_iiia_2() -> ButcherTableau:
    return ButcherTableau([[0, 0], [R(1, 2), R(1, 2)]], [R(1, 2), R(1, 2)], [0, 1], name="lobatto-iiia-2")


@_register("lobatto-iiia-3")
def lobatto_iiia_3() -> ButcherTableau:
    return ButcherTableau([[0, 0, 0], [R(5, 24), R(1, 3), R(-1, 24)], [R(1, 6), R(2, 3), R(1, 6)]],
                          [R(1, 6), R(2, 3), R(1, 6)], [0, R(1, 2), 1], name="lobatto-iiia-3")


@_register("lobatto-iiib-2")
def lobatto_iiib_2() -> ButcherTableau:
    # The literature lists c = (0, 1), which is not the row-sum vector of A (IIIB(2) only satisfies
    # C(0)).  For autonomous problems the method depends on A and b only, so c is derived here.
    return ButcherTableau([[R(1, 2), 0], [R(1, 2), 0]], [R(1, 2), R(1, 2)], name="lobatto-iiib-2",
                          note="c derived from row sums (literature: c = (0, 1), which violates C(1))")


@_register("lobatto-iiib-3")
def lobatto_iiib_3() -> ButcherTableau:
    return ButcherTableau([[R(1, 6), R(-1, 6), 0], [R(1, 6), R(1, 3), 0], [R(1, 6), R(5, 6), 0]],
                          [R(1, 6), R(2, 3), R(1, 6)], [0, R(1, 2), 1], name="lobatto-iiib-3")


@_register("lobatto-iiic-2")
def lobatto_iiic_2() -> ButcherTableau:
    return ButcherTableau([[R(1, 2), R(-1, 2)], [R(1, 2), R(1, 2)]], [R(1, 2), R(1, 2)], [0, 1],
                          name="lobatto-iiic-2")


@_register("lobatto-iiic-3")
def lobatto_iiic_3() -> ButcherTableau:
    return ButcherTableau([[R(1, 6), R(-1, 3), R(1, 6)], [R(1, 6), R(5, 12), R(-1, 12)], [R(1, 6), R(2, 3), R(1, 6)]],
                          [R(1, 6), R(2, 3), R(1, 6)], [0, R(1, 2), 1], name="lobatto-iiic-3")


@_register("sdirk2-order3", "sdirk3", "crouzeix-sdirk")
def sdirk_order3() -> ButcherTableau:
    g = (3 + sqrt(3)) / 6
    return ButcherTableau([[g, 0], [1 - 2 * g, g]], [R(1, 2), R(1, 2)], [g, 1 - g], name="sdirk2-order3")


@_register("sdirk2-l-stable", "sdirk2")
def sdirk_l_stable() -> ButcherTableau:
    g = 1 - sqrt(2) / 2
    return ButcherTableau([[g, 0], [1 - g, g]], [1 - g, g], [g, 1], name="sdirk2-l-stable")


# ---------------------------------------------------------------------------
# Partitioned methods, splittings and compositions
# ---------------------------------------------------------------------------


@_register("symplectic-euler")
def symplectic_euler() -> PartitionedTableau:
    # q_{n+1} = q_n + h H_p(p_{n+1}, q_n) (explicit in q), p_{n+1} = p_n - h H_q(p_{n+1}, q_n) (implicit in p)
    return PartitionedTableau(ButcherTableau([[0]], [1], name="explicit-euler (q)"),
                              ButcherTableau([[1]], [1], name="implicit-euler (p)"), name="symplectic-euler")


@_register("stormer-verlet", "verlet", "leapfrog", "lobatto-iiia-iiib-2")
def stormer_verlet() -> PartitionedTableau:
    return PartitionedTableau(lobatto_iiia_2(), lobatto_iiib_2(), name="stormer-verlet",
                              note="Lobatto IIIA-IIIB pair with s = 2 (HLW GNI II.2)")


@_register("lobatto-iiia-iiib-3")
def lobatto_iiia_iiib_3() -> PartitionedTableau:
    return PartitionedTableau(lobatto_iiia_3(), lobatto_iiib_3(), name="lobatto-iiia-iiib-3")


@_register("strang", "strang-splitting")
def strang() -> Splitting:
    return Splitting([(0, R(1, 2)), (1, 1), (0, R(1, 2))], name="strang")


@_register("lie-trotter", "lie-splitting")
def lie_trotter() -> Splitting:
    return Splitting([(0, 1), (1, 1)], name="lie-trotter")


def yoshida_gammas() -> list[sp.Expr]:
    c = sp.cbrt(2)
    g1 = 1 / (2 - c)
    return [g1, -c / (2 - c), g1]


def suzuki_gammas() -> list[sp.Expr]:
    p = 1 / (4 - sp.cbrt(4))
    return [p, p, 1 - 4 * p, p, p]


@_register("yoshida4-verlet", "yoshida4", "triple-jump")
def yoshida4_verlet() -> Composition:
    return Composition(stormer_verlet(), yoshida_gammas(), name="yoshida4-verlet")


@_register("suzuki4-verlet", "suzuki4")
def suzuki4_verlet() -> Composition:
    return Composition(stormer_verlet(), suzuki_gammas(), name="suzuki4-verlet")


@_register("yoshida4-midpoint")
def yoshida4_midpoint() -> Composition:
    return Composition(implicit_midpoint(), yoshida_gammas(), name="yoshida4-midpoint")


@_register("yoshida4-strang")
def yoshida4_strang() -> Composition:
    return Composition(strang(), yoshida_gammas(), name="yoshida4-strang")


# ---------------------------------------------------------------------------
# Literature values checked by the tests
# ---------------------------------------------------------------------------

# (stages, order, symplectic, A-stable, L-stable, algebraically stable, symmetric); None = not applicable
LITERATURE: dict[str, tuple] = {
    "forward-euler": (1, 1, False, False, False, False, False),
    "explicit-midpoint": (2, 2, False, False, False, False, False),
    "heun": (2, 2, False, False, False, False, False),
    "ralston": (2, 2, False, False, False, False, False),
    "kutta3": (3, 3, False, False, False, False, False),
    "rk4": (4, 4, False, False, False, False, False),
    "three-eighths": (4, 4, False, False, False, False, False),
    "ssprk22": (2, 2, False, False, False, False, False),
    "ssprk33": (3, 3, False, False, False, False, False),
    "ssprk53": (5, 3, False, False, False, False, False),
    "dormand-prince-5": (7, 5, False, False, False, False, False),
    "bogacki-shampine": (4, 3, False, False, False, False, False),
    "cash-karp": (6, 5, False, False, False, False, False),
    "fehlberg45": (6, 4, False, False, False, False, False),
    "backward-euler": (1, 1, False, True, True, True, False),
    "implicit-midpoint": (1, 2, True, True, False, True, True),
    "trapezoidal": (2, 2, False, True, False, False, True),
    "gauss-legendre-1": (1, 2, True, True, False, True, True),
    "gauss-legendre-2": (2, 4, True, True, False, True, True),
    "gauss-legendre-3": (3, 6, True, True, False, True, True),
    "gauss-legendre-4": (4, 8, True, True, False, True, True),
    "radau-ia-2": (2, 3, False, True, True, True, False),
    "radau-ia-3": (3, 5, False, True, True, True, False),
    "radau-iia-2": (2, 3, False, True, True, True, False),
    "radau-iia-3": (3, 5, False, True, True, True, False),
    "lobatto-iiia-2": (2, 2, False, True, False, False, True),
    "lobatto-iiia-3": (3, 4, False, True, False, False, True),
    "lobatto-iiib-2": (2, 2, False, True, False, False, True),
    "lobatto-iiib-3": (3, 4, False, True, False, False, True),
    "lobatto-iiic-2": (2, 2, False, True, True, True, False),
    "lobatto-iiic-3": (3, 4, False, True, True, True, False),
    "sdirk2-order3": (2, 3, False, True, False, True, False),
    "sdirk2-l-stable": (2, 2, False, True, True, None, False),
    "symplectic-euler": (1, 1, True, None, None, None, False),
    "stormer-verlet": (2, 2, True, None, None, None, True),
    "lobatto-iiia-iiib-3": (3, 4, True, None, None, None, True),
    "strang": (3, 2, True, None, None, None, True),
    "lie-trotter": (2, 1, True, None, None, None, False),
    "yoshida4-verlet": (6, 4, True, None, None, None, True),
    "suzuki4-verlet": (10, 4, True, None, None, None, True),
    "yoshida4-midpoint": (3, 4, True, False, False, False, True),
    "yoshida4-strang": (9, 4, True, None, None, None, True),
}
