"""Negative controls: architectures that claim a property falsely. The verifier must refute each.

They are trained on the same task as the genuine architectures, so that a
refutation is about structure, not about an untrained network.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from verify.models.shears import Composition, GradientShear, Shear, gradient_shear_block, shear_block
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.derive.binding import Bound
from verify.declare.registry import Size, architecture
from verify.derive.symbolic import Builder, SymbolicBlock, Vec


class MLPMap(nn.Module):
    """A plain MLP x ↦ x + MLP(x) trained as a flow map; nothing makes it symplectic."""

    depth = 3

    def __init__(self, dim: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


architecture(
    "mlp-map", task="pendulum",
    claims=[Symplectic().falsely("an unconstrained MLP's Jacobian has no reason to satisfy JᵀΩJ = Ω")],
    description="Negative control: a plain MLP flow map claiming symplecticity (no symbolic form: numeric only).",
    sizes={"quick": Size(config={"dim": 2, "width": 32}, steps=300), "full": Size(config={"dim": 2, "width": 64}, steps=1500, lr=5e-3, n_train=1024)},
)(MLPMap)


class ResidualBlock(nn.Module):
    depth = 1

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(width, dim) / dim**0.5)
        self.b1 = nn.Parameter(torch.zeros(width))
        self.W2 = nn.Parameter(0.1 * torch.randn(dim, width) / width**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(x @ self.W1.T + self.b1) @ self.W2.T

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(residual_block(self.W1.shape[1], self.W1.shape[0]), self, functions={"sigma": torch.tanh})]


class ResNetFlow(Composition):
    """A ResNet x ← x + W₂σ(W₁x + b₁) read as forward-Euler steps; claims symplecticity falsely."""

    def __init__(self, dim: int, layers: int = 3, width: int = 16) -> None:
        super().__init__([ResidualBlock(dim, width) for _ in range(layers)])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - not claimed
        raise NotImplementedError("a ResNet block has no closed-form inverse")


def residual_block(n: int, w: int) -> SymbolicBlock:
    def forward(b: Builder, x: Vec) -> Vec:
        return x + b.matrix("W2", n, w) @ b.act("sigma", b.matrix("W1", w, n) @ x + b.bias("b1", w))

    return SymbolicBlock("residual block", n, forward, description="x + W₂σ(W₁x + b₁)")


def residual_blocks(cfg: Mapping[str, Any]) -> list:
    return [residual_block(cfg["dim"], cfg.get("width", 16))]


architecture(
    "resnet-flow", task="pendulum", blocks=residual_blocks,
    claims=[Symplectic().falsely("J = I + W₂diag(σ')W₁ is not symplectic unless W₂diag(σ')W₁ is Hamiltonian")],
    description="Negative control: a ResNet flow map claiming symplecticity.",
    sizes={"quick": Size(config={"dim": 2, "layers": 3, "width": 16}, steps=300), "full": Size(config={"dim": 2, "layers": 4, "width": 32}, steps=1500, lr=5e-3, n_train=1024)},
)(ResNetFlow)


class MismatchedShear(GradientShear):
    """Kᵀ diag(a) σ(L z + b) with L ≠ K: still a shear (invertible, volume preserving), not a gradient."""

    def __init__(self, d: int, width: int, kick: bool) -> None:
        super().__init__(d, width, kick)
        self.L = nn.Parameter(torch.randn(width, d) / d**0.5)

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        return (self.a * self.sigma(z @ self.L.T + self.b)) @ self.K

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(gradient_shear_block(self.d, self.K.shape[0], self.kick, mismatched=True), self)]


class MismatchedSympNet(Composition):
    """A 'SympNet' whose gradient modules use a different matrix inside σ than outside."""

    def __init__(self, dim: int, layers: int = 4, width: int = 16) -> None:
        super().__init__([MismatchedShear(dim // 2, width, kick=(i % 2 == 0)) for i in range(layers)])


def mismatched_blocks(cfg: Mapping[str, Any]) -> list:
    d, w = cfg["dim"] // 2, cfg.get("width", 16)
    return [gradient_shear_block(d, w, True, mismatched=True), gradient_shear_block(d, w, False, mismatched=True)]


architecture(
    "sympnet-mismatched", task="henon-heiles", blocks=mismatched_blocks,
    claims=[
        Symplectic().falsely("Kᵀdiag(a σ')L is not symmetric when L ≠ K, so the shear is not symplectic"),
        VolumePreserving(), Invertible(),
    ],
    description="Negative control: a subtly wrong G-SympNet (K′ ≠ K); symplecticity must be refuted while volume "
                "preservation and invertibility, which shears keep, must still be proved.",
    sizes={"quick": Size(config={"dim": 4, "layers": 4, "width": 8}, steps=300), "full": Size(config={"dim": 4, "layers": 6, "width": 16}, steps=1500, lr=5e-3, n_train=2048)},
)(MismatchedSympNet)


class AffineShear(Shear):
    """RealNVP-style affine coupling p ← p ⊙ exp(s(q)) + t(q) with s = Sσ(Wq + c), t = Tσ(Wq + c)."""

    def __init__(self, d: int, width: int, kick: bool) -> None:
        super().__init__(d, kick)
        self.W = nn.Parameter(torch.randn(width, d) / d**0.5)
        self.c = nn.Parameter(torch.zeros(width))
        self.S = nn.Parameter(0.1 * torch.randn(d, width))
        self.T = nn.Parameter(0.1 * torch.randn(d, width))

    def _st(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(z @ self.W.T + self.c)
        return h @ self.S.T, h @ self.T.T

    def _shift(self, x: torch.Tensor, sign: float) -> torch.Tensor:
        q, p = x[..., : self.d], x[..., self.d :]
        fixed, moving = (q, p) if self.kick else (p, q)
        s, t = self._st(fixed)
        moved = moving * torch.exp(s) + t if sign > 0 else (moving - t) * torch.exp(-s)
        return torch.cat([q, moved] if self.kick else [moved, p], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(affine_block(self.d, self.W.shape[0], self.kick), self, functions={"sigma": torch.tanh})]


class AffineCoupling(Composition):
    """Affine coupling flow (RealNVP): invertible, but its log-det Σs(q) is not zero."""

    def __init__(self, dim: int, layers: int = 4, width: int = 16) -> None:
        super().__init__([AffineShear(dim // 2, width, kick=(i % 2 == 0)) for i in range(layers)])


def affine_block(d: int, w: int, kick: bool) -> SymbolicBlock:
    def apply(b: Builder, x: Vec, forward: bool) -> Vec:
        q, p = x[:d], x[d:]
        fixed, moving = (q, p) if kick else (p, q)
        h = b.act("sigma", b.matrix("W", w, d) @ fixed + b.bias("c", w))
        s, t = b.matrix("S", d, w) @ h, b.matrix("T", d, w) @ h
        if forward:
            moved = moving * b.exp(s) + t
        else:
            moved = (moving - t) * b.exp(-s)
        return Builder.concat(q, moved) if kick else Builder.concat(moved, p)

    return SymbolicBlock(f"affine coupling {'kick' if kick else 'drift'}", 2 * d,
                         lambda b, x: apply(b, x, True), lambda b, y: apply(b, y, False),
                         "p ← p ⊙ exp(Sσ(Wq + c)) + Tσ(Wq + c)")


def affine_blocks(cfg: Mapping[str, Any]) -> list:
    d, w = cfg["dim"] // 2, cfg.get("width", 16)
    return [affine_block(d, w, True), affine_block(d, w, False)]


architecture(
    "affine-coupling", task="pendulum", blocks=affine_blocks,
    claims=[VolumePreserving().falsely("det J = exp(Σ s(q)) ≠ 1 unless Σ s ≡ 0"), Invertible()],
    description="Negative control: a RealNVP affine coupling flow claiming volume preservation.",
    sizes={"quick": Size(config={"dim": 2, "layers": 4, "width": 16}, steps=300), "full": Size(config={"dim": 2, "layers": 6, "width": 32}, steps=1500, lr=5e-3, n_train=1024)},
)(AffineCoupling)


class AdditiveShear(Shear):
    """NICE additive coupling: f(z) = W₂σ(W₁z + b) (not a gradient, so not symplectic)."""

    def __init__(self, d: int, width: int, kick: bool, buggy_inverse: bool = False) -> None:
        super().__init__(d, kick)
        self.W1 = nn.Parameter(torch.randn(width, d) / d**0.5)
        self.b = nn.Parameter(torch.zeros(width))
        self.W2 = nn.Parameter(0.1 * torch.randn(d, width))
        self.buggy_inverse = buggy_inverse

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.W1.T + self.b) @ self.W2.T

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        # the bug under test: the drift layers' inverse adds the increment again
        return self._shift(y, 1.0 if (self.buggy_inverse and not self.kick) else -1.0)

    def symbolic_layers(self) -> list[Bound]:
        block = additive_block(self.d, self.W1.shape[0], self.kick, buggy=self.buggy_inverse and not self.kick)
        return [Bound(block, self, functions={"sigma": torch.tanh})]


class BuggyInverseCoupling(Composition):
    """NICE-style additive coupling whose drift layers' inverse has a sign error."""

    def __init__(self, dim: int, layers: int = 4, width: int = 16) -> None:
        super().__init__([AdditiveShear(dim // 2, width, kick=(i % 2 == 0), buggy_inverse=True) for i in range(layers)])


def additive_block(d: int, w: int, kick: bool, buggy: bool = False) -> SymbolicBlock:
    """The additive shear; `buggy`: its inverse program is the forward again (the drift layers' sign error)."""

    def inc(b: Builder, z: Vec) -> Vec:
        return b.matrix("W2", d, w) @ b.act("sigma", b.matrix("W1", w, d) @ z + b.bias("b", w))

    block = shear_block("additive", d, kick, inc, "f(z) = W₂σ(W₁z + b)")
    if buggy:
        block = SymbolicBlock(block.name + " (inverse with sign error)", block.dim, block.forward,
                              inverse=block.forward, description="inverse adds f(p) again")
    return block


def additive_blocks(cfg: Mapping[str, Any], buggy: bool = True) -> list:
    d, w = cfg["dim"] // 2, cfg.get("width", 16)
    return [additive_block(d, w, True), additive_block(d, w, False, buggy=buggy)]


architecture(
    "coupling-buggy-inverse", task="pendulum", blocks=additive_blocks,
    claims=[VolumePreserving(), Invertible().falsely("the drift layers' inverse adds the increment instead of subtracting it")],
    description="Negative control: an additive coupling flow (volume preserving) whose implemented inverse is wrong.",
    sizes={"quick": Size(config={"dim": 2, "layers": 4, "width": 16}, steps=300), "full": Size(config={"dim": 2, "layers": 6, "width": 32}, steps=1500, lr=5e-3, n_train=1024)},
)(BuggyInverseCoupling)
