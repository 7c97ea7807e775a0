"""Domains of structured inputs: image fields, and sets or graphs, as data the one search engine can search.

A map of Rⁿ is searched over its coordinates (verify/checking/domains.py). An equivariance claim about a CNN is made on
*image fields*, and at elements that need interpolation only on band-limited ones: a pixel-wise gradient step
would leave the claimed set (it adds detail far narrower than the claim's `min_feature_px`). So the points of an
`ImageFieldDomain` are not pixels but a short parameter vector that is rendered into an image:

    image = s · (a₀ · pool[i] + window · Σⱼ aⱼ · exp(−|p − cⱼ|² / 2wⱼ²) on channel kⱼ)

a task image (the data the claim is made on) times an amplitude, plus up to four Gaussian bumps no narrower than
`min_feature_px`, under the smooth window that keeps the field away from where a rotation leaves the grid; s is the
domain's scale (amplitudes from 10⁻⁶ to 10²). Every coordinate of the vector is O(1) (centres in units of the
bump radius, widths in [0, 1] between the narrowest and widest bump, amplitudes in [−3, 3]) so a step relative to
the vector's size is a sensible move in each. Whatever the engine does to a vector (a gradient step, a random
perturbation, hypothesis' shrinking) it stays a valid vector, and its rendering stays in the claimed set. For a
continuous group (SO(2), O(2)) the vector also carries the group element (a turn in [0, 1) and a flip), so the
search draws, climbs and shrinks the element with the input.

A `SetDomain` is simpler: its points are the sets (n, d) themselves (free real entries), or graphs (n, n + d)
with the adjacency first.

Both carry the optional hypothesis hook of verify/domains.StructuredDomain: `strategy()` draws an example as
structured data (which pool input, which bumps, which entries) and `build(example)` turns it into the domain's
tensor, so that hypothesis shrinks towards fewer bumps, simpler numbers and data inputs instead of towards random
seeds. Nothing here imports a model: the pool (task data) is handed in by the property.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from verify.checking.domains import NEAR_DATA, _simpler_values, quasi_uniform, shrink_vector
from verify.errors import InputError
from verify.declare.groups import PlaneElement, PlaneGroup

# amplitudes of the rendered inputs: the data's own, large ones (a ReLU network is not homogeneous: its biases
# matter less and less) and tiny ones (the biases dominate, round-off is relative to a near-constant output)
FIELD_SCALES: tuple[float, ...] = (1.0, 10.0, 100.0, 1e-3, 1e-6)
SET_SCALES: tuple[float, ...] = (1.0, 10.0, 100.0, 1e-3)
MAX_AMPLITUDE = 3.0  # relative amplitudes (pool factor and bump heights) are kept in [−3, 3] before the scale
SHRINK_EVALUATIONS = 48  # a shrink step evaluates the whole objective (every element, both dtypes): bounded


def smooth_window(size: int) -> torch.Tensor:
    """exp(−(r/r₀)⁴), r₀ = 0.35·size: smooth (so it adds no high frequencies) and ≈0 where rotation leaves the grid."""
    c = (size - 1) / 2
    r = torch.arange(size, dtype=torch.float64) - c
    rr = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    return torch.exp(-(rr / (0.35 * size)) ** 4)


def _rand(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64)


def _sobol(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k) scrambled-Sobol uniforms in [0, 1), seeded from gen: the engine's samples are quasi-random in every
    choice a draw makes (which input, which amplitude, where each bump sits), as a box's are in its coordinates."""
    return quasi_uniform(n, k, gen).clamp(0.0, 1.0 - 1e-12)


@dataclass(frozen=True, eq=False)
class ImageFieldDomain:
    """Image fields (B, C, N, N): task images × amplitude plus up to `max_bumps` Gaussian bumps, at growing scales.

    `pool` is the task's images (float64, already smoothed and windowed as the claim's data). `min_feature_px` is the
    band-limit the claim states (the narrowest bump σ); `group` is given for a continuous group only, whose element
    then travels with the input (last two coordinates: turn, flip).
    """

    pool: torch.Tensor
    min_feature_px: float = 2.5
    max_feature_px: float = 4.0
    max_bumps: int = 4
    scale_list: Sequence[float] = FIELD_SCALES
    group: PlaneGroup | None = None
    radius_fraction: float = 0.3  # bump centres within ±0.3·N of the centre (inside the window's flat part)

    def __post_init__(self) -> None:
        if self.pool.dim() != 4 or self.pool.shape[0] < 1 or self.pool.shape[-1] != self.pool.shape[-2]:
            raise InputError("ImageFieldDomain.pool", tuple(self.pool.shape), "(P ≥ 1, C, N, N) task images",
                             "pass the task's images as a float64 batch of square fields")
        if not (0 < self.min_feature_px <= self.max_feature_px):
            raise InputError("ImageFieldDomain.min_feature_px", (self.min_feature_px, self.max_feature_px),
                             "0 < min_feature_px ≤ max_feature_px", "state the claim's band-limit in pixels, e.g. 2.5")
        if self.group is not None and self.group.finite:
            raise InputError("ImageFieldDomain.group", self.group, "a continuous group (SO(2), O(2)) or None",
                             "finite groups are enumerated by the objective; pass group=None")

    # -- layout of a point ---------------------------------------------------------------------------------
    # [0] log10(scale)/10  [1] pool index as a fraction  [2] pool amplitude  then per bump: cX/R, cY/R, width in
    # [0, 1], amplitude, channel as a fraction; then (turn, flip) for a continuous group
    BUMP = 5
    HEAD = 3

    @property
    def channels(self) -> int:
        return int(self.pool.shape[1])

    @property
    def size(self) -> int:
        return int(self.pool.shape[-1])

    @property
    def dim(self) -> int:
        return self.HEAD + self.BUMP * self.max_bumps + (2 if self.group is not None else 0)

    def _bump(self, j: int) -> slice:
        s = self.HEAD + self.BUMP * j
        return slice(s, s + self.BUMP)

    @property
    def _radius(self) -> float:
        return self.radius_fraction * self.size

    # -- the Domain protocol --------------------------------------------------------------------------------
    def scales(self) -> Sequence[float]:
        return list(self.scale_list)

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        """Half task images × U[0.25, 2], half 1–`max_bumps` bumps (|a| in [0.1, 3]); the element Haar-drawn, a
        quarter of the time an exact quarter turn (the grid elements are held to round-off on new inputs too).
        Every choice is a coordinate of one scrambled-Sobol point."""
        P = self.pool.shape[0]
        u = _sobol(n, 4 + 6 * self.max_bumps + 4, gen)
        p = torch.zeros(n, self.dim, dtype=torch.float64)
        p[:, 0] = math.log10(scale) / 10
        from_pool = u[:, 0] < 0.5
        p[:, 1] = (torch.floor(u[:, 1] * P) + 0.5) / P
        p[:, 2] = torch.where(from_pool, 0.25 + 1.75 * u[:, 2], torch.zeros(n, dtype=torch.float64))
        count = 1 + torch.floor(u[:, 3] * self.max_bumps)
        for j in range(self.max_bumps):
            v = u[:, 4 + 6 * j: 10 + 6 * j]
            on = (~from_pool) & (count > j)
            sign = torch.where(v[:, 3] < 0.5, -1.0, 1.0).to(torch.float64)
            b = torch.stack([2 * v[:, 0] - 1, 2 * v[:, 1] - 1, v[:, 2], sign * (0.1 + 2.9 * v[:, 4]), v[:, 5]], dim=1)
            p[:, self._bump(j)] = torch.where(on[:, None], b, torch.zeros_like(b))
        if self.group is not None:
            e = u[:, -4:]
            quarter = e[:, 0] < 0.25
            p[:, -2] = torch.where(quarter, torch.floor(e[:, 1] * 4) / 4, e[:, 2])
            p[:, -1] = (e[:, 3] < 0.5).to(torch.float64) if self.group.flips else 0.0
        return self.clip(p)

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        """Move each bump (centre, width, height) and the pool amplitude by a random step of relative size `size`;
        now and then (one input in four) switch on an unused bump of height ~3·size: a smooth perturbation."""
        x = x.detach().to(torch.float64).clone()
        n = x.shape[0]

        def noise(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64).to(x.device)

        has_pool = x[:, 2] != 0
        x[:, 2] = x[:, 2] + has_pool * noise(n) * size * x[:, 2].abs().clamp_min(0.3)
        add = (_rand(n, gen) < 0.25).to(x.device)
        for j in range(self.max_bumps):
            b = x[:, self._bump(j)]
            on = b[:, 3] != 0
            moved = b + torch.stack([2 * size * noise(n), 2 * size * noise(n), 2 * size * noise(n),
                                     size * noise(n) * b[:, 3].abs().clamp_min(0.3), torch.zeros(n, device=x.device,
                                                                                               dtype=torch.float64)], 1)
            fresh = torch.stack([2 * _rand(n, gen) - 1, 2 * _rand(n, gen) - 1, _rand(n, gen),
                                 3 * size * noise(n).cpu(), _rand(n, gen)], 1).to(x.device)
            new = add & ~on
            add = add & on  # at most one bump switched on per input
            x[:, self._bump(j)] = torch.where(on[:, None], moved, torch.where(new[:, None], fresh, b))
        if self.group is not None:
            x[:, -2] = x[:, -2] + 0.25 * size * noise(n)
        return self.clip(x)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Keep every coordinate in range and the discrete ones (pool index, channel, flip) on their values."""
        x = x.detach().to(torch.float64).clone()
        P, C = self.pool.shape[0], self.channels
        x[:, 1] = (torch.floor(x[:, 1].clamp(0.0, 1.0 - 1e-12) * P) + 0.5) / P
        x[:, 2] = x[:, 2].clamp(-MAX_AMPLITUDE, MAX_AMPLITUDE)
        for j in range(self.max_bumps):
            s = self.HEAD + self.BUMP * j
            x[:, s:s + 2] = x[:, s:s + 2].clamp(-1.0, 1.0)
            x[:, s + 2] = x[:, s + 2].clamp(0.0, 1.0)
            x[:, s + 3] = x[:, s + 3].clamp(-MAX_AMPLITUDE, MAX_AMPLITUDE)
            x[:, s + 4] = (torch.floor(x[:, s + 4].clamp(0.0, 1.0 - 1e-12) * C) + 0.5) / C
        if self.group is not None:
            x[:, -2] = torch.remainder(x[:, -2], 1.0)
            x[:, -1] = (x[:, -1] >= 0.5).to(torch.float64) if self.group.flips else 0.0
        return x

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        """A simpler failing input: fewer bumps, the data input alone, scale 1, then rounder numbers (centres and
        widths to whole pixels, amplitudes to one digit, the angle to whole degrees). At most SHRINK_EVALUATIONS
        evaluations of `fails`, each step kept only if the input still fails."""
        best = self.clip(x.unsqueeze(0))[0]
        tries = [0]

        def attempt(trial: torch.Tensor) -> bool:
            nonlocal best
            trial = self.clip(trial.unsqueeze(0))[0]
            if torch.equal(trial, best) or tries[0] >= SHRINK_EVALUATIONS:
                return False
            tries[0] += 1
            if fails(trial):
                best = trial
                return True
            return False

        # fewer bumps (never the last thing drawn: an all-zero field has nothing left to test)
        for j in range(self.max_bumps):
            b = self._bump(j)
            active = sum(float(best[self._bump(k)][3] != 0) for k in range(self.max_bumps)) + float(best[2] != 0)
            if best[b][3] != 0 and active > 1:
                t = best.clone()
                t[b] = 0.0
                attempt(t)
        # the data input alone, then the data at amplitude 1
        if any(best[self._bump(k)][3] != 0 for k in range(self.max_bumps)):
            for i in range(self.pool.shape[0]):
                t = best.clone()
                t[self.HEAD:self.HEAD + self.BUMP * self.max_bumps] = 0.0
                t[1], t[2] = (i + 0.5) / self.pool.shape[0], 1.0
                if attempt(t):
                    break
        if best[2] != 0 and best[2] != 1.0:
            t = best.clone()
            t[2] = 1.0
            attempt(t)
        if best[0] != 0:
            t = best.clone()
            t[0] = 0.0
            attempt(t)
        # rounder numbers, in the units a reader sees (pixels, degrees); an amplitude is never rounded to 0 (that is
        # "fewer bumps" above, or no data input at all)
        R, span = self._radius, self.max_feature_px - self.min_feature_px
        coords: list[tuple[int, float, float, bool]] = []  # (index, unit, offset, may be 0): value = offset + unit·x
        if best[2] != 0:
            coords.append((2, 1.0, 0.0, False))
        for j in range(self.max_bumps):
            s = self.HEAD + self.BUMP * j
            if best[s + 3] != 0:
                coords += [(s, R, 0.0, True), (s + 1, R, 0.0, True), (s + 3, 1.0, 0.0, False)]
                if span > 0:
                    coords.append((s + 2, span, self.min_feature_px, True))
        if self.group is not None:
            coords.append((self.dim - 2, 360.0, 0.0, True))
        for i, unit, offset, zero_ok in coords:
            v = offset + unit * float(best[i])
            for simpler in _simpler_values(v):
                if simpler == 0.0 and not zero_ok:
                    continue
                t = best.clone()
                t[i] = (simpler - offset) / unit
                if attempt(t):
                    break
        return best

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs at amplitudes up to NEAR_DATA × the data's (for reports; the equivariance objective measures its
        round-off per input, so it judges the model's own dtype at every scale)."""
        return torch.pow(10.0, 10 * x[:, 0]) <= NEAR_DATA

    def describe(self) -> dict:
        return {"kind": "image fields", "pool": int(self.pool.shape[0]), "channels": self.channels,
                "size": f"{self.size}×{self.size}", "scales": [f"{s:g}" for s in self.scales()],
                "inputs": (f"s · (a₀ · task image + window · Σ up to {self.max_bumps} Gaussian bumps), bump σ in "
                           f"[{self.min_feature_px:g}, {self.max_feature_px:g}] px (the claim's band-limit), "
                           f"|a| ≤ {MAX_AMPLITUDE:g}, s in the scales"),
                **({"element": f"drawn with the input: Haar on {self.group.name}, a quarter of the draws an exact "
                               "quarter turn"} if self.group is not None else {})}

    # -- rendering (differentiable in every continuous coordinate) -------------------------------------------
    def render(self, x: torch.Tensor) -> torch.Tensor:
        """The image fields (B, C, N, N), float64, of the points x (B, dim)."""
        x = x.to(torch.float64)
        P, C, N = self.pool.shape[0], self.channels, self.size
        pool = self.pool.to(x.device, torch.float64)
        scale = torch.pow(10.0, 10 * x[:, 0].detach())  # the domain's growth, a discrete choice: not climbed
        idx = torch.floor(x[:, 1].detach().clamp(0.0, 1.0 - 1e-12) * P).long()
        img = x[:, 2, None, None, None] * pool[idx]
        c = (N - 1) / 2
        grid = torch.arange(N, dtype=torch.float64, device=x.device)
        X, Y = (grid - c)[None, None, :], (c - grid)[None, :, None]
        window = smooth_window(N).to(x.device)
        R, span = self._radius, self.max_feature_px - self.min_feature_px
        field = torch.zeros(x.shape[0], C, N, N, dtype=torch.float64, device=x.device)
        for j in range(self.max_bumps):
            s = self.HEAD + self.BUMP * j
            cx, cy = R * x[:, s, None, None], R * x[:, s + 1, None, None]
            w = self.min_feature_px + span * x[:, s + 2, None, None]
            # an unused slot (a = 0) gets no gradient: every unused slot sits at the same place, so a gradient step
            # would switch them all on as copies of one bump; the smoothed ascent switches one on, at a random place
            a = x[:, s + 3]
            a = torch.where(a.detach() != 0, a, a.detach())
            g = a[:, None, None] * torch.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * w * w))
            k = torch.floor(x[:, s + 4].detach().clamp(0.0, 1.0 - 1e-12) * C).long()
            onehot = torch.nn.functional.one_hot(k, C).to(torch.float64)
            field = field + onehot[:, :, None, None] * g[:, None]
        return scale[:, None, None, None] * (img + field * window)

    def element(self, x: torch.Tensor) -> PlaneElement | None:
        """The group element a point carries (continuous groups), None otherwise."""
        if self.group is None:
            return None
        return self.group.element(float(x[-2]), int(x[-1]) if self.group.flips else 0)

    def describe_input(self, x: torch.Tensor) -> str:
        x = x.detach().cpu().to(torch.float64)
        P, C = self.pool.shape[0], self.channels
        parts = []
        if x[2] != 0:
            parts.append(f"task image #{int(float(x[1]) * P)} × {float(x[2]):.3g}")
        R, span = self._radius, self.max_feature_px - self.min_feature_px
        bumps = []
        for j in range(self.max_bumps):
            s = self.HEAD + self.BUMP * j
            if x[s + 3] != 0:
                bumps.append(f"(c=({R * float(x[s]):.3g}, {R * float(x[s + 1]):.3g}) px, "
                             f"w={self.min_feature_px + span * float(x[s + 2]):.3g} px, a={float(x[s + 3]):.3g}"
                             + (f", ch {min(int(float(x[s + 4]) * C), C - 1)}" if C > 1 else "") + ")")
        if bumps:
            parts.append(f"window · bumps {', '.join(bumps)}")
        scale = 10 ** (10 * float(x[0]))
        text = " + ".join(parts) or "zero field"
        return text if abs(scale - 1.0) < 1e-12 else f"{scale:.3g} × ({text})"

    # -- the hypothesis hook (verify/domains.StructuredDomain) ---------------------------------------------
    def strategy(self) -> Any:
        """(scale, input, element): input a task image × amplitude or 1–max_bumps bumps; shrinks towards the first
        scale, the data, fewer bumps and simpler numbers."""
        from hypothesis import strategies as st

        P, C = self.pool.shape[0], self.channels
        from_pool = st.tuples(st.just("pool"), st.integers(0, P - 1), st.floats(0.25, 2.0))
        amp = st.tuples(st.sampled_from([1.0, -1.0]), st.floats(0.1, MAX_AMPLITUDE)).map(lambda t: t[0] * t[1])
        bump = st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(0.0, 1.0), amp, st.integers(0, C - 1))
        bumps = st.tuples(st.just("bumps"), st.lists(bump, min_size=1, max_size=self.max_bumps))
        if self.group is None:
            element = st.just(None)
        else:
            element = st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 1 if self.group.flips else 0))
        return st.tuples(st.sampled_from(list(self.scales())), st.one_of(from_pool, bumps), element)

    def build(self, example: Any) -> torch.Tensor:
        scale, (what, *rest), element = example
        p = torch.zeros(1, self.dim, dtype=torch.float64)
        p[0, 0] = math.log10(scale) / 10
        P, C = self.pool.shape[0], self.channels
        p[0, 1] = 0.5 / P
        if what == "pool":
            i, amp = rest
            p[0, 1], p[0, 2] = (i + 0.5) / P, amp
        else:
            for j, (cx, cy, u, a, k) in enumerate(rest[0]):
                p[0, self._bump(j)] = torch.tensor([cx, cy, u, a, (k + 0.5) / C], dtype=torch.float64)
        if element is not None:
            p[0, -2], p[0, -1] = element
        return self.clip(p)


@dataclass(frozen=True, eq=False)
class SetDomain:
    """Sets (n, d) of free real entries, or graphs (n, n + d) with the adjacency first: task inputs × amplitude,
    free entries, and (graphs) random 0/1 adjacencies with free node features, at growing scales."""

    pool: torch.Tensor
    graph: bool = False
    scale_list: Sequence[float] = SET_SCALES

    def __post_init__(self) -> None:
        if self.pool.dim() != 3 or self.pool.shape[0] < 1:
            raise InputError("SetDomain.pool", tuple(self.pool.shape), "(P ≥ 1, n, d) task sets",
                             "pass the task's inputs as a float64 batch of sets")
        if self.graph and self.pool.shape[2] < self.pool.shape[1]:
            raise InputError("SetDomain.pool", tuple(self.pool.shape), "(P, n, n + d) graphs: adjacency first",
                             "concatenate [A, X] along the last axis")

    @property
    def n(self) -> int:
        return int(self.pool.shape[1])

    def scales(self) -> Sequence[float]:
        return list(self.scale_list)

    def _free(self, u: torch.Tensor) -> torch.Tensor:
        # from two uniforms per entry: 0 (one entry in eight), else ±U[0.01, 5]; no denormal-sized entries, which have
        # no relative precision left to test
        shape = (u.shape[0], *self.pool.shape[1:])
        a, b = u[:, 0::2].reshape(shape), u[:, 1::2].reshape(shape)
        mag = 0.01 + 4.99 * (a * 8 - torch.floor(a * 8))  # the fraction left after the zero test: uniform again
        value = torch.where(b < 0.5, -mag, mag)
        return torch.where(a < 0.125, torch.zeros_like(value), value)

    def draw(self, n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        """Task inputs × U[0.25, 2], free entries, and (graphs) random 0/1 adjacencies with free node features, in equal
        shares; every choice a coordinate of one scrambled-Sobol point."""
        numel = int(np.prod(self.pool.shape[1:]))
        u = _sobol(n, 3 + 2 * numel + self.n * self.n, gen)
        kinds = 3 if self.graph else 2
        kind = torch.floor(u[:, 0] * kinds)
        idx = torch.floor(u[:, 1] * self.pool.shape[0]).long()
        amp = 0.25 + 1.75 * u[:, 2]
        pooled = self.pool.to(torch.float64)[idx] * amp[:, None, None]
        free = self._free(u[:, 3:3 + 2 * numel])
        x = torch.where((kind == 0)[:, None, None], pooled, free)
        if self.graph:
            edges = u[:, 3 + 2 * numel:].reshape(n, self.n, self.n) < 0.5
            upper = edges.triu(1)
            A = (upper | upper.transpose(1, 2)).to(torch.float64)
            graphs = torch.cat([A, free[:, :, self.n:]], dim=-1)
            x = torch.where((kind == 2)[:, None, None], graphs, x)
        return x * scale

    def perturb(self, x: torch.Tensor, size: float, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
        return x + size * noise * x.flatten(1).abs().amax(1).clamp_min(1e-3).reshape(-1, 1, 1)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x  # every real set (graph) is in the claim

    def shrink(self, x: torch.Tensor, fails: Callable[[torch.Tensor], bool]) -> torch.Tensor:
        """Entries set to 0 (items, edges) and rounded to few digits, greedily, one pass (each step re-evaluates the
        objective over every permutation)."""
        shape = x.shape
        flat = shrink_vector(x.flatten(), lambda z: fails(z.reshape(shape)), lambda z: z, rounds=1)
        return flat.reshape(shape)

    def near_data(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.pool.to(torch.float64).abs().amax()
        return x.flatten(1).abs().amax(1) <= NEAR_DATA * 2.0 * scale.to(x.device)

    def describe(self) -> dict:
        return {"kind": "graphs" if self.graph else "sets", "pool": int(self.pool.shape[0]),
                "shape": list(self.pool.shape[1:]), "scales": [f"{s:g}" for s in self.scales()],
                "inputs": "s · (task input × U[0.25, 2], or free entries 0 or 0.01 ≤ |v| ≤ 5"
                          + (", or a random 0/1 adjacency (p = ½) with free node features" if self.graph else "")
                          + "), s in the scales"}

    def render(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64)

    def element(self, x: torch.Tensor) -> None:
        return None

    def describe_input(self, x: torch.Tensor) -> str:
        vals = np.round(x.detach().cpu().numpy(), 4).tolist()
        return f"{'graph [A, X]' if self.graph else 'set entries'} {vals}"

    # -- the hypothesis hook --------------------------------------------------------------------------------
    def strategy(self) -> Any:
        from hypothesis import strategies as st

        numel = int(np.prod(self.pool.shape[1:]))
        from_pool = st.tuples(st.just("pool"), st.integers(0, self.pool.shape[0] - 1), st.floats(0.25, 2.0))
        entry = st.one_of(st.just(0.0), st.floats(0.01, 5.0), st.floats(-5.0, -0.01))  # no denormals (see _free)
        free = st.tuples(st.just("entries"), st.lists(entry, min_size=numel, max_size=numel))
        return st.tuples(st.sampled_from(list(self.scales())), st.one_of(from_pool, free))

    def build(self, example: Any) -> torch.Tensor:
        scale, (what, *rest) = example
        if what == "pool":
            i, amp = rest
            x = self.pool[i:i + 1].to(torch.float64) * amp
        else:
            x = torch.tensor(rest[0], dtype=torch.float64).reshape(1, *self.pool.shape[1:])
        return x * scale


@dataclass(frozen=True, eq=False)
class FeatureDomain(SetDomain):
    """Features (F,) or point clouds (N, F) of free real entries (an irreps layout acted on by a matrix, so no
    band-limit): the task's inputs × U[0.25, 2] and free entries (0, or 0.01 ≤ |v| ≤ 5), at growing scales. The sets'
    domain, minus its permutations: points are held as (N, F) (one feature vector: (1, F), flattened on render)."""

    flat: bool = False  # the model reads (B, F): points carry a dummy axis of length 1

    def __post_init__(self) -> None:
        if self.pool.dim() == 2:
            object.__setattr__(self, "pool", self.pool.unsqueeze(1))
            object.__setattr__(self, "flat", True)
        if self.pool.dim() != 3 or self.pool.shape[0] < 1:
            raise InputError("FeatureDomain.pool", tuple(self.pool.shape), "(P ≥ 1, F) features or (P, N, F) point "
                             "clouds", "pass the task's inputs as a float64 batch")

    def render(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        return x.flatten(1) if self.flat else x

    def describe(self) -> dict:
        shape = list(self.pool.shape[2:]) if self.flat else list(self.pool.shape[1:])
        return {"kind": "features" if self.flat else "point clouds", "pool": int(self.pool.shape[0]), "shape": shape,
                "scales": [f"{s:g}" for s in self.scales()],
                "inputs": "s · (task input × U[0.25, 2], or free entries 0 or 0.01 ≤ |v| ≤ 5), s in the scales"}

    def describe_input(self, x: torch.Tensor) -> str:
        vals = np.round((x.flatten() if self.flat else x).detach().cpu().numpy(), 4).tolist()
        return f"{'features' if self.flat else 'point cloud'} {vals}"
