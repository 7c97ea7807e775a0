"""Stiefel layers parametrised by the QR and polar retractions of our optimiser, so that their symbolic forms are bound
to the code that runs; and a control parametrised by column normalisation (not a retraction onto St).

W = R(X) with X the raw 16×8 parameter of `nn.Linear(8, 16)` (torch's `parametrize`), R one of the functions
`qr_retraction`, `polar_retraction`, `column_normalise` of models/riemannian_optim.py, the very functions `StiefelSGD`
calls at every step. Each parametrisation module declares its form (`manifold_form = Parametrisation("qr")`, ...): the
symbolic stage (verify/derive/parametrisations.py) binds the form (its float64 twin, Q = X R⁻¹ with R = chol(XᵀX), or
X(XᵀX)^{-1/2} by eigh, from the module's own raw X, reproduces the module's float64 output) and proves it lands on
St(16, 8) for every X of full column rank (a lemma whose conclusion is an exact identity of symbolic matrices of any
size and whose premises are exact obligations at n = 8). What this binds is the retraction function; that StiefelSGD
calls it at every step is not proved: its own layers (models/stiefel_sgd_layers.py) are judged on every iterate.

Trained by Adam (300 steps at the quick size) on linear-stiefel-16x8 from X = the fixed Stiefel start plus a seeded
perturbation (so X is not already on St and the retraction does work from the first forward).

Control: `stiefel-column-normalised`, W = X·diag(1/‖x_j‖), claimed on St(16, 8) falsely: refuted symbolically with an
exact rational instance (off-diagonal entries of QᵀQ are x_iᵀx_j/(‖x_i‖‖x_j‖) ≠ 0).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from verify import Size, architecture
from verify.declare.manifolds import Stiefel
from verify.models.riemannian_layers import stiefel_start
from verify.models.riemannian_optim import ColumnNormalise, PolarRetraction, QRRetraction
from verify.properties import OnManifold

N, K = 16, 8
TASK = "linear-stiefel-16x8"


def _sizes() -> dict[str, Size]:
    return {"quick": Size(steps=300, lr=2e-2, n_train=512, batch=128),
            "full": Size(steps=600, lr=2e-2, n_train=1024, batch=128)}


class _RetractedLinear(nn.Module):
    """x ↦ R(X) x with R the parametrisation class attribute and X a raw 16×8 parameter."""

    parametrisation: type[nn.Module] = QRRetraction

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(K, N, bias=False)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            self.linear.weight.copy_(stiefel_start(torch.float32) + 0.1 * torch.randn(N, K, generator=g))
        parametrize.register_parametrization(self.linear, "weight", self.parametrisation())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


_CLAIM = OnManifold(Stiefel(N, K), "linear.weight")


@architecture("stiefel-qr-parametrised", task=TASK, sizes=_sizes(), claims=[_CLAIM],
              reference="models/riemannian_optim.py qr_retraction (torch.linalg.qr, diag R > 0) as a torch parametrisation")
class StiefelQRParametrised(_RetractedLinear):
    """x ↦ Q x, Q = qr_retraction(X) ∈ St(16, 8): the Q factor of the raw X with diag R > 0."""

    parametrisation = QRRetraction


@architecture("stiefel-polar-parametrised", task=TASK, sizes=_sizes(), claims=[_CLAIM],
              reference="models/riemannian_optim.py polar_retraction (UVᵀ of torch.linalg.svd) as a torch parametrisation")
class StiefelPolarParametrised(_RetractedLinear):
    """x ↦ Q x, Q = polar_retraction(X) = X(XᵀX)^{-1/2} ∈ St(16, 8)."""

    parametrisation = PolarRetraction


@architecture("stiefel-column-normalised", task=TASK, sizes=_sizes(),
              reference="models/riemannian_optim.py column_normalise as a torch parametrisation (a wrong retraction)",
              claims=[_CLAIM.falsely("X·diag(1/‖x_j‖) has unit columns, but they are not orthogonal: (QᵀQ)_ij = "
                                     "x_iᵀx_j/(‖x_i‖‖x_j‖) ≠ 0 for i ≠ j")])
class StiefelColumnNormalised(_RetractedLinear):
    """x ↦ Q x, Q = X·diag(1/‖x_j‖): declared on St(16, 8), but only its columns are normalised."""

    parametrisation = ColumnNormalise
