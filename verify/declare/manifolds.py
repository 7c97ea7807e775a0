"""Manifolds as data: Stiefel St(n, k) (O(n) = St(n, n)), SO(n), the sphere S^{n−1} and SPD(n).

Each manifold knows three things, and nothing about models:

* `validate(shape, where)`: the tensor's shape is one the manifold has (an InputError naming the shape, what was
  expected and the fix otherwise: k > n for Stiefel, a non-square SO(n), a matrix for the sphere, ...);
* `reading(T)`: the defect of a tensor, normalised, with a witness (the unit vector that gives a violation away) and
  the parts it is made of;
* `tolerance(dtype, map_units, map_text)`: the round-off allowance of the defect from an error model in the dtype and
  the size, plus the parametrisation's own error where it has one (`map_units`, in units of eps).

The defects (all dimensionless):

* Stiefel / O(n): ‖QᵀQ − I_k‖₂, the *spectral* norm (= max_i |σ_i(Q)² − 1|). QᵀQ − I is formed in the tensor's own
  dtype (that product is part of what is measured); its eigenvalues are taken in float64. The witness is the unit
  eigenvector u of the largest |eigenvalue|: ‖Qu‖² − 1 = ±defect.
* SO(n): max(‖QᵀQ − I‖₂, max(0, −det Q)). A matrix within the orthogonality tolerance δ has |det Q| within
  (1 ± δ)^{n/2} of 1, so det Q < 0 cannot come from round-off: it reads ≈ 1, far beyond any tolerance (a reflection).
  The witness is then the real eigenvector of the eigenvalue nearest −1 (Qv = −v for a reflection).
* Sphere S^{n−1}: |‖x‖₂ − 1|.
* SPD(n): max(‖S − Sᵀ‖_max, max(0, −λ_min(½(S + Sᵀ)))) / ‖S‖₂; the witness is the eigenvector of λ_min.

The error model (u = eps of the dtype): an entry of QᵀQ is an n-long inner product of unit vectors, whose rounding
error is ≤ γ_n ≈ n·u in the worst case (Higham, Accuracy and Stability, Thm 3.1) and ≈ √n·u with high probability
(Higham & Mary 2019, probabilistic rounding error analysis); we take the probabilistic √n·u for the product, add the
parametrisation's own error (properties/on_manifold.py derives it per map: √n for a product of Householder
reflectors, √n·(1 + ‖A‖₂/2) for the Cayley solve with κ(I − A/2) ≤ 1 + ‖A‖₂/2, 2n + √n·‖A‖₂ for the matrix
exponential's polynomial products and squarings; √n for stored numbers) and multiply by the safety factor c = 4:

    tol = c·u·(√n + map units).

The sphere's defect is one norm √(xᵀx), not a Gram matrix: the square root halves the sum's relative rounding, so its
base term is √n/2 (and the normalisation x/‖x‖ adds its own norm's √n/2, verify/derive/parametrisations.py).

Known practice, for comparison: PyTorch's own parametrisation tests accept ‖QᵀQ − I‖_max ≤ 10·n·eps
(torch/nn/utils/parametrizations.py `_is_orthogonal`, atol = 10·n·eps): a worst-case-linear law in n on the
max-entry norm. Ours is on the spectral norm, grows like √n where the map is backward stable, and was calibrated
against measured defects (the report prints tolerance / observed defect for every genuine claim).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from verify.errors import InputError

SAFETY = 4.0  # c: the measured defect / model ratio was ≤ 2.3 over n = 8..64, three maps, four seeds, four scales


def eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


@dataclass(frozen=True)
class ManifoldTolerance:
    value: float
    formula: str

    def __str__(self) -> str:
        return f"{self.value:.3g} ({self.formula})"


@dataclass(frozen=True)
class Reading:
    """The defect of one tensor on one manifold: the normalised value, its parts, the witness that gives it away."""

    value: float  # the defect the tolerance is compared with (ratio = value / tol, det part folded in, see `ratio`)
    parts: dict[str, float] = field(default_factory=dict)  # named components (orthogonality, det, asymmetry, ...)
    witness: list[float] = field(default_factory=list)  # a unit vector (or the norm, for the sphere)
    witness_text: str = ""  # what the witness shows, in words with numbers
    spectrum: list[float] = field(default_factory=list)  # per-direction defects (for plots)


def _sym_eig(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linalg.eigh(M.detach().to(torch.float64).cpu())


@dataclass(frozen=True)
class Manifold:
    """A manifold of tensors: its name, its shape rule, its defect and its tolerance."""

    kind: ClassVar[str] = "manifold"
    latex: ClassVar[str] = ""
    defect_latex: ClassVar[str] = ""

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def size(self) -> int:
        """The length of the inner products the defect is made of (n)."""
        raise NotImplementedError

    def validate(self, shape: tuple[int, ...], where: str) -> None:
        raise NotImplementedError

    def reading(self, T: torch.Tensor) -> Reading:
        raise NotImplementedError

    def statement(self) -> str:
        return self.latex

    # the defect's own rounding, in units of eps, and its words: the Gram product's n-long inner products (√n)
    base_text: ClassVar[str] = "√n: probabilistic rounding of n-long inner products (Higham & Mary 2019)"

    def base_units(self) -> float:
        return math.sqrt(self.size)

    def tolerance(self, dtype: torch.dtype, map_units: float = 0.0, map_text: str = "") -> ManifoldTolerance:
        """c·u·(b + map units): the defect's own probabilistic rounding b (√n for a Gram product) plus the
        parametrisation's own error."""
        u, n, b = eps(dtype), self.size, self.base_units()
        value = SAFETY * u * (b + map_units)
        dt = str(dtype).replace("torch.", "")
        own = f"; m = {map_units:.3g}: {map_text}" if map_units else "; m = 0"
        sym = self.base_text.split(":")[0]
        return ManifoldTolerance(value, f"{SAFETY:g}·eps·({sym} + m) = {SAFETY:g}·{u:.3g}·({b:.3g} + {map_units:.3g}) "
                                        f"[{dt}, n = {n}; {self.base_text}{own}]")

    def __str__(self) -> str:
        return self.name


def _whole(what: str, v: Any, low: int, fix: str) -> int:
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
        raise InputError(what, v, f"a whole number ≥ {low}", fix)
    return int(v)


@dataclass(frozen=True)
class Stiefel(Manifold):
    """St(n, k) = {Q ∈ R^{n×k}: QᵀQ = I_k}, n ≥ k (orthonormal columns); St(n, n) = O(n)."""

    n: int = 0
    k: int = 0
    kind: ClassVar[str] = "stiefel"
    latex: ClassVar[str] = r"Q^\top Q = I_k"
    defect_latex: ClassVar[str] = r"\|Q^\top Q - I_k\|_2\ (Q^\top Q - I \text{ formed in the tensor's dtype})"

    def __post_init__(self) -> None:
        _whole(f"Stiefel(n={self.n!r}, k=...).n", self.n, 1, "write Stiefel(16, 8) for 16×8 matrices with orthonormal columns")
        _whole(f"Stiefel(n, k={self.k!r}).k", self.k, 1, "write Stiefel(16, 8) for 16×8 matrices with orthonormal columns")
        if self.k > self.n:
            raise InputError("Stiefel(n, k)", (self.n, self.k), f"k ≤ n (k = {self.k} orthonormal columns cannot fit in "
                             f"R^{self.n})", f"write Stiefel({self.k}, {self.n}) and claim it of the transposed tensor "
                             "(orthonormal rows), or check the sizes")

    @property
    def name(self) -> str:
        return f"O({self.n})" if self.n == self.k else f"St({self.n}, {self.k})"

    @property
    def size(self) -> int:
        return self.n

    def validate(self, shape: tuple[int, ...], where: str) -> None:
        if tuple(shape) != (self.n, self.k):
            extra = (f"; it is {shape[0]}×{shape[1]}: k > n, so its columns cannot be orthonormal (its rows can: claim "
                     f"Stiefel({shape[1]}, {shape[0]}) of its transpose)" if len(shape) == 2 and shape[1] > shape[0] else "")
            raise InputError(f"shape of {where}", tuple(shape), f"({self.n}, {self.k}) for {self.name}{extra}",
                             f"claim OnManifold({type(self).__name__}(...)) with the tensor's own sizes, or name the right tensor")

    def reading(self, Q: torch.Tensor) -> Reading:
        I = torch.eye(self.k, dtype=Q.dtype, device=Q.device)
        G = Q.detach().T @ Q.detach() - I  # formed in the tensor's dtype: this product is part of the measurement
        lam, vec = _sym_eig(G)
        i = int(lam.abs().argmax())
        d = float(lam.abs().max())
        u = vec[:, i]
        return Reading(value=d, parts={"orthogonality": d}, witness=u.tolist(),
                       witness_text=f"a unit u with ‖Qu‖² − 1 = {float(lam[i]):.3g}",
                       spectrum=lam.abs().tolist())


def Orthogonal(n: int) -> Stiefel:
    """O(n) = St(n, n)."""
    return Stiefel(n, n)


@dataclass(frozen=True)
class SO(Stiefel):
    """SO(n) = {Q ∈ O(n): det Q = +1}."""

    kind: ClassVar[str] = "so"
    latex: ClassVar[str] = r"Q^\top Q = I_n,\ \det Q = +1"
    defect_latex: ClassVar[str] = r"\max(\|Q^\top Q - I\|_2,\ \max(0, -\det Q))"

    def __init__(self, n: int) -> None:
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise InputError("SO(n)", n, "a whole number ≥ 1", "write SO(16) for 16×16 rotations")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "k", n)

    @property
    def name(self) -> str:
        return f"SO({self.n})"

    def validate(self, shape: tuple[int, ...], where: str) -> None:
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InputError(f"shape of {where}", tuple(shape), f"a square ({self.n}, {self.n}) matrix for SO({self.n}) "
                             "(a determinant needs a square matrix)",
                             "claim Stiefel(n, k) of a rectangular tensor, or name the square one")
        super().validate(shape, where)

    def reading(self, Q: torch.Tensor) -> Reading:
        base = super().reading(Q)
        Q64 = Q.detach().to(torch.float64).cpu()
        det = float(torch.linalg.det(Q64))
        det_part = max(0.0, -det)
        parts = dict(base.parts, det=det)
        if det < 0:
            ev, V = torch.linalg.eig(Q64)
            j = int((ev - (-1.0)).abs().argmin())
            v = V[:, j].real
            v = v / v.norm()
            resid = float((Q64 @ v + v).norm())
            return Reading(value=max(base.value, det_part), parts=parts, witness=v.tolist(),
                           witness_text=(f"det Q = {det:.6g} < 0 (orientation reversed): a unit v with ‖Qv + v‖ = "
                                         f"{resid:.2g}, Q reflects v"),
                           spectrum=base.spectrum + [det_part])
        return Reading(value=base.value, parts=parts, witness=base.witness,
                       witness_text=base.witness_text + f"; det Q = {det:.6g}", spectrum=base.spectrum)


@dataclass(frozen=True)
class Sphere(Manifold):
    """S^{n−1} = {x ∈ R^n: ‖x‖₂ = 1}."""

    n: int = 0
    kind: ClassVar[str] = "sphere"
    latex: ClassVar[str] = r"\|x\|_2 = 1"
    defect_latex: ClassVar[str] = r"|\|x\|_2 - 1|"

    def __post_init__(self) -> None:
        _whole("Sphere(n)", self.n, 1, "write Sphere(16) for unit vectors of R^16")

    @property
    def name(self) -> str:
        return f"S^{self.n - 1}"

    @property
    def size(self) -> int:
        return self.n

    # ‖x‖ = √(xᵀx): the square root halves the relative error of the n-long sum of squares (√n·u probabilistic)
    base_text: ClassVar[str] = "√n/2: the norm √(xᵀx), the square root halving the n-long sum's probabilistic rounding"

    def base_units(self) -> float:
        return math.sqrt(self.size) / 2

    def validate(self, shape: tuple[int, ...], where: str) -> None:
        if tuple(shape) != (self.n,):
            raise InputError(f"shape of {where}", tuple(shape), f"a vector of length {self.n} for the sphere in R^{self.n}",
                             "claim Sphere(n) of a 1-D tensor (for unit columns of a matrix claim Stiefel, or name one column)")

    def reading(self, x: torch.Tensor) -> Reading:
        norm = float(torch.linalg.vector_norm(x.detach()).double())  # the norm computed in the tensor's dtype
        d = abs(norm - 1.0)
        return Reading(value=d, parts={"norm": norm}, witness=[norm], witness_text=f"‖x‖₂ = {norm:.9g}", spectrum=[d])


@dataclass(frozen=True)
class SPD(Manifold):
    """SPD(n) = {S ∈ R^{n×n}: S = Sᵀ, xᵀSx > 0 for x ≠ 0}."""

    n: int = 0
    kind: ClassVar[str] = "spd"
    latex: ClassVar[str] = r"S = S^\top,\ x^\top S x > 0\ \forall x \ne 0"
    defect_latex: ClassVar[str] = r"\max(\|S - S^\top\|_{\max},\ \max(0, -\lambda_{\min}))/\|S\|_2"

    def __post_init__(self) -> None:
        _whole("SPD(n)", self.n, 1, "write SPD(16) for 16×16 symmetric positive definite matrices")

    @property
    def name(self) -> str:
        return f"SPD({self.n})"

    @property
    def size(self) -> int:
        return self.n

    def validate(self, shape: tuple[int, ...], where: str) -> None:
        if tuple(shape) != (self.n, self.n):
            raise InputError(f"shape of {where}", tuple(shape), f"a square ({self.n}, {self.n}) matrix for SPD({self.n})",
                             "claim SPD(n) with the tensor's own size, or name the right tensor")

    def reading(self, S: torch.Tensor) -> Reading:
        S = S.detach()
        asym = float((S - S.T).abs().max().double())  # in the tensor's dtype: LLᵀ need not be bitwise symmetric
        S64 = S.to(torch.float64).cpu()
        lam, vec = _sym_eig(0.5 * (S64 + S64.T))
        scale = float(lam.abs().max()) or 1.0  # ‖S‖₂ of the symmetric part; an all-zero S is judged unscaled
        neg = max(0.0, -float(lam[0]))
        d = max(asym, neg) / scale
        return Reading(value=d, parts={"asymmetry": asym / scale, "lambda_min": float(lam[0]), "norm": scale},
                       witness=vec[:, 0].tolist(),
                       witness_text=f"λ_min = {float(lam[0]):.6g} (xᵀSx at its unit eigenvector x), ‖S − Sᵀ‖_max = {asym:.3g}",
                       spectrum=(torch.clamp(-lam, min=0) / scale).tolist())

    def tolerance(self, dtype: torch.dtype, map_units: float = 0.0, map_text: str = "") -> ManifoldTolerance:
        # λ_min of a symmetric matrix is computed with an error ≤ p(n)·u·‖S‖₂ (a backward stable eigensolver, Weyl);
        # we take p(n) = √n + map units as for the inner products above
        return super().tolerance(dtype, map_units, map_text)


def parse(manifold: Any) -> Manifold:
    if isinstance(manifold, Manifold):
        return manifold
    raise InputError("OnManifold(M)", manifold, "a manifold object: Stiefel(n, k), Orthogonal(n), SO(n), Sphere(n), SPD(n)",
                     "write OnManifold(SO(16), tensor='linear.weight') (from verify.declare.manifolds import SO)")
