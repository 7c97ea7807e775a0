"""Layers whose weight is constrained to a manifold, trained on linear-map tasks generated here, and negative controls.

Genuine: torch's `parametrizations.orthogonal` with matrix_exp, cayley and householder (16×16, started at the
identity so the stored base is exactly I and det Q = +1), a geotorch Stiefel-constrained 16×8 layer (geotorch's public
`geotorch.orthogonal`), and an SPD weight S = LLᵀ + εI (our own parametrisation, declared by its `manifold_form`).

Controls (each claim refuted, with the value that gives it away):
* a weight initialised orthogonal and trained by plain Adam, no retraction: it leaves O(n);
* the Cayley map of a *symmetric* matrix: (I − S/2)⁻¹(I + S/2) is symmetric, not orthogonal (an exact instance);
* SO(n) claimed of torch's orthogonal whose stored base is a reflection: det Q = −1 for every raw X;
* SO(n) claimed of a product of three Householder reflections: det = (−1)³;
* torch's householder orthogonal trained by AdamW with weight decay: the decay moves the raw diagonal X_ii = −1, which
  torch reads as int(X_ii) (a column sign), to −0.99…, so int() gives 0 and a column of Q is zeroed after one step.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from verify import Size, architecture
from verify.declare.manifolds import SO, SPD, Orthogonal, Stiefel
from verify.declare.registry import register_task
from verify.derive.parametrisations import Parametrisation
from verify.properties import OnManifold

N = 16
STEPS = 300


# --------------------------------------------------------------------------- tasks
def _orthogonal(n: int, g: torch.Generator, det: int = 1) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R))
    if (torch.linalg.det(Q) > 0) != (det > 0):
        Q[:, 0] = -Q[:, 0]
    return Q


def _reflection(v: torch.Tensor) -> torch.Tensor:
    return torch.eye(v.shape[0], dtype=torch.float64) - 2 * torch.outer(v, v) / (v @ v)


def target(kind: str, n_out: int, n_in: int) -> torch.Tensor:
    """The fixed linear map a task asks for (its own generator: the same map for every data seed)."""
    g = torch.Generator().manual_seed(20_261_129)
    if kind == "rotation":
        return _orthogonal(n_out, g, +1)
    if kind == "reflection":
        return _orthogonal(n_out, g, -1)
    if kind == "stiefel":
        return _orthogonal(n_out, g)[:, :n_in]
    if kind == "three-reflections":
        V = torch.randn(3, n_out, generator=g, dtype=torch.float64)
        return _reflection(V[0]) @ _reflection(V[1]) @ _reflection(V[2])
    if kind == "spd":
        B = torch.randn(n_out, n_out, generator=g, dtype=torch.float64)
        return B @ B.T / n_out + 0.5 * torch.eye(n_out, dtype=torch.float64)
    if kind == "symmetric-cayley":
        B = 0.3 * torch.randn(n_out, n_out, generator=g, dtype=torch.float64) / n_out ** 0.5
        S = B + B.T
        I = torch.eye(n_out, dtype=torch.float64)
        return torch.linalg.solve(I - S / 2, I + S / 2)
    raise ValueError(kind)


@dataclass(frozen=True)
class LinearMapTask:
    """x ~ N(0, I_{n_in}), y = W* x with W* a fixed matrix of the kind the layer is meant to learn."""

    name: str
    kind: str
    n_in: int = N
    n_out: int = N
    learned_below: float = 0.05  # MSE per coordinate; the identity map scores ≈ 2 on a rotation target
    description: str = ""
    noise: float = 0.0  # label noise σ (the MSE floor is σ²)

    @property
    def dim(self) -> int:
        return self.n_in

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.n_in, generator=g, dtype=torch.float64)
        y = x @ target(self.kind, self.n_out, self.n_in).T
        if self.noise:
            y = y + self.noise * torch.randn(y.shape, generator=g, dtype=torch.float64)
        return x, y


for _kind, _desc in (("rotation", "a fixed rotation W* ∈ SO(16)"), ("reflection", "a fixed W* ∈ O(16) with det −1"),
                     ("three-reflections", "a product of three fixed Householder reflections (det −1)"),
                     ("spd", "a fixed SPD matrix BBᵀ/16 + ½I"),
                     ("symmetric-cayley", "the Cayley image of a fixed small symmetric matrix (symmetric, not orthogonal)")):
    register_task(LinearMapTask(name=f"linear-{_kind}-16", kind=_kind, description=f"y = W* x, {_desc}"))
# noisy labels: an unconstrained fit lands off O(n) by the noise's least-squares error (~σ·√(n/N)), as real data do; an
# exact orthogonal target would let plain Adam converge back onto O(n) (1e-4 at 300 steps, 7.5e-7 at 600)
register_task(LinearMapTask(name="linear-rotation-16-noisy", kind="rotation", noise=0.1,
                            description="y = W* x + 0.1·ε, W* ∈ SO(16), ε ~ N(0, I) (MSE floor 0.01)"))
# the AdamW control cannot fit (its zeroed columns are the point): the same rotation task, held only to beat the
# identity map (MSE ≈ 2 on a rotation target), so that the control is judged by its refutation rather than its fit
register_task(LinearMapTask(name="linear-rotation-16-fit-not-required", kind="rotation", learned_below=2.0,
                            description="y = W* x, W* ∈ SO(16); bound: the identity map's MSE (the control loses columns)"))
register_task(LinearMapTask(name="linear-stiefel-16x8", kind="stiefel", n_in=8, n_out=N,
                            description="y = W* x with W* ∈ St(16, 8) (orthonormal columns)"))


def _size(steps: int = STEPS, lr: float = 2e-2, **kw: object) -> dict[str, Size]:
    return {"quick": Size(steps=steps, lr=lr, n_train=512, batch=128, **kw),  # type: ignore[arg-type]
            "full": Size(steps=2 * steps, lr=lr, n_train=1024, batch=128, **kw)}  # type: ignore[arg-type]


# --------------------------------------------------------------------------- genuine layers
class _OrthogonalLinear(nn.Module):
    """x ↦ Q x with Q = torch's parametrizations.orthogonal(map) of a 16×16 weight started at the identity (the
    stored base is then exactly I) or at diag(−1, 1, …, 1) (`reflect`: a base that is a reflection)."""

    orthogonal_map = "matrix_exp"
    reflect = False

    def __init__(self, n: int = N) -> None:
        super().__init__()
        self.linear = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            start = torch.eye(n)
            if self.reflect:
                start[0, 0] = -1.0
            self.linear.weight.copy_(start)
        parametrizations.orthogonal(self.linear, orthogonal_map=self.orthogonal_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


_O_AND_SO = [OnManifold(Orthogonal(N), "linear.weight"), OnManifold(SO(N), "linear.weight")]


@architecture("orthogonal-matrix-exp", task="linear-rotation-16", sizes=_size(), claims=_O_AND_SO,
              reference="torch.nn.utils.parametrizations.orthogonal(orthogonal_map='matrix_exp')")
class OrthogonalMatrixExp(_OrthogonalLinear):
    """A 16×16 weight Q = exp(A), A = tril(X) − tril(X)ᵀ (torch's orthogonal parametrisation, matrix exponential)."""

    orthogonal_map = "matrix_exp"


@architecture("orthogonal-cayley", task="linear-rotation-16", sizes=_size(lr=5e-2), claims=_O_AND_SO,
              reference="torch.nn.utils.parametrizations.orthogonal(orthogonal_map='cayley')")
class OrthogonalCayley(_OrthogonalLinear):
    """A 16×16 weight Q = (I − A/2)⁻¹(I + A/2), A skew (torch's orthogonal parametrisation, Cayley map)."""

    orthogonal_map = "cayley"


@architecture("orthogonal-householder", task="linear-rotation-16", sizes=_size(), claims=_O_AND_SO,
              reference="torch.nn.utils.parametrizations.orthogonal(orthogonal_map='householder')")
class OrthogonalHouseholder(_OrthogonalLinear):
    """A 16×16 weight Q = H_1⋯H_16·D, a product of Householder reflectors (torch's orthogonal parametrisation)."""

    orthogonal_map = "householder"


@architecture("geotorch-stiefel", task="linear-stiefel-16x8", sizes=_size(),
              claims=[OnManifold(Stiefel(N, 8), "linear.weight")],
              reference="geotorch.orthogonal (geotorch.Stiefel, triv='expm')")
class GeotorchStiefel(nn.Module):
    """x ↦ Q x with Q ∈ St(16, 8) (orthonormal columns), constrained by geotorch.orthogonal on nn.Linear(8, 16)."""

    def __init__(self) -> None:
        super().__init__()
        import geotorch

        self.linear = nn.Linear(8, N, bias=False)
        geotorch.orthogonal(self.linear, "weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class LowerCholesky(nn.Module):
    """S = LLᵀ + εI with L = tril(X): symmetric positive definite for every raw X (ε > 0)."""

    manifold_form = Parametrisation("llt", eps_attr="eps")

    def __init__(self, eps: float = 1e-2) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        L = X.tril()
        return L @ L.T + self.eps * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)


@architecture("spd-cholesky", task="linear-spd-16", sizes=_size(), claims=[OnManifold(SPD(N), "linear.weight")],
              reference="S = LLᵀ + εI (a Cholesky-factor parametrisation)")
class SPDLinear(nn.Module):
    """x ↦ S x with S = LLᵀ + εI symmetric positive definite (our own parametrisation, declared by manifold_form)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(N, N, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(N) * 0.8)
        parametrize.register_parametrization(self.linear, "weight", LowerCholesky(1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


# --------------------------------------------------------------------------- negative controls
@architecture("orthogonal-adam-drift", task="linear-rotation-16-noisy", sizes=_size(),
              claims=[OnManifold(Orthogonal(N), "linear.weight").falsely(
                  "a plain nn.Linear weight started orthogonal and trained by Adam on noisy data: no retraction, so "
                  "its steps leave O(n)")])
class AdamDrift(nn.Module):
    """x ↦ W x, W a plain parameter started at a random orthogonal matrix and trained by plain Adam."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(N, N, bias=False)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            self.linear.weight.copy_(_orthogonal(N, g).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class SymmetricCayley(nn.Module):
    """(I − A/2)⁻¹(I + A/2) with A = X + Xᵀ SYMMETRIC: the Cayley map of the wrong kind of matrix."""

    manifold_form = Parametrisation("cayley", generator="symmetric", alpha=Fraction(1, 2))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        A = X + X.T
        I = torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
        return torch.linalg.solve(I - A / 2, I + A / 2)


@architecture("cayley-symmetric", task="linear-symmetric-cayley-16", sizes=_size(),
              claims=[OnManifold(Orthogonal(N), "linear.weight").falsely(
                  "the Cayley map of a symmetric matrix is symmetric, not orthogonal")])
class CayleySymmetricLinear(nn.Module):
    """x ↦ Q x with Q = Cayley(X + Xᵀ): declared orthogonal, but the generator is symmetric."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(N, N, bias=False)
        with torch.no_grad():
            self.linear.weight.mul_(0.05)
        parametrize.register_parametrization(self.linear, "weight", SymmetricCayley())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@architecture("orthogonal-reflection-base", task="linear-reflection-16", sizes=_size(),
              claims=[OnManifold(Orthogonal(N), "linear.weight"),
                      OnManifold(SO(N), "linear.weight").falsely(
                          "torch's orthogonal stores the starting weight as its base B and returns B·exp(A): a start "
                          "with det −1 (here diag(−1, 1, …, 1)) keeps det Q = −1 for every raw parameter")])
class OrthogonalReflectionBase(_OrthogonalLinear):
    """torch's orthogonal(matrix_exp) started at diag(−1, 1, …, 1): in O(16), never in SO(16)."""

    orthogonal_map = "matrix_exp"
    reflect = True


class Reflections(nn.Module):
    """Q = H(v_1)·H(v_2)·H(v_3), H(v) = I − 2vvᵀ/vᵀv, the rows of the raw parameter being the v_i."""

    manifold_form = Parametrisation("reflections")

    def forward(self, V: torch.Tensor) -> torch.Tensor:
        n = V.shape[1]
        Q = torch.eye(n, dtype=V.dtype, device=V.device)
        for v in V:
            Q = Q - 2 * torch.outer(Q @ v, v) / (v @ v)
        return Q


class _ReflectionWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.V = nn.Parameter(torch.randn(3, N, generator=g))
        parametrize.register_parametrization(self, "V", Reflections(), unsafe=True)  # 3×16 raw → 16×16 Q


@architecture("householder-three-reflections", task="linear-three-reflections-16", sizes=_size(),
              claims=[OnManifold(Orthogonal(N), "layer.V"),
                      OnManifold(SO(N), "layer.V").falsely("a product of three reflections has det (−1)³ = −1")])
class ThreeReflections(nn.Module):
    """x ↦ Q x with Q a product of three Householder reflections: orthogonal, det −1."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = _ReflectionWeight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.layer.V.T


@architecture("orthogonal-householder-adamw", task="linear-rotation-16-fit-not-required",
              sizes=_size(optimizer="torch.optim.AdamW", optimizer_options={"weight_decay": 1e-2}),
              claims=[OnManifold(Orthogonal(N), "linear.weight").falsely(
                  "torch's householder orthogonal reads the column signs as int(X_ii) of the raw diagonal (−1 at "
                  "the start); AdamW's decoupled weight decay moves X_ii to −0.99…, which int() truncates to 0: a "
                  "column of Q is zeroed")])
class OrthogonalHouseholderAdamW(_OrthogonalLinear):
    """torch's orthogonal(householder) trained by AdamW(weight_decay=1e-2)."""

    orthogonal_map = "householder"
