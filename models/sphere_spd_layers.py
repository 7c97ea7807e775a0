"""Every-iterate claims on the sphere and on SPD matrices: geotorch's public constraints, our own sphere layer, a control.

* `geotorch-sphere`: a direction v ∈ S^15 (a 1-D parameter of 16 numbers), `geotorch.sphere(module, "direction")`
  (geotorch's exponential-map sphere), x ↦ vᵀx on `linear-unit-vector-16` (y = u*ᵀx, u* a fixed unit vector);
* `geotorch-spd`: `geotorch.positive_definite(nn.Linear(16, 16), "weight")` (S = Q diag(softplus(λ)) Qᵀ, Q by expm) on
  `linear-spd-16`;
* `sphere-normalised`: our own sphere layer, v = x/‖x‖ by a parametrisation that declares its form
  (`Parametrisation("normalise")`): proved symbolically (‖x/‖x‖‖ = 1, bound to the module) and measured on every iterate;
* control `sphere-adam-drift`: a plain 1-D parameter started at a unit vector and trained by Adam: no retraction, so it
  leaves the sphere with its first step.

Every claim is `OnManifold(..., every_iterate=True)`: each of the 301 iterates (300 Adam steps at the quick size) must
lie on the manifold within the round-off tolerance. geotorch's constraints have no known symbolic form here (the
verifier recognises geotorch's SO/Stiefel only): they are judged numerically, on every iterate.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from verify import Size, architecture
from verify.declare.manifolds import SPD, Sphere
from verify.declare.registry import register_task
from verify.derive.parametrisations import Parametrisation
from verify.properties import OnManifold

N = 16
STEPS = 300


def unit_target(n: int = N) -> torch.Tensor:
    """The fixed unit vector u* of the task (its own generator: the same for every data seed)."""
    u = torch.randn(n, generator=torch.Generator().manual_seed(20_261_130), dtype=torch.float64)
    return u / u.norm()


@dataclass(frozen=True)
class UnitVectorTask:
    """x ~ N(0, I_16), y = u*ᵀx (one output) with u* a fixed unit vector: a direction on the sphere to learn."""

    name: str = "linear-unit-vector-16"
    dim: int = N
    learned_below: float = 0.05  # MSE; the zero map scores ‖u*‖² = 1
    description: str = "y = u*ᵀx with u* ∈ S^15 a fixed unit vector"

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return x, (x @ unit_target(self.dim)).unsqueeze(-1)


register_task(UnitVectorTask())


def _sizes(lr: float = 2e-2) -> dict[str, Size]:
    return {"quick": Size(steps=STEPS, lr=lr, n_train=512, batch=128),
            "full": Size(steps=2 * STEPS, lr=lr, n_train=1024, batch=128)}


def _start(n: int = N) -> torch.Tensor:
    """A fixed unit vector (float32), not the target."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return (v / v.norm()).float()


class _Direction(nn.Module):
    """x ↦ vᵀx with v = self.direction, a 1-D tensor of 16 numbers (constrained by the subclasses)."""

    def __init__(self) -> None:
        super().__init__()
        self.direction = nn.Parameter(_start())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.direction.unsqueeze(-1)


_ON_SPHERE = OnManifold(Sphere(N), "direction", every_iterate=True)


@architecture("geotorch-sphere", task="linear-unit-vector-16", sizes=_sizes(), claims=[_ON_SPHERE],
              reference="geotorch.sphere (geotorch.Sphere: the exponential map of the sphere)")
class GeotorchSphere(_Direction):
    """x ↦ vᵀx, v ∈ S^15 constrained by geotorch.sphere on the module's 1-D parameter `direction`."""

    def __init__(self) -> None:
        super().__init__()
        import geotorch

        geotorch.sphere(self, "direction")


@architecture("geotorch-spd", task="linear-spd-16", sizes=_sizes(),
              claims=[OnManifold(SPD(N), "linear.weight", every_iterate=True)],
              reference="geotorch.positive_definite (geotorch.PSD: Q diag(softplus(λ)) Qᵀ, Q = expm of a skew matrix)")
class GeotorchSPD(nn.Module):
    """x ↦ S x with S ∈ SPD(16) constrained by geotorch.positive_definite on nn.Linear(16, 16)."""

    def __init__(self) -> None:
        super().__init__()
        import geotorch

        self.linear = nn.Linear(N, N, bias=False)
        geotorch.positive_definite(self.linear, "weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class UnitNormalise(nn.Module):
    """v = x/‖x‖: a point of the sphere for every x ≠ 0 (declared, so the symbolic stage proves and binds it)."""

    manifold_form = Parametrisation("normalise")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.linalg.vector_norm(x)


@architecture("sphere-normalised", task="linear-unit-vector-16", sizes=_sizes(), claims=[_ON_SPHERE],
              reference="v = x/‖x‖ (our own sphere parametrisation, declared by manifold_form)")
class SphereNormalised(_Direction):
    """x ↦ vᵀx, v = x_raw/‖x_raw‖ ∈ S^15 (a torch parametrisation of `direction`)."""

    def __init__(self) -> None:
        super().__init__()
        parametrize.register_parametrization(self, "direction", UnitNormalise())


@architecture("sphere-adam-drift", task="linear-unit-vector-16", sizes=_sizes(),
              claims=[_ON_SPHERE.falsely("a plain parameter started on the sphere and trained by Adam: no projection "
                                         "or retraction, so its first step changes its norm")])
class SphereAdamDrift(_Direction):
    """x ↦ vᵀx, v a plain 1-D parameter started at a unit vector, trained by Adam with no constraint."""
