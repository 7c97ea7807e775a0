"""Density-estimation tasks the project generates, and the maximum-likelihood loss a flow trains on.

2-D densities (two moons, eight Gaussians, a checkerboard) are drawn from their definitions with a seeded generator;
the image density is scikit-learn's bundled 8×8 digits (no download), dequantised with seeded uniform noise and
flattened to (B, 64). A flow f maps data to a standard normal latent z = f(x); its negative log-likelihood is

    −log p(x) = ½|f(x)|² + (n/2)·log 2π − log|det J_f(x)|,

computed from the log-determinant the flow *reports* (`transform(x) -> (z, log_det)`), which is exactly the number the
LogDet claim checks against the Jacobian. `learned_below` is the identity map's loss on the held-out data (the data
scored under N(0, I) itself): a flow that beats it learned something.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from verify.declare.registry import register_task
from verify.errors import InputError


def flow_nll(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean −log p(x) in nats per input under the flow (standard normal latent), from the flow's reported log-det."""
    transform = getattr(model, "transform", None)
    if callable(transform):
        z, log_det = transform(x)
    else:  # a flow with separate methods: the same quantity, two passes
        z, log_det = model(x), model.log_det(x)
    if log_det.shape != (x.shape[0],):
        raise InputError(f"{type(model).__name__} log-det shape", tuple(log_det.shape), f"({x.shape[0]},)",
                         "return one log-determinant per input from transform()/log_det()")
    n = x.shape[1]
    return (0.5 * (z ** 2).sum(-1) + 0.5 * n * math.log(2 * math.pi) - log_det).mean()


@dataclass(frozen=True)
class DensityTask:
    """A density on Rⁿ to fit by maximum likelihood; `dataset(n, seed) -> (x, x)` (a flow has no separate target)."""

    name: str
    dim: int
    low: tuple[float, ...]
    high: tuple[float, ...]
    description: str = ""
    tags: tuple[str, ...] = field(default=("density",))
    loss_name: ClassVar[str] = "negative log-likelihood, nats per input"  # what reports call model_loss

    def sample(self, n: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(self.sample(n, seed), dtype=np.float64))
        return x, x

    def model_loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The trainer's loss for a model-level objective: the flow's negative log-likelihood (y is x itself)."""
        return flow_nll(model, x)

    @property
    def learned_below(self) -> float:
        return _identity_nll(self, self.dim)


@functools.lru_cache(maxsize=None)
def _identity_nll(task: DensityTask, dim: int) -> float:
    x, _ = task.dataset(256, 10_000)  # the held-out set the trainer scores (seed + 10 000 for seed 0)
    return float(0.5 * (x ** 2).sum(-1).mean() + 0.5 * dim * math.log(2 * math.pi))


@dataclass(frozen=True)
class TwoMoons(DensityTask):
    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        t = rng.uniform(0, math.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        pts = np.stack([x, y], -1) + 0.05 * rng.standard_normal((n, 2))
        return (pts - np.array([0.5, 0.25])) * np.array([1.6, 2.4])  # centred, about unit spread


@dataclass(frozen=True)
class EightGaussians(DensityTask):
    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        k = rng.integers(0, 8, n)
        centres = 2.0 * np.stack([np.cos(k * math.pi / 4), np.sin(k * math.pi / 4)], -1)
        return centres + 0.2 * rng.standard_normal((n, 2))


@dataclass(frozen=True)
class Checkerboard(DensityTask):
    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.uniform(0, 1, n) + 2 * rng.integers(0, 2, n) - 2 + (np.floor(x1) % 2)
        return np.stack([x1, x2], -1)


@functools.lru_cache(maxsize=1)
def _digit_counts() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images.reshape(-1, 64).astype(np.float64)  # integer counts 0..16


@dataclass(frozen=True)
class DigitsDensity(DensityTask):
    """8×8 digits as a density on R⁶⁴: counts 0..16 dequantised, (v + u)/17 − ½ with u ~ U[0, 1), flattened row-major."""

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        counts = _digit_counts()
        idx = rng.integers(0, counts.shape[0], n)
        return (counts[idx] + rng.random((n, 64))) / 17.0 - 0.5


TWO_MOONS = register_task(TwoMoons(
    name="two-moons", dim=2, low=(-3.0, -3.0), high=(3.0, 3.0),
    description="two interleaved half circles with Gaussian noise σ = 0.05, centred and scaled to about unit spread"))
EIGHT_GAUSSIANS = register_task(EightGaussians(
    name="eight-gaussians", dim=2, low=(-3.0, -3.0), high=(3.0, 3.0),
    description="a mixture of 8 Gaussians (σ = 0.2) on the circle of radius 2"))
CHECKERBOARD = register_task(Checkerboard(
    name="checkerboard", dim=2, low=(-2.0, -2.0), high=(2.0, 2.0),
    description="uniform on the dark squares of a 4×4 checkerboard on [−2, 2]²"))
DIGITS_DENSITY = register_task(DigitsDensity(
    name="digits-density", dim=64, low=(-0.5,) * 64, high=(0.5,) * 64,
    description="scikit-learn 8×8 digits, dequantised ((v + u)/17 − ½), flattened to (B, 64)"))
