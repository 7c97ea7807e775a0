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


# Search budgets per size. Up to n = 64 the numeric stage builds a full Jacobian per input (vmap(jacrev)) and an SVD per
# defect, so the quick size (every pytest run) caps its search at 256 inputs. Above n = 64 the Jacobian work is
# matrix-free (verify/checking/matrix_free.py: Lanczos on jvp/vjp products, or an exact LU of J assembled in row blocks
# for VolumePreserving), and the engine scales a size's budget down to what fits in Policy.seconds (40 s) per claim from
# a timed input; a size's Budget is then a cap on that scaling. Measured on this 2-core CPU under load (load average 12,
# numeric stage per claim): at 2d = 256 with the cap below, Symplectic 129 inputs in 8 s, VolumePreserving 325 in 15 s,
# Invertible 299 in 5 s; at 2d = 4096 with no cap but the engine's defaults, Symplectic 50 inputs in 22 s (Lanczos),
# VolumePreserving 4 in 44 s (exact LU of 4096×4096 Jacobians, ~12 s per input in both dtypes), Invertible 150 in 28 s.
# resolution=0 switches the data-scale resolution stage off: no sample count resolves a ball of 0.1 of the half-width in
# 64+ dimensions (and c·ρᵈ underflows to 0 beyond ~300, a ZeroDivisionError in search._resolution).
CHAIN_BUDGET_64 = Budget(n_inputs=256, starts=4, steps=6, population=2, examples=6, chunk=128, resolution=0.0)
CHAIN_BUDGET_256 = Budget(n_inputs=256, starts=4, steps=4, population=2, examples=16, chunk=64, resolution=0.0)
CHAIN_BUDGET_4096 = Budget(resolution=0.0, chunk=64)  # the engine's defaults: the cost-aware scaling alone decides

architecture(
    "g-sympnet-fput", claims=SYMPLECTIC_FAMILY, task="fput-chain-64", blocks=g_blocks, reference=REFERENCE,
    composition="alternating gradient kicks and drifts",
    sizes={
        # quick (every pytest run): the 64-dimensional chain, ~12 s trained and checked on an idle core
        "quick": Size(config={"dim": 64, "layers": 6, "width": 16}, steps=300, lr=1e-2, budget=CHAIN_BUDGET_64),
        # full (`make reports`): 2d = 256, matrix-free (n > 64), the cap above: ~30 s of numeric stage for 3 claims
        "full": Size(config={"dim": 256, "layers": 6, "width": 16}, steps=1000, lr=5e-3, n_train=2048, task="fput-chain-256",
                     budget=CHAIN_BUDGET_256),
        # run only when named (`verify check g-sympnet-fput --size large`): 2d = 4096 needs the matrix-free path (one
        # full Jacobian takes 2 s, and the SVDs of one Symplectic defect 207 s, on this CPU). Width 64 (16 reached only
        # 13 % of the identity map's held-out MSE at this size, 64 reaches 10 %, 256 6 % at 3× the training time);
        # trains in ~50 s on one loaded core
        "large": Size(config={"dim": 4096, "layers": 6, "width": 64}, steps=1000, lr=5e-3, batch=64, n_train=2048,
                      task="fput-chain-4096", budget=CHAIN_BUDGET_4096),
    },
)(GSympNetFPUT)
