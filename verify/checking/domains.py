"""Domains: where a claim is made, as data that knows how to draw, perturb, grow and shrink its inputs.

The one search engine (verify/checking/search.py) works on any object with this interface. A map of Rⁿ is
claimed *everywhere* unless its claim says otherwise (`where=`), so its domain grows outward from the
data box: the box itself, then ×2, ×10, ×100, ×10³, plus very small magnitudes around the centre,
clipped to the claimed region. Image fields, sets and graphs are domains too (verify/checking/domains_fields.py): their
points are structured (a task image × amplitude plus smooth bumps; a set's entries), they grow in amplitude, and
they may carry a hypothesis strategy of their own (`StructuredDomain`) so that shrinking stays meaningful.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from verify.errors import InputError

# outward growth of the data box for a claim made everywhere; the small scales probe tiny magnitudes
# (denormal-free: 1e-6 of a unit box is still far above float32's smallest normal number)
DEFAULT_SCALES: tuple[float, ...] = (1.0, 2.0, 10.0, 100.0, 1000.0, 1e-3, 1e-6)
# Within this multiple of the data's extent the model's own dtype is held to the property's error model (a
# round-off excess there is a violation: the implementation cannot deliver the claim where it is used). Beyond it,
# only the float64 oracle judges: evaluating a defect (a determinant, a condition number) of the huge Jacobians
# found far out has no correct float32 digit left, and that is the check's own round-off, not the model's.
NEAR_DATA = 2.0


@runtime_checkable
class Domain(Protocol):
    """What the search engine needs of a domain."""

    def scales(self) -> Sequence[float]:
        """Growing scales at which inputs are drawn (1 = the data's own extent)."""

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        """n inputs at this scale, float64, seeded by gen (quasi-random where possible)."""

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        """Each input moved by a random step of relative size `size`, staying in the domain."""

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Project inputs back into the claimed region."""

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        """A simpler input that still fails (fewer digits, coordinates moved towards the centre)."""

    def describe(self) -> dict:
        """What the domain is, for the report."""

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        """Mask of inputs within twice the data's extent: where the model's own dtype is held to its error model."""


@runtime_checkable
class StructuredDomain(Domain, Protocol):
    """Optional hook: a domain whose inputs hypothesis should draw as structured examples, not as coordinates.

    verify/checking/search.py's hypothesis stage uses it when a domain has both methods (a Box keeps its own path): hypothesis
    then shrinks a counterexample in the domain's own terms (fewer bumps, a data input, simpler numbers).
    """

    def strategy(self) -> Any:
        """A hypothesis strategy of examples (any data `build` understands)."""

    def build(self, example: Any) -> torch.Tensor:
        """The domain's tensor for one example, shape (1, ...), float64, inside the domain."""


# Scrambled Sobol points cost O(k·31²) to scramble and torch's engine stops at 21201 coordinates; above SOBOL_MAX_DIM the
# few hundred points a high-dimensional check affords are far from where low discrepancy pays (n ≪ 2^k), so seeded
# pseudo-random uniforms take their place (a 20402-coordinate draw: ~2 s of scrambling under load, now milliseconds).
SOBOL_MAX_DIM = 1024


def quasi_uniform(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k) uniforms in [0, 1), seeded from gen: scrambled Sobol up to SOBOL_MAX_DIM coordinates, pseudo-random above."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    if k > SOBOL_MAX_DIM:
        return torch.rand(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.quasirandom.SobolEngine(k, scramble=True, seed=seed).draw(n, dtype=torch.float64)


def _as_vector(values: Sequence[float], what: str) -> torch.Tensor:
    t = torch.as_tensor(list(values), dtype=torch.float64)
    if t.dim() != 1 or t.numel() == 0 or not torch.isfinite(t).all():
        raise InputError(what, list(values), "a non-empty list of finite numbers, one per coordinate",
                         "give one bound per phase-space coordinate")
    return t


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of Rⁿ: the data box, grown outward by `scales` and clipped to `region`.

    `region` is where the claim is made: None for everywhere (the default for a map of Rⁿ), or a
    (low, high) pair of bounds (math.inf allowed) for a claim restricted to a set.
    """

    low: Sequence[float]
    high: Sequence[float]
    scale_list: Sequence[float] = DEFAULT_SCALES
    region: tuple[Sequence[float], Sequence[float]] | None = None

    def __post_init__(self) -> None:
        lo, hi = _as_vector(self.low, "Box.low"), _as_vector(self.high, "Box.high")
        if lo.shape != hi.shape or not bool((hi > lo).all()):
            raise InputError("Box(low, high)", (list(self.low), list(self.high)),
                             "low < high in every coordinate, with as many bounds in each",
                             "pass the data box of the task (its low and high corners)")
        if not self.scale_list or any(not (s > 0 and math.isfinite(s)) for s in self.scale_list):
            raise InputError("Box.scale_list", list(self.scale_list), "positive finite scales", "e.g. (1, 2, 10, 100)")

    @property
    def dim(self) -> int:
        return len(self.low)

    def _centre_half(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = torch.tensor(list(self.low), dtype=torch.float64), torch.tensor(list(self.high), dtype=torch.float64)
        return (lo + hi) / 2, (hi - lo) / 2

    def scales(self) -> Sequence[float]:
        if self.region is None:
            return list(self.scale_list)
        # a bounded region needs no scale beyond the one that covers it
        c, h = self._centre_half()
        rlo, rhi = (torch.tensor([float(v) for v in r], dtype=torch.float64) for r in self.region)
        reach = float(torch.maximum((rhi - c).abs(), (c - rlo).abs()).div(h).max())
        kept = [s for s in self.scale_list if s <= 1.0 or s <= reach * 1.0001]
        if math.isfinite(reach) and reach > 1.0 and reach not in kept:
            kept.append(reach)
        return kept

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        c, h = self._centre_half()
        u = quasi_uniform(n, self.dim, gen)
        return self.clip(c + (2 * u - 1) * h * scale)

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        _, h = self._centre_half()
        step = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device) * size
        return self.clip(x + step * torch.maximum(h.to(x.device), x.abs().to(torch.float64)))

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        if self.region is None:
            return x
        lo = torch.tensor([float(v) for v in self.region[0]], dtype=x.dtype, device=x.device)
        hi = torch.tensor([float(v) for v in self.region[1]], dtype=x.dtype, device=x.device)
        return torch.maximum(torch.minimum(x, hi), lo)

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        return shrink_vector(x, fails, self.clip)

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        c, h = self._centre_half()
        return ((x - c.to(x)).abs() / h.to(x)).flatten(1).amax(1) <= NEAR_DATA

    def describe(self) -> dict:
        return {"kind": "box", "low": list(self.low), "high": list(self.high), "scales": list(self.scales()),
                "claimed_region": "everywhere (Rⁿ)" if self.region is None else
                {"low": list(self.region[0]), "high": list(self.region[1])}}


@dataclass(frozen=True)
class Ball:
    """A Euclidean ball |x − centre| ≤ radius·scale, drawn uniformly (the claim made inside `region_radius`)."""

    centre: Sequence[float]
    radius: float
    scale_list: Sequence[float] = DEFAULT_SCALES
    region_radius: float = math.inf

    def __post_init__(self) -> None:
        _as_vector(self.centre, "Ball.centre")
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise InputError("Ball.radius", self.radius, "a positive finite radius", "e.g. Ball([0, 0], 1.0)")

    @property
    def dim(self) -> int:
        return len(self.centre)

    def scales(self) -> Sequence[float]:
        reach = self.region_radius / self.radius
        return [s for s in self.scale_list if s <= max(1.0, reach)]

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        c = torch.tensor(list(self.centre), dtype=torch.float64)
        g = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        r = torch.rand(n, 1, generator=gen, dtype=torch.float64) ** (1.0 / self.dim)
        return self.clip(c + g / g.norm(dim=1, keepdim=True).clamp_min(1e-300) * r * self.radius * scale)

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        step = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device) * size
        return self.clip(x + step * max(self.radius, float(x.abs().max())))

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        if not math.isfinite(self.region_radius):
            return x
        c = torch.tensor(list(self.centre), dtype=x.dtype, device=x.device)
        d = x - c
        norm = d.norm(dim=-1, keepdim=True)
        return c + d * torch.clamp(self.region_radius / norm.clamp_min(1e-300), max=1.0)

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        return shrink_vector(x, fails, self.clip)

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(list(self.centre), dtype=x.dtype, device=x.device)
        return (x - c).norm(dim=-1) <= NEAR_DATA * self.radius

    def describe(self) -> dict:
        return {"kind": "ball", "centre": list(self.centre), "radius": self.radius, "scales": list(self.scales()),
                "claimed_region": "everywhere (Rⁿ)" if not math.isfinite(self.region_radius) else
                f"|x − centre| ≤ {self.region_radius:g}"}


def shrink_vector(x: torch.Tensor, fails: Callable[[torch.Tensor], bool],
                  clip: Callable[[torch.Tensor], torch.Tensor], rounds: int = 3) -> torch.Tensor:
    """Greedy shrinking of one failing input (shape (n,)): zero coordinates, then round them to few digits.

    Like hypothesis' shrinker, but on a continuous input: each step keeps the input only if it still fails,
    so the result is a simpler counterexample of the same claim. 3·n·(digits tried) evaluations at most.
    """
    best = x.clone()
    for _ in range(rounds):
        changed = False
        for i in range(best.numel()):
            for candidate in _simpler_values(float(best[i])):
                trial = best.clone()
                trial[i] = candidate
                trial = clip(trial.unsqueeze(0)).squeeze(0)
                if not torch.equal(trial, best) and fails(trial):
                    best, changed = trial, True
                    break
        if not changed:
            break
    return best


def _simpler_values(v: float) -> list[float]:
    if v == 0.0 or not math.isfinite(v):
        return []
    out = [0.0]
    mag = math.floor(math.log10(abs(v)))
    for digits in (0, 1, 2, 3):
        r = round(v, digits - mag)
        if r != v and r not in out:
            out.append(r)
    return out


@dataclass(frozen=True)
class Fixed:
    """A finite pool of inputs (images, sets, graphs, drawn by their own action) as a one-scale domain.

    Perturbation adds smooth noise of relative size `size` through `perturb_fn` when given (an image
    field is perturbed by a smooth bump, a set entry-wise); shrinking tries scaling the input down.
    """

    pool: torch.Tensor
    perturb_fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor] | None = None
    kind: str = "pool"
    notes: dict = field(default_factory=dict)

    def scales(self) -> Sequence[float]:
        return [1.0]

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.pool.shape[0], (n,), generator=gen)
        amp = 0.25 + 1.75 * torch.rand(n, generator=gen, dtype=torch.float64)
        x = self.pool[idx.to(self.pool.device)].to(torch.float64)
        return x * amp.to(x.device).reshape(-1, *([1] * (x.dim() - 1))) * scale

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        if self.perturb_fn is not None:
            return self.perturb_fn(x, size, gen)
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
        return x + size * noise * x.flatten(1).abs().amax(1).clamp_min(1e-3).reshape(-1, *([1] * (x.dim() - 1)))

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        best = x
        for factor in (0.5, 0.25, 0.1):
            if fails(x * factor):
                best = x * factor
        return best

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)

    def describe(self) -> dict:
        return {"kind": self.kind, "pool": int(self.pool.shape[0]), "shape": list(self.pool.shape[1:]), **self.notes}
