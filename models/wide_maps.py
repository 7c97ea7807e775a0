"""Maps at the sizes of real invertible networks (n = 16 … 10⁴) for the matrix-free numeric stage: its tests and
benchmarks (benchmarks/matrix_free.py). Not registered: they are fixtures of the verifier's own power at scale.

* `CouplingFlow`: additive (volume preserving, det J = 1 exactly) or affine coupling layers (a Glow-like stack: actnorm,
  an invertible 1×1 convolution over `channels`, an affine coupling with tanh-bounded log-scales) between fixed
  orthogonal mixings (two Householder reflections: det = +1, O(n) to apply); reports `log_det(x)`, has `inverse(y)`.
* planted violations, each of relative size δ and confined to one coordinate: `ScaledCoordinate` (det J = 1 + δ, the
  inverse still exact), `BrokenInverse` (the inverse is off by δ on one coordinate), `NonSymplecticBlock` (one
  (q_i, p_i) pair scaled by 1 + δ: a single non-symplectic 2×2 block among n coordinates).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from verify.models.sympnets import GSympNet


def _householder(n: int, gen: torch.Generator) -> torch.Tensor:
    v = torch.randn(n, generator=gen)
    return v / v.norm()


class CouplingFlow(nn.Module):
    """A coupling flow on flat vectors (B, n): `layers` couplings alternating the conditioned half, each followed by
    a fixed orthogonal mixing H₂H₁ (two reflections, det +1). `affine=True`: Glow-like (actnorm, 1×1 convolution over
    `channels` contiguous blocks, affine coupling); `affine=False`: additive couplings only (det J = 1)."""

    def __init__(self, n: int, layers: int = 4, width: int = 64, affine: bool = False, channels: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        if n % 2 or (affine and n % channels):
            raise ValueError(f"n={n}: expected an even n (divisible by channels={channels} when affine)")
        gen = torch.Generator().manual_seed(seed)
        self.n, self.h, self.affine, self.channels = n, n // 2, affine, channels
        self.nets = nn.ModuleList()
        for _ in range(layers):
            net = nn.Sequential(nn.Linear(self.h, width), nn.Tanh(), nn.Linear(width, self.h * (2 if affine else 1)))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(p.shape[-1])))
            self.nets.append(net)
        self.register_buffer("mix", torch.stack([torch.stack([_householder(n, gen), _householder(n, gen)])
                                                 for _ in range(layers)]))
        if affine:
            self.an_log = nn.Parameter(0.1 * torch.randn(channels, generator=gen))
            self.an_bias = nn.Parameter(0.1 * torch.randn(channels, generator=gen))
            q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=gen))
            self.conv = nn.Parameter(q + 0.1 * torch.randn(channels, channels, generator=gen))

    # -- pieces ---------------------------------------------------------------------------------------------------
    def _mixing(self, x: torch.Tensor, i: int, inverse: bool = False) -> torch.Tensor:
        vs = self.mix[i].to(x.dtype)
        for v in (vs.flip(0) if inverse else vs):  # H = I − 2vvᵀ/vᵀv is its own inverse; H₂H₁ inverted is H₁H₂
            # divided by vᵀv in the running dtype: a reflection (det −1, orthogonal) in float64 too, where the stored
            # float32 v is not exactly of unit length
            x = x - (2 / (v @ v)) * (x @ v).unsqueeze(-1) * v
        return x

    def _coupling(self, x: torch.Tensor, i: int, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = (x[:, :self.h], x[:, self.h:]) if i % 2 == 0 else (x[:, self.h:], x[:, :self.h])
        out = self.nets[i](a)
        if self.affine:
            s, t = torch.tanh(out[:, :self.h]), out[:, self.h:]
            b = (b - t) * torch.exp(-s) if inverse else b * torch.exp(s) + t
            ld = s.sum(-1)
        else:
            b = b - out if inverse else b + out
            ld = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        y = torch.cat([a, b], -1) if i % 2 == 0 else torch.cat([b, a], -1)
        return y, (-ld if inverse else ld)

    def _glow_in(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        B, c = x.shape[0], self.channels
        z = x.reshape(B, c, -1)
        pixels = z.shape[-1]
        W = self.conv.to(x.dtype)
        if not inverse:
            z = z * torch.exp(self.an_log).reshape(1, c, 1) + self.an_bias.reshape(1, c, 1)
            z = torch.einsum("ij,bjp->bip", W, z)
        else:
            z = torch.einsum("ij,bjp->bip", torch.linalg.inv(W), z)
            z = (z - self.an_bias.reshape(1, c, 1)) * torch.exp(-self.an_log).reshape(1, c, 1)
        ld = pixels * (self.an_log.sum() + torch.linalg.slogdet(W)[1])
        return z.reshape(B, -1), torch.full((B,), float(1), dtype=x.dtype, device=x.device) * (-ld if inverse else ld)

    # -- the map ------------------------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.affine:
            x, l0 = self._glow_in(x, inverse=False)
            ld = ld + l0
        for i in range(len(self.nets)):
            x, l1 = self._coupling(x, i, inverse=False)
            x = self._mixing(x, i)
            ld = ld + l1
        return x, ld

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[1]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for i in reversed(range(len(self.nets))):
            y = self._mixing(y, i, inverse=True)
            y, _ = self._coupling(y, i, inverse=True)
        if self.affine:
            y, _ = self._glow_in(y, inverse=True)
        return y


class ScaledCoordinate(nn.Module):
    """`base` followed by x_k ← (1 + δ)·x_k: det J = (1 + δ)·det J_base; inverse and log_det stay exact for the map
    with `honest_log_det=True`, else log_det omits the log(1 + δ) (a flow's bookkeeping bug)."""

    def __init__(self, base: nn.Module, delta: float, k: int = 0, honest_log_det: bool = True) -> None:
        super().__init__()
        self.base, self.delta, self.k, self.honest = base, delta, k, honest_log_det

    def _scale(self, x: torch.Tensor, power: float) -> torch.Tensor:
        f = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        f[self.k] = (1 + self.delta) ** power
        return x * f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale(self.base(x), 1.0)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.inverse(self._scale(y, -1.0))

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        extra = math.log1p(self.delta) if self.honest else 0.0
        return self.base.log_det(x) + extra


class BrokenInverse(nn.Module):
    """`base` whose inverse is off by δ·(1 + |y_k|) on coordinate k (a wrong constant in one coordinate's inverse)."""

    def __init__(self, base: nn.Module, delta: float, k: int = 0) -> None:
        super().__init__()
        self.base, self.delta, self.k = base, delta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = self.base.inverse(y)
        bump = torch.zeros_like(x)
        bump[:, self.k] = self.delta * (1 + y[:, self.k].abs())
        return x + bump

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.log_det(x)


class NonSymplecticBlock(nn.Module):
    """`base` followed by q_k ← (1 + δ)·q_k: one 2×2 block (q_k, p_k) with determinant 1 + δ, so JᵀΩJ − Ω has entries
    of size δ in that block alone, among n coordinates."""

    def __init__(self, base: nn.Module, delta: float, k: int = 0) -> None:
        super().__init__()
        self.base, self.delta, self.k = base, delta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        f = torch.ones(y.shape[-1], dtype=y.dtype, device=y.device)
        f[self.k] = 1 + self.delta
        return y * f


def sympnet(n: int, layers: int = 4, width: int = 64, seed: int = 0) -> nn.Module:
    """A G-SympNet (models/sympnets.py: alternating gradient kicks and drifts) at phase-space dimension n, seeded."""
    torch.manual_seed(seed)
    return GSympNet(n, layers=layers, width=width).eval()
