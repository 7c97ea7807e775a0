"""Rotations of space: SO(3) and O(3), their real irreducible representations, and their action on vectors and
point clouds.

An element is an orthogonal 3×3 matrix R (det +1 for SO(3); ±1 for O(3)), stored as exact floats. The 48 signed
permutation matrices (the octahedral group, with inversion) have entries 0 and ±1: they act exactly in floating
point, the counterpart of the plane groups' quarter turns, and every check includes them besides Haar draws.

Representations are named by irreps in e3nn's notation ("2x0e + 1x1o + 1x2e"): l = 0 and l = 1 are built here (a 1o
vector transforms by R in (x, y, z) order, which is also e3nn's basis; a 1e pseudovector by det(R)·R); l ≥ 2 is
solved in float64 from e3nn's real spherical harmonics (its basis: a network built with e3nn is checked in the basis
it was built in; e3nn's own `D_from_matrix` is only float32-accurate). Parity: under R with det R = −1 an irrep of parity p picks up the factor p.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from verify.declare.actions import Action, integer_matrix
from verify.declare.groups import Group, Representation
from verify.errors import InputError


@dataclass(frozen=True)
class SpaceElement:
    """R as a row-major tuple of 9 floats, with a short label for reports."""

    group: str
    entries: tuple[float, ...]
    label: str = ""

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.entries, dtype=np.float64).reshape(3, 3)

    @property
    def det(self) -> int:
        return 1 if np.linalg.det(self.matrix) > 0 else -1

    def __repr__(self) -> str:
        if self.label:
            return f"{self.group}[{self.label}]"
        R = self.matrix * self.det
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1) / 2))))
        return f"{self.group}[{'inversion·' if self.det < 0 else ''}rotation {angle:.4g}°]"

    __str__ = __repr__


def _element(group: str, R: np.ndarray, label: str = "") -> SpaceElement:
    return SpaceElement(group, tuple(float(v) for v in np.asarray(R, dtype=np.float64).reshape(-1)), label)


@dataclass(frozen=True)
class SpaceGroup(Group):
    """SO(3) (inversion=False) or O(3) (inversion=True)."""

    inversion: bool = False

    @property
    def name(self) -> str:
        return "O(3)" if self.inversion else "SO(3)"

    def __repr__(self) -> str:
        return self.name

    @property
    def finite(self) -> bool:
        return False

    def elements(self) -> tuple[SpaceElement, ...]:
        raise InputError("group", self.name, "a finite group to enumerate", "use exact_elements() and haar_sample()")

    def element(self, R: Sequence[Sequence[float]] | np.ndarray, label: str = "") -> SpaceElement:
        R = np.asarray(R, dtype=np.float64)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-9):
            raise InputError("rotation matrix", R.tolist(), "an orthogonal 3×3 matrix", "build it with scipy's Rotation "
                             "or take one from haar_sample()")
        if np.linalg.det(R) < 0 and not self.inversion:
            raise InputError("rotation matrix", R.tolist(), "det R = +1 for SO(3)", "use O3() for reflections")
        return _element(self.name, R, label)

    def identity(self) -> SpaceElement:
        return _element(self.name, np.eye(3), "identity")

    def compose(self, a: SpaceElement, b: SpaceElement) -> SpaceElement:
        return _element(self.name, a.matrix @ b.matrix)

    def inverse(self, a: SpaceElement) -> SpaceElement:
        return _element(self.name, a.matrix.T)

    def contains(self, g: object) -> bool:
        if not isinstance(g, SpaceElement) or g.group != self.name:
            return False
        R = g.matrix
        return bool(np.allclose(R @ R.T, np.eye(3), atol=1e-9)) and (self.inversion or g.det > 0)

    def is_exact_on_grid(self, g: SpaceElement) -> bool:
        """True for signed permutation matrices: they move coordinates without rounding."""
        return all(v in (0.0, 1.0, -1.0) for v in g.entries)

    def exact_elements(self) -> tuple[SpaceElement, ...]:
        """The signed permutation matrices of the group: 24 rotations (48 with inversion), identity first."""
        out = []
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1.0, -1.0), repeat=3):
                R = np.zeros((3, 3))
                for i, (j, s) in enumerate(zip(perm, signs)):
                    R[i, j] = s
                if np.linalg.det(R) > 0 or self.inversion:
                    label = "identity" if np.array_equal(R, np.eye(3)) else \
                        "[" + "; ".join(" ".join(f"{v:+.0f}" for v in row) for row in R) + "]"
                    out.append(_element(self.name, R, label))
        out.sort(key=lambda e: e.label != "identity")
        return tuple(out)

    def haar_sample(self, n: int, seed: int) -> tuple[SpaceElement, ...]:
        """Uniform rotations (normalised Gaussian quaternions); for O(3), times the inversion with probability ½."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
            R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                          [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                          [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            if self.inversion and rng.random() < 0.5:
                R = -R
            out.append(_element(self.name, R))
        return tuple(out)

    def lie_algebra(self) -> tuple[np.ndarray, ...]:
        """The generators L_x, L_y, L_z of so(3): (L_a)_{bc} = −ε_{abc}."""
        gens = []
        for a in range(3):
            L = np.zeros((3, 3))
            b, c = (a + 1) % 3, (a + 2) % 3
            L[b, c], L[c, b] = -1.0, 1.0
            gens.append(L)
        return tuple(gens)


def SO3() -> SpaceGroup:
    return SpaceGroup(inversion=False)


def O3() -> SpaceGroup:
    return SpaceGroup(inversion=True)


# --------------------------------------------------------------------------- irreps
_IRREP = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+)\s*([eo])\s*$")


def parse_irreps(text: str) -> tuple[tuple[int, int, int], ...]:
    """"2x0e + 1x1o" -> ((2, 0, +1), (1, 1, −1)): multiplicity, degree l, parity."""
    out = []
    for part in str(text).split("+"):
        m = _IRREP.match(part)
        if not m:
            raise InputError("irreps", text, "terms like '2x0e + 1x1o + 1x2e' (multiplicity x degree parity)",
                             "write e3nn's notation: e = even, o = odd under inversion")
        out.append((int(m.group(1) or 1), int(m.group(2)), 1 if m.group(3) == "e" else -1))
    if not out or any(mul == 0 for mul, _, _ in out):
        raise InputError("irreps", text, "at least one irrep with multiplicity ≥ 1", "e.g. '1x1o' for a vector")
    return tuple(out)


_SH_POINTS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _wigner(l: int, R: np.ndarray) -> np.ndarray:
    """Real Wigner D of degree l ≥ 2 of a proper rotation, in e3nn's basis, accurate to float64.

    e3nn's own `D_from_matrix` goes through Euler angles and stored float32 generators (about 1e-6 off in float64),
    which would put a float32 floor under the float64 oracle. Instead D is solved from e3nn's real spherical
    harmonics, explicit polynomials exact to float64: Y(R x) = D(R) Y(x) on 4l+2 generic points, by least squares.
    """
    try:
        from e3nn import o3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("irreps", f"l={l}", "e3nn installed for degrees l ≥ 2", "pip install e3nn --no-deps") from exc
    if l not in _SH_POINTS:
        X = np.random.default_rng(12345 + l).standard_normal((4 * l + 2, 3))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Y = o3.spherical_harmonics(l, torch.as_tensor(X), normalize=True, normalization="component").numpy()
        _SH_POINTS[l] = (X, np.linalg.pinv(Y))
    X, Y_pinv = _SH_POINTS[l]
    Y_rot = o3.spherical_harmonics(l, torch.as_tensor(X @ R.T), normalize=True, normalization="component").numpy()
    return (Y_pinv @ Y_rot).T


def irreps(group: SpaceGroup, text: str) -> Representation:
    """The representation of SO(3)/O(3) on features laid out as the irreps `text` (e3nn's layout and basis)."""
    terms = parse_irreps(text)
    size = sum(mul * (2 * l + 1) for mul, l, _ in terms)
    # parity is kept in the layout for SO(3) too; it only acts under det R = −1, which SO(3) never has
    name = " + ".join(f"{m}x{l}{'e' if p > 0 else 'o'}" for m, l, p in terms)

    def mat(g: SpaceElement) -> np.ndarray:
        R, det = g.matrix, g.det
        proper = R * det
        k = 0 if det > 0 else 1
        blocks = []
        for mul, l, p in terms:
            if l == 0:
                D = np.ones((1, 1))
            elif l == 1:
                D = proper
            else:
                D = _wigner(l, proper)
            D = D * (p ** k)
            blocks += [D] * mul
        out = np.zeros((size, size))
        i = 0
        for D in blocks:
            n = D.shape[0]
            out[i:i + n, i:i + n] = D
            i += n
        return out

    def lie(A: np.ndarray, h: float = 1e-5) -> np.ndarray:
        # dρ(A) by a central difference of order h² along exp(tA) (ρ is smooth; parity plays no part near identity)
        from scipy.linalg import expm

        plus = mat(_element(group.name, expm(h * np.asarray(A))))
        minus = mat(_element(group.name, expm(-h * np.asarray(A))))
        return (plus - minus) / (2 * h)

    return Representation(group, f"irreps({name})", size, mat, None, lie)


# --------------------------------------------------------------------------- the action on features
@dataclass(frozen=True)
class FeatureAction(Action):
    """ρ(g) on the last axis of (B, F) features, or of (B, N, F) point clouds (the same ρ(g) on every point).

    `points`: None for one feature vector per sample, or N for clouds of N points.
    """

    rep: Representation
    points: int | None = None

    def __repr__(self) -> str:
        return f"features({self.rep.name}{'' if self.points is None else f', {self.points} points'})"

    @property
    def group(self) -> Group:
        return self.rep.group

    def check_shape(self, t: torch.Tensor, what: str) -> None:
        F = self.rep.size
        want = (2 if self.points is None else 3)
        if t.dim() != want or t.shape[-1] != F or (self.points is not None and t.shape[1] != self.points):
            shape = f"(B, {F})" if self.points is None else f"(B, {self.points}, {F})"
            raise InputError(f"{what} shape", tuple(t.shape), f"{shape}: features laid out as {self.rep.name}",
                             "declare the irreps the model reads and writes (e.g. irreps(SO3(), '1x1o') for one "
                             "vector), and points=N for point clouds")

    def exact(self, g: object) -> bool:
        """Always True: ρ(g) is a matrix product on the features, with no interpolation, so every element (a signed
        permutation or a Haar draw) is held to round-off. (A Haar draw's ρ(g) has rounded float64 entries and
        rounds when applied: `rounds` says so, and the oracle draws that round-off.)"""
        return True

    def rounds(self, g: object) -> bool:
        return not integer_matrix(self.rep.matrix(g))

    def apply(self, t: torch.Tensor, g: object) -> torch.Tensor:
        D = torch.as_tensor(self.rep.matrix(g), dtype=torch.float64, device=t.device)
        return t.to(torch.float64) @ D.T

    def apply_many(self, t: torch.Tensor, elements: Sequence[object]) -> torch.Tensor:
        Ds = torch.stack([torch.as_tensor(self.rep.matrix(g), dtype=torch.float64) for g in elements]).to(t.device)
        # (G·B, ..., F), element-major, as the Action protocol stacks them: every element on every sample
        return torch.einsum("gij,...j->g...i", Ds, t.to(torch.float64)).flatten(0, 1)

    def apply_paired(self, t: torch.Tensor, elements: Sequence[object]) -> torch.Tensor:
        """(B, ..., F): sample b acted on by elements[b]."""
        Ds = torch.stack([torch.as_tensor(self.rep.matrix(g), dtype=torch.float64) for g in elements]).to(t.device)
        return torch.einsum("bij,b...j->b...i", Ds, t.to(torch.float64))


def homomorphism_error(rep: Representation, n: int = 16, seed: int = 0) -> float:
    """max |ρ(gh) − ρ(g)ρ(h)| over exact and Haar-drawn pairs (float64): a check of the representation itself."""
    from verify.declare.groups import check_homomorphism

    return check_homomorphism(rep, n_samples=n, seed=seed).max_error
