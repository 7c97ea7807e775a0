"""Training tasks the project generates itself: flow maps of Hamiltonian systems.

The reference flow comes from scipy's DOP853 at rtol = atol = 1e-12, integrated
for all initial points at once (they are independent, so one stacked system).
Phase-space vectors are x = (q, p).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp

from verify.declare.registry import register_task


@dataclass(frozen=True)
class HamiltonianTask:
    """A separable Hamiltonian H(q, p) = ½|p|² + U(q), its data box and its flow map over one step h."""

    name: str
    dim: int
    h: float
    potential: Callable[[np.ndarray], np.ndarray]  # U(q), q of shape (..., d)
    force: Callable[[np.ndarray], np.ndarray]  # −∇U(q)
    low: tuple[float, ...]
    high: tuple[float, ...]
    x0: tuple[float, ...]  # rollout start
    max_energy: float | None = None  # reject samples above this energy (bounded motion)
    description: str = ""
    tags: tuple[str, ...] = field(default=("hamiltonian",))

    def energy(self, x: np.ndarray) -> np.ndarray:
        d = self.dim // 2
        q, p = x[..., :d], x[..., d:]
        return 0.5 * (p**2).sum(-1) + self.potential(q)

    def vector_field(self, x: np.ndarray) -> np.ndarray:
        d = self.dim // 2
        q, p = x[..., :d], x[..., d:]
        return np.concatenate([p, self.force(q)], axis=-1)

    def flow(self, x: np.ndarray, t: float) -> np.ndarray:
        """The exact flow φ_t applied to each row of x (DOP853, rtol = atol = 1e-12)."""
        shape = x.shape

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return self.vector_field(y.reshape(shape)).ravel()

        sol = solve_ivp(rhs, (0.0, t), x.ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
        if not sol.success:
            raise RuntimeError(f"reference integrator failed on task {self.name}: {sol.message}")
        return sol.y[:, -1].reshape(shape)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        lo, hi = np.array(self.low), np.array(self.high)
        out = np.empty((0, self.dim))
        while len(out) < n:
            x = lo + (hi - lo) * rng.random((2 * n, self.dim))
            if self.max_energy is not None:
                x = x[self.energy(x) < self.max_energy]
            out = np.concatenate([out, x])
        return out[:n]

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (x, φ_h(x)) in float64 (cast by the trainer to the model's dtype)."""
        x = self.sample(n, seed)
        return torch.from_numpy(x), torch.from_numpy(self.flow(x, self.h))


def _pendulum_u(q: np.ndarray) -> np.ndarray:
    return -np.cos(q[..., 0])


def _pendulum_f(q: np.ndarray) -> np.ndarray:
    return -np.sin(q)


def _hh_u(q: np.ndarray) -> np.ndarray:
    q1, q2 = q[..., 0], q[..., 1]
    return 0.5 * (q1**2 + q2**2) + q1**2 * q2 - q2**3 / 3


def _hh_f(q: np.ndarray) -> np.ndarray:
    q1, q2 = q[..., 0], q[..., 1]
    return -np.stack([q1 + 2 * q1 * q2, q2 + q1**2 - q2**2], axis=-1)


PENDULUM = register_task(HamiltonianTask(
    name="pendulum", dim=2, h=0.1, potential=_pendulum_u, force=_pendulum_f,
    low=(-2.0, -1.5), high=(2.0, 1.5), x0=(1.0, 0.0),
    description="H = p²/2 − cos q, step h = 0.1, points uniform in q∈[−2,2], p∈[−1.5,1.5]",
))

HENON_HEILES = register_task(HamiltonianTask(
    name="henon-heiles", dim=4, h=0.1, potential=_hh_u, force=_hh_f,
    low=(-0.5, -0.5, -0.5, -0.5), high=(0.5, 0.5, 0.5, 0.5), x0=(0.1, -0.2, 0.3, 0.1), max_energy=0.12,
    description="H = (p₁²+p₂²+q₁²+q₂²)/2 + q₁²q₂ − q₂³/3, step h = 0.1, bounded region E < 0.12",
))
