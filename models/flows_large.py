"""Glow at d = 3072 (32×32×3 generated shapes): registered only when asked for, because its checks need the
matrix-free Jacobian path (a full Jacobian is 3072² per input) and its training takes minutes on a CPU.

Every registered architecture must have a `quick` size that `make test` and `make reports` train and check, so a size
name alone cannot keep d = 3072 out of the default run; a module the registry does not import by default can:

    verify --plugin verify.models.flows_large check glow-shapes32
    VERIFY_PLUGINS=verify.models.flows_large pytest --verify-only glow-shapes32
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from verify.declare.registry import Size, architecture, register_task
from verify.models.flow_tasks import DensityTask
from verify.models.flows import LOG_DET, Glow
from verify.properties import Invertible

SIDE = 32


@functools.lru_cache(maxsize=4)
def shapes(n: int, seed: int) -> np.ndarray:
    """n images (3, 32, 32) in [0, 1]: one to three discs or squares of random colour, size and place on a dark field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] + 0.5
    out = np.zeros((n, 3, SIDE, SIDE))
    out += 0.1 * rng.random((n, 3, 1, 1))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(6, SIDE - 6), rng.uniform(6, SIDE - 6), rng.uniform(3, 8)
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if rng.random() < 0.5 else \
                (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
            out[i][:, mask] = rng.random(3)[:, None]
    return out


@dataclass(frozen=True)
class ShapesDensity(DensityTask):
    """32×32×3 shapes quantised to 8 bits and dequantised ((v + u)/256 − ½), flattened channel-major to (B, 3072)."""

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed + 1)
        levels = np.floor(shapes(n, seed) * 255.999)
        return ((levels + rng.random(levels.shape)) / 256.0 - 0.5).reshape(n, -1)


SHAPES = register_task(ShapesDensity(
    name="shapes32", dim=3 * SIDE * SIDE, low=(-0.5,) * (3 * SIDE * SIDE), high=(0.5,) * (3 * SIDE * SIDE),
    description="generated 32×32×3 images of discs and squares, dequantised, flattened to (B, 3072)"))

architecture(
    "glow-shapes32", task="shapes32", claims=[Invertible(), LOG_DET],
    description="Glow at d = 3072 on generated 32×32×3 shapes (3 levels); checks need the matrix-free path",
    reference="Kingma, Dhariwal 2018, arXiv:1807.03039",
    sizes={"quick": Size(config={"channels": 3, "height": SIDE, "width": SIDE, "steps": 2, "hidden": 16, "levels": 3},
                         steps=100, lr=2e-3, n_train=512, batch=64),
           "full": Size(config={"channels": 3, "height": SIDE, "width": SIDE, "steps": 4, "hidden": 32, "levels": 3},
                        steps=2000, lr=1e-3, n_train=4096, batch=64)},
)(Glow)
