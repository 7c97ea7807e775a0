"""SympNets (Jin, Zhang, Zhu, Tang, Karniadakis 2020): LA-SympNet and G-SympNet."""
from __future__ import annotations

from typing import Any, Mapping

from verify.models.shears import (
    ActivationShear, Composition, GradientShear, LinearShear, Translation,
    activation_shear_block, gradient_shear_block, linear_shear_block, translation_block,
)
from verify.properties import Invertible, Symplectic, VolumePreserving
from verify.checking.search import Budget
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


# --- a G-SympNet at scale: the FPUT-β chain (models/chain_tasks.py) -------------------------------------------------
from verify.models import chain_tasks  # noqa: E402,F401  (registers the chain tasks the sizes below name)


class GSympNetFPUT(GSympNet):
    """G-SympNet on the flow map of a Fermi–Pasta–Ulam–Tsingou β chain: 2d = 64 (quick), 256 (full), 4096 (large)."""


# The numeric stage builds a full Jacobian per input (one reverse pass per coordinate) and an SVD per defect (‖J‖₂,
# κ₂(J)): measured on this 2-core CPU at 2d = 256, ~15 ms per input for the Jacobian and 15–25 ms per defect per dtype,
# and a check of 135 inputs took 40–80 s per claim (on a loaded machine), so the engine's default search (8192 inputs plus the resolution
# stage, 32 ascent starts, 60 hypothesis examples, each in two dtypes) would take ~30 min per claim. Each size therefore
# declares the search it can afford (stated in every report: the evidence's input count and the report's options), and
# the quick size, which every pytest run trains and checks, is the 64-dimensional chain. The matrix-free path
# (issue 10: jvp/vjp probes, no SVD of full Jacobians) is what lets 256 be the default size and 4096 be checked at all.
# resolution=0 switches the data-scale resolution stage off: no sample count resolves a ball of 0.1 of the half-width in
# 64+ dimensions (and c·ρᵈ underflows to 0 beyond ~300, a ZeroDivisionError in search._resolution).
CHAIN_BUDGET_64 = Budget(n_inputs=256, starts=4, steps=6, population=2, examples=6, chunk=128, resolution=0.0)
CHAIN_BUDGET_256 = Budget(n_inputs=32, starts=1, steps=2, population=2, examples=2, chunk=32, resolution=0.0)
CHAIN_BUDGET_4096 = Budget(n_inputs=2, starts=1, steps=1, population=1, examples=0, chunk=1, resolution=0.0)

architecture(
    "g-sympnet-fput", claims=SYMPLECTIC_FAMILY, task="fput-chain-64", blocks=g_blocks, reference=REFERENCE,
    composition="alternating gradient kicks and drifts",
    sizes={
        # quick (every pytest run): the 64-dimensional chain, ~12 s trained and checked on an idle core
        "quick": Size(config={"dim": 64, "layers": 6, "width": 16}, steps=300, lr=1e-2, budget=CHAIN_BUDGET_64),
        # full (`make reports`): 2d = 256, ~23 s trained and checked on an idle core with its 32-input budget
        "full": Size(config={"dim": 256, "layers": 6, "width": 16}, steps=1000, lr=5e-3, n_train=2048, task="fput-chain-256",
                     budget=CHAIN_BUDGET_256),
        # run only when named (`verify check g-sympnet-fput --size large`): 2d = 4096 needs the matrix-free path (one
        # full Jacobian takes 2 s, and the SVDs of one Symplectic defect 207 s, on this CPU)
        "large": Size(config={"dim": 4096, "layers": 6, "width": 16}, steps=100, lr=1e-2, batch=64, n_train=256,
                      task="fput-chain-4096", budget=CHAIN_BUDGET_4096),
    },
)(GSympNetFPUT)
