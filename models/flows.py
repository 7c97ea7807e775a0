"""Normalising flows: NICE, RealNVP and Glow, each layer with its symbolic twin (forward, inverse and the log-det it
reports), trained by maximum likelihood on densities the project generates (verify/models/flow_tasks.py).

Every flow maps a batch (B, n) to (B, n) and has `forward`, `inverse`, `log_det` and `inverse_log_det` (and
`transform(x) -> (z, log_det)`, which training uses: the likelihood is built on the reported log-det, the number the
LogDet claim checks). Images are flattened channel-major, (C, H, W) → C·H·W, and reshaped inside the layers, so a
"pixel" p of channel c is coordinate c·H·W + p.

The layer twins are exact programs (verify/derive/symbolic.py): an additive coupling x_b ← x_b + m(x_a); an affine
coupling x_b ← x_b ⊙ exp(s(x_a)) + t(x_a) with s = Sσ(Wx_a + c), t = Tσ(Wx_a + c) (σ abstract: any activation);
actnorm x ← x ⊙ exp(logs_c) + bias_c per pixel; the 1×1 convolution W = P·L·(U + diag(sign·exp(log_s))) as its three
factors (one module call, three twins): the U factor carries det = Π sign·exp(log_s) per pixel, L is unit lower
triangular, P the permutation (a constant of the layer, as are the signs); squeezes are permutations of coordinates.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from verify.declare.registry import Size, architecture
from verify.derive.binding import Bound
from verify.derive.symbolic import Builder, SymbolicBlock, Vec
from verify.models import flow_tasks  # noqa: F401  (the tasks the flows train on)
from verify.properties import Invertible, LogDet, VolumePreserving

# -- twin helpers: gather and put coordinates (with their Jacobian rows) -------------------------------------------


def gather(x: Vec, idx: Sequence[int]) -> Vec:
    return Vec(x.b, [x.vals[i] for i in idx], None if x.jac is None else [x.jac[i] for i in idx])


def put(x: Vec, idx: Sequence[int], v: Vec) -> Vec:
    """x with coordinates idx replaced by v."""
    vals = list(x.vals)
    jac = None if x.jac is None or v.jac is None else list(x.jac)
    for k, i in enumerate(idx):
        vals[i] = v.vals[k]
        if jac is not None:
            jac[i] = v.jac[k]
    return Vec(x.b, vals, jac)


def _const(b: Builder, c: int) -> Any:
    import sympy as sp

    return b.backend.const(sp.Rational(c))


# -- torch layers ---------------------------------------------------------------------------------------------


class FlowLayer(nn.Module):
    """One invertible layer: transform(x) -> (y, log|det J|) and inverse_transform(y) -> (x, log|det J_inverse|)."""

    depth = 1

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)[0]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse_transform(y)[0]

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)[1]

    def inverse_log_det(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse_transform(y)[1]


def _zeros(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


class _Split:
    """Coordinates a coupling conditions on (a) and moves (b); the rest pass through. Output assembly is a gather of a
    concatenation (exact: no arithmetic touches the untouched coordinates)."""

    def __init__(self, n: int, idx_a: Sequence[int], idx_b: Sequence[int]) -> None:
        self.n, self.idx_a, self.idx_b = n, list(idx_a), list(idx_b)
        moved = set(self.idx_b)
        self.keep = [i for i in range(n) if i not in moved]
        order = self.keep + self.idx_b
        self.back = [order.index(i) for i in range(n)]

    def assemble(self, x: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, self.keep], moved], dim=-1)[:, self.back]


class AdditiveCoupling(FlowLayer):
    """NICE: x_b ← x_b + W₂σ(W₁x_a + b₁) + b₂; det J = 1 (log-det 0)."""

    def __init__(self, n: int, idx_a: Sequence[int], idx_b: Sequence[int], width: int) -> None:
        super().__init__()
        self.split = _Split(n, idx_a, idx_b)
        a, b = len(idx_a), len(idx_b)
        self.W1 = nn.Parameter(torch.randn(width, a) / a ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(width))
        self.W2 = nn.Parameter(0.1 * torch.randn(b, width) / width ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(b))
        self.sigma = torch.tanh

    def _m(self, xa: torch.Tensor) -> torch.Tensor:
        return self.sigma(xa @ self.W1.T + self.b1) @ self.W2.T + self.b2

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.split
        return s.assemble(x, x[:, s.idx_b] + self._m(x[:, s.idx_a])), _zeros(x)

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.split
        return s.assemble(y, y[:, s.idx_b] - self._m(y[:, s.idx_a])), _zeros(y)

    def symbolic_layers(self) -> list[Bound]:
        s = self.split
        return [Bound(additive_coupling_block(s.n, s.idx_a, s.idx_b, self.W1.shape[0]), self)]


class AffineCoupling(FlowLayer):
    """RealNVP / Glow: x_b ← x_b ⊙ exp(s) + t, s = Sσ(Wx_a + c), t = Tσ(Wx_a + c); log|det J| = Σ s.

    `overlap` > 0 (a negative control) lets the conditioner also read the first `overlap` moved coordinates, so the
    "fixed" half is not fixed; `log_det_sign`/`inverse_log_det_sign` = −1 (controls) flip a reported log-det."""

    def __init__(self, n: int, idx_a: Sequence[int], idx_b: Sequence[int], width: int, overlap: int = 0,
                 log_det_sign: int = 1, inverse_log_det_sign: int = 1) -> None:
        super().__init__()
        self.split = _Split(n, idx_a, idx_b)
        self.cond = list(idx_a) + list(idx_b)[:overlap]
        self.overlap, self.signs = overlap, (log_det_sign, inverse_log_det_sign)
        a, b = len(self.cond), len(idx_b)
        self.W = nn.Parameter(torch.randn(width, a) / a ** 0.5)
        self.c = nn.Parameter(torch.zeros(width))
        self.S = nn.Parameter(0.01 * torch.randn(b, width))
        self.T = nn.Parameter(0.01 * torch.randn(b, width))
        self.sigma = torch.tanh

    def _st(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.sigma(x[:, self.cond] @ self.W.T + self.c)
        return h @ self.S.T, h @ self.T.T

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x)
        return self.split.assemble(x, x[:, self.split.idx_b] * torch.exp(s) + t), self.signs[0] * s.sum(-1)

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # with overlap > 0 this reads transformed coordinates: it is the inverse the code declares, not f⁻¹
        s, t = self._st(y)
        return self.split.assemble(y, (y[:, self.split.idx_b] - t) * torch.exp(-s)), -self.signs[1] * s.sum(-1)

    def symbolic_layers(self) -> list[Bound]:
        sp = self.split
        block = affine_coupling_block(sp.n, sp.idx_a, sp.idx_b, self.W.shape[0], self.overlap, *self.signs)
        return [Bound(block, self)]


class Scaling(FlowLayer):
    """NICE's last layer: x ← x ⊙ exp(s); log|det J| = Σ s."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.zeros(n))

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.s), self.s.sum().expand(x.shape[0])

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y * torch.exp(-self.s), (-self.s.sum()).expand(y.shape[0])

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(scaling_block(self.s.shape[0]), self)]


class ActNorm(FlowLayer):
    """Glow's actnorm on the first C·P coordinates (C channels of P pixels): x ← x ⊙ exp(logs_c) + bias_c;
    log|det J| = P·Σ logs. `forget_pixels` (a negative control) reports Σ logs, without the factor P = H·W."""

    def __init__(self, n: int, channels: int, pixels: int, forget_pixels: bool = False) -> None:
        super().__init__()
        self.n, self.C, self.P, self.forget_pixels = n, channels, pixels, forget_pixels
        self.logs = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _report(self, sign: float, x: torch.Tensor) -> torch.Tensor:
        factor = 1 if self.forget_pixels else self.P
        return (sign * factor * self.logs.sum()).expand(x.shape[0])

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.C * self.P
        z = x[:, :m].reshape(-1, self.C, self.P) * torch.exp(self.logs)[:, None] + self.bias[:, None]
        return torch.cat([z.reshape(-1, m), x[:, m:]], -1), self._report(1.0, x)

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.C * self.P
        z = (y[:, :m].reshape(-1, self.C, self.P) - self.bias[:, None]) * torch.exp(-self.logs)[:, None]
        return torch.cat([z.reshape(-1, m), y[:, m:]], -1), self._report(-1.0, y)

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(actnorm_block(self.n, self.C, self.P, self.forget_pixels), self)]


class InvConv1x1(FlowLayer):
    """Glow's invertible 1×1 convolution in LU form, W = P·L·(U + diag(sign·exp(log_s))), on the first C·P coordinates;
    log|det J| = P_pixels·Σ log_s (|det P| = 1, |sign| = 1). The permutation and signs are fixed at initialisation
    (buffers); L, U, log_s are learned. `ignore_permutation` (a negative control): the inverse forgets Pᵀ."""

    def __init__(self, n: int, channels: int, pixels: int, ignore_permutation: bool = False) -> None:
        super().__init__()
        self.n, self.C, self.P, self.ignore_permutation = n, channels, pixels, ignore_permutation
        # the LU factors of a random rotation, as Glow initialises them
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        p, low, up = torch.linalg.lu(q)
        diag = torch.diagonal(up)
        perm = torch.argmax(p, dim=1)  # q = p·low·up and (p z)_i = z_{perm[i]}
        self.register_buffer("perm", perm)
        self.register_buffer("sign", torch.sign(diag))
        self.L = nn.Parameter(torch.tril(low, -1))
        self.U = nn.Parameter(torch.triu(up, 1))
        self.log_s = nn.Parameter(torch.log(diag.abs()))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.C, dtype=self.L.dtype, device=self.L.device)
        lower = torch.tril(self.L, -1) + eye
        upper = torch.triu(self.U, 1) + torch.diag(self.sign * torch.exp(self.log_s))
        return lower, upper

    def _mix(self, W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        m = self.C * self.P
        z = torch.einsum("ij,bjp->bip", W, x[:, :m].reshape(-1, self.C, self.P))
        return torch.cat([z.reshape(-1, m), x[:, m:]], -1)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self._factors()
        W = (lower @ upper)[self.perm]
        return self._mix(W, x), (self.P * self.log_s.sum()).expand(x.shape[0])

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self._factors()
        eye = torch.eye(self.C, dtype=lower.dtype, device=lower.device)
        inv_lu = torch.linalg.solve_triangular(upper, torch.linalg.solve_triangular(lower, eye, upper=False,
                                                                                    unitriangular=True), upper=True)
        # W⁻¹ = (P·L·U)⁻¹ = U⁻¹·L⁻¹·Pᵀ; the control drops Pᵀ
        W_inv = inv_lu if self.ignore_permutation else inv_lu[:, self.perm]  # (U⁻¹L⁻¹Pᵀ)[:, k] = (U⁻¹L⁻¹)[:, perm[k]]
        return self._mix(W_inv, y), (-self.P * self.log_s.sum()).expand(y.shape[0])

    def symbolic_layers(self) -> list[Bound]:
        perm, sign = [int(v) for v in self.perm], [int(v) for v in self.sign]
        u, low, p = lu_blocks(self.n, self.C, self.P, perm, sign, self.ignore_permutation)
        return [Bound(u, self), Bound(low, self, continues_call=True), Bound(p, self, continues_call=True)]


class Permute(FlowLayer):
    """A fixed permutation of the coordinates (Glow's squeeze on the first m of them); log|det J| = 0."""

    def __init__(self, order: Sequence[int], label: str) -> None:
        super().__init__()
        self.order, self.label = list(order), label
        self.back = sorted(range(len(self.order)), key=lambda k: self.order[k])

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.order], _zeros(x)

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y[:, self.back], _zeros(y)

    def symbolic_layers(self) -> list[Bound]:
        return [Bound(permutation_block(self.order, self.label), self)]


def squeeze_order(n: int, channels: int, height: int, width: int) -> list[int]:
    """Coordinates of (C, H, W) → (4C, H/2, W/2) (Glow's squeeze) on the first C·H·W of n, as a gather list."""
    m = channels * height * width
    idx = torch.arange(m).reshape(channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3).reshape(-1)
    return idx.tolist() + list(range(m, n))


# -- flows ---------------------------------------------------------------------------------------------------------


class Flow(FlowLayer):
    """A composition of flow layers; its log-det is the sum of theirs (the lemma the symbolic stage lifts by). The
    forward/inverse/log_det methods are FlowLayer's, read off transform and inverse_transform."""

    def __init__(self, layers: Sequence[FlowLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = _zeros(x)
        for layer in self.layers:
            x, ld = layer.transform(x)
            total = total + ld
        return x, total

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = _zeros(y)
        for layer in reversed(self.layers):
            y, ld = layer.inverse_transform(y)
            total = total + ld
        return y, total

    def symbolic_layers(self) -> list[Bound]:
        return [bound for layer in self.layers for bound in layer.symbolic_layers()]


def _halves(n: int, i: int) -> tuple[list[int], list[int]]:
    """Alternating masks on Rⁿ: even layers condition on the first half, odd ones on the second."""
    first, second = list(range(n // 2)), list(range(n // 2, n))
    return (first, second) if i % 2 == 0 else (second, first)


class NICE(Flow):
    """NICE (Dinh et al. 2014): additive couplings with alternating masks, then (if `scaling`) a diagonal scaling."""

    def __init__(self, dim: int = 2, layers: int = 4, width: int = 32, scaling: bool = True) -> None:
        blocks: list[FlowLayer] = [AdditiveCoupling(dim, *_halves(dim, i), width) for i in range(layers)]
        super().__init__(blocks + ([Scaling(dim)] if scaling else []))


class RealNVP(Flow):
    """RealNVP (Dinh et al. 2016): affine couplings with alternating masks, s bounded by a tanh hidden layer."""

    def __init__(self, dim: int = 2, layers: int = 6, width: int = 32, log_det_sign: int = 1,
                 inverse_log_det_sign: int = 1, overlap: int = 0) -> None:
        super().__init__([AffineCoupling(dim, *_halves(dim, i), width, overlap=overlap, log_det_sign=log_det_sign,
                                         inverse_log_det_sign=inverse_log_det_sign) for i in range(layers)])


class Glow(Flow):
    """Glow (Kingma & Dhariwal 2018) on flattened (C, H, W) images: squeeze, K steps of actnorm → invertible 1×1
    convolution (LU) → affine coupling (channel halves), split half the channels off, squeeze again, K more steps.

    Differences from the paper, stated: the coupling's s, t come from a one-hidden-layer MLP of the conditioning half
    (not a 3-layer CNN), actnorm starts at the identity (no data-dependent initialisation, so training stays a
    deterministic function of the seed), and the split-off half is scored under N(0, I) (no learned prior)."""

    def __init__(self, channels: int = 1, height: int = 8, width: int = 8, steps: int = 2, hidden: int = 16,
                 levels: int = 2, forget_pixels: bool = False, ignore_permutation: bool = False) -> None:
        n = channels * height * width
        layers: list[FlowLayer] = []
        C, H, W, m = channels, height, width, n
        for level in range(levels):
            layers.append(Permute(squeeze_order(n, C, H, W), f"squeeze {C}×{H}×{W} → {4 * C}×{H // 2}×{W // 2}"))
            C, H, W = 4 * C, H // 2, W // 2
            P = H * W
            for _ in range(steps):
                layers.append(ActNorm(n, C, P, forget_pixels=forget_pixels))
                layers.append(InvConv1x1(n, C, P, ignore_permutation=ignore_permutation))
                half = (C // 2) * P
                layers.append(AffineCoupling(n, range(half), range(half, m), hidden))
            if level < levels - 1:  # split: the second half of the channels leaves the flow (scored as z)
                C, m = C // 2, m // 2
        super().__init__(layers)
        self.image_shape = (channels, height, width)


# -- symbolic twins ------------------------------------------------------------------------------------------------


def _short(idx: Sequence[int]) -> str:
    idx = list(idx)
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{idx[0]}..{idx[-1]}"
    return ",".join(map(str, idx))


def additive_coupling_block(n: int, idx_a: Sequence[int], idx_b: Sequence[int], width: int) -> SymbolicBlock:
    a, bb = len(idx_a), len(idx_b)

    def m(b: Builder, xa: Vec) -> Vec:
        return b.matrix("W2", bb, width) @ b.act("sigma", b.matrix("W1", width, a) @ xa + b.bias("b1", width)) \
            + b.bias("b2", bb)

    def fwd(b: Builder, x: Vec) -> Vec:
        return put(x, idx_b, gather(x, idx_b) + m(b, gather(x, idx_a)))

    def inv(b: Builder, y: Vec) -> Vec:
        return put(y, idx_b, gather(y, idx_b) - m(b, gather(y, idx_a)))

    return SymbolicBlock(f"additive coupling [{_short(idx_b)}] | [{_short(idx_a)}] (n={n})", n, fwd, inv,
                         "x_b ← x_b + W₂σ(W₁x_a + b₁) + b₂", log_det=lambda b, x: [], inverse_log_det=lambda b, y: [])


def affine_coupling_block(n: int, idx_a: Sequence[int], idx_b: Sequence[int], width: int, overlap: int = 0,
                          log_det_sign: int = 1, inverse_log_det_sign: int = 1) -> SymbolicBlock:
    cond = list(idx_a) + list(idx_b)[:overlap]
    a, bb = len(cond), len(idx_b)

    def st(b: Builder, x: Vec) -> tuple[Vec, Vec]:
        h = b.act("sigma", b.matrix("W", width, a) @ gather(x, cond) + b.bias("c", width))
        return b.matrix("S", bb, width) @ h, b.matrix("T", bb, width) @ h

    def fwd(b: Builder, x: Vec) -> Vec:
        s, t = st(b, x)
        return put(x, idx_b, gather(x, idx_b) * b.exp(s) + t)

    def inv(b: Builder, y: Vec) -> Vec:
        s, t = st(b, y)
        return put(y, idx_b, (gather(y, idx_b) - t) * b.exp(-s))

    def ld(b: Builder, x: Vec) -> Vec:
        return st(b, x)[0].scale(log_det_sign)

    def inv_ld(b: Builder, y: Vec) -> Vec:
        return st(b, y)[0].scale(-inverse_log_det_sign)

    tags = (f", overlap {overlap}" if overlap else "") + (", log-det sign flipped" if log_det_sign < 0 else "") \
        + (", inverse log-det sign flipped" if inverse_log_det_sign < 0 else "")
    return SymbolicBlock(f"affine coupling [{_short(idx_b)}] | [{_short(cond)}] (n={n}{tags})", n, fwd, inv,
                         "x_b ← x_b ⊙ exp(s) + t, s = Sσ(Wx_a + c), t = Tσ(Wx_a + c); reports Σ s",
                         log_det=ld, inverse_log_det=inv_ld)


def scaling_block(n: int) -> SymbolicBlock:
    return SymbolicBlock(
        f"scaling (n={n})", n, lambda b, x: x * b.exp(b.bias("s", n)), lambda b, y: y * b.exp(-b.bias("s", n)),
        "x ← x ⊙ exp(s); reports Σ s", log_det=lambda b, x: b.bias("s", n), inverse_log_det=lambda b, y: -b.bias("s", n))


def actnorm_block(n: int, C: int, P: int, forget_pixels: bool = False) -> SymbolicBlock:
    m = C * P

    def per_coordinate(b: Builder, name: str) -> Vec:
        v = b.vector(name, C)
        return b.constant_vec([v[i // P] for i in range(m)])

    def fwd(b: Builder, x: Vec) -> Vec:
        return put(x, range(m), x[:m] * b.exp(per_coordinate(b, "logs")) + per_coordinate(b, "bias"))

    def inv(b: Builder, y: Vec) -> Vec:
        return put(y, range(m), (y[:m] - per_coordinate(b, "bias")) * b.exp(-per_coordinate(b, "logs")))

    def ld(b: Builder, x: Vec) -> Vec:
        return b.bias("logs", C) if forget_pixels else per_coordinate(b, "logs")

    def inv_ld(b: Builder, y: Vec) -> Vec:
        return -ld(b, y)

    tag = ", reports Σ logs without the factor H·W" if forget_pixels else ""
    return SymbolicBlock(f"actnorm {C}×{P} (n={n}{tag})", n, fwd, inv,
                         "x ← x ⊙ exp(logs_c) + bias_c per pixel; reports H·W·Σ logs", log_det=ld, inverse_log_det=inv_ld)


def _pixels(x: Vec, C: int, P: int, p: int) -> Vec:
    return gather(x, [c * P + p for c in range(C)])


def _per_pixel(x: Vec, C: int, P: int, program: Callable[[Vec], Vec]) -> Vec:
    out = x
    for p in range(P):
        out = put(out, [c * P + p for c in range(C)], program(_pixels(x, C, P, p)))
    return out


def lu_blocks(n: int, C: int, P: int, perm: Sequence[int], sign: Sequence[int],
              ignore_permutation: bool = False) -> tuple[SymbolicBlock, SymbolicBlock, SymbolicBlock]:
    """The three factors of the LU 1×1 convolution as blocks, applied per pixel: U (with the diagonal sign·exp(log_s)),
    L (unit lower triangular), P (the fixed permutation). Their inverses are back and forward substitution and Pᵀ."""
    back = sorted(range(C), key=lambda k: perm[k])
    tag = f"{C}×{P}, n={n}"

    def upper(b: Builder) -> tuple[Any, list[Any]]:
        return b.matrix("U", C, C), b.vector("log_s", C)

    def u_fwd(b: Builder, x: Vec) -> Vec:
        U, log_s = upper(b)
        diag = [_const(b, sign[c]) * b.backend.exp(log_s[c]) for c in range(C)]
        from verify.derive.symbolic import Mat

        rows = [[diag[i] if j == i else (U.rows[i][j] if j > i else b.backend.zero) for j in range(C)] for i in range(C)]
        return _per_pixel(x, C, P, lambda v: Mat(rows) @ v)

    def u_inv(b: Builder, y: Vec) -> Vec:
        U, log_s = upper(b)

        def solve(v: Vec) -> Vec:
            xs: list[Vec | None] = [None] * C
            for i in reversed(range(C)):
                acc = v[i:i + 1]
                for j in range(i + 1, C):
                    acc = acc - xs[j].scale(U.rows[i][j])
                xs[i] = acc.scale(_const(b, sign[i]) * b.backend.exp(-log_s[i]))
            return Builder.concat(*xs)

        return _per_pixel(y, C, P, solve)

    def u_ld(b: Builder, x: Vec) -> Vec:
        return b.constant_vec([v for v in b.vector("log_s", C) for _ in range(P)])

    def l_fwd(b: Builder, x: Vec) -> Vec:
        from verify.derive.symbolic import Mat

        L = b.matrix("L", C, C)
        rows = [[b.backend.one if j == i else (L.rows[i][j] if j < i else b.backend.zero) for j in range(C)]
                for i in range(C)]
        return _per_pixel(x, C, P, lambda v: Mat(rows) @ v)

    def l_inv(b: Builder, y: Vec) -> Vec:
        L = b.matrix("L", C, C)

        def solve(v: Vec) -> Vec:
            zs: list[Vec] = []
            for i in range(C):
                acc = v[i:i + 1]
                for j in range(i):
                    acc = acc - zs[j].scale(L.rows[i][j])
                zs.append(acc)
            return Builder.concat(*zs)

        return _per_pixel(y, C, P, solve)

    def p_fwd(b: Builder, x: Vec) -> Vec:
        return _per_pixel(x, C, P, lambda v: gather(v, perm))

    def p_inv(b: Builder, y: Vec) -> Vec:
        return y if ignore_permutation else _per_pixel(y, C, P, lambda v: gather(v, back))

    def none(b: Builder, x: Vec) -> list:
        return []

    u = SymbolicBlock(f"1×1 conv U·diag(sign·exp(log_s)) {tag}, signs {list(sign)}", n, u_fwd, u_inv,
                      "z = (U + diag(sign·exp(log_s)))x per pixel; reports H·W·Σ log_s",
                      log_det=u_ld, inverse_log_det=lambda b, y: -u_ld(b, y))
    low = SymbolicBlock(f"1×1 conv L {tag}", n, l_fwd, l_inv, "z = L x per pixel, L unit lower triangular",
                        log_det=none, inverse_log_det=none)
    p = SymbolicBlock(f"1×1 conv P {tag}, perm {list(perm)}" + (" (inverse ignores P)" if ignore_permutation else ""),
                      n, p_fwd, p_inv, "z_i = x_perm(i) per pixel", log_det=none, inverse_log_det=none)
    return u, low, p


def permutation_block(order: Sequence[int], label: str) -> SymbolicBlock:
    back = sorted(range(len(order)), key=lambda k: order[k])
    n = len(order)
    return SymbolicBlock(f"{label} (n={n})", n, lambda b, x: gather(x, order), lambda b, y: gather(y, back),
                         "a fixed permutation of coordinates", log_det=lambda b, x: [], inverse_log_det=lambda b, y: [])


# -- registrations -------------------------------------------------------------------------------------------------

LOG_DET = LogDet(inverse_method="inverse_log_det")


def _sizes(quick: Mapping[str, Any], full: Mapping[str, Any], steps: tuple[int, int] = (200, 1500),
           lr: float = 5e-3, n_train: tuple[int, int] = (1024, 4096)) -> dict[str, Size]:
    return {"quick": Size(config=dict(quick), steps=steps[0], lr=lr, n_train=n_train[0]),
            "full": Size(config=dict(full), steps=steps[1], lr=lr, n_train=n_train[1])}


architecture(
    "nice", task="eight-gaussians", claims=[Invertible(), LOG_DET],
    description="NICE: 4 additive couplings (alternating masks, tanh MLP) and a diagonal scaling, by maximum likelihood",
    reference="Dinh, Krueger, Bengio 2014, arXiv:1410.8516",
    sizes=_sizes({"dim": 2, "layers": 4, "width": 32}, {"dim": 2, "layers": 6, "width": 64}),
)(NICE)

architecture(
    "nice-volume", task="two-moons", claims=[Invertible(), VolumePreserving(), LOG_DET],
    description="NICE without its scaling layer: additive couplings only, so det J = 1 (volume preserving)",
    reference="Dinh, Krueger, Bengio 2014, arXiv:1410.8516",
    # narrower and gentler than `nice`: a volume-preserving flow fits a density only by shearing mass far, and the
    # round trip of wide trained shears exceeded Invertible's 1.5·L·eps model (see the report of issue 10)
    sizes=_sizes({"dim": 2, "layers": 4, "width": 16, "scaling": False},
                 {"dim": 2, "layers": 4, "width": 32, "scaling": False}, lr=2e-3),
)(NICE)

architecture(
    "realnvp", task="two-moons", claims=[Invertible(), LOG_DET],
    description="RealNVP: 6 affine couplings with alternating masks; log|det J| = Σ s reported and proved",
    reference="Dinh, Sohl-Dickstein, Bengio 2016, arXiv:1605.08803",
    sizes=_sizes({"dim": 2, "layers": 6, "width": 32}, {"dim": 2, "layers": 8, "width": 64}),
)(RealNVP)

