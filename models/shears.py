"""Shear layers on x = (q, p): a kick moves p by a function of q, a drift moves q by a function of p.

Every SympNet-like layer here is a shear, so its inverse is the same shear with the
increment subtracted. Each torch layer has a symbolic twin (`*_block`) written
with the same parameter layout; the proofs in the reports are about these twins.
"""
from __future__ import annotations

import torch
from torch import nn

from verify.derive.binding import Bound
from verify.errors import InputError
from verify.derive.symbolic import Builder, SymbolicBlock, Vec

ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": nn.functional.softplus}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise InputError("activation", name, f"one of {sorted(ACTIVATIONS)}", "pick a smooth activation")
    return ACTIVATIONS[name]


class Shear(nn.Module):
    """Base class: `kick` (p += f(q)) if kick else `drift` (q += f(p))."""

    depth = 1

    def __init__(self, d: int, kick: bool) -> None:
        super().__init__()
        self.d, self.kick = d, kick

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _shift(self, x: torch.Tensor, sign: float) -> torch.Tensor:
        q, p = x[..., : self.d], x[..., self.d :]
        if self.kick:
            return torch.cat([q, p + sign * self.increment(q)], dim=-1)
        return torch.cat([q + sign * self.increment(p), p], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._shift(x, 1.0)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._shift(y, -1.0)


class LinearShear(Shear):
    """f(z) = S z with S = A + Aᵀ symmetric (LA-SympNet linear sublayer)."""

    def __init__(self, d: int, kick: bool) -> None:
        super().__init__(d, kick)
        self.A = nn.Parameter(0.1 * torch.randn(d, d))

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        return z @ (self.A + self.A.T)

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(linear_shear_block(self.d, self.kick), self)]


class ActivationShear(Shear):
    """f(z) = a ⊙ σ(z) (LA-SympNet activation module)."""

    def __init__(self, d: int, kick: bool, act: str = "tanh") -> None:
        super().__init__(d, kick)
        self.a = nn.Parameter(0.1 * torch.randn(d))
        self.sigma = activation(act)

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        return self.a * self.sigma(z)

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(activation_shear_block(self.d, self.kick), self)]  # a, sigma: the module's own


class GradientShear(Shear):
    """f(z) = Kᵀ diag(a) σ(K z + b) (G-SympNet gradient module): the gradient of Σ a_k ∫σ(K_k z + b_k)."""

    def __init__(self, d: int, width: int, kick: bool, act: str = "tanh") -> None:
        super().__init__(d, kick)
        self.K = nn.Parameter(torch.randn(width, d) / d**0.5)
        self.a = nn.Parameter(0.1 * torch.randn(width))
        self.b = nn.Parameter(torch.zeros(width))
        self.sigma = activation(act)

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        return (self.a * self.sigma(z @ self.K.T + self.b)) @ self.K

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(gradient_shear_block(self.d, self.K.shape[0], self.kick), self)]


class Translation(nn.Module):
    """x + b (the bias of an LA-SympNet linear module)."""

    depth = 1

    def __init__(self, n: int) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y - self.b

    def symbolic_layers(self) -> list[Bound]:
        # the block calls the shift c; the module calls it b
        return [Bound(translation_block(self.b.shape[0]), self, parameters={"c": self.b})]


class Composition(nn.Module):
    """A composition of layers that each have `inverse`; depth is the number of primitive layers."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def depth(self) -> int:
        return sum(getattr(layer, "depth", 1) for layer in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y

    def symbolic_layers(self) -> list[Bound]:
        """The children's bound layers, in the order forward applies them."""
        out: list[Bound] = []
        for i, layer in enumerate(self.layers):
            own = getattr(layer, "symbolic_layers", None)
            if not callable(own):
                raise InputError(f"layer {i} of {type(self).__name__}", type(layer).__name__,
                                 "a module with symbolic_layers()", f"implement symbolic_layers() on {type(layer).__name__}")
            out += list(own())
        return out


# --- symbolic twins ------------------------------------------------------------


def shear_block(name: str, d: int, kick: bool, increment, description: str = "") -> SymbolicBlock:
    """A shear block from the program of its increment f(z) (a Builder program on a vector)."""

    def apply(b: Builder, x: Vec, sign: int) -> Vec:
        q, p = x[:d], x[d:]
        if kick:
            return Builder.concat(q, p + increment(b, q).scale(sign))
        return Builder.concat(q + increment(b, p).scale(sign), p)

    return SymbolicBlock(
        name=f"{name} {'kick' if kick else 'drift'}", dim=2 * d,
        forward=lambda b, x: apply(b, x, 1), inverse=lambda b, y: apply(b, y, -1),
        description=description,
    )


def linear_shear_block(d: int, kick: bool) -> SymbolicBlock:
    def inc(b: Builder, z: Vec) -> Vec:
        A = b.matrix("A", d, d)
        return (A + A.T) @ z

    return shear_block("linear", d, kick, inc, "f(z) = (A + Aᵀ) z")


def activation_shear_block(d: int, kick: bool) -> SymbolicBlock:
    def inc(b: Builder, z: Vec) -> Vec:
        return b.act("sigma", z).hadamard(b.vector("a", d))

    return shear_block("activation", d, kick, inc, "f(z) = a ⊙ σ(z)")


def gradient_shear_block(d: int, width: int, kick: bool, mismatched: bool = False) -> SymbolicBlock:
    def inc(b: Builder, z: Vec) -> Vec:
        K = b.matrix("K", width, d)
        inner = b.matrix("L", width, d) if mismatched else K
        return K.T @ b.act("sigma", inner @ z + b.bias("b", width)).hadamard(b.vector("a", width))

    if mismatched:
        return shear_block("mismatched gradient", d, kick, inc, "f(z) = Kᵀ diag(a) σ(L z + b), L ≠ K")
    return shear_block("gradient", d, kick, inc, "f(z) = Kᵀ diag(a) σ(K z + b)")


def translation_block(n: int) -> SymbolicBlock:
    return SymbolicBlock(
        name="translation", dim=n,
        forward=lambda b, x: x + b.bias("c", n), inverse=lambda b, y: y - b.bias("c", n),
        description="x + c",
    )
