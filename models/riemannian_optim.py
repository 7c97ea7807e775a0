"""Our own Riemannian optimiser on the Stiefel manifold St(n, k) = {W ∈ R^{n×k}: WᵀW = I_k}, written from the maths.

One step of `StiefelSGD` on a parameter W ∈ St(n, k) with Euclidean gradient G = ∇L(W) (embedded metric):

* Riemannian gradient: the orthogonal projection of G onto the tangent space T_W St = {Z: WᵀZ + ZᵀW = 0},
  P_W(G) = G − W sym(WᵀG), sym(A) = (A + Aᵀ)/2;
* heavy-ball momentum, transported by projection: m ← β·P_W(m) + P_W(G) (the previous momentum lives in the tangent
  space of the previous iterate; projecting it onto T_W is the standard vector transport of an embedded manifold);
* retraction of the step Y = W − η m back onto St(n, k):
  - "qr": the Q factor of the thin QR decomposition Y = QR with the sign fix diag(R) > 0 (then Q = Y R⁻¹ with RᵀR =
    YᵀY, the unique such R: what verify/derive/parametrisations.py proves lands on St);
  - "polar": the orthogonal polar factor Y (YᵀY)^{-1/2} = UVᵀ from the thin SVD Y = UΣVᵀ;
  - "column_normalise": each column divided by its norm, Y·diag(1/‖y_j‖): unit columns but NOT orthogonal ones. A
    wrong retraction, kept for the negative control (it is not on St);
  - "none": no retraction at all, W ← Y (the Euclidean step in the tangent direction: leaves St at first order in η²).

The retractions are module-level functions so that the parametrisation modules below (used by the parametrised
Stiefel layers of models/stiefel_retraction_layers.py) run the very same code: their declared `manifold_form` is bound
to that code by the symbolic stage's twin (verify/derive/parametrisations.py). The optimiser's own stored weight is
not a parametrisation's output, so no symbolic form covers it: its OnManifold claim is judged on every iterate.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from verify.derive.parametrisations import Parametrisation
from verify.errors import InputError


def qr_retraction(Y: torch.Tensor) -> torch.Tensor:
    """Q of the thin QR Y = QR, with the column signs fixed so that diag(R) > 0 (the unique Q = Y R⁻¹, RᵀR = YᵀY)."""
    Q, R = torch.linalg.qr(Y, mode="reduced")
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    # sign(0) would zero a column: a rank-deficient Y keeps the column as Householder QR made it (sign +1)
    s = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return Q * s.unsqueeze(-2)


def polar_retraction(Y: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor UVᵀ of Y = UΣVᵀ (thin SVD): Y(YᵀY)^{-1/2} for Y of full column rank."""
    U, _, Vh = torch.linalg.svd(Y, full_matrices=False)
    return U @ Vh


def column_normalise(Y: torch.Tensor) -> torch.Tensor:
    """Y·diag(1/‖y_j‖): unit columns, not orthonormal ones. A WRONG Stiefel retraction (negative controls only)."""
    return Y / torch.linalg.vector_norm(Y, dim=-2, keepdim=True)


RETRACTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "qr": qr_retraction, "polar": polar_retraction, "column_normalise": column_normalise, "none": None}


def project_tangent(W: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """P_W(Z) = Z − W sym(WᵀZ): the orthogonal projection onto T_W St(n, k) in the embedded (Euclidean) metric."""
    A = W.mT @ Z
    return Z - W @ ((A + A.mT) / 2)


class StiefelSGD(torch.optim.Optimizer):
    """Riemannian SGD with heavy-ball momentum on St(n, k) for every parameter it is given (each an n×k matrix, n ≥ k).

    lr: the step η; momentum: β ∈ [0, 1); retraction: one of RETRACTIONS ("qr" by default). Per-parameter state:
    `momentum_buffer`, the transported momentum (a tangent vector at the current iterate)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, momentum: float = 0.9, retraction: str = "qr") -> None:
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise InputError("StiefelSGD(lr=...)", lr, "a positive step size", "write lr=1e-2")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise InputError("StiefelSGD(momentum=...)", momentum, "a number in [0, 1)", "write momentum=0.9 (or 0)")
        if retraction not in RETRACTIONS:
            raise InputError("StiefelSGD(retraction=...)", retraction, f"one of {sorted(RETRACTIONS)}",
                             "write retraction='qr' or 'polar'")
        super().__init__(params, {"lr": float(lr), "momentum": float(momentum), "retraction": retraction})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2 or p.shape[0] < p.shape[1]:
                    raise InputError("StiefelSGD parameter", tuple(p.shape), "an n×k matrix with n ≥ k (a point of "
                                     "St(n, k): orthonormal columns)", "give StiefelSGD only the Stiefel-constrained "
                                     "weights (an nn.Linear(k, n) weight is n×k); transpose a wide matrix")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            retract = RETRACTIONS[group["retraction"]]
            for W in group["params"]:
                if W.grad is None:
                    continue
                rgrad = project_tangent(W, W.grad)
                state = self.state[W]
                m = state.get("momentum_buffer")
                m = rgrad if m is None or beta == 0 else beta * project_tangent(W, m) + rgrad
                state["momentum_buffer"] = m.clone()
                Y = W - lr * m
                W.copy_(Y if retract is None else retract(Y))
        return loss


# --------------------------------------------------------------------------- the same retractions as parametrisations
class QRRetraction(nn.Module):
    """W = qr_retraction(X): the Q factor (diag R > 0) of the raw n×k parameter X."""

    manifold_form = Parametrisation("qr")

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return qr_retraction(X)


class PolarRetraction(nn.Module):
    """W = polar_retraction(X) = X(XᵀX)^{-1/2} of the raw n×k parameter X."""

    manifold_form = Parametrisation("polar")

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return polar_retraction(X)


class ColumnNormalise(nn.Module):
    """W = X·diag(1/‖x_j‖): a WRONG Stiefel parametrisation (unit columns, not orthogonal ones)."""

    manifold_form = Parametrisation("column_normalise")

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return column_normalise(X)
