"""Optimisers whose conformal symplecticity differs from heavy ball's: a learning-rate schedule, decoupled weight decay
and Adam, each as a map of (θ, v) on the sine network's loss of models/optimizer_steps.py (hidden 4, P = 13).

What is true (JᵀΩJ worked out by hand and proved by the symbolic stage per step):

* heavy ball under a schedule, torch.optim.SGD(momentum=μ) with lr_k from torch.optim.lr_scheduler: each step has
  J = [[I − lr_k H, −lr_k μ I], [H, μ I]] and JᵀΩJ = μΩ whatever lr_k is, so K steps have the factor μ^K, independent
  of the learning rates. What a schedule breaks is a constant *rate*: e^{−γ Σ_k h_k} = μ^K with h_k = lr_k has no γ
  common to every window once the lr_k differ (γ fitted to the first step, −ln μ / h_0, predicts μ^{Σh/h_0}, not μ^K);
* coupled weight decay (torch.optim.SGD(weight_decay=λ)) is heavy ball on f + λ|θ|²/2: factor μ still;
  decoupled weight decay (SGDW, Loshchilov & Hutter 2019: θ' = (1 − lr λ)θ − lr v') has the factor μ(1 − lr λ):
  conformal symplectic with *another* constant rate, so a claim of μ is false;
* Adam (torch.optim.Adam) as a map of (θ, m), its second moment v and step count t held as buffers: the step
  θ' = θ − s·m'/(√(v'/b₂) + ε) with v' = β₂v + (1 − β₂)g(θ)² depends on θ through the preconditioner, and the factor
  of JᵀΩJ then depends on x: not conformal symplectic. With the preconditioner frozen (a diagonal D that does not
  depend on θ) it would be, with the factor β₁ (`frozen_adam_blocks`, proved in tests/test_optimizer_variants.py).

Each task's targets are torch's own optimiser steps (torch.optim.SGD with a torch scheduler, torch.optim.SGD plus the
decoupled decay written as torch.optim.AdamW writes it, torch.optim.Adam with its state loaded), so the "training" loss
is the distance between the map and the code users run.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from verify.checking.search import Budget
from verify.declare.registry import Size, architecture, register_task
from verify.derive.binding import Bound
from verify.derive.symbolic import Builder, SymbolicBlock, Vec
from verify.models.optimizer_steps import (LR, MU, REFERENCE, MomentumStep, StateBox, _data, momentum_blocks,
                                           n_params, sine_gradient, sine_loss)
from verify.properties import ConformalSymplectic

HIDDEN = 4
WINDOW = 4  # scheduled steps per map
# the scheduled heavy ball's momentum: 7/8 is exact in binary, so the float32 module stores the decimal μ and the claimed
# μ^K exactly, and the float64 oracle has no storage rounding of μ to replay at every input (with μ = 0.9 that replay
# made the window's check 4× the cost of one heavy-ball step's)
COSINE_MU = 0.875
ETA_MIN = 0.1 * LR  # the cosine schedule's floor
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.999)
ADAM_LR, ADAM_EPS = 0.02, 1e-8
ADAM_WARMUP = 10  # Adam steps that make the second moment the map holds fixed
LOSHCHILOV = "Loshchilov, Hutter, Decoupled weight decay regularization, ICLR 2019"
KINGMA = "Kingma, Ba, Adam: a method for stochastic optimization, ICLR 2015"


# --------------------------------------------------------------------------- a learning-rate schedule
@functools.lru_cache(maxsize=8)
def cosine_lrs(lr: float = LR, window: int = WINDOW, eta_min: float = ETA_MIN) -> tuple[float, ...]:
    """The learning rates torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=window) gives one window of steps."""
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=COSINE_MU)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=window, eta_min=eta_min)
    out = []
    for _ in range(window):
        out.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return tuple(out)


class AutogradMomentumStep(MomentumStep):
    """A heavy-ball step whose gradient comes from automatic differentiation, as torch.optim.SGD gets it from backward().
    In a composition the next step magnifies the previous step's rounding by its ‖J‖ (large where |θ| ~ 10³): with the
    hand-written gradient (another summation order than the twin's autograd) 4 steps differed from their twins by 5e-12
    relative, each step alone by 1e-15; with the same arithmetic as the twin they agree to 2e-16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, v = x[..., : self.P], x[..., self.P:]
        v2 = self.mu * v + torch.func.grad(lambda t: self.loss(t).sum())(theta)
        return torch.cat([theta - self.lr * v2, v2], dim=-1)


class ScheduledMomentumSteps(nn.Module):
    """`window` consecutive torch.optim.SGD(momentum) steps whose learning rates follow a cosine schedule, as one map
    of x = (θ, v): a composition of heavy-ball steps, each a MomentumStep with its own lr."""

    def __init__(self, hidden: int = HIDDEN, lr: float = LR, momentum: float = COSINE_MU, window: int = WINDOW,
                 eta_min: float = ETA_MIN) -> None:
        super().__init__()
        self.hidden, self.P = hidden, n_params(hidden)
        self.lrs = cosine_lrs(lr, window, eta_min)
        self.layers = nn.ModuleList(AutogradMomentumStep(hidden, lr_k, momentum) for lr_k in self.lrs)

    @property
    def dim(self) -> int:
        return 2 * self.P

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def symbolic_layers(self) -> list[Bound]:
        out = []
        for k, layer in enumerate(self.layers):
            (bound,) = layer.symbolic_layers()
            out.append(Bound(bound.block, layer, functions=bound.functions,
                             label=f"step {k} (lr = {self.lrs[k]:.4g}): {bound.block.name}"))
        return out


@functools.lru_cache(maxsize=8)
def _scheduled_pairs(hidden: int, lr: float, momentum: float, window: int, eta_min: float, n: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(state at the start of a window, state `window` steps later) of torch.optim.SGD runs driven by
    torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=window): every window sees the same learning rates."""
    xs, ys = _data(torch.float64)
    P = n_params(hidden)
    gen = torch.Generator().manual_seed(seed)
    before, after = [], []
    while len(before) < n:
        theta = nn.Parameter(torch.randn(P, generator=gen, dtype=torch.float64))
        opt = torch.optim.SGD([theta], lr=lr, momentum=momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=window, eta_min=eta_min)
        buf = torch.zeros(P, dtype=torch.float64)
        for _ in range(10):  # 10 windows per start
            if len(before) >= n:
                break
            start = torch.cat([theta.detach(), buf])
            for _ in range(window):
                opt.zero_grad()
                sine_loss(theta, xs, ys, hidden).backward()
                opt.step()
                sched.step()
            buf = opt.state[theta]["momentum_buffer"].detach().clone()
            before.append(start.numpy())
            after.append(torch.cat([theta.detach(), buf]).numpy())
    return np.stack(before), np.stack(after)


# --------------------------------------------------------------------------- decoupled weight decay
class DecoupledDecayStep(MomentumStep):
    """SGDW (Loshchilov & Hutter): v' = μv + ∇f(θ), θ' = (1 − lr·λ)θ − lr·v', as a map of x = (θ, v)."""

    def __init__(self, hidden: int = HIDDEN, lr: float = LR, momentum: float = MU,
                 weight_decay: float = WEIGHT_DECAY) -> None:
        super().__init__(hidden, lr, momentum)
        self.register_buffer("wd", torch.tensor(float(weight_decay)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, v = x[..., : self.P], x[..., self.P:]
        v2 = self.mu * v + sine_gradient(theta, self.xs, self.ys, self.hidden)
        return torch.cat([(1 - self.lr * self.wd) * theta - self.lr * v2, v2], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        (block,) = decoupled_decay_blocks({"hidden": self.hidden})
        return [Bound(block, self, functions={"f": self.loss}, label=block.name)]


def decoupled_decay_blocks(cfg: Mapping[str, Any]) -> list[SymbolicBlock]:
    P = n_params(int(cfg.get("hidden", HIDDEN)))

    def step(b: Builder, x: Vec) -> Vec:
        theta, v = x[:P], x[P:]
        lr, mu, wd = b.scalar("lr"), b.scalar("mu"), b.scalar("wd")
        v2 = v.scale(mu) + b.grad("f", theta)
        return Builder.concat(theta - theta.scale(lr * wd) - v2.scale(lr), v2)

    return [SymbolicBlock("SGDW step v' = μv + ∇f(θ), θ ← (1 − ελ)θ − εv'", 2 * P, step,
                          description="f any C² loss, ε, μ and λ any numbers")]


def coupled_decay_blocks(cfg: Mapping[str, Any]) -> list[SymbolicBlock]:
    """torch.optim.SGD(momentum=μ, weight_decay=λ): the gradient is ∇f(θ) + λθ (heavy ball on f + λ|θ|²/2)."""
    P = n_params(int(cfg.get("hidden", HIDDEN)))

    def step(b: Builder, x: Vec) -> Vec:
        theta, v = x[:P], x[P:]
        lr, mu, wd = b.scalar("lr"), b.scalar("mu"), b.scalar("wd")
        v2 = v.scale(mu) + b.grad("f", theta) + theta.scale(wd)
        return Builder.concat(theta - v2.scale(lr), v2)

    return [SymbolicBlock("SGD step with coupled weight decay v' = μv + ∇f(θ) + λθ, θ ← θ − εv'", 2 * P, step,
                          description="f any C² loss, ε, μ and λ any numbers")]


@functools.lru_cache(maxsize=8)
def _decoupled_pairs(hidden: int, lr: float, momentum: float, weight_decay: float, run: int, n: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive (state, next state) of torch.optim.SGD(momentum) with the decay decoupled as torch.optim.AdamW
    applies it: param.mul_(1 − lr·λ) before the step, the gradient taken at the undecayed θ."""
    xs, ys = _data(torch.float64)
    P = n_params(hidden)
    gen = torch.Generator().manual_seed(seed)
    before, after = [], []
    while len(before) < n:
        theta = nn.Parameter(torch.randn(P, generator=gen, dtype=torch.float64))
        opt = torch.optim.SGD([theta], lr=lr, momentum=momentum)
        buf = torch.zeros(P, dtype=torch.float64)
        for _ in range(run):
            if len(before) >= n:
                break
            state = torch.cat([theta.detach(), buf])
            opt.zero_grad()
            sine_loss(theta, xs, ys, hidden).backward()
            with torch.no_grad():
                theta.mul_(1 - lr * weight_decay)
            opt.step()
            buf = opt.state[theta]["momentum_buffer"].detach().clone()
            before.append(state.numpy())
            after.append(torch.cat([theta.detach(), buf]).numpy())
    return np.stack(before), np.stack(after)


# --------------------------------------------------------------------------- Adam
@functools.lru_cache(maxsize=8)
def adam_second_moment(hidden: int = HIDDEN, lr: float = ADAM_LR, betas: tuple[float, float] = BETAS,
                       warmup: int = ADAM_WARMUP) -> tuple[tuple[float, ...], int]:
    """The second moment v (exp_avg_sq) after `warmup` torch.optim.Adam steps from a seeded start (float64), and the
    step count the next step uses: the buffers the Adam map holds fixed."""
    xs, ys = _data(torch.float64)
    theta = nn.Parameter(torch.randn(n_params(hidden), generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    opt = torch.optim.Adam([theta], lr=lr, betas=betas, eps=ADAM_EPS, foreach=False)
    for _ in range(warmup):
        opt.zero_grad()
        sine_loss(theta, xs, ys, hidden).backward()
        opt.step()
    return tuple(opt.state[theta]["exp_avg_sq"].tolist()), warmup + 1


class AdamStep(nn.Module):
    """One torch.optim.Adam step on the sine network's loss, as a map of x = (θ, m) (m = exp_avg); the second moment
    v (exp_avg_sq) and the step count t are buffers: v' = β₂v + (1 − β₂)g² is computed from θ inside the step."""

    def __init__(self, hidden: int = HIDDEN, lr: float = ADAM_LR, betas: tuple[float, float] = BETAS,
                 eps: float = ADAM_EPS, warmup: int = ADAM_WARMUP) -> None:
        super().__init__()
        self.hidden, self.P = hidden, n_params(hidden)
        v, t = adam_second_moment(hidden, lr, tuple(betas), warmup)
        b1, b2 = betas
        self.register_buffer("step_size", torch.tensor(lr / (1 - b1 ** t)))
        # 1 − β as numbers of their own: the twin computing g − β₂g would lose three digits of (1 − β₂)g² to
        # cancellation, a mismatch of ~1e-13 relative that is the twin's arithmetic, not the step's
        self.register_buffer("b1", torch.tensor(float(b1)))
        self.register_buffer("c1", torch.tensor(1.0 - b1))
        self.register_buffer("b2", torch.tensor(float(b2)))
        self.register_buffer("c2", torch.tensor(1.0 - b2))
        self.register_buffer("bc2_sqrt", torch.tensor(math.sqrt(1 - b2 ** t)))
        self.register_buffer("eps", torch.tensor(float(eps)))
        self.register_buffer("vbuf", torch.tensor(v))
        xs, ys = _data(torch.get_default_dtype())
        self.register_buffer("xs", xs)
        self.register_buffer("ys", ys)

    @property
    def dim(self) -> int:
        return 2 * self.P

    @property
    def depth(self) -> int:
        return 1

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return sine_loss(theta, self.xs, self.ys, self.hidden)

    def precondition(self, w: torch.Tensor) -> torch.Tensor:
        """1/(√(v'/b₂) + ε) elementwise, with b₂ = 1 − β₂ᵗ: Adam's per-coordinate scale of the step."""
        return 1.0 / (w.sqrt() / self.bc2_sqrt + self.eps)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """∇f(θ) by automatic differentiation, as torch.optim.Adam gets it from backward(): p(v') magnifies the
        gradient's rounding where g is small against √v (a hand-written gradient sums in another order, and its
        differences of 1e-10 relative there moved the step by 2e-11, beyond the binding's round-off tolerance)."""
        return torch.func.grad(lambda t: self.loss(t).sum())(theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, m = x[..., : self.P], x[..., self.P:]
        g = self.gradient(theta)
        m2 = self.b1 * m + self.c1 * g  # exp_avg.lerp_(grad, 1 − β₁), to round-off
        v2 = self.b2 * self.vbuf + self.c2 * g * g
        # m'·p(v') rather than torch's addcdiv m'/(√(v'/b₂) + ε): the twin's own arithmetic, so that the binding compares
        # the step and not two roundings of a division (the two differ by round-off: tests/test_optimizer_variants.py)
        return torch.cat([theta - self.step_size * m2 * self.precondition(v2), m2], dim=-1)

    def symbolic_layers(self) -> list[Bound]:
        (block,) = adam_blocks({"hidden": self.hidden})
        return [Bound(block, self, functions={"f": self.loss, "p": self.precondition}, label=block.name)]


def adam_blocks(cfg: Mapping[str, Any]) -> list[SymbolicBlock]:
    """Adam's step with its preconditioner p (1/(√(w/b₂) + ε) in the module) an abstract function of v'."""
    P = n_params(int(cfg.get("hidden", HIDDEN)))

    def step(b: Builder, x: Vec) -> Vec:
        theta, m = x[:P], x[P:]
        s, b1, c1, b2, c2 = (b.scalar(k) for k in ("step_size", "b1", "c1", "b2", "c2"))  # c = 1 − β
        g = b.grad("f", theta)
        m2 = m.scale(b1) + g.scale(c1)
        v2 = b.bias("vbuf", P).scale(b2) + (g * g).scale(c2)
        return Builder.concat(theta - (m2 * b.act("p", v2)).scale(s), m2)

    return [SymbolicBlock("Adam step m' = β₁m + c₁g, v' = β₂v + c₂g², θ ← θ − s·m'·p(v')", 2 * P, step,
                          description="f any C² loss, p the preconditioner (any differentiable function of v'), "
                                      "c₁ = 1 − β₁ and c₂ = 1 − β₂ any numbers (the conclusion needs no relation)")]


def frozen_adam_blocks(cfg: Mapping[str, Any]) -> list[SymbolicBlock]:
    """Adam with its preconditioner frozen: θ' = θ − s·D m' with D = diag(d) parameters (not depending on θ)."""
    P = n_params(int(cfg.get("hidden", HIDDEN)))

    def step(b: Builder, x: Vec) -> Vec:
        theta, m = x[:P], x[P:]
        s, b1, c1 = b.scalar("step_size"), b.scalar("b1"), b.scalar("c1")
        g = b.grad("f", theta)
        m2 = m.scale(b1) + g.scale(c1)
        return Builder.concat(theta - m2.hadamard(b.vector("d", P)).scale(s), m2)

    return [SymbolicBlock("Adam step with a frozen diagonal preconditioner θ ← θ − s·D(β₁m + c₁∇f(θ))", 2 * P,
                          step, description="f any C² loss, D = diag(d) and c₁ (= 1 − β₁) any parameters")]


@functools.lru_cache(maxsize=8)
def _adam_pairs(hidden: int, lr: float, betas: tuple[float, float], warmup: int, run: int, n: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """States (θ, m) that torch.optim.Adam runs visit, and the state torch.optim.Adam's own step() makes of each with
    the map's fixed second moment and step count loaded into its state."""
    xs, ys = _data(torch.float64)
    P = n_params(hidden)
    v, t = adam_second_moment(hidden, lr, betas, warmup)
    vbuf = torch.tensor(v, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    before, after = [], []
    while len(before) < n:
        theta = nn.Parameter(torch.randn(P, generator=gen, dtype=torch.float64))
        run_opt = torch.optim.Adam([theta], lr=lr, betas=betas, eps=ADAM_EPS, foreach=False)
        for _ in range(run):
            if len(before) >= n:
                break
            run_opt.zero_grad()
            sine_loss(theta, xs, ys, hidden).backward()
            run_opt.step()
            m = run_opt.state[theta]["exp_avg"].detach().clone()
            # torch's own step from (θ, m) with the map's buffers: a fresh Adam whose state is loaded
            probe = nn.Parameter(theta.detach().clone())
            opt = torch.optim.Adam([probe], lr=lr, betas=betas, eps=ADAM_EPS, foreach=False)
            opt.state[probe] = {"step": torch.tensor(float(t - 1), dtype=torch.float64), "exp_avg": m.clone(),
                                "exp_avg_sq": vbuf.clone()}
            sine_loss(probe, xs, ys, hidden).backward()
            opt.step()
            before.append(torch.cat([theta.detach(), m]).numpy())
            after.append(torch.cat([probe.detach(), opt.state[probe]["exp_avg"]]).numpy())
    return np.stack(before), np.stack(after)


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class OptimizerPairs(StateBox):
    """(state, torch's next state) pairs of one optimiser on the sine network's loss; `pairs(n, seed)` makes them."""

    loss_name: ClassVar[str] = "MSE against torch's own optimiser step(); the map has nothing to train"

    name: str
    hidden: int
    pairs: Callable[[int, int], tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    description: str = ""
    tags: tuple[str, ...] = field(default=("optimizer",))


P13 = n_params(HIDDEN)
register_task(OptimizerPairs(
    "sgd-momentum-cosine-states", HIDDEN, lambda n, s: _scheduled_pairs(HIDDEN, LR, COSINE_MU, WINDOW, ETA_MIN, n, s),
    description=(f"windows of {WINDOW} torch.optim.SGD(momentum={COSINE_MU:g}) steps under torch.optim.lr_scheduler."
                 f"CosineAnnealingWarmRestarts(T_0={WINDOW}, lr {LR:g} → {ETA_MIN:g}) on the 1→{HIDDEN}→1 tanh network "
                 f"fitting sin(2x) (P = {P13}): (θ, v) at a window's start and torch's state at its end")))
register_task(OptimizerPairs(
    "sgdw-states", HIDDEN, lambda n, s: _decoupled_pairs(HIDDEN, LR, MU, WEIGHT_DECAY, 40, n, s),
    description=(f"states (θ, v) of torch.optim.SGD(lr={LR:g}, momentum={MU:g}) with decoupled weight decay "
                 f"λ = {WEIGHT_DECAY:g} (param.mul_(1 − lr·λ) before each step, as torch.optim.AdamW decays) on the "
                 f"sine network (P = {P13}), and the next state")))
register_task(OptimizerPairs(
    "adam-states", HIDDEN, lambda n, s: _adam_pairs(HIDDEN, ADAM_LR, BETAS, ADAM_WARMUP, 40, n, s),
    description=(f"states (θ, m) of torch.optim.Adam(lr={ADAM_LR:g}, betas={BETAS}) runs on the sine network "
                 f"(P = {P13}), and torch.optim.Adam's own step() from each with exp_avg_sq and the step count fixed "
                 f"({ADAM_WARMUP} warm-up steps)")))


def _sizes(config: Mapping[str, Any], budget: Budget | None = None) -> dict[str, Size]:
    return {s: Size(config=dict(config), steps=0, n_train=256, budget=budget) for s in ("quick", "full")}


# the scheduled window is 4 steps deep (4× a step's Jacobian cost); in 26 dimensions the data-scale resolution stage's
# cap reaches only ρ ≈ 1.9 of the half-width (no ball inside the box), so its ~16k extra samples buy no stated coverage
# and are left out (the evidence says so); every other method runs at the default budget
WINDOW_BUDGET = Budget(resolution_cap=0, note="the data-scale resolution stage left out: in 26 dimensions its cap "
                                              "reaches no ball inside the data box")


LRS = cosine_lrs()
FIRST_RATE = -math.log(COSINE_MU) / LRS[0]  # γ fitted to the first step: μ = e^{−γ h_0}

architecture(
    "sgd-momentum-cosine", task="sgd-momentum-cosine-states", reference=REFERENCE, blocks=momentum_blocks,
    sizes=_sizes({"hidden": HIDDEN}, WINDOW_BUDGET), claims=[ConformalSymplectic.with_factor(COSINE_MU ** WINDOW)],
    description=(f"{WINDOW} torch.optim.SGD(momentum={COSINE_MU:g}) steps under a cosine learning-rate schedule (lr "
                 f"{', '.join(f'{h:.4g}' for h in LRS)}) as one map of (θ, v): conformal symplectic with the factor "
                 f"μ^{WINDOW} = {COSINE_MU ** WINDOW:.6g}, whatever the learning rates"),
)(ScheduledMomentumSteps)

architecture(
    "sgd-momentum-cosine-constant-rate", task="sgd-momentum-cosine-states", reference=REFERENCE,
    blocks=momentum_blocks, sizes=_sizes({"hidden": HIDDEN}, WINDOW_BUDGET),
    claims=[ConformalSymplectic(rate=FIRST_RATE, step=sum(LRS)).falsely(
        f"each step's factor is μ = {COSINE_MU:g} whatever its learning rate, so {WINDOW} steps have μ^{WINDOW} = "
        f"{COSINE_MU ** WINDOW:.6g}, independent of the learning rates; the rate γ = −ln μ / h_0 = {FIRST_RATE:.4g} "
        f"fitted to the first step predicts e^(−γ Σh) = μ^(Σh/h_0) = {COSINE_MU ** (sum(LRS) / LRS[0]):.6g} over "
        f"Σh = {sum(LRS):.4g}: "
        f"under a schedule there is no constant rate γ")],
    description=("Negative control: the cosine-scheduled heavy ball claimed conformal symplectic with a constant rate "
                 "per unit learning rate (fitted to the first step)"),
)(ScheduledMomentumSteps)

architecture(
    "sgdw", task="sgdw-states", reference=LOSHCHILOV, blocks=decoupled_decay_blocks, sizes=_sizes({"hidden": HIDDEN}),
    claims=[ConformalSymplectic.with_factor(MU).falsely(
        f"decoupled weight decay multiplies θ by 1 − lr·λ each step: the factor is μ(1 − lr·λ) = "
        f"{MU * (1 - LR * WEIGHT_DECAY):.6g}, conformal symplectic with another constant rate, not μ = {MU:g}")],
    description=(f"Negative control: SGDW (momentum {MU:g}, decoupled weight decay λ = {WEIGHT_DECAY:g}) claimed with "
                 f"heavy ball's factor μ; it is conformal symplectic with the factor μ(1 − lr·λ)"),
)(DecoupledDecayStep)

architecture(
    "adam", task="adam-states", reference=KINGMA, blocks=adam_blocks, sizes=_sizes({"hidden": HIDDEN}),
    claims=[ConformalSymplectic.with_factor(BETAS[0]).falsely(
        "Adam's preconditioner 1/(√v' + ε) depends on θ through v' = β₂v + (1 − β₂)g(θ)², so the factor of JᵀΩJ "
        "depends on the state; with the preconditioner frozen the step would be conformal symplectic with factor β₁")],
    description=("Negative control: torch.optim.Adam as a map of (θ, m) (second moment and step count fixed) claimed "
                 "conformal symplectic with the factor β₁; it is not conformal symplectic for any constant rate"),
)(AdamStep)
