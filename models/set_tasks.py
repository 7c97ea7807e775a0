"""Set and graph tasks generated here: a permutation-invariant set regression and node-degree regression."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verify.declare.registry import register_task

N_ITEMS = 5


@dataclass(frozen=True)
class SetSumTask:
    name: str = "set-sum"
    description: str = "sets of 5 points in R², target mean_i |x_i|² − max_i x_i[0] (permutation invariant)"
    learned_below: float = 0.1  # MSE; the target's variance is ≈ 0.6

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, N_ITEMS, 2, generator=g, dtype=torch.float64)
        y = (x**2).sum(2).mean(1) - x[:, :, 0].amax(1)
        return x, y[:, None]


@dataclass(frozen=True)
class NodeDegreeTask:
    name: str = "graph-degree"
    description: str = "random graphs on 5 nodes (edge probability ½), input [A, 1], target the degree of each node"
    learned_below: float = 0.05  # MSE; the degree's variance is 1

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        upper = (torch.rand(n, N_ITEMS, N_ITEMS, generator=g) < 0.5).triu(1)
        A = (upper | upper.transpose(1, 2)).to(torch.float64)
        x = torch.cat([A, torch.ones(n, N_ITEMS, 1, dtype=torch.float64)], dim=-1)
        return x, A.sum(-1, keepdim=True)


SET_SUM = register_task(SetSumTask())
GRAPH_DEGREE = register_task(NodeDegreeTask())
