"""Symmetry groups and their representations as small immutable data.

Plane groups (C_N, D_N, SO(2), O(2)) act on R² by g = r_θ f^s, with matrix
M(g) = R(θ) F^s and F = diag(−1, 1) (reflection about the vertical axis: escnn's
default axis π/2, so our matrices equal escnn's `basespace_action`). Rotations of a
finite group are stored as exact fractions of a full turn, so their matrices are
exact in sympy (cos/sin of rational multiples of π). The symmetric group S_n acts
by permuting n items: (P_σ x)_{σ(i)} = x_i.

Interoperability with escnn: `group.to_escnn()`, `group.escnn_gspace()`,
`group.escnn_element(g)` and `field_representation(field_type)`, which gives ρ(g)
of an escnn FieldType for each of our elements.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from verify.errors import InputError

F_PLANE = np.array([[-1.0, 0.0], [0.0, 1.0]])


# --------------------------------------------------------------------------- elements
@dataclass(frozen=True, order=True)
class PlaneElement:
    """g = r_θ f^flip with θ = 2π·turn; `turn` is a Fraction for finite groups, a float in [0, 1) otherwise."""

    group: str
    turn: Fraction | float
    flip: int = 0

    @property
    def degrees(self) -> float:
        return float(self.turn) * 360.0

    @property
    def radians(self) -> float:
        return float(self.turn) * 2.0 * math.pi

    def __repr__(self) -> str:
        angle = f"{self.degrees:.6g}°"
        return f"{self.group}[{angle}{', flip' if self.flip else ''}]"

    __str__ = __repr__


@dataclass(frozen=True, order=True)
class Permutation:
    """σ as the tuple (σ(0), …, σ(n−1))."""

    group: str
    perm: tuple[int, ...]

    def __repr__(self) -> str:
        return f"{self.group}{list(self.perm)}"

    __str__ = __repr__


Element = PlaneElement | Permutation


# --------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """Base class: a group with its elements (finite) or a Haar sampler (continuous)."""

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def finite(self) -> bool:
        return True

    def elements(self) -> tuple[Element, ...]:
        raise NotImplementedError

    def order(self) -> int | None:
        return len(self.elements()) if self.finite else None

    def identity(self) -> Element:
        raise NotImplementedError

    def compose(self, a: Element, b: Element) -> Element:
        raise NotImplementedError

    def inverse(self, a: Element) -> Element:
        raise NotImplementedError

    def contains(self, g: object) -> bool:
        raise NotImplementedError

    def require(self, g: object) -> Element:
        """g itself when it is an element of this group, else an InputError naming it."""
        if not self.contains(g):
            raise InputError(
                "group element", g, f"an element of {self.name}",
                f"take elements from {self.name}.elements()" if self.finite else f"build it with {self.name}.element(...)",
            )
        return g  # type: ignore[return-value]

    def is_exact_on_grid(self, g: Element) -> bool:
        """True when g maps the pixel grid (or the index set) onto itself, so no interpolation is needed."""
        raise NotImplementedError

    def haar_sample(self, n: int, seed: int) -> tuple[Element, ...]:
        """n elements drawn from the normalised Haar measure (uniform on a finite group)."""
        rng = np.random.default_rng(seed)
        els = self.elements()
        return tuple(els[i] for i in rng.integers(0, len(els), n))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class PlaneGroup(Group):
    """C_N (N ≥ 1, flips=False), D_N (flips=True), SO(2) (N=None) or O(2) (N=None, flips=True)."""

    N: int | None = None
    flips: bool = False

    def __post_init__(self) -> None:
        if self.N is not None and (not isinstance(self.N, int) or self.N < 1):
            raise InputError("N", self.N, "a positive integer (or None for SO(2)/O(2))", "write CyclicGroup(8)")

    @property
    def name(self) -> str:
        if self.N is None:
            return "O2" if self.flips else "SO2"
        return f"{'D' if self.flips else 'C'}{self.N}"

    def __repr__(self) -> str:
        return self.name

    @property
    def finite(self) -> bool:
        return self.N is not None

    def element(self, turn: Fraction | float | int, flip: int = 0) -> PlaneElement:
        """The element r_θ f^flip with θ = 2π·turn (turn reduced mod 1)."""
        if flip and not self.flips:
            raise InputError("flip", flip, f"0: {self.name} has no reflections", "use a dihedral group or O(2)")
        if self.N is not None:
            t = Fraction(turn) % 1
            if (t * self.N).denominator != 1:
                raise InputError("turn", turn, f"a multiple of 1/{self.N} (a rotation in {self.name})",
                                 f"use turn=k/{self.N}, e.g. Fraction(3, {self.N})")
        else:
            t = float(turn) % 1.0
        return PlaneElement(self.name, t, int(flip))

    def elements(self) -> tuple[PlaneElement, ...]:
        if self.N is None:
            raise InputError("group", self.name, "a finite group to enumerate", "use haar_sample(n, seed) for SO(2)/O(2)")
        return tuple(PlaneElement(self.name, Fraction(k, self.N), s) for s in ((0, 1) if self.flips else (0,))
                     for k in range(self.N))

    def identity(self) -> PlaneElement:
        return self.element(0)

    def contains(self, g: object) -> bool:
        if not isinstance(g, PlaneElement) or g.group != self.name or g.flip not in ((0, 1) if self.flips else (0,)):
            return False
        if self.N is None:
            return isinstance(g.turn, float) and 0.0 <= g.turn < 1.0
        return isinstance(g.turn, Fraction) and 0 <= g.turn < 1 and (g.turn * self.N).denominator == 1

    def compose(self, a: PlaneElement, b: PlaneElement) -> PlaneElement:
        # r_a f^s · r_b f^t = r_{a + (−1)^s b} f^{s+t}, because f r_b = r_{−b} f
        a, b = self.require(a), self.require(b)
        sign = -1 if a.flip else 1
        return self.element(a.turn + sign * b.turn, (a.flip + b.flip) % 2)

    def inverse(self, a: PlaneElement) -> PlaneElement:
        a = self.require(a)
        return self.element(a.turn if a.flip else -a.turn, a.flip)

    def is_exact_on_grid(self, g: PlaneElement) -> bool:
        # rotations by multiples of 90° and the flip permute the pixels of an odd square grid
        return (Fraction(g.turn) * 4).denominator == 1 if self.N is not None else (
            abs(g.turn * 4 - round(g.turn * 4)) == 0.0)

    def haar_sample(self, n: int, seed: int) -> tuple[PlaneElement, ...]:
        if self.N is not None:
            return super().haar_sample(n, seed)  # type: ignore[return-value]
        rng = np.random.default_rng(seed)
        turns = rng.random(n)
        flips = rng.integers(0, 2, n) if self.flips else np.zeros(n, dtype=int)
        return tuple(self.element(float(t), int(s)) for t, s in zip(turns, flips))

    # -- the action on the plane -------------------------------------------------
    def plane_matrix(self, g: PlaneElement) -> np.ndarray:
        """M(g) = R(θ) F^flip in float64, (X, Y) convention."""
        return _plane_matrix(self, self.require(g)).copy()  # a copy: callers may write into it

    def _plane_matrix(self, g: PlaneElement) -> np.ndarray:
        exact = self.plane_matrix_exact(g) if self.N is not None else None
        if exact is not None:
            return np.array(exact.evalf(30).tolist(), dtype=np.float64)
        c, s = math.cos(g.radians), math.sin(g.radians)
        R = np.array([[c, -s], [s, c]])
        return R @ F_PLANE if g.flip else R

    def plane_matrix_exact(self, g: PlaneElement) -> sp.Matrix:
        """M(g) with exact entries (cos/sin of a rational multiple of π); finite groups only."""
        g = self.require(g)
        if self.N is None:
            raise InputError("group", self.name, "a finite group for exact matrices", "use plane_matrix() (float64)")
        return _exact_plane(Fraction(g.turn), g.flip)

    def lie_algebra(self) -> tuple[np.ndarray, ...]:
        """Generators of the Lie algebra: A = [[0, −1], [1, 0]] (rotations); empty for finite groups."""
        if self.N is not None:
            return ()
        return (np.array([[0.0, -1.0], [1.0, 0.0]]),)

    # -- escnn -------------------------------------------------------------------
    def escnn_gspace(self, maximum_frequency: int = 6) -> Any:
        from escnn import gspaces

        n = -1 if self.N is None else self.N
        if self.flips:
            return gspaces.flipRot2dOnR2(n, maximum_frequency=maximum_frequency)
        return gspaces.rot2dOnR2(n, maximum_frequency=maximum_frequency)

    def to_escnn(self) -> Any:
        from escnn import group as egroup

        if self.N is None:
            return egroup.o2_group() if self.flips else egroup.so2_group()
        return egroup.dihedral_group(self.N) if self.flips else egroup.cyclic_group(self.N)

    def escnn_element(self, g: PlaneElement, escnn_group: Any = None) -> Any:
        g = self.require(g)
        G = escnn_group if escnn_group is not None else self.to_escnn()
        if self.N is not None:
            k = int(Fraction(g.turn) * self.N)
            return G.element((g.flip, k)) if self.flips else G.element(k)
        return G.element((g.flip, g.radians), "radians") if self.flips else G.element(g.radians, "radians")


@functools.lru_cache(maxsize=4096)
def _plane_matrix(group: PlaneGroup, g: PlaneElement) -> np.ndarray:
    # finite groups evaluate the exact (sympy) matrix to 30 digits: milliseconds per element, and a search transforms
    # every element of the group on every call
    return group._plane_matrix(g)


def CyclicGroup(N: int) -> PlaneGroup:
    return PlaneGroup(N, False)


def DihedralGroup(N: int) -> PlaneGroup:
    return PlaneGroup(N, True)


def SO2() -> PlaneGroup:
    return PlaneGroup(None, False)


def O2() -> PlaneGroup:
    return PlaneGroup(None, True)


@functools.lru_cache(maxsize=512)
def _exact_plane(turn: Fraction, flip: int) -> sp.Matrix:
    th = 2 * sp.pi * sp.Rational(turn.numerator, turn.denominator)
    c, s = sp.cos(th), sp.sin(th)
    R = sp.Matrix([[c, -s], [s, c]])
    return R * sp.Matrix([[-1, 0], [0, 1]]) if flip else R


@dataclass(frozen=True)
class SymmetricGroup(Group):
    """S_n acting on n items by permutation (every element acts exactly)."""

    n: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1 or self.n > 8:
            raise InputError("n", self.n, "an integer 1 ≤ n ≤ 8 (n! elements are enumerated in full)",
                             "use a smaller set size for the check; permutation equivariance does not depend on n")

    @property
    def name(self) -> str:
        return f"S{self.n}"

    def __repr__(self) -> str:
        return self.name

    def element(self, perm: Sequence[int]) -> Permutation:
        p = tuple(int(i) for i in perm)
        if sorted(p) != list(range(self.n)):
            raise InputError("permutation", list(perm), f"a rearrangement of 0..{self.n - 1}",
                             f"give each of 0..{self.n - 1} exactly once")
        return Permutation(self.name, p)

    def elements(self) -> tuple[Permutation, ...]:
        return tuple(Permutation(self.name, p) for p in itertools.permutations(range(self.n)))

    def identity(self) -> Permutation:
        return Permutation(self.name, tuple(range(self.n)))

    def contains(self, g: object) -> bool:
        return isinstance(g, Permutation) and g.group == self.name and sorted(g.perm) == list(range(self.n))

    def compose(self, a: Permutation, b: Permutation) -> Permutation:
        a, b = self.require(a), self.require(b)
        return Permutation(self.name, tuple(a.perm[b.perm[i]] for i in range(self.n)))  # (ab)(i) = a(b(i))

    def inverse(self, a: Permutation) -> Permutation:
        a = self.require(a)
        inv = [0] * self.n
        for i, j in enumerate(a.perm):
            inv[j] = i
        return Permutation(self.name, tuple(inv))

    def is_exact_on_grid(self, g: Permutation) -> bool:
        return True

    def matrix(self, g: Permutation) -> np.ndarray:
        """P_σ with P[σ(i), i] = 1, so (P x)_{σ(i)} = x_i."""
        g = self.require(g)
        P = np.zeros((self.n, self.n))
        P[list(g.perm), list(range(self.n))] = 1.0
        return P


# --------------------------------------------------------------------------- representations
@dataclass(frozen=True)
class Representation:
    """A representation ρ: G → GL(size) of one of our groups.

    `matrix(g)` is float64; `exact(g)` a sympy Matrix where the entries are exact
    (finite groups). `inverted=True` is the map g ↦ ρ(g⁻¹): a homomorphism only for
    abelian groups, kept to model the common bug of acting with g⁻¹ where g is meant.
    """

    group: Group
    name: str
    size: int
    _matrix: Callable[[Any], np.ndarray] = field(compare=False, repr=False)
    _exact: Callable[[Any], sp.Matrix] | None = field(default=None, compare=False, repr=False)
    _lie: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False, repr=False)
    inverted: bool = False

    def __repr__(self) -> str:
        return f"{'inv∘' if self.inverted else ''}{self.name}[{self.group.name}, dim {self.size}]"

    def _arg(self, g: Element) -> Element:
        g = self.group.require(g)
        return self.group.inverse(g) if self.inverted else g

    def matrix(self, g: Element) -> np.ndarray:
        return np.asarray(self._matrix(self._arg(g)), dtype=np.float64)

    __call__ = matrix

    def exact(self, g: Element) -> sp.Matrix:
        if self._exact is None:
            raise InputError("representation", self.name, "a representation with exact entries",
                             "exact matrices exist for finite groups only; use matrix(g)")
        return self._exact(self._arg(g))

    def lie(self, A: np.ndarray) -> np.ndarray:
        """dρ(A) of a Lie algebra generator (continuous groups)."""
        if self._lie is None:
            raise InputError("representation", self.name, "a representation of a Lie group with dρ",
                             "only SO(2)/O(2) representations have Lie algebra actions")
        d = self._lie(A)
        return -d if self.inverted else d

    def inverse_of(self) -> "Representation":
        """The map g ↦ ρ(g⁻¹) (a deliberate bug for negative controls)."""
        return Representation(self.group, self.name, self.size, self._matrix, self._exact, self._lie, not self.inverted)


def trivial(group: Group, size: int = 1) -> Representation:
    eye = np.eye(size)
    return Representation(group, "trivial", size, lambda g: eye, lambda g: sp.eye(size), lambda A: np.zeros((size, size)))


def standard(group: PlaneGroup) -> Representation:
    """The defining action on R²."""
    exact = group.plane_matrix_exact if group.finite else None
    return Representation(group, "standard", 2, group.plane_matrix, exact, lambda A: np.asarray(A, dtype=np.float64))


def regular(group: Group) -> Representation:
    """ρ_reg(g) e_h = e_{gh} on the basis indexed by the elements (finite groups)."""
    if not group.finite:
        raise InputError("group", group.name, "a finite group for the regular representation", "use C_N or D_N")
    els = group.elements()
    index = {e: i for i, e in enumerate(els)}

    @functools.lru_cache(maxsize=None)
    def perm(g: Element) -> tuple[int, ...]:
        return tuple(index[group.compose(g, h)] for h in els)

    def mat(g: Element) -> np.ndarray:
        P = np.zeros((len(els), len(els)))
        P[list(perm(g)), list(range(len(els)))] = 1.0
        return P

    return Representation(group, "regular", len(els), mat, lambda g: sp.Matrix(mat(g).astype(int)))


def permutation(group: SymmetricGroup) -> Representation:
    return Representation(group, "permutation", group.n, group.matrix, lambda g: sp.Matrix(group.matrix(g).astype(int)))


_ESCNN_MATRICES: dict[tuple[str, str, Any], np.ndarray] = {}  # escnn names its representations uniquely per group


def field_representation(group: PlaneGroup, field_type: Any) -> Representation:
    """ρ(g) of an escnn FieldType, for each of our elements (checked to be the same group)."""
    G = group.to_escnn()
    if field_type.fibergroup != G:
        raise InputError("field type group", field_type.fibergroup.name, f"{G.name} (the group of the claim)",
                         f"build the FieldType on {group.name}.escnn_gspace()")
    rep = field_type.representation

    def mat(g: PlaneElement) -> np.ndarray:
        if not group.finite:
            return np.asarray(rep(group.escnn_element(g, G)), dtype=np.float64)
        # escnn assembles each matrix through scipy.sparse (ms per call): once per element of a finite group suffices
        key = (G.name, rep.name, g)
        if key not in _ESCNN_MATRICES:
            _ESCNN_MATRICES[key] = np.asarray(rep(group.escnn_element(g, G)), dtype=np.float64)
        return _ESCNN_MATRICES[key].copy()

    def lie(A: np.ndarray, h: float = 1e-4) -> np.ndarray:
        # dρ(A) of the rotation generator by a central difference of order h² (ρ is smooth)
        plus, minus = mat(group.element(h / (2 * math.pi))), mat(group.element(-h / (2 * math.pi)))
        return (plus - minus) / (2 * h)

    return Representation(group, f"escnn:{field_type}", field_type.size, mat, None, None if group.finite else lie)


# --------------------------------------------------------------------------- sanity checks
@dataclass(frozen=True)
class HomomorphismCheck:
    representation: str
    pairs: int
    exact: bool
    max_error: float  # 0.0 for an exact check that passed
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


def check_homomorphism(rep: Representation, n_samples: int = 32, seed: int = 0, tol: float | None = None) -> HomomorphismCheck:
    """ρ(gh) = ρ(g)ρ(h): exactly in sympy for every pair of a finite group, in float64 on Haar samples otherwise."""
    G = rep.group
    failures: list[tuple[str, str]] = []
    if G.finite and rep._exact is not None:
        els = G.elements()
        mats = {g: rep.exact(g) for g in els}
        for g, h in itertools.product(els, els):
            diff = sp.simplify(mats[g] * mats[h] - mats[G.compose(g, h)])
            if any(e != 0 for e in diff):
                failures.append((repr(g), repr(h)))
        return HomomorphismCheck(repr(rep), len(els) ** 2, True, 0.0 if not failures else math.inf, tuple(failures))
    # a continuous group with elements that act exactly (SO(3)'s signed permutations) checks a few of those too
    exact = tuple(getattr(G, "exact_elements", lambda: ())()[:8]) if not G.finite else ()
    els = G.elements() if G.finite else exact + tuple(G.haar_sample(n_samples, seed))
    # float64 products of size-d matrices with entries ≤ 1: error ≤ d·eps per entry (Higham), doubled for ρ(gh)
    tol = tol if tol is not None else 4.0 * rep.size * np.finfo(np.float64).eps
    worst = 0.0
    for g, h in itertools.product(els, els):
        err = float(np.abs(rep(g) @ rep(h) - rep(G.compose(g, h))).max())
        worst = max(worst, err)
        if err > tol:
            failures.append((repr(g), repr(h)))
    return HomomorphismCheck(repr(rep), len(els) ** 2, False, worst, tuple(failures))
