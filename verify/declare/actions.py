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

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from verify.errors import InputError
from verify.declare.groups import PlaneElement, PlaneGroup, Representation, SymmetricGroup, Permutation


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


def comparison_window(size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(taper, mask) for comparing a field with its rotated copy.

    A field that does not vanish at the square's edge (a convolution's bias, say) has a sharp boundary, and its
    band-limited rotation rings: a constant field rotated by 45° is off by 1.9 % inside the disk of radius c − 1
    (29×29). So the field is multiplied by a taper, 1 on the disk r ≤ r₀ and falling as cos² to 0 at r = c − 1
    (r₀ = c − 1 − w, w = max(3, 0.35c) px), before it is rotated, and compared on that disk only, where the taper is
    1 and, in the continuum, T_g(taper·y) = T_g(y) exactly. The constant field's error drops to 0.11 %.
    """
    c = (size - 1) / 2
    r = torch.arange(size, dtype=torch.float64, device=device) - c
    rr = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    width = max(3.0, 0.35 * c)
    r0 = c - 1 - width
    taper = torch.cos(math.pi / 2 * torch.clamp((rr - r0) / width, 0.0, 1.0)) ** 2
    return taper, (rr <= r0).to(torch.float64)


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
    """out[..., r, j] = x[..., r, j − shift[..., r]] by band-limited (FFT) interpolation along the last axis, circularly.

    The row length must be odd (no Nyquist bin whose phase would be ambiguous) and the caller pads the rows so that
    the shifted content does not wrap around. `shift` is (rows,) or (B, 1, rows) for one shift per image of a batch.
    Real rows: the half spectrum suffices (an odd length keeps the shifted spectrum Hermitian).
    """
    L = x.shape[-1]
    X = torch.fft.rfft(x, dim=-1)
    f = torch.fft.rfftfreq(L, dtype=torch.float64, device=x.device)
    return torch.fft.irfft(X * torch.exp(-2j * math.pi * f * shift[..., None]), n=L, dim=-1)


def fourier_rotate(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """x(R(θ)⁻¹ p) by three FFT shears R(θ) = S_x(−tan θ/2) S_y(sin θ) S_x(−tan θ/2) (Unser, Thévenaz, Yaroslavsky 1995).

    θ is a scalar or one angle per image (shape (B,)), so every element of a group can be rotated in one call. Each
    shear shifts rows (or columns) by band-limited interpolation, which is exact for band-limited rows; the error on
    smooth, centrally windowed images is far below that of bicubic interpolation (≈1e-2 at 45°), which is why the
    checker uses it. Meant for |θ| ≤ 45° (larger angles are reduced by exact quarter turns first). Differentiable in θ.

    Work is kept to what the crop needs: an N×N image is padded to rows of length L = 2N − 1 (odd, and wide enough
    that no content wraps around at |θ| ≤ 45°); only its N rows are sheared first, the L columns next, and only the N
    rows that survive the final crop last (a third of the transforms of padding the whole image twice).
    """
    N = _require_odd_square(x, "image")
    p = N // 2
    L = N + 2 * p
    x = x.to(torch.float64)
    theta = torch.as_tensor(theta, dtype=torch.float64, device=x.device)
    a, b = -torch.tan(theta / 2), torch.sin(theta)
    if theta.dim() == 1:  # one angle per image: broadcast over (B, C, rows)
        a, b = a[:, None, None], b[:, None, None]
    Y_of_row = (N - 1) / 2 - torch.arange(N, dtype=torch.float64, device=x.device)
    X_of_col = torch.arange(L, dtype=torch.float64, device=x.device) - (L - 1) / 2
    t = _shift_rows(torch.nn.functional.pad(x, (p, p)), a * Y_of_row)  # S_x: I(X − aY, Y), N rows
    t = torch.nn.functional.pad(t, (0, 0, p, p))
    t = _shift_rows(t.transpose(-1, -2), -b * X_of_col).transpose(-1, -2)  # S_y: I(X, Y − bX), L columns
    return _shift_rows(t[..., p:p + N, :], a * Y_of_row)[..., p:p + N]  # S_x again, the N rows kept


def _orthogonal(M: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    M = torch.as_tensor(np.asarray(M) if not torch.is_tensor(M) else M, dtype=torch.float64, device=device)
    if M.shape != (2, 2) or float((M.T @ M - torch.eye(2, dtype=M.dtype, device=device)).abs().max()) > 1e-9:
        raise InputError("element matrix", M.tolist(), "an orthogonal 2×2 matrix (a rotation or a reflection)",
                         "only rotations and reflections of the plane are supported")
    return M


def _gather(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    ri, ci = _grid_index(tuple(M.detach().cpu().flatten().tolist()), x.shape[-1], x.device)
    return x[..., ri, ci]


@functools.lru_cache(maxsize=256)
def _grid_index(M: tuple[float, ...], size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) from which a grid symmetry M reads each pixel; cached (a search gathers the same few elements on
    every call)."""
    Mt = torch.tensor(M, dtype=torch.float64, device=device).reshape(2, 2)
    rows, cols = _source_coords(Mt, size)
    ri, ci = torch.round(rows), torch.round(cols)
    if (ri - rows).abs().max() > 1e-9 or (ci - cols).abs().max() > 1e-9:
        raise InputError("element matrix", Mt.tolist(), "a matrix that maps the pixel grid onto itself",
                         "apply this element with exact=False (interpolation)")
    return ri.long(), ci.long()


def split_rotation(M: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(φ, E) with M = E·R(φ), |φ| ≤ 45° and E a grid symmetry (a quarter turn, possibly with the flip).

    T_M = T_E T_{R(φ)}: the interpolated rotation comes first, so every element with the same φ shares it.
    For a reflection M = R(θ)F = F R(−θ), hence φ = −(θ mod 90°).
    """
    det = float(torch.linalg.det(M))
    R = M if det > 0 else M @ torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=M.dtype, device=M.device)
    theta = math.atan2(float(R[1, 0]), float(R[0, 0]))
    phi = (theta - round(theta / (math.pi / 2)) * math.pi / 2) * (1 if det > 0 else -1)
    c, s = math.cos(phi), math.sin(phi)
    E = torch.round(M @ torch.tensor([[c, s], [-s, c]], dtype=M.dtype, device=M.device))
    return phi, E


def spatial_transform(x: torch.Tensor, M: np.ndarray | torch.Tensor, exact: bool) -> torch.Tensor:
    """x(M⁻¹ p) for a (B, C, H, W) tensor and a rotation or reflection M.

    Exact index gather when `exact` (M maps the grid onto itself); otherwise the residual
    rotation |φ| ≤ 45° by `fourier_rotate` first, then the quarter turn and flip exactly.
    """
    return spatial_transforms(x, [M], [exact])


def spatial_transforms(x: torch.Tensor, Ms: Sequence[np.ndarray | torch.Tensor], exact: Sequence[bool]) -> torch.Tensor:
    """(E·B, C, H, W): x(Mᵢ⁻¹ p) for each Mᵢ, stacked element-major.

    The interpolated part of each element is a rotation by its residual angle φ; each distinct φ is computed once for
    the whole batch, all of them in one batched `fourier_rotate` call (C8 and D8 need two: ±45°), and each element
    then reads its grid part by an exact gather.
    """
    _require_odd_square(x, "image")
    x = x.to(torch.float64)
    plans: list[tuple[float, torch.Tensor]] = []
    for M, ex in zip(Ms, exact):
        M = _orthogonal(M, x.device)
        plans.append((0.0, M) if ex else split_rotation(M))
    angles = sorted({round(phi, 15) for phi, _ in plans if phi != 0.0})
    rotated: dict[float, torch.Tensor] = {0.0: x}
    if angles:
        B = x.shape[0]
        per_image = torch.tensor(angles, dtype=torch.float64, device=x.device).repeat_interleave(B)
        for phi, r in zip(angles, fourier_rotate(x.repeat(len(angles), 1, 1, 1), per_image).split(B)):
            rotated[phi] = r
    return torch.cat([_gather(rotated[round(phi, 15) if phi != 0.0 else 0.0], E) for phi, E in plans])


def spatial_transforms_paired(x: torch.Tensor, Ms: Sequence[np.ndarray | torch.Tensor], exact: Sequence[bool]) -> torch.Tensor:
    """(B, C, H, W): image b moved by its own Mᵦ (x(Mᵦ⁻¹ p)), one element per image (a continuous group's search draws
    the element with the input). All residual rotations in one batched `fourier_rotate` (one angle per image), then
    each image's grid part by an exact gather. Differentiable in x."""
    _require_odd_square(x, "image")
    if len(Ms) != x.shape[0]:
        raise InputError("elements", len(Ms), f"one element per image ({x.shape[0]})", "pass one element per input")
    x = x.to(torch.float64)
    plans = [(0.0, _orthogonal(M, x.device)) if ex else split_rotation(_orthogonal(M, x.device)) for M, ex in zip(Ms, exact)]
    moving = [b for b, (phi, _) in enumerate(plans) if phi != 0.0]
    rotated = {}
    if moving:
        angles = torch.tensor([plans[b][0] for b in moving], dtype=torch.float64, device=x.device)
        rotated = dict(zip(moving, fourier_rotate(x[moving], angles).split(1)))
    return torch.cat([_gather(rotated.get(b, x[b:b + 1]), E) for b, (_, E) in enumerate(plans)])


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    """How G acts on a model's input or output tensor."""

    def check_shape(self, t: torch.Tensor, what: str) -> None:
        raise NotImplementedError

    def apply(self, t: torch.Tensor, g: object) -> torch.Tensor:
        raise NotImplementedError

    def apply_many(self, t: torch.Tensor, elements: Sequence[object]) -> torch.Tensor:
        """(E·B, ...) = the action of each element on the batch, stacked element-major (image fields: one FFT pass)."""
        return torch.cat([self.apply(t, g) for g in elements], dim=0)

    def apply_paired(self, t: torch.Tensor, elements: Sequence[object]) -> torch.Tensor:
        """(B, ...): input b acted on by elements[b] (one element per input)."""
        return torch.cat([self.apply(t[b:b + 1], g) for b, g in enumerate(elements)], dim=0)

    def exact(self, g: object) -> bool:
        raise NotImplementedError

    def rounds(self, g: object) -> bool:
        """Whether applying ρ(g) in float64 rounds (an interpolation, or a matrix with entries other than 0 and ±1):
        the oracle then draws that round-off, as it draws the parameters' storage precision. True unless known."""
        return True


def integer_matrix(M: object) -> bool:
    return bool(np.all(np.isin(np.asarray(M, dtype=np.float64), (0.0, 1.0, -1.0))))


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

    def rounds(self, g: PlaneElement) -> bool:
        return not self.exact(g) or not integer_matrix(self.rep.matrix(self._used(g)))

    def apply(self, t: torch.Tensor, g: PlaneElement) -> torch.Tensor:
        return self.apply_many(t, [g])

    def apply_many(self, t: torch.Tensor, elements: Sequence[PlaneElement]) -> torch.Tensor:
        """(E·B, ...) = the action of each element on the batch, element-major. The fibre map ρ(g) acts on channels
        and commutes with the spatial transform, so the base space is transformed first, all elements together."""
        t = t.to(torch.float64)
        used = [self._used(self.group.require(g)) for g in elements]
        B = t.shape[0]
        if self.spatial:
            # an inverted declaration (g ↦ ρ(g⁻¹)) acts with g⁻¹ on the base space too: the bug it models is
            # "the output is transformed by g⁻¹ where g is meant", which a trivial fibre would otherwise hide
            Ms = [self.group.plane_matrix(self.group.inverse(g) if self.rep.inverted else g) for g in used]
            moved = spatial_transforms(t, Ms, [self.group.is_exact_on_grid(g) for g in used])
        else:
            moved = t.repeat(len(used), *([1] * (t.dim() - 1)))
        # every fibre map in one contraction (one einsum per element was a visible share of a small model's check)
        R = self._fibres(used, t.device)  # (E, o, c)
        out = torch.einsum("eoc,ebc...->ebo...", R, moved.unflatten(0, (len(used), B)))
        return out.flatten(0, 1)

    def _fibres(self, used: Sequence[PlaneElement], device: torch.device) -> torch.Tensor:
        return torch.stack([torch.as_tensor(self.rep(g), dtype=torch.float64) for g in used]).to(device)

    def apply_paired(self, t: torch.Tensor, elements: Sequence[PlaneElement]) -> torch.Tensor:
        """(B, ...): input b acted on by elements[b]; the base space of every input in one pass."""
        t = t.to(torch.float64)
        used = [self._used(self.group.require(g)) for g in elements]
        if self.spatial:
            Ms = [self.group.plane_matrix(self.group.inverse(g) if self.rep.inverted else g) for g in used]
            t = spatial_transforms_paired(t, Ms, [self.group.is_exact_on_grid(g) for g in used])
        return torch.einsum("boc,bc...->bo...", self._fibres(used, t.device), t)


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

    def rounds(self, g: Permutation) -> bool:
        return False

    def apply(self, t: torch.Tensor, g: Permutation) -> torch.Tensor:
        return self.apply_many(t, [g])

    def _inverses(self, elements: Sequence[Permutation], device: torch.device) -> torch.Tensor:
        """(E, n): σ⁻¹ of each element, as indices (y[σ(i)] = x[i] ⇔ y = x[σ⁻¹])."""
        key = (self.group, tuple(elements))
        idx = _INVERSES.get(key)
        if idx is None:
            idx = torch.tensor([self.group.inverse(g).perm for g in elements], dtype=torch.long).reshape(-1, self.group.n)
            if len(_INVERSES) > 64:
                _INVERSES.clear()
            _INVERSES[key] = idx
        return idx.to(device)

    def apply_many(self, t: torch.Tensor, elements: Sequence[Permutation]) -> torch.Tensor:
        """(E·B, ...), element-major, by one gather for all elements (S5 has 120: one indexing op per element was
        most of a set model's check)."""
        t = t.to(torch.float64)
        E, B = len(elements), t.shape[0]
        if self.invariant:
            return t.repeat(E, *([1] * (t.dim() - 1)))
        inv = self._inverses(elements, t.device)  # (E, n)
        out = t[:, inv]  # (B, E, n, d)
        if self.graph:
            n = self.group.n
            cols = inv[None, :, None, :].expand(B, E, n, n)
            out = torch.cat([torch.gather(out[..., :n], -1, cols), out[..., n:]], dim=-1)
        return out.transpose(0, 1).reshape(E * B, *t.shape[1:])

    def apply_paired(self, t: torch.Tensor, elements: Sequence[Permutation]) -> torch.Tensor:
        t = t.to(torch.float64)
        if self.invariant:
            return t
        inv = self._inverses(elements, t.device)  # (B, n)
        rows = torch.arange(t.shape[0], device=t.device)[:, None]
        out = t[rows, inv]
        if self.graph:
            n = self.group.n
            out = torch.cat([torch.gather(out[..., :n], -1, inv[:, None, :].expand(-1, n, n)), out[..., n:]], dim=-1)
        return out


_INVERSES: dict[tuple, torch.Tensor] = {}  # SetAction's index tensors per (group, elements): built once per check


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Channel-wise isotropic Gaussian blur (float64), truncated at 4σ and renormalised.

    It commutes with any fibre representation (it acts on each channel alike) and,
    as a continuous operator, with every rotation and reflection; its sampled kernel is
    exactly symmetric under the 90° rotations and flips of the grid.
    """
    r = int(math.ceil(4 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=x.device)
    k1 = torch.exp(-t**2 / (2 * sigma**2))
    k1 = k1 / k1.sum()  # the normalised 2-D kernel is the outer product of this one with itself
    # separably, rows then columns: the same operator (to float64 round-off) at 2·9 instead of 81 taps per pixel, and
    # one channel per image (float64 convolutions on a CPU take a slow path that a grouped 9×9 kernel made 8–25×
    # slower; the harness floor blurs every transformed input)
    B, C, H, W = x.shape
    y = x.to(torch.float64).reshape(B * C, 1, H, W)
    y = torch.nn.functional.conv2d(y, k1.view(1, 1, 1, -1), padding=(0, r))
    y = torch.nn.functional.conv2d(y, k1.view(1, 1, -1, 1), padding=(r, 0))
    return y.reshape(B, C, H, W)
