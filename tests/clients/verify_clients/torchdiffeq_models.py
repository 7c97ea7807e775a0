"""torchdiffeq neural ODEs: one call of odeint with the fixed-step method "rk4", which torchdiffeq implements as
the 3/8 rule (rk_common.rk4_alt_step_func), so the architectures declare scheme="three-eighths". odeint writes its
solution into a preallocated tensor in place, which torch.func.vmap rejects: the verifier falls back to classic
autograd and says so in the evidence."""
from __future__ import annotations

import torch
from torch import nn

from verify import Size, architecture
from verify.properties import StableStep, Symplectic
from verify_clients import available

REFERENCE = "torchdiffeq.odeint(method='rk4', step_size=h) (the 3/8 rule)"


class DissipativeField(nn.Module):
    """f(t, x) = A x + U tanh(V x + c), A = (B − Bᵀ) − diag(softplus(d)): a learned field with a dissipative linear part."""

    def __init__(self, dim: int = 2, width: int = 8) -> None:
        super().__init__()
        self.B = nn.Parameter(0.3 * torch.randn(dim, dim))
        self.d = nn.Parameter(torch.full((dim,), -2.0))
        self.U = nn.Parameter(0.05 * torch.randn(dim, width))
        self.V = nn.Parameter(torch.randn(width, dim) / dim**0.5)
        self.c = nn.Parameter(torch.zeros(width))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        A = self.B - self.B.T - torch.diag(nn.functional.softplus(self.d))
        return x @ A.T + torch.tanh(x @ self.V.T + self.c) @ self.U.T


class SeparableHamiltonianField(nn.Module):
    """dq/dt = ∂T/∂p, dp/dt = −∂V/∂q for T(p) = aᵀ log cosh(Kp + b) + p²/2, V(q) = αᵀ log cosh(Lq + β), gradients in
    closed form (so the field needs no autograd inside)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.K = nn.Parameter(0.5 * torch.randn(width, 1))
        self.b = nn.Parameter(torch.zeros(width))
        self.a = nn.Parameter(0.1 * torch.randn(width))
        self.L = nn.Parameter(0.5 * torch.randn(width, 1))
        self.beta = nn.Parameter(torch.zeros(width))
        self.alpha = nn.Parameter(0.5 * torch.rand(width))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., :1], x[..., 1:]
        dT = p + (self.a * torch.tanh(p @ self.K.T + self.b)) @ self.K
        dV = (self.alpha * torch.tanh(q @ self.L.T + self.beta)) @ self.L
        return torch.cat([dT, -dV], dim=-1)


class NeuralODE(nn.Module):
    """x ↦ odeint(f, x, [0, steps·h], method='rk4', step_size=h)[-1]."""

    scheme = "three-eighths"  # what torchdiffeq's "rk4" is

    def __init__(self, field: nn.Module, h: float, steps: int) -> None:
        super().__init__()
        self.field = field
        self.steps = steps
        self.register_buffer("h", torch.tensor(h))
        self.register_buffer("t", torch.tensor([0.0, h * steps]))

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        return self.field(self.t[0], x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchdiffeq import odeint

        return odeint(self.field, x, self.t, method="rk4", options={"step_size": float(self.h)})[-1]


if available("torchdiffeq"):

    @architecture("torchdiffeq-node", task="damped-oscillator", scheme="three-eighths", reference=REFERENCE,
                  sizes={"quick": Size(config={"width": 8}, steps=60, lr=2e-2),
                         "full": Size(config={"width": 16}, steps=600, lr=1e-2)},
                  claims=[StableStep()])
    class TorchdiffeqNODE(NeuralODE):
        """A neural ODE with a dissipative learned field, two steps of h = 0.25: |R(hλ)| ≤ 1 for the 3/8 rule."""

        def __init__(self, width: int = 8) -> None:
            super().__init__(DissipativeField(2, width), h=0.25, steps=2)

    @architecture("torchdiffeq-hnn", task="pendulum", scheme="three-eighths", reference=REFERENCE,
                  sizes={"quick": Size(config={"width": 8}, steps=60, lr=1e-2),
                         "full": Size(config={"width": 16}, steps=600, lr=5e-3)},
                  claims=[Symplectic().falsely("the 3/8 rule is not a symplectic scheme: b_i a_ij + b_j a_ji − "
                                               "b_i b_j ≠ 0, so even an exact Hamiltonian field gives a map that is "
                                               "not symplectic (the defect is O(h⁵), below float32 resolution)")])
    class TorchdiffeqHNN(NeuralODE):
        """A Hamiltonian neural ODE (separable H, gradients in closed form), one torchdiffeq 'rk4' step of h = 0.1."""

        def __init__(self, width: int = 8) -> None:
            super().__init__(SeparableHamiltonianField(width), h=0.1, steps=1)
