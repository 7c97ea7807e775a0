"""SympNets (Jin, Zhang, Zhu, Tang, Karniadakis 2020): LA-SympNet and G-SympNet."""
from __future__ import annotations

from typing import Any, Mapping

from verify.models.shears import (
    ActivationShear, Composition, GradientShear, LinearShear, Translation,
    activation_shear_block, gradient_shear_block, linear_shear_block, translation_block,
)
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.declare.registry import Size, architecture

REFERENCE = "P. Jin, Z. Zhang, A. Zhu, Y. Tang, G. E. Karniadakis, SympNets, Neural Networks 132 (2020)"
SYMPLECTIC_FAMILY = [Symplectic(), VolumePreserving(), Invertible()]


class LASympNet(Composition):
    """LA-SympNet: linear modules (symmetric shears plus a translation) alternating with activation shears."""

    def __init__(self, dim: int, layers: int = 3, sublayers: int = 2, act: str = "tanh") -> None:
        d = dim // 2
        mods = []
        for i in range(layers):
            mods += [LinearShear(d, kick=(j % 2 == 0)) for j in range(sublayers)] + [Translation(dim)]
            mods.append(ActivationShear(d, kick=(i % 2 == 0), act=act))
        mods += [LinearShear(d, kick=(j % 2 == 0)) for j in range(sublayers)] + [Translation(dim)]
        super().__init__(mods)


def la_blocks(cfg: Mapping[str, Any]) -> list:
    d = cfg["dim"] // 2
    return [
        linear_shear_block(d, True), linear_shear_block(d, False), translation_block(cfg["dim"]),
        activation_shear_block(d, True), activation_shear_block(d, False),
    ]


class GSympNet(Composition):
    """G-SympNet: gradient modules Kᵀdiag(a)σ(Kz+b), alternately kicking p and drifting q."""

    def __init__(self, dim: int, layers: int = 4, width: int = 16, act: str = "tanh") -> None:
        d = dim // 2
        super().__init__([GradientShear(d, width, kick=(i % 2 == 0), act=act) for i in range(layers)])


def g_blocks(cfg: Mapping[str, Any]) -> list:
    d, w = cfg["dim"] // 2, cfg.get("width", 16)
    return [gradient_shear_block(d, w, True), gradient_shear_block(d, w, False)]


architecture(
    "la-sympnet", claims=SYMPLECTIC_FAMILY, task="pendulum", blocks=la_blocks, reference=REFERENCE,
    composition="(linear module ∘ activation module)^L ∘ linear module; a linear module is a product of symmetric shears and a translation",
    sizes={
        "quick": Size(config={"dim": 2, "layers": 2, "sublayers": 2}, steps=300, lr=2e-2),
        "full": Size(config={"dim": 2, "layers": 4, "sublayers": 3}, steps=1500, lr=1e-2, n_train=1024),
    },
)(LASympNet)

architecture(
    "g-sympnet", claims=SYMPLECTIC_FAMILY, task="pendulum", blocks=g_blocks, reference=REFERENCE,
    composition="alternating gradient kicks and drifts",
    sizes={
        "quick": Size(config={"dim": 2, "layers": 4, "width": 16}, steps=300, lr=1e-2),
        "full": Size(config={"dim": 2, "layers": 6, "width": 32}, steps=1500, lr=5e-3, n_train=1024),
    },
)(GSympNet)


class GSympNetHH(GSympNet):
    """G-SympNet on the Hénon–Heiles flow map (4-dimensional phase space)."""


architecture(
    "g-sympnet-hh", claims=SYMPLECTIC_FAMILY, task="henon-heiles", blocks=g_blocks, reference=REFERENCE,
    composition="alternating gradient kicks and drifts",
    sizes={
        "quick": Size(config={"dim": 4, "layers": 4, "width": 16}, steps=300, lr=1e-2),
        "full": Size(config={"dim": 4, "layers": 8, "width": 32}, steps=1500, lr=5e-3, n_train=2048),
    },
)(GSympNetHH)
