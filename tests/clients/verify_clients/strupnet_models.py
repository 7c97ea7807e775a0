"""strupnet (Christian Offen's SympNets and VolNets): its modules take the step `dt` as a second argument, so a
user wraps them into maps x ↦ f(x). Importing strupnet switches torch's default dtype to float64 (strupnet/snn.py):
these architectures are declared, built, trained and checked in float64, every other one keeps float32."""
from __future__ import annotations

import torch
from torch import nn

from verify import Size, architecture
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify_clients import available

QUICK = {"quick": Size(config={"layers": 4, "width": 8}, steps=60, lr=1e-2),
         "full": Size(config={"layers": 8, "width": 16}, steps=600, lr=5e-3)}

if available("strupnet"):
    import strupnet

    @architecture("strupnet-sympnet", task="pendulum", sizes=QUICK,
                  reference="strupnet.SympNet (method R: ridge-function symplectic shears)",
                  claims=[Symplectic(), VolumePreserving(), Invertible()])
    class StrupnetSympNet(nn.Module):
        """strupnet's SympNet as one step of size dt: forward(x) = net(x, dt); inverse runs the shears backwards."""

        def __init__(self, layers: int = 4, width: int = 8, dt: float = 0.1) -> None:
            super().__init__()
            self.net = strupnet.SympNet(dim=1, layers=layers, width=width, method="R")
            self.dt = dt

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x, self.dt)

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            return self.net(y, -self.dt, reverse=True)

    @architecture("strupnet-volnet", task="henon-heiles", sizes={k: Size(config={"layers": 2, "width": 4}, steps=v.steps,
                                                                        lr=v.lr) for k, v in QUICK.items()},
                  reference="strupnet.VolNet (compositions of planar symplectic flows on coordinate pairs)",
                  claims=[VolumePreserving(),
                          Symplectic().falsely("VolNet's planar flows act on the pairs (x_i, x_i+1), (q1, q2) among "
                                               "them, which are not canonical pairs: volume is kept, Ω is not")])
    class StrupnetVolNet(nn.Module):
        """strupnet's VolNet on Hénon–Heiles (4-D) as one step of size dt."""

        def __init__(self, layers: int = 2, width: int = 4, dt: float = 0.1) -> None:
            super().__init__()
            self.net = strupnet.VolNet(dim=4, layers=layers, width=width)
            self.dt = dt

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x, self.dt)
