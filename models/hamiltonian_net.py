"""A Hamiltonian network: a learned separable H = T(p) + V(q), stepped by Störmer–Verlet (leapfrog).

One step: p ← p − (h/2)∇V(q); q ← q + h∇T(p); p ← p − (h/2)∇V(q). Each sub-step is
the exact flow of a Hamiltonian depending on q or p alone, hence symplectic for any
C² potentials.
"""
from __future__ import annotations

from typing import Any, Mapping

import sympy as sp
import torch
from torch import nn

from verify.models.sympnets import SYMPLECTIC_FAMILY
from verify.derive.binding import Bound
from verify.declare.registry import Size, architecture
from verify.derive.symbolic import Builder, SymbolicBlock, Vec

REFERENCE = "S. Greydanus, M. Dzamba, J. Yosinski, Hamiltonian Neural Networks (2019); Störmer–Verlet: Hairer, Lubich, Wanner, GNI"


class Potential(nn.Module):
    """A scalar MLP potential V(z) = w₃·tanh(W₂ tanh(W₁z + b₁) + b₂) + b₃ with its gradient in closed form.

    The closed-form gradient (hand-written backpropagation) is what the step uses: it is
    several times faster than nested autograd and composes with vmap/jacrev in the check.
    """

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(d, width), nn.Linear(width, width), nn.Linear(width, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(z))))).squeeze(-1)

    def gradient(self, z: torch.Tensor) -> torch.Tensor:
        h1 = torch.tanh(self.l1(z))
        h2 = torch.tanh(self.l2(h1))
        g2 = (1 - h2**2) * self.l3.weight[0]
        g1 = (1 - h1**2) * (g2 @ self.l2.weight)
        return g1 @ self.l1.weight


class HamiltonianNet(nn.Module):
    """Störmer–Verlet on a learned H = T(p) + V(q), `substeps` leapfrog steps of size h/substeps."""

    def __init__(self, dim: int, width: int = 32, h: float = 0.1, substeps: int = 1) -> None:
        super().__init__()
        self.d, self.substeps = dim // 2, substeps
        self.register_buffer("dt", torch.tensor(h / substeps))
        self.T = Potential(self.d, width)
        self.V = Potential(self.d, width)

    @property
    def depth(self) -> int:
        return 3 * self.substeps

    def hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        return self.T(x[..., self.d :]) + self.V(x[..., : self.d])

    def _step(self, q: torch.Tensor, p: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = p - 0.5 * dt * self.V.gradient(q)
        q = q + dt * self.T.gradient(p)
        p = p - 0.5 * dt * self.V.gradient(q)
        return q, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., : self.d], x[..., self.d :]
        for _ in range(self.substeps):
            q, p = self._step(q, p, self.dt)
        return torch.cat([q, p], dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        # Störmer–Verlet is symmetric: its inverse is the same scheme with step −h
        q, p = y[..., : self.d], y[..., self.d :]
        for _ in range(self.substeps):
            q, p = self._step(q, p, -self.dt)
        return torch.cat([q, p], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        """Per step: half kick, drift, half kick. The kick block holds the ½ itself, so both take h = dt.

        V and T are bound to the module's scalar potentials (Potential.forward): the twin
        differentiates them by autograd, while the module steps with its hand-written
        Potential.gradient, so a wrong hand-written gradient shows up as a mismatch.
        """
        kick, drift = verlet_blocks({"dim": 2 * self.d})
        steps = []
        for s in range(self.substeps):
            # one forward call runs every sub-step, so all layers after the first continue that call
            steps += [
                Bound(kick, self, {"h": self.dt}, {"V": self.V}, label=f"step {s + 1} half kick", continues_call=s > 0),
                Bound(drift, self, {"h": self.dt}, {"T": self.T}, label=f"step {s + 1} drift", continues_call=True),
                Bound(kick, self, {"h": self.dt}, {"V": self.V}, label=f"step {s + 1} half kick", continues_call=True),
            ]
        return steps


VERLET_COMPOSITION = "per step: half kick ∘ drift ∘ half kick (Störmer–Verlet), repeated `substeps` times"


def verlet_blocks(cfg: Mapping[str, Any]) -> list:
    d = cfg["dim"] // 2

    def kick(b: Builder, x: Vec, sign: int) -> Vec:
        q, p = x[:d], x[d:]
        h = b.scalar("h")
        return Builder.concat(q, p - b.grad("V", q).scale(h).scale(sign).scale(sp.Rational(1, 2)))

    def drift(b: Builder, x: Vec, sign: int) -> Vec:
        q, p = x[:d], x[d:]
        return Builder.concat(q + b.grad("T", p).scale(b.scalar("h")).scale(sign), p)

    return [
        SymbolicBlock("half kick p ← p − (h/2)∇V(q)", 2 * d, lambda b, x: kick(b, x, 1), lambda b, y: kick(b, y, -1),
                      "V any C² potential (symmetric Hessian), h any step"),
        SymbolicBlock("drift q ← q + h∇T(p)", 2 * d, lambda b, x: drift(b, x, 1), lambda b, y: drift(b, y, -1),
                      "T any C² potential (symmetric Hessian), h any step"),
    ]


architecture(
    "hnn-verlet", claims=SYMPLECTIC_FAMILY, task="pendulum", blocks=verlet_blocks, reference=REFERENCE,
    composition=VERLET_COMPOSITION,
    sizes={
        "quick": Size(config={"dim": 2, "width": 16, "h": 0.1, "substeps": 1}, steps=300, lr=1e-2),
        "full": Size(config={"dim": 2, "width": 32, "h": 0.1, "substeps": 2}, steps=1500, lr=3e-3, n_train=1024),
    },
)(HamiltonianNet)


class HamiltonianNetHH(HamiltonianNet):
    """Störmer–Verlet Hamiltonian network on Hénon–Heiles."""


architecture(
    "hnn-verlet-hh", claims=SYMPLECTIC_FAMILY, task="henon-heiles", blocks=verlet_blocks, reference=REFERENCE,
    composition=VERLET_COMPOSITION,
    sizes={
        "quick": Size(config={"dim": 4, "width": 16, "h": 0.1, "substeps": 1}, steps=300, lr=1e-2),
        "full": Size(config={"dim": 4, "width": 32, "h": 0.1, "substeps": 2}, steps=1500, lr=3e-3, n_train=2048),
    },
)(HamiltonianNetHH)
