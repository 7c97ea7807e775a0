"""Optimisers as maps: one step of SGD with momentum on a small network's loss, as a map of (θ, v).

Read as dynamics (França, Jordan, Vidal, "Conformal symplectic and relativistic optimization", NeurIPS 2020), classical
momentum — torch.optim.SGD(momentum=μ): v' = μv + ∇f(θ), θ' = θ − ε v' — is conformally symplectic: JᵀΩJ = μΩ for
every loss f, so its phase-space volume contracts by μ^P per step and never otherwise. Nesterov's variant
(torch.optim.SGD(nesterov=True): θ' = θ − ε(∇f(θ) + μv')) is not: its factor depends on the Hessian of f.

The loss is a 1 → h → 1 tanh network (P = 3h + 1 parameters) fitted to sin(2x) on 32 fixed points. The task's states
are the (θ, v) an actual torch.optim.SGD run visits from seeded initialisations, and its targets the state that
torch.optim.SGD's own `step()` produces from each: the held-out loss of "training" is the distance between our map
and torch's optimiser (the map has nothing to fit; it is checked as it is), a check that the map is the code users run.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from verify.declare.registry import Size, architecture, register_task
from verify.derive.binding import Bound
from verify.derive.symbolic import Builder, SymbolicBlock, Vec
from verify.properties import ConformalSymplectic

REFERENCE = "França, Jordan, Vidal, Conformal symplectic and relativistic optimization, NeurIPS 2020"
N_POINTS = 32


def n_params(hidden: int) -> int:
    return 3 * hidden + 1


def _data(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    xs = torch.linspace(-2.0, 2.0, N_POINTS, dtype=dtype)
    return xs, torch.sin(2.0 * xs)


def sine_loss(theta: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, hidden: int) -> torch.Tensor:
    """Mean squared error of the network θ = (W₁, b₁, w₂, b₂) on the points; θ of shape (..., P), result (...)."""
    w1, b1, w2 = theta[..., :hidden], theta[..., hidden:2 * hidden], theta[..., 2 * hidden:3 * hidden]
    b2 = theta[..., 3 * hidden]
    a = torch.tanh(w1.unsqueeze(-2) * xs.unsqueeze(-1) + b1.unsqueeze(-2))  # (..., N, h)
    pred = (a * w2.unsqueeze(-2)).sum(-1) + b2.unsqueeze(-1)
    return ((pred - ys) ** 2).mean(-1)


def sine_gradient(theta: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, hidden: int) -> torch.Tensor:
    """∇θ of sine_loss in closed form (hand-written backpropagation; the binding compares it with autograd's)."""
    w1, b1, w2 = theta[..., :hidden], theta[..., hidden:2 * hidden], theta[..., 2 * hidden:3 * hidden]
    b2 = theta[..., 3 * hidden]
    a = torch.tanh(w1.unsqueeze(-2) * xs.unsqueeze(-1) + b1.unsqueeze(-2))
    pred = (a * w2.unsqueeze(-2)).sum(-1) + b2.unsqueeze(-1)
    dpred = 2.0 * (pred - ys) / xs.shape[-1]  # (..., N)
    g_w2 = (dpred.unsqueeze(-1) * a).sum(-2)
    g_b2 = dpred.sum(-1, keepdim=True)
    dz = dpred.unsqueeze(-1) * w2.unsqueeze(-2) * (1.0 - a * a)
    g_w1 = (dz * xs.unsqueeze(-1)).sum(-2)
    g_b1 = dz.sum(-2)
    return torch.cat([g_w1, g_b1, g_w2, g_b2], dim=-1)


class MomentumStep(nn.Module):
    """One step of torch.optim.SGD(lr, momentum, nesterov) on the sine network's loss, as a map of x = (θ, v)."""

    def __init__(self, hidden: int = 4, lr: float = 0.05, momentum: float = 0.9, nesterov: bool = False) -> None:
        super().__init__()
        self.hidden, self.P, self.nesterov = hidden, n_params(hidden), nesterov
        self.register_buffer("lr", torch.tensor(float(lr)))
        self.register_buffer("mu", torch.tensor(float(momentum)))
        xs, ys = _data(torch.get_default_dtype())
        self.register_buffer("xs", xs)
        self.register_buffer("ys", ys)

    @property
    def dim(self) -> int:
        return 2 * self.P

    @property
    def depth(self) -> int:
        return 1  # one step: one layer

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return sine_loss(theta, self.xs, self.ys, self.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, v = x[..., : self.P], x[..., self.P:]
        g = sine_gradient(theta, self.xs, self.ys, self.hidden)
        v2 = self.mu * v + g
        step = g + self.mu * v2 if self.nesterov else v2
        return torch.cat([theta - self.lr * step, v2], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        (block,) = momentum_blocks({"hidden": self.hidden, "nesterov": self.nesterov})
        # f is bound to the module's loss: the twin differentiates it by autograd, the module steps with its
        # hand-written gradient, so a wrong gradient shows up as a binding mismatch
        return [Bound(block, self, functions={"f": self.loss}, label=block.name)]


def momentum_blocks(cfg: Mapping[str, Any]) -> list[SymbolicBlock]:
    P = n_params(int(cfg.get("hidden", 4)))
    nesterov = bool(cfg.get("nesterov", False))

    def step(b: Builder, x: Vec) -> Vec:
        theta, v = x[:P], x[P:]
        lr, mu = b.scalar("lr"), b.scalar("mu")
        g = b.grad("f", theta)
        v2 = v.scale(mu) + g
        move = (g + v2.scale(mu)) if nesterov else v2
        return Builder.concat(theta - move.scale(lr), v2)

    name = ("Nesterov step θ ← θ − ε(∇f(θ) + μv'), v' = μv + ∇f(θ)" if nesterov
            else "heavy-ball step v' = μv + ∇f(θ), θ ← θ − εv'")
    return [SymbolicBlock(name, 2 * P, step, description="f any C² loss (symmetric Hessian), ε and μ any numbers")]


class StateBox:
    """What every optimiser task shares: states x = (θ, v) of dimension 2P, (state, torch's next state) pairs from
    `pairs(n, seed)`, and the data box the check draws from: the range of 400 states of seed 0, padded by a tenth."""

    hidden: int

    def pairs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return 2 * n_params(self.hidden)

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.pairs(n, seed)
        return torch.from_numpy(x), torch.from_numpy(y)

    @functools.cached_property
    def _box(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        x, _ = self.pairs(400, 0)
        lo, hi = x.min(0), x.max(0)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        return tuple((lo - pad).tolist()), tuple((hi + pad).tolist())

    @property
    def low(self) -> tuple[float, ...]:
        return self._box[0]

    @property
    def high(self) -> tuple[float, ...]:
        return self._box[1]


@dataclass(frozen=True)
class OptimizerStates(StateBox):
    """States (θ, v) that torch.optim.SGD visits on the sine network's loss, and the state its own step() makes of each."""

    loss_name: ClassVar[str] = "MSE against torch.optim.SGD's own step(); the map has nothing to train"

    name: str
    hidden: int
    lr: float
    momentum: float
    nesterov: bool = False
    run: int = 40  # steps per seeded trajectory
    description: str = ""
    tags: tuple[str, ...] = field(default=("optimizer",))

    def pairs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return _trajectories(self.hidden, self.lr, self.momentum, self.nesterov, self.run, n, seed)


@functools.lru_cache(maxsize=16)
def _trajectories(hidden: int, lr: float, momentum: float, nesterov: bool, run: int, n: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n consecutive (state, next state) pairs of torch.optim.SGD runs (float64), `run` steps from each seeded start."""
    xs, ys = _data(torch.float64)
    P = n_params(hidden)
    gen = torch.Generator().manual_seed(seed)
    before, after = [], []
    while len(before) < n:
        theta = torch.nn.Parameter(torch.randn(P, generator=gen, dtype=torch.float64))
        opt = torch.optim.SGD([theta], lr=lr, momentum=momentum, nesterov=nesterov)
        buf = torch.zeros(P, dtype=torch.float64)
        for _ in range(run):
            if len(before) >= n:
                break
            state = torch.cat([theta.detach(), buf])
            opt.zero_grad()
            sine_loss(theta, xs, ys, hidden).backward()
            opt.step()
            buf = opt.state[theta]["momentum_buffer"].detach().clone()
            before.append(state.numpy())
            after.append(torch.cat([theta.detach(), buf]).numpy())
    return np.stack(before), np.stack(after)


def optimizer_task(name: str, hidden: int, lr: float, momentum: float, nesterov: bool = False) -> OptimizerStates:
    kind = "SGD(nesterov=True)" if nesterov else "SGD(momentum)"
    text = (f"states (θ, v) of torch.optim.{kind} (lr = {lr:g}, μ = {momentum:g}) on a 1→{hidden}→1 tanh network fitting "
            f"sin(2x) on {N_POINTS} points (P = {n_params(hidden)}), and torch's own next state of each")
    return register_task(OptimizerStates(name=name, hidden=hidden, lr=lr, momentum=momentum, nesterov=nesterov,
                                         description=text))


LR, MU = 0.05, 0.9
optimizer_task("sgd-momentum-states", 4, LR, MU)
optimizer_task("sgd-nesterov-states", 4, LR, MU, nesterov=True)
_SIZES = {s: Size(config={"hidden": 4, "lr": LR, "momentum": MU}, steps=0, n_train=256) for s in ("quick", "full")}
_NESTEROV_SIZES = {s: Size(config={"hidden": 4, "lr": LR, "momentum": MU, "nesterov": True}, steps=0, n_train=256)
                   for s in ("quick", "full")}

architecture(
    "sgd-momentum", task="sgd-momentum-states", claims=[ConformalSymplectic.with_factor(MU)], blocks=momentum_blocks,
    reference=REFERENCE, sizes=_SIZES,
    description="torch.optim.SGD(momentum=0.9) as a map of (θ, v) on a small network's loss: conformal symplectic, μ",
)(MomentumStep)

architecture(
    "sgd-nesterov", task="sgd-nesterov-states", blocks=momentum_blocks, reference=REFERENCE, sizes=_NESTEROV_SIZES,
    claims=[ConformalSymplectic.with_factor(MU).falsely(
        "Nesterov's look-ahead makes the factor depend on the loss's Hessian (França et al. 2020)")],
    description="Negative control: torch.optim.SGD(nesterov=True) claimed conformal symplectic",
)(MomentumStep)

architecture(
    "sgd-momentum-wrong-rate", task="sgd-momentum-states", blocks=momentum_blocks, reference=REFERENCE, sizes=_SIZES,
    claims=[ConformalSymplectic.with_factor(0.95).falsely("the momentum is 0.9, so the factor is 0.9, not 0.95")],
    description="Negative control: heavy-ball momentum 0.9 claimed with the factor 0.95",
)(MomentumStep)
