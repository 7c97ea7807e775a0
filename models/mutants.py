"""Mutants with planted violations, for measuring the verifier's own detection power.

Each mutant is a genuine model plus a term that breaks one claim by a chosen relative size δ,
switched on only in a chosen *placement*: everywhere in the data box, only far beyond it (|x|∞ > k
times the box), only inside a small region of the box (hard-edged or smooth), or only in the code
while the symbolic twin stays the correct layer; and equivariant networks (a C4 steerable CNN, a
DeepSets model) with a symmetry-breaking term of size δ; for the newer properties, a flow whose reported log-det
is off by δ, a norm-tight map whose Lipschitz constant grows by the factor 1 + δ, a damped (conformally symplectic)
G-SympNet with a planted term, and stored weights moved off O(n), St(n, k), the sphere or SPD(n) by a relative δ.
They are not registered at import: the power
suite (benchmarks/power.py, tests/test_power.py) registers them through the public API, as an
outside user would, and checks that every one is refuted and no correct model is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from verify.models.shears import Composition, GradientShear
from verify.models.sympnets import GSympNet
from verify.models.controls import AdditiveShear
from verify.models.equivariant_cnns import SteerableClassifier
from verify.models.permutation import DeepSets
from verify.derive.binding import Bound
from verify.derive.symbolic import Builder, SymbolicBlock, Vec

PLACEMENTS = ("box", "far-3", "far-30", "far-300", "region-hard", "region-smooth")
SIZES = (1e-1, 1e-3, 1e-5)


@dataclass(frozen=True)
class Placement:
    """Where a planted violation is switched on: a switch s(x) ∈ [0, 1] (1 where the violation is)."""

    name: str
    description: str
    switch: Callable[[torch.Tensor], torch.Tensor]  # (B, n) -> (B, 1)


def placement(name: str, dim: int, seed: int = 0) -> Placement:
    """The switch of a placement, for inputs of dimension `dim` and the data box [−1, 1]ⁿ."""
    gen = torch.Generator().manual_seed(1000 + seed)
    centre = (torch.rand(dim, generator=gen, dtype=torch.float64) * 1.4 - 0.7)  # inside the box, off the axes
    if name == "box":
        return Placement(name, "everywhere", lambda x: torch.ones_like(x[..., :1]))
    if name.startswith("far-"):
        k = float(name.split("-")[1])
        return Placement(name, f"only where |x|∞ > {k:g} (the data box is |x|∞ ≤ 1)",
                         lambda x: (x.abs().amax(-1, keepdim=True) > k).to(x.dtype))
    if name == "region-hard":
        r = 0.1
        return Placement(name, f"only inside a hard-edged ball of radius {r:g} at {[round(float(c), 3) for c in centre]}",
                         lambda x: ((x - centre.to(x)).norm(dim=-1, keepdim=True) < r).to(x.dtype))
    if name == "region-smooth":
        w = 0.05
        return Placement(name, f"a Gaussian bump of width {w:g} at {[round(float(c), 3) for c in centre]}",
                         lambda x: torch.exp(-((x - centre.to(x)) ** 2).sum(-1, keepdim=True) / (2 * w * w)))
    raise ValueError(f"placement={name!r}: expected one of {PLACEMENTS}")


class Planted(nn.Module):
    """base(x) with coordinate 0 scaled by (1 + δ·s(x)): det J and JᵀΩJ move by about δ where s = 1.

    The switch reads the map's own input x (not base(x)), so the violation is where the placement says: a region
    "in the data box" is in the data box of the inputs the claim is checked on, whatever base does to it.
    For Invertible the forward is left alone and the inverse is off instead: f⁻¹(y) + δ·s(y)·y₀ e₀.
    """

    def __init__(self, base: nn.Module, delta: float, where: Placement, target: str) -> None:
        super().__init__()
        self.base, self.delta, self.where, self.target = base, delta, where, target

    @property
    def depth(self) -> int:
        return getattr(self.base, "depth", 1) + 1

    def _bump(self, switch_on: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e0 = torch.zeros_like(y)
        e0[..., 0] = 1.0
        return self.delta * self.where.switch(switch_on) * y[..., :1] * e0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y if self.target == "Invertible" else y + self._bump(x, y)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.target == "Invertible":
            return self.base.inverse(y) + self._bump(y, y)
        raise NotImplementedError("only the Invertible mutant is inverted")


def correct_model(kind: str, dim: int, seed: int) -> nn.Module:
    """A genuine model at a seed, its weights scaled up to a trained model's magnitude (|a| ~ 1)."""
    torch.manual_seed(seed)
    if kind == "g-sympnet":
        m = GSympNet(dim, layers=4, width=8)
        with torch.no_grad():
            for layer in m.layers:
                layer.a.mul_(10.0)
        return m.eval()
    if kind == "additive-coupling":
        m = Composition([AdditiveShear(dim // 2, 8, kick=(i % 2 == 0)) for i in range(4)])
        with torch.no_grad():
            for layer in m.layers:
                layer.W2.mul_(10.0)
        return m.eval()
    raise ValueError(f"kind={kind!r}: expected 'g-sympnet' or 'additive-coupling'")


BASE_FOR = {"Symplectic": "g-sympnet", "VolumePreserving": "additive-coupling", "Invertible": "additive-coupling"}


def mutant(prop: str, delta: float, where: str, dim: int = 2, seed: int = 0) -> nn.Module:
    return Planted(correct_model(BASE_FOR[prop], dim, seed), delta, placement(where, dim, seed), prop).eval()


class MismatchedTwinShear(GradientShear):
    """A gradient shear whose code adds δ·σ(z)² where |z|∞ > k, while its declared twin is the plain gradient shear.

    In one dimension the extra term is still a gradient, so the map stays symplectic: only the binding
    of the twin to the code can tell that the proof is about another map.
    """

    def __init__(self, d: int, width: int, kick: bool, delta: float, k: float) -> None:
        super().__init__(d, width, kick)
        self.delta, self.k = delta, k

    def increment(self, z: torch.Tensor) -> torch.Tensor:
        extra = self.delta * torch.tanh(z) ** 2 * (z.abs().amax(-1, keepdim=True) > self.k).to(z.dtype)
        return super().increment(z) + extra


def mismatched_twin(delta: float, k: float, dim: int = 2, seed: int = 0) -> nn.Module:
    """A G-SympNet whose first layer's code differs from its twin by δ beyond |z| > k."""
    m = correct_model("g-sympnet", dim, seed)
    first = m.layers[0]
    bad = MismatchedTwinShear(first.d, first.K.shape[0], first.kick, delta, k)
    bad.load_state_dict(first.state_dict())
    m.layers[0] = bad
    return m.eval()


def describe(prop: str, delta: float, where: str, dim: int) -> str:
    return f"{prop} broken by δ = {delta:g} {placement(where, dim).description} (dim {dim})"


# --------------------------------------------------------------------------- equivariance: a CNN and a set model
# A small symmetry-breaking term of relative size δ in a C4 steerable CNN (escnn) and in a DeepSets model. The power
# page (benchmarks/power.py) and tests/test_equivariance_power.py build them from here.
class FlipTerm(nn.Module):
    """A convolution followed by + δ·(its output mirrored left-right): a term of relative size exactly δ (a mirror keeps
    the norm) that no rotation commutes with. Written in forward, between modules."""

    def __init__(self, conv: nn.Module, eps: float) -> None:
        super().__init__()
        self.conv, self.eps = conv, eps

    def forward(self, t: object) -> object:  # escnn GeometricTensor in and out
        from escnn import nn as enn

        y = self.conv(t)
        return enn.GeometricTensor(y.tensor + self.eps * y.tensor.flip(-1), y.type)


class ConvBranch(nn.Module):
    """A convolution plus δ times a small plain (non-steerable) Conv2d branch on the same input."""

    def __init__(self, conv: nn.Module, eps: float) -> None:
        super().__init__()
        self.conv, self.eps = conv, eps
        self.branch = nn.Conv2d(conv.in_type.size, conv.out_type.size, 3, padding=1)

    def forward(self, t: object) -> object:
        from escnn import nn as enn

        y = self.conv(t)
        return enn.GeometricTensor(y.tensor + self.eps * self.branch(t.tensor), y.type)


def c4_cnn(seed: int = 0, channels: int = 2) -> nn.Module:
    """A small C4 steerable classifier (escnn, regular fields, group pooling), untrained, at a seed."""
    torch.manual_seed(seed)
    return SteerableClassifier(N=4, channels=channels).eval()


def c4_mutant(eps: float, kind: str = "flip", where: str = "conv1", seed: int = 0) -> nn.Module:
    """The C4 classifier with a mirror term (kind="flip") or a plain-conv branch (kind="branch") of size δ at `where`."""
    if kind not in ("flip", "branch"):
        raise ValueError(f"kind={kind!r}: expected 'flip' (a mirrored copy) or 'branch' (a plain Conv2d branch)")
    if where not in ("conv1", "conv2"):
        raise ValueError(f"where={where!r}: expected 'conv1' or 'conv2' (the classifier's two steerable convolutions)")
    model = c4_cnn(seed)
    wrap = FlipTerm if kind == "flip" else ConvBranch
    setattr(model, where, wrap(getattr(model, where), eps))
    return model.eval()


class PositionWeightedSets(DeepSets):
    """DeepSets whose i-th item is weighted by 1 + δ·i before the sum: a position-dependent weight of size δ."""

    def __init__(self, eps: float, **kw: object) -> None:
        super().__init__(**kw)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = 1 + self.eps * torch.arange(x.shape[1], dtype=torch.float64)[:, None]
        return self.rho((self.phi(x) * w.to(x.dtype)).sum(1))


def position_weighted_sets(eps: float, seed: int = 0) -> nn.Module:
    """The set model with its position-dependent weight of size δ, untrained, at a seed."""
    torch.manual_seed(seed)
    return PositionWeightedSets(eps).eval()


def quick_train(model: nn.Module, task: object, steps: int, seed: int, lr: float = 2e-2) -> nn.Module:
    """A few dozen Adam steps on the task's data: weights that a training run has moved, at a cost of seconds."""
    torch.manual_seed(seed)
    x, y = task.dataset(256, seed)
    x = x.float()
    y = y.float() if y.is_floating_point() else y
    loss_fn = getattr(task, "loss", None) or (lambda p, t: ((p - t) ** 2).mean())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 32, (i + 1) * 32) % x.shape[0]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def correct_equivariant(kind: str, seed: int) -> nn.Module:
    """A genuine equivariant model at a seed, briefly trained: the C4 classifier ("cnn", 20 steps on rotated digits)
    or DeepSets ("set", 30 steps on set sums)."""
    from verify.declare.registry import get_task

    if kind == "cnn":
        return quick_train(c4_cnn(seed), get_task("rotated-digits"), steps=20, seed=seed)
    if kind == "set":
        torch.manual_seed(seed)
        return quick_train(DeepSets(), get_task("set-sum"), steps=30, seed=seed)
    raise ValueError(f"kind={kind!r}: expected 'cnn' (C4 steerable classifier) or 'set' (DeepSets)")


# --------------------------------------------------------------------------- the newer properties
# LogDet, Lipschitz and ConformalSymplectic are map properties: their mutants reuse the placements above. OnManifold
# has no inputs: its mutants move a stored weight off the manifold.
LIPSCHITZ_L = 2.0  # the claimed constant of the Lipschitz rows
LIPSCHITZ_SLACK = 1e-6  # the correct map's ‖J‖₂ is L·(1 − slack): a certified bound ≤ L survives float32 storage (~1e-7)
DAMPING = 0.9  # the factor μ of the conformally symplectic rows: JᵀΩJ = μΩ

NEWER_BASE_FOR = {"LogDet": "real-nvp", "Lipschitz": "norm-tight", "ConformalSymplectic": "damped-g-sympnet"}


class NormTight(nn.Sequential):
    """x ↦ c·Q₂(Q₁x + b₁) + b₂ with Q₁, Q₂ orthogonal: ‖J(x)‖₂ = c at *every* x, so Lip = c exactly and a planted
    excess anywhere is an excess of Lip(f). (A tanh network's local norm lies below its certified bound, so a planted
    excess there need not exceed the claimed L at all: no power would be measured.)"""

    def __init__(self, dim: int, c: float, seed: int) -> None:
        gen = torch.Generator().manual_seed(2000 + seed)
        layers = []
        for scale in (1.0, c):
            lin = nn.Linear(dim, dim)
            q = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))[0]
            with torch.no_grad():
                lin.weight.copy_(scale * q)
                lin.bias.copy_(torch.randn(dim, generator=gen, dtype=torch.float64))
            layers.append(lin)
        super().__init__(*layers)


class Damping(nn.Module):
    """The linear damping (q, p) ↦ (q, μp): JᵀΩJ = μΩ, with its symbolic twin (μ read from the module's buffer)."""

    def __init__(self, n: int, mu: float) -> None:
        super().__init__()
        self.n = n
        self.register_buffer("mu", torch.tensor(float(mu)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        return torch.cat([x[..., :d], self.mu * x[..., d:]], dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        d = y.shape[-1] // 2
        return torch.cat([y[..., :d], y[..., d:] / self.mu], dim=-1)

    def symbolic_layers(self) -> list:
        return [Bound(damping_block(self.n), self)]


def damping_block(n: int) -> SymbolicBlock:
    """(q, p) ↦ (q, μp) on R^n, n = 2d."""
    d = n // 2

    def program(b: Builder, x: Vec) -> Vec:
        return Builder.concat(x[:d], x[d:].scale(b.scalar("mu")))

    return SymbolicBlock("damping (q, p) ↦ (q, μp)", n, program, description="μ any number")


def damped(dim: int, seed: int) -> Composition:
    """A G-SympNet followed by the damping (q, p) ↦ (q, μp), μ = DAMPING: JᵀΩJ = μΩ at every x (conformally symplectic
    with the constant factor μ, as one step of a damped Hamiltonian flow's splitting). Each layer has its twin, so the
    symbolic stage proves it layer by layer (the factor Π c_ℓ = μ evaluated at the module's own μ)."""
    return Composition([*correct_model("g-sympnet", dim, seed).layers, Damping(dim, DAMPING)])


def newer_correct_model(kind: str, dim: int, seed: int) -> nn.Module:
    """A genuine model of the newer map properties at a seed: a RealNVP whose scales are of a trained model's size
    (|s| ~ 1, log|det J| far from 0, unlike the additive couplings), the norm-tight map, a damped G-SympNet."""
    if kind == "real-nvp":
        from verify.models.flows import RealNVP

        torch.manual_seed(seed)
        m = RealNVP(dim, layers=4, width=8)
        with torch.no_grad():
            for layer in m.layers:
                layer.S.mul_(60.0)  # initialised at 0.01·randn: s = S·tanh(·) of size ~1 after this
                layer.T.mul_(60.0)
        return m.eval()
    if kind == "norm-tight":
        return NormTight(dim, LIPSCHITZ_L * (1 - LIPSCHITZ_SLACK), seed).eval()
    if kind == "damped-g-sympnet":
        return damped(dim, seed).eval()
    raise ValueError(f"kind={kind!r}: expected one of {sorted(NEWER_BASE_FOR.values())}")


class PlantedLogDet(nn.Module):
    """The flow unchanged, but the log-determinant it reports is off by δ·s(x): the density built on it is off by a
    factor e^{δ·s(x)} ≈ 1 + δ there (a bookkeeping bug in the sum of the layers' log-scales; the round trip is intact)."""

    def __init__(self, base: nn.Module, delta: float, where: Placement) -> None:
        super().__init__()
        self.base, self.delta, self.where = base, delta, where

    @property
    def depth(self) -> int:
        return getattr(self.base, "depth", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.inverse(y)

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.log_det(x) + self.delta * self.where.switch(x)[:, 0]


def newer_mutant(prop: str, delta: float, where: str, dim: int = 2, seed: int = 0) -> nn.Module:
    """LogDet: the reported log-det off by δ in the placement. Lipschitz, ConformalSymplectic: coordinate 0 of the
    output scaled by 1 + δ·s(x) (Planted), so ‖J‖₂ = L(1 − 10⁻⁶)(1 + δ) and JᵀΩJ moves by ~δ·μ there."""
    base = newer_correct_model(NEWER_BASE_FOR[prop], dim, seed)
    spot = placement(where, dim, seed)
    if prop == "LogDet":
        return PlantedLogDet(base, delta, spot).eval()
    return Planted(base, delta, spot, prop).eval()


# -- OnManifold: a stored weight on (or moved off) O(n), St(n, k), the sphere, SPD(n)
MANIFOLD_N = 8
MANIFOLD_KINDS = ("O", "St", "sphere", "SPD")
PERTURBATIONS = ("random entry", "random direction")


class ManifoldWeight(nn.Module):
    """A module holding one stored weight (a parameter, as an optimiser would leave it)."""

    def __init__(self, W: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(W.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T if self.weight.dim() == 2 else x * self.weight


def manifold_of(kind: str, n: int = MANIFOLD_N) -> object:
    from verify.declare.manifolds import SPD, Sphere, Stiefel

    return {"O": Stiefel(n, n), "St": Stiefel(n, n // 2), "sphere": Sphere(n), "SPD": SPD(n)}[kind]


def on_manifold_point(kind: str, seed: int, n: int = MANIFOLD_N) -> torch.Tensor:
    """A point of the manifold in float64 at a seed: an orthogonal matrix (QR), its first n/2 columns, a unit vector,
    or S = AAᵀ/n + 0.1·I (symmetrised exactly, so that its rounding to float32 is symmetric bit for bit)."""
    gen = torch.Generator().manual_seed(3000 + seed)
    A = torch.randn(n, n, generator=gen, dtype=torch.float64)
    if kind in ("O", "St"):
        Q = torch.linalg.qr(A)[0]
        return Q if kind == "O" else Q[:, : n // 2].contiguous()
    if kind == "sphere":
        return A[:, 0] / A[:, 0].norm()
    if kind == "SPD":
        S = A @ A.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
        return 0.5 * (S + S.T)
    raise ValueError(f"kind={kind!r}: expected one of {MANIFOLD_KINDS}")


def off_manifold_distance(kind: str, T: torch.Tensor) -> float:
    """How far a tensor is from the manifold, in float64, by the definitions (computed here, not by the engine):
    ‖QᵀQ − I‖₂; |‖x‖ − 1|; max(‖S − Sᵀ‖_max, max(0, −λ_min))/‖S‖₂."""
    T = T.detach().to(torch.float64)
    if kind in ("O", "St"):
        return float(torch.linalg.matrix_norm(T.T @ T - torch.eye(T.shape[1], dtype=torch.float64), 2))
    if kind == "sphere":
        return abs(float(T.norm()) - 1.0)
    lam = torch.linalg.eigvalsh(0.5 * (T + T.T))
    return max(float((T - T.T).abs().max()), max(0.0, -float(lam[0]))) / float(lam.abs().max())


def manifold_weight(kind: str, seed: int, dtype: torch.dtype, delta: float = 0.0, perturbation: str = "random entry",
                    n: int = MANIFOLD_N) -> tuple[nn.Module, float]:
    """(a module whose `weight` lies on the manifold, moved by a perturbation of relative size δ, stored in `dtype`;
    the stored tensor's own distance off the manifold, float64). δ = 0: the correct weight. A random entry moves by
    δ·‖W‖₂ (for SPD an off-diagonal one: S is no longer symmetric); a random direction E (Gaussian, ‖E‖₂ = 1) adds
    δ·‖W‖₂·E. The distance is the size of the perturbation's component normal to the manifold, which for a random
    direction or entry can be smaller than δ (a tangent move leaves M only at second order)."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation={perturbation!r}: expected one of {PERTURBATIONS}")
    W = on_manifold_point(kind, seed, n)
    if delta:
        gen = torch.Generator().manual_seed(4000 + seed)
        size = delta * float(torch.linalg.matrix_norm(W, 2) if W.dim() == 2 else W.norm())
        if perturbation == "random entry":
            idx = [int(torch.randint(s, (1,), generator=gen)) for s in W.shape]
            if kind == "SPD" and idx[0] == idx[1]:
                idx[1] = (idx[1] + 1) % W.shape[1]
            W = W.clone()
            W[tuple(idx)] += size
        else:
            E = torch.randn(W.shape, generator=gen, dtype=torch.float64)
            E = E / (torch.linalg.matrix_norm(E, 2) if E.dim() == 2 else E.norm())
            W = W + size * E
    stored = W.to(dtype)
    return ManifoldWeight(stored).eval(), off_manifold_distance(kind, stored)


def parametrised_orthogonal(seed: int, dtype: torch.dtype, n: int = MANIFOLD_N, kind: str = "matrix_exp") -> nn.Module:
    """A Linear whose `weight` is torch's parametrizations.orthogonal (raw parameter moved off its start by a seeded
    draw of size 0.5, as training would): a correct weight whose form the symbolic stage proves."""
    from torch.nn.utils import parametrizations

    gen = torch.Generator().manual_seed(5000 + seed)
    lin = nn.Linear(n, n, bias=False).to(dtype)
    parametrizations.orthogonal(lin, orthogonal_map=kind)
    with torch.no_grad():
        lin.parametrizations.weight.original.add_(0.5 * torch.randn(n, n, generator=gen, dtype=torch.float64).to(dtype))
    return lin.eval()
