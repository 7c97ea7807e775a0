"""Mutants with planted violations, for measuring the verifier's own detection power.

Each mutant is a genuine model plus a term that breaks one claim by a chosen relative size δ,
switched on only in a chosen *placement*: everywhere in the data box, only far beyond it (|x|∞ > k
times the box), only inside a small region of the box (hard-edged or smooth), or only in the code
while the symbolic twin stays the correct layer; and equivariant networks (a C4 steerable CNN, a
DeepSets model) with a symmetry-breaking term of size δ. They are not registered at import: the power
suite (benchmarks/power.py, tests/test_power.py) registers them through the public API, as an
outside user would, and checks that every one is refuted and no correct model is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from verify.models.shears import Composition, GradientShear
from verify.models.sympnets import GSympNet
from verify.models.controls import AdditiveShear
from verify.models.equivariant_cnns import SteerableClassifier
from verify.models.permutation import DeepSets

PLACEMENTS = ("box", "far-3", "far-30", "far-300", "region-hard", "region-smooth")
SIZES = (1e-1, 1e-3, 1e-5)


@dataclass(frozen=True)
class Placement:
    """Where a planted violation is switched on: a switch s(x) ∈ [0, 1] (1 where the violation is)."""

    name: str
    description: str
    switch: Callable[[torch.Tensor], torch.Tensor]  # (B, n) -> (B, 1)


def placement(name: str, dim: int, seed: int = 0) -> Placement:
    """The switch of a placement, for inputs of dimension `dim` and the data box [−1, 1]ⁿ."""
    gen = torch.Generator().manual_seed(1000 + seed)
    centre = (torch.rand(dim, generator=gen, dtype=torch.float64) * 1.4 - 0.7)  # inside the box, off the axes
    if name == "box":
        return Placement(name, "everywhere", lambda x: torch.ones_like(x[..., :1]))
    if name.startswith("far-"):
        k = float(name.split("-")[1])
        return Placement(name, f"only where |x|∞ > {k:g} (the data box is |x|∞ ≤ 1)",
                         lambda x: (x.abs().amax(-1, keepdim=True) > k).to(x.dtype))
    if name == "region-hard":
        r = 0.1
        return Placement(name, f"only inside a hard-edged ball of radius {r:g} at {[round(float(c), 3) for c in centre]}",
                         lambda x: ((x - centre.to(x)).norm(dim=-1, keepdim=True) < r).to(x.dtype))
    if name == "region-smooth":
        w = 0.05
        return Placement(name, f"a Gaussian bump of width {w:g} at {[round(float(c), 3) for c in centre]}",
                         lambda x: torch.exp(-((x - centre.to(x)) ** 2).sum(-1, keepdim=True) / (2 * w * w)))
    raise ValueError(f"placement={name!r}: expected one of {PLACEMENTS}")


class Planted(nn.Module):
    """base(x) with coordinate 0 scaled by (1 + δ·s(x)): det J and JᵀΩJ move by about δ where s = 1.

    The switch reads the map's own input x (not base(x)), so the violation is where the placement says: a region
    "in the data box" is in the data box of the inputs the claim is checked on, whatever base does to it.
    For Invertible the forward is left alone and the inverse is off instead: f⁻¹(y) + δ·s(y)·y₀ e₀.
    """

    def __init__(self, base: nn.Module, delta: float, where: Placement, target: str) -> None:
        super().__init__()
        self.base, self.delta, self.where, self.target = base, delta, where, target

    @property
    def depth(self) -> int:
        return getattr(self.base, "depth", 1) + 1

    def _bump(self, switch_on: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e0 = torch.zeros_like(y)
        e0[..., 0] = 1.0
        return self.delta * self.where.switch(switch_on) * y[..., :1] * e0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y if self.target == "Invertible" else y + self._bump(x, y)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.target == "Invertible":
            return self.base.inverse(y) + self._bump(y, y)
        raise NotImplementedError("only the Invertible mutant is inverted")


def correct_model(kind: str, dim: int, seed: int) -> nn.Module:
    """A genuine model at a seed, its weights scaled up to a trained model's magnitude (|a| ~ 1)."""
    torch.manual_seed(seed)
    if kind == "g-sympnet":
        m = GSympNet(dim, layers=4, width=8)
        with torch.no_grad():
            for layer in m.layers:
                layer.a.mul_(10.0)
        return m.eval()
    if kind == "additive-coupling":
        m = Composition([AdditiveShear(dim // 2, 8, kick=(i % 2 == 0)) for i in range(4)])
        with torch.no_grad():
            for layer in m.layers:
                layer.W2.mul_(10.0)
        return m.eval()
    raise ValueError(f"kind={kind!r}: expected 'g-sympnet' or 'additive-coupling'")


BASE_FOR = {"Symplectic": "g-sympnet", "VolumePreserving": "additive-coupling", "Invertible": "additive-coupling"}


def mutant(prop: str, delta: float, where: str, dim: int = 2, seed: int = 0) -> nn.Module:
    return Planted(correct_model(BASE_FOR[prop], dim, seed), delta, placement(where, dim, seed), prop).eval()


class MismatchedTwinShear(GradientShear):
    """A gradient shear whose code adds δ·σ(z)² where |z|∞ > k, while its declared twin is the plain gradient shear.

    In one dimension the extra term is still a gradient, so the map stays symplectic: only the binding
    of the twin to the code can tell that the proof is about another map.
    """

    def __init__(self, d: int, width: int, kick: bool, delta: float, k: float) -> None:
        super().__init__(d, width, kick)
        self.delta, self.k = delta, k

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        extra = self.delta * torch.tanh(z) ** 2 * (z.abs().amax(-1, keepdim=True) > self.k).to(z.dtype)
        return super().increment(z) + extra


def mismatched_twin(delta: float, k: float, dim: int = 2, seed: int = 0) -> nn.Module:
    """A G-SympNet whose first layer's code differs from its twin by δ beyond |z| > k."""
    m = correct_model("g-sympnet", dim, seed)
    first = m.layers[0]
    bad = MismatchedTwinShear(first.d, first.K.shape[0], first.kick, delta, k)
    bad.load_state_dict(first.state_dict())
    m.layers[0] = bad
    return m.eval()


def describe(prop: str, delta: float, where: str, dim: int) -> str:
    return f"{prop} broken by δ = {delta:g} {placement(where, dim).description} (dim {dim})"


# --------------------------------------------------------------------------- equivariance: a CNN and a set model
# A small symmetry-breaking term of relative size δ in a C4 steerable CNN (escnn) and in a DeepSets model. The power
# page (benchmarks/power.py) and tests/test_equivariance_power.py build them from here.
class FlipTerm(nn.Module):
    """A convolution followed by + δ·(its output mirrored left-right): a term of relative size exactly δ (a mirror keeps
    the norm) that no rotation commutes with. Written in forward, between modules."""

    def __init__(self, conv: nn.Module, eps: float) -> None:
        super().__init__()
        self.conv, self.eps = conv, eps

    def forward(self, t: object) -> object:  # escnn GeometricTensor in and out
        from escnn import nn as enn

        y = self.conv(t)
        return enn.GeometricTensor(y.tensor + self.eps * y.tensor.flip(-1), y.type)


class ConvBranch(nn.Module):
    """A convolution plus δ times a small plain (non-steerable) Conv2d branch on the same input."""

    def __init__(self, conv: nn.Module, eps: float) -> None:
        super().__init__()
        self.conv, self.eps = conv, eps
        self.branch = nn.Conv2d(conv.in_type.size, conv.out_type.size, 3, padding=1)

    def forward(self, t: object) -> object:
        from escnn import nn as enn

        y = self.conv(t)
        return enn.GeometricTensor(y.tensor + self.eps * self.branch(t.tensor), y.type)


def c4_cnn(seed: int = 0, channels: int = 2) -> nn.Module:
    """A small C4 steerable classifier (escnn, regular fields, group pooling), untrained, at a seed."""
    torch.manual_seed(seed)
    return SteerableClassifier(N=4, channels=channels).eval()


def c4_mutant(eps: float, kind: str = "flip", where: str = "conv1", seed: int = 0) -> nn.Module:
    """The C4 classifier with a mirror term (kind="flip") or a plain-conv branch (kind="branch") of size δ at `where`."""
    if kind not in ("flip", "branch"):
        raise ValueError(f"kind={kind!r}: expected 'flip' (a mirrored copy) or 'branch' (a plain Conv2d branch)")
    if where not in ("conv1", "conv2"):
        raise ValueError(f"where={where!r}: expected 'conv1' or 'conv2' (the classifier's two steerable convolutions)")
    model = c4_cnn(seed)
    wrap = FlipTerm if kind == "flip" else ConvBranch
    setattr(model, where, wrap(getattr(model, where), eps))
    return model.eval()


class PositionWeightedSets(DeepSets):
    """DeepSets whose i-th item is weighted by 1 + δ·i before the sum: a position-dependent weight of size δ."""

    def __init__(self, eps: float, **kw: object) -> None:
        super().__init__(**kw)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = 1 + self.eps * torch.arange(x.shape[1], dtype=torch.float64)[:, None]
        return self.rho((self.phi(x) * w.to(x.dtype)).sum(1))


def position_weighted_sets(eps: float, seed: int = 0) -> nn.Module:
    """The set model with its position-dependent weight of size δ, untrained, at a seed."""
    torch.manual_seed(seed)
    return PositionWeightedSets(eps).eval()


def quick_train(model: nn.Module, task: object, steps: int, seed: int, lr: float = 2e-2) -> nn.Module:
    """A few dozen Adam steps on the task's data: weights that a training run has moved, at a cost of seconds."""
    torch.manual_seed(seed)
    x, y = task.dataset(256, seed)
    x = x.float()
    y = y.float() if y.is_floating_point() else y
    loss_fn = getattr(task, "loss", None) or (lambda p, t: ((p - t) ** 2).mean())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 32, (i + 1) * 32) % x.shape[0]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def correct_equivariant(kind: str, seed: int) -> nn.Module:
    """A genuine equivariant model at a seed, briefly trained: the C4 classifier ("cnn", 20 steps on rotated digits)
    or DeepSets ("set", 30 steps on set sums)."""
    from verify.declare.registry import get_task

    if kind == "cnn":
        return quick_train(c4_cnn(seed), get_task("rotated-digits"), steps=20, seed=seed)
    if kind == "set":
        torch.manual_seed(seed)
        return quick_train(DeepSets(), get_task("set-sum"), steps=30, seed=seed)
    raise ValueError(f"kind={kind!r}: expected 'cnn' (C4 steerable classifier) or 'set' (DeepSets)")
