"""geotorch: a linear map whose weight is parametrised on SO(2). The weight is orthogonal to the precision it is
computed in (float32); in the float64 oracle it is off by ~1e-7, which the parameters' storage precision explains:
not a structural violation."""
from __future__ import annotations

import torch
from torch import nn

from verify import Size, architecture
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify_clients import available

if available("geotorch"):
    import geotorch
    from torch.nn.utils import parametrize

    @architecture("geotorch-so2", task="mass-spring", reference="geotorch.SO (Cayley trivialisation)",
                  sizes={"quick": Size(config={"dim": 2}, steps=100, lr=5e-2),
                         "full": Size(config={"dim": 2}, steps=600, lr=1e-2)},
                  claims=[Symplectic(), VolumePreserving(), Invertible()])
    class GeotorchRotation(nn.Module):
        """x ↦ W x + b with W ∈ SO(2) (geotorch): a rotation, so symplectic and volume preserving in the plane; the
        inverse is Wᵀ(y − b)."""

        def __init__(self, dim: int = 2) -> None:
            super().__init__()
            self.linear = nn.Linear(dim, dim)
            so = geotorch.SO((dim, dim), triv="cayley")
            with torch.no_grad():  # start on the manifold (a random nn.Linear weight is not in SO(n))
                self.linear.weight.copy_(so.sample())
            parametrize.register_parametrization(self.linear, "weight", so)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            return (y - self.linear.bias) @ self.linear.weight
