"""Networks that declare the scheme they discretise; their claims are derived from it.

* Hamiltonian nets on a learned H = T(p) + V(q) stepped by a catalogued scheme: a
  splitting or composition of exact kick/drift flows (symplectic by the scheme's
  structure) or an explicit Runge–Kutta tableau (RK4: not symplectic, M ≠ 0).
* ODE-ResNets x ← Φ_h(x) for dx/dt = f(x), weight-tied (one f for every step), whose
  step h must lie in the scheme's stability region for the spectrum of ∂f/∂x: the
  stability function R(z) comes exactly from the tableau, the eigenvalues from the
  trained weights.

Splitting convention: operator 0 is the potential kick p ← p − a·h·∇V(q), operator 1
the kinetic drift q ← q + a·h·∇T(p); `strang` is then velocity Verlet.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.linalg import expm
from torch import nn

from verify.models.hamiltonian_net import Potential
from verify.models.tasks import HamiltonianTask
from verify.properties import StableStep, Symplectic
from verify.errors import InputError
from verify.declare.registry import Size, architecture, register_task
from verify.schemes.stepping import scheme_plan  # noqa: F401  (the flattened plan a module steps by; re-exported)


def rk_step(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h: torch.Tensor | float, A: list, b: list) -> torch.Tensor:
    """One explicit RK step: the module's own code (the engine's binding compares it with verify.schemes.stepping)."""
    ks: list[torch.Tensor] = []
    for i in range(len(b)):
        xi = x
        for j in range(i):
            if A[i][j]:
                xi = xi + h * A[i][j] * ks[j]
        ks.append(f(xi))
    return x + h * sum(bi * k for bi, k in zip(b, ks) if bi)


class SchemeHamiltonianNet(nn.Module):
    """Learned H = T(p) + V(q), one step of size h of the named scheme."""

    def __init__(self, dim: int, width: int = 16, h: float = 0.1, scheme: str = "strang") -> None:
        super().__init__()
        self.d, self.scheme = dim // 2, scheme
        self.kind, self.plan = scheme_plan(scheme)
        self.register_buffer("h", torch.tensor(h))
        self.T, self.V = Potential(self.d, width), Potential(self.d, width)

    @property
    def depth(self) -> int:
        return len(self.plan) if self.kind == "split" else 2 * len(self.plan[1])

    def hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        """H(q, p) = T(p) + V(q), one scalar per row: the field below is (∂H/∂p, −∂H/∂q) in closed form."""
        return self.T(x[..., self.d :]) + self.V(x[..., : self.d])

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., : self.d], x[..., self.d :]
        return torch.cat([self.T.gradient(p), -self.V.gradient(q)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rk":
            return rk_step(self.vector_field, x, self.h, *self.plan)
        q, p = x[..., : self.d], x[..., self.d :]
        for op, a in self.plan:
            if op == 0:
                p = p - a * self.h * self.V.gradient(q)
            else:
                q = q + a * self.h * self.T.gradient(p)
        return torch.cat([q, p], dim=-1)


REFERENCE_SYMP = "Hairer, Lubich, Wanner, Geometric Numerical Integration, Thm VI.4.3 (symplectic RK), II.4/V.3 (splitting, composition)"

architecture(
    "hnn-yoshida4", claims=[Symplectic()], task="pendulum", scheme="yoshida4-strang", reference=REFERENCE_SYMP,
    composition="one step of the Yoshida 4th-order composition of Strang splittings (kick–drift–kick)",
    description="Hamiltonian net on a learned separable H stepped by Yoshida's 4th-order composition; "
                "symplecticity is derived from the scheme.",
    sizes={"quick": Size(config={"dim": 2, "width": 16, "h": 0.1, "scheme": "yoshida4-strang"}, steps=300, lr=1e-2),
           "full": Size(config={"dim": 2, "width": 32, "h": 0.1, "scheme": "yoshida4-strang"}, steps=1500, lr=3e-3, n_train=1024)},
)(SchemeHamiltonianNet)


class RK4HamiltonianNet(SchemeHamiltonianNet):
    """The same learned Hamiltonian stepped by classical RK4 (not symplectic)."""


architecture(
    "hnn-rk4", task="pendulum", scheme="rk4", reference=REFERENCE_SYMP,
    claims=[Symplectic().falsely("RK4 violates b_i a_ij + b_j a_ji − b_i b_j = 0, so it is not symplectic on Hamiltonian systems")],
    composition="one classical RK4 step of the learned Hamiltonian vector field",
    description="Negative control: the Hamiltonian net stepped by RK4 claims symplecticity.",
    sizes={"quick": Size(config={"dim": 2, "width": 16, "h": 0.1, "scheme": "rk4"}, steps=300, lr=1e-2),
           "full": Size(config={"dim": 2, "width": 32, "h": 0.1, "scheme": "rk4"}, steps=1500, lr=3e-3, n_train=1024)},
)(RK4HamiltonianNet)


class ODEResNet(nn.Module):
    """Weight-tied ODE-ResNet: `steps` steps of size h of an explicit scheme for dx/dt = f(x).

    f(x) = A x (+ U tanh(Vx + c) when `width` > 0), with A = (B − Bᵀ) − diag(softplus(d))
    (dissipative) or A = B − Bᵀ (skew, energy conserving) when `skew` is set.
    """

    def __init__(self, dim: int = 2, steps: int = 10, h: float = 0.05, scheme: str = "forward-euler",
                 skew: bool = False, width: int = 0) -> None:
        super().__init__()
        self.scheme, self.steps, self.skew = scheme, steps, skew
        kind, self.plan = scheme_plan(scheme)
        if kind != "rk":
            raise InputError("scheme", scheme, "an explicit Runge–Kutta tableau", "use forward-euler, heun, rk4, ...")
        self.register_buffer("h", torch.tensor(h))
        self.B = nn.Parameter(0.3 * torch.randn(dim, dim))
        self.d = nn.Parameter(torch.full((dim,), -2.0))
        self.width = width
        if width:
            self.U = nn.Parameter(0.05 * torch.randn(dim, width))
            self.Vw = nn.Parameter(torch.randn(width, dim) / dim**0.5)
            self.c = nn.Parameter(torch.zeros(width))

    @property
    def depth(self) -> int:
        return self.steps * len(self.plan[1])

    def linear_part(self) -> torch.Tensor:
        A = self.B - self.B.T
        return A if self.skew else A - torch.diag(nn.functional.softplus(self.d))

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.linear_part().T
        if self.width:
            out = out + torch.tanh(x @ self.Vw.T + self.c) @ self.U.T
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = rk_step(self.vector_field, x, self.h, *self.plan)
        return x


class LinearFlowTask:
    """dx/dt = W x; the flow map over one step Δ is exp(ΔW), exactly (scipy.linalg.expm)."""

    def __init__(self, name: str, W: list[list[float]], h: float, low: tuple, high: tuple, description: str) -> None:
        self.name, self.W, self.h, self.dim = name, np.array(W), h, len(W)
        self.low, self.high, self.x0, self.description = low, high, tuple([1.0] + [0.0] * (len(W) - 1)), description

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        x = np.array(self.low) + (np.array(self.high) - np.array(self.low)) * rng.random((n, self.dim))
        return torch.from_numpy(x), torch.from_numpy(x @ expm(self.h * self.W).T)


register_task(LinearFlowTask(
    "damped-oscillator", [[-0.1, 1.0], [-1.0, -0.1]], 0.5, (-1.0, -1.0), (1.0, 1.0),
    "dx/dt = [[−0.1, 1], [−1, −0.1]] x, flow over Δ = 0.5 by the matrix exponential",
))
register_task(HamiltonianTask(
    name="mass-spring", dim=2, h=0.5, potential=lambda q: 0.5 * (q**2).sum(-1), force=lambda q: -q,
    low=(-1.0, -1.0), high=(1.0, 1.0), x0=(1.0, 0.0),
    description="H = (q² + p²)/2, step Δ = 0.5",
))

REFERENCE_STAB = "Hairer, Wanner, Solving ODEs II, IV.2 (stability functions); Haber & Ruthotto 2017 (stable ODE-ResNets)"

architecture(
    "ode-resnet-euler", claims=[StableStep()], task="damped-oscillator", scheme="forward-euler", reference=REFERENCE_STAB,
    composition="10 weight-tied forward-Euler steps of size h = 0.05 of a learned dissipative field with a tanh term",
    description="ODE-ResNet read as forward Euler; h must lie in {|1 + z| ≤ 1} for the spectrum of ∂f/∂x at every input.",
    sizes={"quick": Size(config={"dim": 2, "steps": 10, "h": 0.05, "scheme": "forward-euler", "width": 8}, steps=300, lr=2e-2),
           "full": Size(config={"dim": 2, "steps": 10, "h": 0.05, "scheme": "forward-euler", "width": 16}, steps=1500, lr=1e-2, n_train=1024)},
)(ODEResNet)


class RK4ODEResNet(ODEResNet):
    """Linear skew ODE-ResNet stepped by RK4 on the mass-spring flow: |hλ| must stay below 2√2."""


architecture(
    "ode-resnet-rk4", claims=[StableStep()], task="mass-spring", scheme="rk4", reference=REFERENCE_STAB,
    composition="5 weight-tied RK4 steps of size h = 0.1 of a learned skew linear field",
    description="ODE-ResNet read as RK4 on an energy-conserving (skew) field: stable because h|λ| < 2√2, "
                "RK4's exact imaginary stability interval.",
    sizes={"quick": Size(config={"dim": 2, "steps": 5, "h": 0.1, "scheme": "rk4", "skew": True}, steps=300, lr=2e-2),
           "full": Size(config={"dim": 2, "steps": 5, "h": 0.1, "scheme": "rk4", "skew": True}, steps=1500, lr=1e-2, n_train=1024)},
)(RK4ODEResNet)


class EulerSkewODEResNet(ODEResNet):
    """Linear skew ODE-ResNet stepped by forward Euler: unstable for every h > 0."""


architecture(
    "ode-resnet-euler-undamped", task="mass-spring", scheme="forward-euler", reference=REFERENCE_STAB,
    claims=[StableStep().falsely("forward Euler's stability region |1 + z| ≤ 1 meets the imaginary axis only at 0, "
                                 "and a skew field has purely imaginary eigenvalues")],
    composition="5 weight-tied forward-Euler steps of size h = 0.1 of a learned skew linear field",
    description="Negative control: forward Euler on an energy-conserving field claims a stable step.",
    sizes={"quick": Size(config={"dim": 2, "steps": 5, "h": 0.1, "scheme": "forward-euler", "skew": True}, steps=300, lr=2e-2),
           "full": Size(config={"dim": 2, "steps": 5, "h": 0.1, "scheme": "forward-euler", "skew": True}, steps=1500, lr=1e-2, n_train=1024)},
)(EulerSkewODEResNet)
