"""High-dimensional Hamiltonian tasks: the Fermi–Pasta–Ulam–Tsingou β chain.

d unit masses on a line, neighbours joined by springs with the FPUT-β potential
V(r) = r²/2 + β r⁴/4 of the stretch r = q_{i+1} − q_i:

    H(q, p) = ½ Σ_i p_i² + Σ_bonds V(q_{i+1} − q_i),

with fixed ends (q_0 = q_{d+1} = 0, d + 1 bonds) or periodic ends (q_{d+1} = q_1, d bonds). Phase space x = (q, p)
has dimension 2d (256 by default, up to 4096 and beyond: the work is O(d) per state and step).

The data are pairs (x, Φ_h(x)) of the chain's flow map over one step h. Φ_h is computed in float64 by Störmer–Verlet
(kick–drift–kick, itself a symplectic map) with `substeps` inner steps of h/substeps, so the data map is exactly
symplectic up to float64 round-off and approximates the true flow to O((h/substeps)²); `energy_error` measures that
order and the tests check it. The trainer casts the pairs to the model's dtype.

States are low-mode excitations plus noise (the FPUT experiment starts from the lowest mode): for the chain's
normal modes s_k(i) (sin(πki/(d+1)) with fixed ends, sin/cos of 2πki/d when periodic, k = 1..modes)

    q = Σ_k a_k s_k + ν_q,   p = Σ_k b_k s_k + ν_p,
    a_k, b_k ~ U[−A/k, A/k] independently,   ν ~ U[−σ, σ]^d,

so every coordinate is bounded by A·H_K + σ (H_K = Σ_{k≤K} 1/k, |s_k| ≤ 1): that bound is the task's data box
(`low`, `high`), the box a claim's search starts from and grows out of. Uniform (not Gaussian) draws keep the box a
true bound on the data, not a quantile.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from verify.declare.registry import register_task
from verify.errors import InputError

BOUNDARIES = ("fixed", "periodic")


@dataclass(frozen=True)
class FPUTChain:
    """The FPUT-β chain's flow map over one step h on 2d-dimensional phase space, as a training task."""

    name: str
    dim: int  # 2d
    h: float = 0.5
    beta: float = 1.0
    boundary: str = "fixed"
    substeps: int = 10
    modes: int = 4  # K: lowest normal modes excited
    amplitude: float = 1.0  # A
    noise: float = 0.05  # σ
    description: str = ""
    tags: tuple[str, ...] = field(default=("hamiltonian", "chain"))

    def __post_init__(self) -> None:
        # refuse at declaration what would make the task meaningless, with the value and the fix
        if not (isinstance(self.dim, int) and self.dim >= 4 and self.dim % 2 == 0):
            raise InputError("FPUTChain(dim=...)", self.dim, "an even phase-space dimension 2d >= 4 (x = (q, p))",
                             "pass dim=256 (d = 128 masses)")
        if self.boundary not in BOUNDARIES:
            raise InputError("FPUTChain(boundary=...)", self.boundary, f"one of {BOUNDARIES}", "pass boundary='fixed'")
        if not (isinstance(self.substeps, int) and self.substeps >= 1):
            raise InputError("FPUTChain(substeps=...)", self.substeps, "a whole number >= 1", "pass substeps=10")
        if not (1 <= self.modes <= self.d // 2):
            raise InputError("FPUTChain(modes=...)", self.modes, f"1 .. d/2 = {self.d // 2}", "pass modes=4")
        if not (self.h > 0 and self.beta >= 0 and self.amplitude > 0 and self.noise >= 0):
            raise InputError("FPUTChain(h, beta, amplitude, noise)", (self.h, self.beta, self.amplitude, self.noise),
                             "h > 0, beta >= 0, amplitude > 0, noise >= 0", "pass h=0.5, beta=1, amplitude=1, noise=0.05")

    # -- the chain -------------------------------------------------------------
    @property
    def d(self) -> int:
        return self.dim // 2

    @property
    def bound(self) -> float:
        """Every coordinate of every state drawn by `sample` lies in [−bound, bound]: A·H_K + σ."""
        return self.amplitude * float(sum(1.0 / k for k in range(1, self.modes + 1))) + self.noise

    @property
    def low(self) -> tuple[float, ...]:
        return (-self.bound,) * self.dim

    @property
    def high(self) -> tuple[float, ...]:
        return (self.bound,) * self.dim

    @property
    def x0(self) -> tuple[float, ...]:
        """Rollout start: the classic FPUT initial state, all the energy in the lowest mode (q = A·s_1, p = 0)."""
        q = self.amplitude * self.mode_shapes()[0]
        return tuple(float(v) for v in np.concatenate([q, np.zeros(self.d)]))

    def _stretches(self, q: np.ndarray) -> np.ndarray:
        """r_j = q_{j+1} − q_j over the bonds: d + 1 with fixed ends (walls at 0), d when periodic."""
        if self.boundary == "fixed":
            zero = np.zeros(q.shape[:-1] + (1,), dtype=q.dtype)
            return np.diff(np.concatenate([zero, q, zero], axis=-1), axis=-1)
        return np.roll(q, -1, axis=-1) - q

    def potential(self, q: np.ndarray) -> np.ndarray:
        r = self._stretches(q)
        return (0.5 * r**2 + 0.25 * self.beta * r**4).sum(-1)

    def force(self, q: np.ndarray) -> np.ndarray:
        """−∂U/∂q_i = V'(r_i) − V'(r_{i−1}), V'(r) = r + β r³ (bond i joins masses i and i+1)."""
        r = self._stretches(q)
        t = r + self.beta * r**3
        if self.boundary == "fixed":
            return t[..., 1:] - t[..., :-1]
        return t - np.roll(t, 1, axis=-1)

    def energy(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return 0.5 * (x[..., self.d:] ** 2).sum(-1) + self.potential(x[..., : self.d])

    def mode_shapes(self) -> np.ndarray:
        """(K, d): the K lowest normal modes of the linear chain, each with max |s_k(i)| ≤ 1."""
        i = np.arange(1, self.d + 1)
        k = np.arange(1, self.modes + 1)[:, None]
        if self.boundary == "fixed":
            return np.sin(np.pi * k * i / (self.d + 1))
        # periodic: alternate sine and cosine of the lowest wave numbers (the constant mode, a free translation, is left out)
        wave = (k + 1) // 2
        return np.where(k % 2 == 1, np.sin(2 * np.pi * wave * i / self.d), np.cos(2 * np.pi * wave * i / self.d))

    # -- the flow map ----------------------------------------------------------
    def flow(self, x: np.ndarray, t: float | None = None, substeps: int | None = None) -> np.ndarray:
        """Φ_t(x) by Störmer–Verlet (kick ½δ, drift δ, kick ½δ) with δ = t / substeps, in float64.

        Each sub-step is a composition of exact flows of ½|p|² and U(q), so the map is symplectic for any δ; its
        energy error is O(δ²) and bounded over the step (no drift), which `energy_error` measures."""
        t = self.h if t is None else t
        m = self.substeps if substeps is None else substeps
        x = np.asarray(x, dtype=np.float64)
        q, p = x[..., : self.d].copy(), x[..., self.d :].copy()
        dt = t / m
        p += 0.5 * dt * self.force(q)
        for k in range(m):
            q += dt * p
            # the last half kick and the next first half kick fused into one full kick (the same map, fewer forces)
            p += (dt if k < m - 1 else 0.5 * dt) * self.force(q)
        return np.concatenate([q, p], axis=-1)

    def energy_error(self, x: np.ndarray, substeps: int | None = None) -> np.ndarray:
        """|H(Φ_h(x)) − H(x)| per state for the given number of substeps (O(δ²), δ = h/substeps)."""
        return np.abs(self.energy(self.flow(x, substeps=substeps)) - self.energy(x))

    # -- data ------------------------------------------------------------------
    def sample(self, n: int, seed: int) -> np.ndarray:
        """n states: low-mode excitations plus uniform noise (module docstring), float64, shape (n, 2d)."""
        rng = np.random.default_rng(seed)
        s = self.mode_shapes()  # (K, d)
        scale = self.amplitude / np.arange(1, self.modes + 1)
        a = rng.uniform(-1.0, 1.0, (n, self.modes)) * scale
        b = rng.uniform(-1.0, 1.0, (n, self.modes)) * scale
        q = a @ s + rng.uniform(-self.noise, self.noise, (n, self.d))
        p = b @ s + rng.uniform(-self.noise, self.noise, (n, self.d))
        return np.concatenate([q, p], axis=-1)

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (x, Φ_h(x)) in float64 (the trainer casts them to the model's dtype)."""
        x = self.sample(n, seed)
        return torch.from_numpy(x), torch.from_numpy(self.flow(x))


def fput_chain(name: str, dim: int, **options: object) -> FPUTChain:
    """A registered FPUT-β chain task with its description filled in from its parameters."""
    task = FPUTChain(name=name, dim=dim, **options)  # type: ignore[arg-type]
    text = (f"FPUT-β chain, d = {task.d} masses ({task.boundary} ends), H = ½|p|² + Σ r²/2 + β r⁴/4, β = {task.beta:g}; "
            f"flow map over h = {task.h:g} by Störmer–Verlet with {task.substeps} substeps (float64); states: the "
            f"{task.modes} lowest modes with amplitudes U[−A/k, A/k], A = {task.amplitude:g}, plus U[−σ, σ] noise, "
            f"σ = {task.noise:g}; box |x_i| ≤ {task.bound:.4g}")
    return register_task(FPUTChain(name=name, dim=dim, description=text, **options))  # type: ignore[arg-type]


# One task per dimension (a task has one dimension, and the registry asks it for its box): 64 for the quick size that
# pytest checks, 256 for the full size of `make reports`, 4096 for the large size that neither runs by default.
FPUT_64 = fput_chain("fput-chain-64", 64)
FPUT_256 = fput_chain("fput-chain-256", 256)
FPUT_4096 = fput_chain("fput-chain-4096", 4096)
