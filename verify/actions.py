"""How a group acts on what a model reads and writes: image fields, vectors, sets and graphs.

Every transform runs in float64 on the tensor's device. Elements that map the pixel
grid onto itself (multiples of 90°, the flip) are applied by exact index gathers;
all other rotations by FFT shears (band-limited interpolation, float64), which has an
error of its own that the checker measures instead of ignoring.

Image convention (escnn's): a tensor (B, C, H, W) holds a field on the plane with
the last axis X and the second-last the inverted Y axis; the rotation centre is
the central pixel, so H = W must be odd. (g·x)(p) = ρ(g) x(M(g)⁻¹ p).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from verify.errors import InputError
from verify.groups import Group, PlaneElement, PlaneGroup, Representation, SymmetricGroup, Permutation


def _require_odd_square(x: torch.Tensor, what: str) -> int:
    if x.dim() != 4:
        raise InputError(f"{what} shape", tuple(x.shape), "(batch, channels, H, W)", "pass a batch of image fields")
    H, W = x.shape[-2:]
    if H != W or H % 2 == 0:
        raise InputError(
            f"{what} size", (H, W), "a square grid of odd size (the rotation centre must be a pixel)",
            "crop or pad the images to an odd square size, e.g. 29×29 or 33×33",
        )
    return H


def disk_mask(size: int, margin: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """1 inside the disk of radius (size−1)/2 − margin around the centre pixel, 0 outside (float64)."""
    c = (size - 1) / 2
    r = torch.arange(size, dtype=torch.float64, device=device) - c
    rr = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    return (rr <= c - margin).to(torch.float64)


def _source_coords(M: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) in the input from which each output pixel reads: q = M⁻¹ p, p in (X, Y) around the centre."""
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64, device=M.device)
    X = (idx - c)[None, :].expand(size, size)  # column → X
    Y = (c - idx)[:, None].expand(size, size)  # row → −Y
    Minv = torch.linalg.inv(M)
    qX = Minv[..., 0, 0, None, None] * X + Minv[..., 0, 1, None, None] * Y
    qY = Minv[..., 1, 0, None, None] * X + Minv[..., 1, 1, None, None] * Y
    return c - qY, c + qX


def _shift_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """out[..., r, j] = x[..., r, j − shift[..., r]] by band-limited (FFT) interpolation along the last axis, zero-padded.

    `shift` is (rows,) or (B, 1, rows) for one shift per image of a batch.
    """
    W = x.shape[-1]
    Wp = 2 * W + 1  # odd length: no Nyquist bin whose phase would be ambiguous; padding stops wrap-around
    # real rows: the half spectrum suffices (odd Wp keeps the shifted spectrum Hermitian), half the work of fft/ifft
    X = torch.fft.rfft(torch.nn.functional.pad(x, (0, Wp - W)), dim=-1)
    f = torch.fft.rfftfreq(Wp, dtype=torch.float64, device=x.device)
    phase = torch.exp(-2j * math.pi * f * shift[..., None])
    return torch.fft.irfft(X * phase, n=Wp, dim=-1)[..., :W]


def fourier_rotate(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """x(R(θ)⁻¹ p) by three FFT shears R(θ) = S_x(−tan θ/2) S_y(sin θ) S_x(−tan θ/2) (Unser, Thévenaz, Yaroslavsky 1995).

    θ is a scalar or one angle per image (shape (B,)). Each shear shifts rows (or columns) by band-limited interpolation, which is exact for
    band-limited rows; the error on smooth, centrally windowed images is far below that of
    bicubic interpolation (≈1e-2 at 45°), which is why the checker uses it. Meant for
    |θ| ≤ 45° (larger angles are reduced by exact quarter turns first). Differentiable in θ.
    """
    size0 = _require_odd_square(x, "image")
    # intermediate shears move content beyond the grid; pad so that nothing is cut before the last crop
    p = size0 // 2
    x = torch.nn.functional.pad(x.to(torch.float64), (p, p, p, p))
    size = size0 + 2 * p
    theta = torch.as_tensor(theta, dtype=torch.float64, device=x.device)
    a, b = -torch.tan(theta / 2), torch.sin(theta)
    if theta.dim() == 1:  # one angle per image: broadcast over (B, C, rows)
        a, b = a[:, None, None], b[:, None, None]
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64, device=x.device)
    Y_of_row, X_of_col = c - idx, idx - c

    def shear_x(t: torch.Tensor) -> torch.Tensor:  # I(X − aY, Y): each row moves by aY columns
        return _shift_rows(t, a * Y_of_row)

    def shear_y(t: torch.Tensor) -> torch.Tensor:  # I(X, Y − bX): each column moves by −bX rows
        return _shift_rows(t.transpose(-1, -2), -b * X_of_col).transpose(-1, -2)

    return shear_x(shear_y(shear_x(x)))[..., p:p + size0, p:p + size0]


def spatial_transform(x: torch.Tensor, M: np.ndarray | torch.Tensor, exact: bool) -> torch.Tensor:
    """x(M⁻¹ p) for a (B, C, H, W) tensor and a rotation or reflection M.

    Exact index gather when `exact` (M maps the grid onto itself); otherwise the flip and the
    nearest quarter turn are applied exactly and the remaining |φ| ≤ 45° by `fourier_rotate`.
    """
    size = _require_odd_square(x, "image")
    M = torch.as_tensor(np.asarray(M) if not torch.is_tensor(M) else M, dtype=torch.float64, device=x.device)
    if exact:
        rows, cols = _source_coords(M, size)
        ri, ci = torch.round(rows), torch.round(cols)
        if (ri - rows).abs().max() > 1e-9 or (ci - cols).abs().max() > 1e-9:
            raise InputError("element matrix", M.tolist(), "a matrix that maps the pixel grid onto itself",
                             "apply this element with exact=False (interpolation)")
        return x[..., ri.long(), ci.long()]
    det = float(torch.linalg.det(M))
    if abs(abs(det) - 1) > 1e-9 or float((M.T @ M - torch.eye(2, dtype=M.dtype, device=M.device)).abs().max()) > 1e-9:
        raise InputError("element matrix", M.tolist(), "an orthogonal 2×2 matrix (a rotation or a reflection)",
                         "only rotations and reflections of the plane are supported")
    F = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, device=x.device)
    if det < 0:  # M = R F: apply F exactly first (T_{RF} = T_R T_F)
        x = spatial_transform(x, F, exact=True)
        M = M @ F
    theta = math.atan2(float(M[1, 0]), float(M[0, 0]))
    k = round(theta / (math.pi / 2))
    phi = theta - k * math.pi / 2
    if k % 4:
        c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
        x = spatial_transform(x, torch.tensor([[c, -s], [s, c]], dtype=torch.float64, device=x.device), exact=True)
    return fourier_rotate(x, phi) if phi != 0.0 else x.to(torch.float64)


def rotate_by_angle(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """x(R(θ)⁻¹ p) for small θ, differentiable in θ (used for Lie derivatives at θ = 0)."""
    return fourier_rotate(x, theta)


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    """How G acts on a model's input or output tensor."""

    def check_shape(self, t: torch.Tensor, what: str) -> None:
        raise NotImplementedError

    def apply(self, t: torch.Tensor, g: object) -> torch.Tensor:
        raise NotImplementedError

    def exact(self, g: object) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class ImageField(Action):
    """A field on the plane (spatial=True): (B, C, H, W) with fibre representation ρ; or a vector (B, C) when spatial=False."""

    rep: Representation
    spatial: bool = True
    # a hand-written lookup of the transforms (g → the element actually applied); empty means g itself.
    # It exists to model table typos in negative controls; a correct action never needs it.
    table: tuple[tuple[PlaneElement, PlaneElement], ...] = ()

    def __repr__(self) -> str:
        typo = f", table {{{', '.join(f'{a!r}→{b!r}' for a, b in self.table)}}}" if self.table else ""
        return f"{'field' if self.spatial else 'vector'}({self.rep!r}{typo})"

    def _used(self, g: PlaneElement) -> PlaneElement:
        return dict(self.table).get(g, g)

    @property
    def group(self) -> PlaneGroup:
        return self.rep.group  # type: ignore[return-value]

    def check_shape(self, t: torch.Tensor, what: str) -> None:
        want = 4 if self.spatial else 2
        if t.dim() != want:
            raise InputError(f"{what} shape", tuple(t.shape), f"{'(B, C, H, W)' if self.spatial else '(B, C)'} for {self!r}",
                             "declare the representation with spatial=True for feature maps, False for vectors")
        if t.shape[1] != self.rep.size:
            raise InputError(f"{what} channels", t.shape[1], f"{self.rep.size} = size of {self.rep!r}",
                             "declare a representation whose size equals the model's channels (e.g. trivial(G, C))")
        if self.spatial:
            _require_odd_square(t, what)

    def exact(self, g: PlaneElement) -> bool:
        return (not self.spatial) or self.group.is_exact_on_grid(self._used(g))

    def apply(self, t: torch.Tensor, g: PlaneElement) -> torch.Tensor:
        g = self._used(self.group.require(g))
        rho = torch.as_tensor(self.rep(g), dtype=torch.float64, device=t.device)
        t = t.to(torch.float64)
        out = torch.einsum("oc,bc...->bo...", rho, t)
        if not self.spatial:
            return out
        # an inverted declaration (g ↦ ρ(g⁻¹)) acts with g⁻¹ on the base space too: the bug it models is
        # "the output is transformed by g⁻¹ where g is meant", which a trivial fibre would otherwise hide
        M = self.group.plane_matrix(self.group.inverse(g) if self.rep.inverted else g)
        return spatial_transform(out, M, exact=self.exact(g))

    def lie(self, t: torch.Tensor, A: np.ndarray) -> torch.Tensor:
        """dρ(A) applied to the fibres only (the spatial derivative is taken by jvp through rotate_by_angle)."""
        dr = torch.as_tensor(self.rep.lie(A), dtype=torch.float64, device=t.device)
        return torch.einsum("oc,bc...->bo...", dr, t.to(torch.float64))


@dataclass(frozen=True)
class SetAction(Action):
    """S_n on (B, n, d): permute the n items (equivariant), or act trivially on (B, k) (invariant output)."""

    group: SymmetricGroup
    invariant: bool = False
    graph: bool = False  # (B, n, n + d): adjacency in the first n columns, permuted on both sides

    def __repr__(self) -> str:
        kind = "invariant" if self.invariant else ("graph" if self.graph else "set")
        return f"{kind}({self.group.name})"

    def check_shape(self, t: torch.Tensor, what: str) -> None:
        n = self.group.n
        if self.invariant:
            if t.dim() != 2:
                raise InputError(f"{what} shape", tuple(t.shape), "(B, k) for an invariant output", "pool over the set")
            return
        if t.dim() != 3 or t.shape[1] != n:
            raise InputError(f"{what} shape", tuple(t.shape), f"(B, {n}, d): sets of n={n} items",
                             f"declare SymmetricGroup({t.shape[1] if t.dim() == 3 else '?'}) or feed sets of {n} items")
        if self.graph and t.shape[2] < n:
            raise InputError(f"{what} shape", tuple(t.shape), f"(B, {n}, {n} + d) with the adjacency first",
                             "concatenate [A, X] along the last axis")

    def exact(self, g: Permutation) -> bool:
        return True

    def apply(self, t: torch.Tensor, g: Permutation) -> torch.Tensor:
        if self.invariant:
            return t.to(torch.float64)
        inv = torch.as_tensor(self.group.inverse(g).perm, device=t.device)
        out = t.to(torch.float64)[:, inv]  # y[σ(i)] = x[i]  ⇔  y = x[σ⁻¹]
        if self.graph:
            n = self.group.n
            out = torch.cat([out[:, :, :n][:, :, inv], out[:, :, n:]], dim=-1)
        return out


def batch_apply(action: Action, t: torch.Tensor, elements: Sequence[object]) -> torch.Tensor:
    """(E·B, ...) = the action of each element on the batch, stacked element-major."""
    return torch.cat([action.apply(t, g) for g in elements], dim=0)


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Channel-wise isotropic Gaussian blur (float64), truncated at 4σ and renormalised.

    It commutes with any fibre representation (it acts on each channel alike) and,
    as a continuous operator, with every rotation and reflection; its sampled kernel is
    exactly symmetric under the 90° rotations and flips of the grid.
    """
    r = int(math.ceil(4 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=x.device)
    k1 = torch.exp(-t**2 / (2 * sigma**2))
    k2 = (k1[:, None] * k1[None, :])
    k2 = k2 / k2.sum()
    C = x.shape[1]
    w = k2.expand(C, 1, 2 * r + 1, 2 * r + 1)
    return torch.nn.functional.conv2d(x.to(torch.float64), w, padding=r, groups=C)
