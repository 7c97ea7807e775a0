"""e3nn's fully connected networks inside DeepSets: permutation invariance of a set of 5 points (the project's S5
claim; e3nn's own SO(3) equivariance is not claimed here)."""
from __future__ import annotations

import torch
from torch import nn

from verify import Size, architecture
from verify.declare.actions import SetAction
from verify.declare.groups import SymmetricGroup
from verify.properties.equivariant import Equivariant
from verify_clients import available

N_ITEMS = 5  # the set-sum task's set size
S5 = SymmetricGroup(N_ITEMS)
SIZES = {"quick": Size(config={"width": 32}, steps=600, lr=2e-2, n_train=1024, batch=128),
         "full": Size(config={"width": 64}, steps=3000, lr=3e-3, n_train=4096, batch=256)}

if available("e3nn"):
    from e3nn.nn import FullyConnectedNet

    class E3nnDeepSets(nn.Module):
        """ρ(Σ_i φ(x_i)) with φ, ρ e3nn FullyConnectedNets; `index_term` scales item i's features by a learned vector.

        e3nn's FullyConnectedNet has no biases, so with an odd activation (tanh) the whole network is an odd function
        and cannot fit the task's even part (|x|²): SiLU instead."""

        def __init__(self, width: int = 32, index_term: bool = False) -> None:
            super().__init__()
            act = torch.nn.functional.silu
            self.phi = FullyConnectedNet([2, width, width], act)
            self.rho = FullyConnectedNet([width, width, 1], act)
            self.index = nn.Parameter(0.5 * torch.randn(N_ITEMS, width)) if index_term else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.phi(x)
            if self.index is not None:
                h = h * (1 + self.index)
            return self.rho(h.sum(1))

    architecture("e3nn-deepsets", task="set-sum", sizes=SIZES, reference="e3nn.nn.FullyConnectedNet in DeepSets",
                 claims=[Equivariant(S5, SetAction(S5), SetAction(S5, invariant=True))],
                 description="DeepSets of e3nn FullyConnectedNets: permutation invariant")(E3nnDeepSets)
    architecture("e3nn-deepsets-index", task="set-sum",
                 sizes={k: Size(config={**v.config, "index_term": True}, steps=v.steps, lr=v.lr, n_train=v.n_train,
                                batch=v.batch) for k, v in SIZES.items()},
                 reference="e3nn.nn.FullyConnectedNet in DeepSets, plus an index-dependent scale",
                 claims=[Equivariant(S5, SetAction(S5), SetAction(S5, invariant=True)).falsely(
                     "each item's features are scaled by a learned vector per item index: reordering the set "
                     "changes the output")],
                 description="Negative control: DeepSets of e3nn networks with a per-index scale")(E3nnDeepSets)
