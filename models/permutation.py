"""Permutation-equivariant networks: DeepSets (invariant) and a message-passing GNN (equivariant), plus a control."""
from __future__ import annotations

import torch
from torch import nn

from verify.models.set_tasks import N_ITEMS
from verify.properties.equivariant import Equivariant
from verify.declare.actions import SetAction
from verify.declare.groups import SymmetricGroup
from verify.declare.registry import Size, architecture

S = SymmetricGroup(N_ITEMS)


class DeepSets(nn.Module):
    """ρ(Σ_i φ(x_i)) (Zaheer et al. 2017): invariant by construction (the sum ignores order)."""

    def __init__(self, features: int = 2, width: int = 32) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(features, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh())
        self.rho = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rho(self.phi(x).sum(1))


class MessagePassingGNN(nn.Module):
    """h ← h + MLP([h, A h]) per layer on input [A, X]; equivariant because A h commutes with P (PAPᵀ Ph = P A h)."""

    def __init__(self, n: int = N_ITEMS, features: int = 1, width: int = 16, layers: int = 2, index_term: bool = False) -> None:
        super().__init__()
        self.n = n
        self.embed = nn.Linear(features, width)
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(2 * width, width), nn.Tanh(), nn.Linear(width, width)) for _ in range(layers))
        self.out = nn.Linear(width, 1)
        # the control's bug: a learned term per node *index*, which a permutation does not move
        self.index = nn.Parameter(0.5 * torch.randn(n, width)) if index_term else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, X = x[..., :self.n], x[..., self.n:]
        h = self.embed(X)
        if self.index is not None:
            h = h + self.index
        for mlp in self.mlps:
            h = h + mlp(torch.cat([h, A @ h], dim=-1))
        return self.out(h)


SIZES = {"quick": Size(steps=300, lr=1e-2, n_train=1024, batch=128), "full": Size(steps=3000, lr=3e-3, n_train=4096, batch=256)}

architecture(
    "deepsets-sum", task="set-sum", reference="M. Zaheer et al., Deep Sets, NeurIPS 2017",
    claims=[Equivariant(S, SetAction(S), SetAction(S, invariant=True))],
    description="DeepSets on sets of 5 points: permutation-invariant regression; all 120 permutations are checked.",
    sizes={k: Size(config={"features": 2, "width": 32}, steps=v.steps, lr=v.lr, n_train=v.n_train, batch=v.batch) for k, v in SIZES.items()},
)(DeepSets)

architecture(
    "gnn-degree", task="graph-degree", reference="J. Gilmer et al., Neural Message Passing for Quantum Chemistry, ICML 2017",
    claims=[Equivariant(S, SetAction(S, graph=True), SetAction(S))],
    description="Message-passing GNN predicting node degrees: permutation equivariant (A → PAPᵀ, X → PX, output → P·output).",
    sizes={k: Size(config={"width": 16}, steps=v.steps, lr=v.lr, n_train=v.n_train, batch=v.batch) for k, v in SIZES.items()},
)(MessagePassingGNN)

architecture(
    "gnn-node-index", task="graph-degree",
    claims=[Equivariant(S, SetAction(S, graph=True), SetAction(S)).falsely(
        "a learned embedding per node index is added to every node's state: renumbering the nodes changes the output")],
    description="Negative control: the GNN plus a node-index-dependent term.",
    sizes={k: Size(config={"width": 16, "index_term": True}, steps=v.steps, lr=v.lr, n_train=v.n_train, batch=v.batch) for k, v in SIZES.items()},
)(MessagePassingGNN)
