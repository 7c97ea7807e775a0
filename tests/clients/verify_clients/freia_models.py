"""FrEIA (Framework for Easily Invertible Architectures): its modules return (z, log_jac_det), so a user wraps them
into maps x ↦ z with an inverse. The log-det is accumulated in place, which torch.func.vmap rejects: the verifier
falls back to classic autograd and says so in the evidence."""
from __future__ import annotations

import torch
from torch import nn

from verify import Size, architecture
from verify.properties import Invertible, VolumePreserving
from verify_clients import available

SIZES = {"quick": Size(config={"blocks": 2, "width": 16}, steps=60, lr=5e-3),
         "full": Size(config={"blocks": 4, "width": 32}, steps=600, lr=2e-3)}


def _subnet(width: int):
    def make(c_in: int, c_out: int) -> nn.Module:
        net = nn.Sequential(nn.Linear(c_in, width), nn.Tanh(), nn.Linear(width, c_out))
        nn.init.zeros_(net[-1].weight)  # FrEIA's advice: start at the identity map
        nn.init.zeros_(net[-1].bias)
        return net

    return make


class FreiaFlow(nn.Module):
    """A FrEIA SequenceINN of `blocks` coupling blocks on R², as a map: forward(x) = z, inverse(z) = x."""

    block: str = ""

    def __init__(self, blocks: int = 2, width: int = 16) -> None:
        super().__init__()
        import FrEIA.framework as Ff
        import FrEIA.modules as Fm

        self.depth = blocks  # coupling layers: what the verifier's round-off model counts (not every nn.Linear)
        self.inn = Ff.SequenceINN(2)
        for _ in range(blocks):
            self.inn.append(getattr(Fm, self.block), subnet_constructor=_subnet(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, _log_jac_det = self.inn(x)
        return z

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        x, _ = self.inn(z, rev=True)
        return x


if available("FrEIA"):

    @architecture("freia-glow", task="pendulum", sizes=SIZES,
                  reference="FrEIA GLOWCouplingBlock (affine coupling of both halves, soft-clamped scales)",
                  claims=[Invertible(),
                          VolumePreserving().falsely("affine coupling with learned scales: det J = exp(Σ s(x)) ≠ 1")])
    class FreiaGLOW(FreiaFlow):
        """FrEIA GLOWCouplingBlock flow: affine coupling, invertible but not volume preserving."""

        block = "GLOWCouplingBlock"

    @architecture("freia-nice", task="pendulum", sizes=SIZES,
                  reference="FrEIA NICECouplingBlock (additive coupling, Dinh et al. 2015)",
                  claims=[Invertible(), VolumePreserving()])
    class FreiaNICE(FreiaFlow):
        """FrEIA NICECouplingBlock flow: additive coupling, volume preserving."""

        block = "NICECouplingBlock"
