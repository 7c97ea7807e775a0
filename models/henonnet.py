"""HénonNets (Burby, Tang, Maulik 2020): compositions of Hénon maps H[V, η](x, y) = (y + η, −x + ∇V(y)).

A Hénon layer is the fourth iterate of one Hénon map (H⁴ = id when V = 0, η = 0).
The potential is V(y) = Σ_k a_k σ(W_k·y + b_k), whose gradient Wᵀ(a ⊙ σ'(Wy + b))
the layer computes in closed form.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from verify.models.shears import Composition
from verify.models.sympnets import SYMPLECTIC_FAMILY
from verify.derive.binding import Bound
from verify.declare.registry import Size, architecture
from verify.derive.symbolic import Builder, SymbolicBlock, Vec

REFERENCE = "J. W. Burby, Q. Tang, R. Maulik, Fast neural Poincaré maps for toroidal magnetic fields (2020)"


def dtanh(z: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(z) ** 2


class HenonLayer(nn.Module):
    """H[V, η]⁴ with a one-hidden-layer potential V."""

    depth = 4

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.d = d
        self.W = nn.Parameter(torch.randn(width, d) / d**0.5)
        self.a = nn.Parameter(0.1 * torch.randn(width))
        self.b = nn.Parameter(torch.zeros(width))
        self.eta = nn.Parameter(torch.zeros(d))

    def grad_v(self, y: torch.Tensor) -> torch.Tensor:
        return (self.a * dtanh(y @ self.W.T + self.b)) @ self.W

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        x, y = xy[..., : self.d], xy[..., self.d :]
        for _ in range(4):
            x, y = y + self.eta, -x + self.grad_v(y)
        return torch.cat([x, y], dim=-1)

    def inverse(self, xy: torch.Tensor) -> torch.Tensor:
        x, y = xy[..., : self.d], xy[..., self.d :]
        for _ in range(4):
            x, y = -y + self.grad_v(x - self.eta), x - self.eta
        return torch.cat([x, y], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        """Four iterations of one Hénon map; W, a, b, eta are the module's, σ' is its dtanh."""
        block = henon_block(self.d, self.W.shape[0])
        return [Bound(block, self, functions={"dsigma": dtanh}, label=f"HenonLayer map {k + 1}/4", continues_call=k > 0)
                for k in range(4)]


class HenonNet(Composition):
    """A HénonNet: a composition of Hénon layers, each with its own potential and shift."""

    def __init__(self, dim: int, layers: int = 2, width: int = 16) -> None:
        super().__init__([HenonLayer(dim // 2, width) for _ in range(layers)])


def henon_block(d: int, width: int) -> SymbolicBlock:
    """One Hénon map; the layer is its fourth iterate, covered by the composition lemma."""

    def grad_v(b: Builder, y: Vec) -> Vec:
        W = b.matrix("W", width, d)
        # σ' is kept as an abstract function: the proof holds whatever its derivative σ'' is
        return W.T @ b.act("dsigma", W @ y + b.bias("b", width)).hadamard(b.vector("a", width))

    def forward(b: Builder, xy: Vec) -> Vec:
        x, y = xy[:d], xy[d:]
        return Builder.concat(y + b.bias("eta", d), -x + grad_v(b, y))

    def inverse(b: Builder, xy: Vec) -> Vec:
        x, y = xy[:d], xy[d:]
        y0 = x - b.bias("eta", d)
        return Builder.concat(-y + grad_v(b, y0), y0)

    return SymbolicBlock("Hénon map", 2 * d, forward, inverse, "H[V,η](x, y) = (y + η, −x + Wᵀ(a ⊙ σ'(Wy + b)))")


def henon_blocks(cfg: Mapping[str, Any]) -> list:
    return [henon_block(cfg["dim"] // 2, cfg.get("width", 16))]


architecture(
    "henonnet", claims=SYMPLECTIC_FAMILY, task="pendulum", blocks=henon_blocks, reference=REFERENCE,
    composition="each layer is the 4th iterate of a Hénon map; the network composes layers",
    sizes={
        "quick": Size(config={"dim": 2, "layers": 2, "width": 8}, steps=300, lr=1e-2),
        "full": Size(config={"dim": 2, "layers": 3, "width": 16}, steps=1500, lr=5e-3, n_train=1024),
    },
)(HenonNet)
