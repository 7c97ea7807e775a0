"""Certified upper bounds on a network's Lipschitz constant (ℓ² → ℓ²) from its structure and its own weights.

The bound is the product, over a chain of layers, of per-layer operator norms that are each an *upper* bound, including
floating-point rounding; a residual block x + g(x) contributes 1 + Lip(g). A module the bound does not know makes the
bound unknown (UnknownLayer, naming the module type and the fix): it is never guessed.

Per layer (all in float64, from the weights the module actually uses, e.g. after a spectral-norm parametrisation):

* ``nn.Linear``: σ_max(W) by SVD, plus a stated margin for the SVD's rounding (backward stable: |σ̂ − σ| ≤
  p(m, n)·eps·‖W‖₂, Golub & Van Loan §8.6; we take p = 32·max(m, n) and ‖W‖_F ≥ ‖W‖₂).
* ``nn.Conv2d``: the operator norm of the *convolution*, not of the reshaped kernel. A circular convolution on an
  N₁×N₂ grid is block-diagonalised by the 2-D DFT: its singular values are those of the c_out×c_in matrices
  K̂(ω) = Σ_{a,b} w[:, :, a, b]·e^{−2πi(ω₁a/N₁ + ω₂b/N₂)}, one per frequency (Sedghi, Gupta & Long, ICLR 2019), so its
  norm is max_ω σ_max(K̂(ω)). A zero-padded convolution on an h×w input with padding (p_lo, p_hi) is P ∘ C_N ∘ E:
  E embeds the input into an N-grid (an isometry), C_N is the circular convolution there, P keeps the output positions
  (norm ≤ 1); the wrap-around of C_N only ever reads the embedded zeros when N ≥ n + max(p_lo, p_hi) (≤ n + k − 1 for
  p ≤ k − 1), so ‖conv‖ ≤ ‖C_N‖: an upper bound, exact for circular padding that keeps the size. A stride s keeps
  every s-th output (a restriction, norm ≤ 1), so the stride-1 norm bounds it; dilation dilates the kernel; groups
  make the per-frequency matrix block diagonal. Margin for the FFT and SVD rounding: 64·(log₂(N₁N₂) + c_in + c_out +
  k₁k₂)·eps·Σ_{a,b}‖w_ab‖_F (each K̂(ω) entry is a sum of k₁k₂ terms; the DFT's error grows like log N).
* Elementwise activations: a table of the sup of |σ'| (checked numerically in tests/test_lipschitz.py).
* ``nn.BatchNorm`` in eval mode: max |γ/√(var + ε)| (a diagonal affine map).
* ``nn.Flatten``, ``nn.Unflatten``, ``nn.Identity``, ``nn.Dropout`` in eval mode: isometries (Lip 1).
* ``nn.Sequential``: the product of its children's bounds.

A module of its own class states its structure with a method ``lipschitz_structure()`` returning ``Chain(...)`` /
``Residual(...)`` / ``Scaled(...)`` of submodules; the structure is *evaluated* and compared with the module's forward
(float64, relative 1e-9) before its bound counts, so a structure that does not describe the code gives no bound. That
evaluation also records each convolution's input size, which its operator norm depends on.

Products are rounded upward (math.nextafter), so the printed bound is an upper bound of the exact product.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from verify.errors import VerifyError

EPS64 = float(torch.finfo(torch.float64).eps)


class UnknownLayer(VerifyError):
    """A module the certified bound has no rule for: the bound is unknown (never guessed)."""

    def __init__(self, path: str, module: Any, why: str = "") -> None:
        self.path = path
        self.module_type = type(module).__name__
        text = (f"module {path or '(the model)'} of type {self.module_type}: no certified Lipschitz rule for it"
                + (f" ({why})" if why else "") + ". Expected: nn.Linear, nn.Conv2d (zero or size-keeping circular "
                "padding), an activation of the table (ReLU, LeakyReLU, Tanh, Sigmoid, ELU, CELU, Softplus, SiLU, GELU, "
                "Hardtanh, Softsign, ReLU6), BatchNorm in eval mode, Flatten/Unflatten/Identity, nn.Sequential, or a "
                "module with lipschitz_structure(). Fix: give "
                f"{self.module_type} a method lipschitz_structure() returning Chain(...)/Residual(...) of known "
                "submodules (verify/derive/operator_norms.py; it is checked against the forward), or build it from "
                "known layers")
        super().__init__(text)


class StructureMismatch(VerifyError):
    """A declared lipschitz_structure() that does not compute what the module's forward computes."""


# -- structure nodes -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """f = parts[-1] ∘ … ∘ parts[0]: Lip(f) ≤ Π Lip(parts)."""

    parts: tuple

    def __init__(self, *parts: Any) -> None:
        object.__setattr__(self, "parts", tuple(parts))


@dataclass(frozen=True)
class Residual:
    """x ↦ x + branch(x): Lip ≤ 1 + Lip(branch)."""

    branch: Any


@dataclass(frozen=True)
class Scaled:
    """x ↦ c·inner(x): Lip = |c|·Lip(inner)."""

    c: float
    inner: Any


# Sup of |σ'| over R for elementwise activations (each checked on a fine grid in tests/test_lipschitz.py).
# SiLU: σ'(x) = s(x)(1 + x(1 − s(x))), max 1.0998 at x ≈ 2.40; GELU (erf): max 1.1289 at x ≈ 1.41.
def _activation_constant(m: nn.Module) -> tuple[float, str] | None:
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Identity)):
        return 1.0, f"{type(m).__name__}: sup|σ'| = 1"
    if isinstance(m, nn.LeakyReLU):
        return max(1.0, abs(float(m.negative_slope))), f"LeakyReLU({m.negative_slope:g}): max(1, |slope|)"
    if isinstance(m, nn.ELU):
        return max(1.0, float(m.alpha)), f"ELU(α={m.alpha:g}): σ' = 1 for x > 0, α·eˣ < α for x < 0: max(1, α)"
    if isinstance(m, nn.CELU):
        return 1.0, f"CELU(α={m.alpha:g}): σ' = e^(x/α) ≤ 1 for x < 0"
    if isinstance(m, nn.Softplus):
        return 1.0, "Softplus: σ' = sigmoid(βx) < 1"
    if isinstance(m, nn.Sigmoid):
        return 0.25, "Sigmoid: σ' = s(1 − s) ≤ 1/4"
    if isinstance(m, nn.SiLU):
        return 1.1, "SiLU: sup σ' = 1.0998 (at x ≈ 2.40), taken as 1.1"
    if isinstance(m, nn.GELU):
        return 1.13, f"GELU({m.approximate}): sup σ' = 1.1289 (at x ≈ 1.41), taken as 1.13"
    return None


@dataclass
class LayerBound:
    """One row of the per-layer table."""

    path: str
    kind: str
    bound: float
    method: str

    def as_row(self) -> dict[str, Any]:
        return {"layer": self.path, "kind": self.kind, "bound": self.bound, "method": self.method}


@dataclass
class CertifiedBound:
    """The certified upper bound of one map and how it was obtained."""

    value: float
    layers: list[LayerBound] = field(default_factory=list)
    expression: str = ""  # how the per-layer bounds combine, e.g. "(1 + 0.49)·(1 + 0.49)"
    structure_check: str = ""


def _up_mul(a: float, b: float) -> float:
    """An upper bound of a·b for a, b ≥ 0 (round to nearest, then one ulp up)."""
    p = a * b
    return p if p == 0.0 or math.isinf(p) else math.nextafter(p, math.inf)


def _up_add(a: float, b: float) -> float:
    s = a + b
    return math.nextafter(s, math.inf)


def linear_norm(weight: torch.Tensor) -> tuple[float, str]:
    """σ_max(W) in float64 plus the SVD's rounding margin: an upper bound of ‖W‖₂."""
    W = weight.detach().to(torch.float64).cpu()
    if W.numel() == 0:
        return 0.0, "empty weight"
    s = float(torch.linalg.svdvals(W)[0])
    m, n = W.shape
    margin = 32 * max(m, n) * EPS64 * float(torch.linalg.matrix_norm(W))
    return _up_add(s, margin), f"σ_max by float64 SVD = {s:.9g}, + rounding margin 32·max(m,n)·eps·‖W‖_F = {margin:.2g}"


def _pads(m: nn.Conv2d, k_eff: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(low, high) zero padding per spatial axis."""
    p = m.padding
    if isinstance(p, str):
        if p == "valid":
            return (0, 0), (0, 0)
        # 'same' (stride 1): total k − 1, the extra one at the high end (torch's convention)
        return tuple((ke - 1) // 2 for ke in k_eff), tuple(ke - 1 - (ke - 1) // 2 for ke in k_eff)  # type: ignore[return-value]
    return (int(p[0]), int(p[1])), (int(p[0]), int(p[1]))


def full_kernel(m: nn.Conv2d, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The (c_out, c_in, k₁', k₂') float64 kernel with groups made block diagonal and dilation spelled out."""
    w = (m.weight if weight is None else weight).detach().to(torch.float64).cpu()
    c_out, cpg, k1, k2 = w.shape
    g = m.groups
    c_in = cpg * g
    d1, d2 = m.dilation
    K = torch.zeros(c_out, c_in, d1 * (k1 - 1) + 1, d2 * (k2 - 1) + 1, dtype=torch.float64)
    opg = c_out // g
    for gi in range(g):
        K[gi * opg:(gi + 1) * opg, gi * cpg:(gi + 1) * cpg, ::d1, ::d2] = w[gi * opg:(gi + 1) * opg]
    return K


def conv2d_norm(m: nn.Conv2d, in_hw: tuple[int, int], weight: torch.Tensor | None = None,
                path: str = "") -> tuple[float, str]:
    """An upper bound of the operator norm of the convolution m on inputs of spatial size in_hw (see module doc)."""
    K = full_kernel(m, weight)
    c_out, c_in, k1, k2 = K.shape
    (l1, l2), (h1, h2) = _pads(m, (k1, k2))
    H, W = in_hw
    mode = m.padding_mode
    if mode == "circular":
        o1, o2 = H + l1 + h1 - k1 + 1, W + l2 + h2 - k2 + 1
        if o1 > H or o2 > W:
            raise UnknownLayer(path, m, f"circular padding with output {o1}×{o2} larger than input {H}×{W}")
        N1, N2 = H, W
        exact = o1 == H and o2 == W and m.stride == (1, 1)
        how = (f"circular convolution on the {H}×{W} grid" + ("" if exact else
               " (the output is a restriction of it: an upper bound)"))
    elif mode == "zeros":
        o1, o2 = H + l1 + h1 - k1 + 1, W + l2 + h2 - k2 + 1
        N1, N2 = max(H + max(l1, h1), o1, k1), max(W + max(l2, h2), o2, k2)
        how = (f"zero padding ({l1},{h1})×({l2},{h2}) on {H}×{W} embedded into the circular convolution on "
               f"{N1}×{N2} ≥ n + max pad (an upper bound)")
    else:
        raise UnknownLayer(path, m, f"padding_mode={mode!r}: only 'zeros' and 'circular' have a rule")
    if m.stride != (1, 1):
        how += f"; stride {m.stride} keeps a subset of the outputs (norm ≤ the stride-1 norm)"
    if k1 > N1 or k2 > N2:
        # a kernel wider than the circular grid wraps onto itself: its taps add up modulo N (fft2's s= would crop it)
        folded = torch.zeros(c_out, c_in, N1, N2, dtype=torch.float64)
        for a in range(k1):
            for b in range(k2):
                folded[:, :, a % N1, b % N2] += K[:, :, a, b]
        K = folded
    F = torch.fft.fft2(K, s=(N1, N2))  # (c_out, c_in, N1, N2), complex128
    mats = F.permute(2, 3, 0, 1).reshape(N1 * N2, c_out, c_in)
    s = float(torch.linalg.svdvals(mats).max())
    mass = float(K.pow(2).sum(dim=(0, 1)).sqrt().sum())
    margin = 64 * (math.log2(N1 * N2) + c_in + c_out + k1 * k2) * EPS64 * mass
    return _up_add(s, margin), f"max over {N1 * N2} frequencies of σ_max(K̂(ω)) = {s:.9g}: {how}; + FFT/SVD margin {margin:.2g}"


# -- the walk -------------------------------------------------------------------------------------------------------
def _children(node: Any) -> list:
    if isinstance(node, Chain):
        return list(node.parts)
    if isinstance(node, Residual):
        return [node.branch]
    if isinstance(node, Scaled):
        return [node.inner]
    return []


def _structure(m: nn.Module, memo: dict | None = None) -> Any:
    """The module's declared structure; memoised per walk, so that the structure the bound reads is the very one that
    was evaluated against the forward (a layer may build a fresh nn.Conv2d holding its effective weight)."""
    fn = getattr(m, "lipschitz_structure", None)
    if not callable(fn):
        return None
    if memo is None:
        return fn()
    key = ("structure", id(m))
    if key not in memo:
        memo[key] = fn()
    return memo[key]


def evaluate(node: Any, x: torch.Tensor, shapes: dict[Any, Any]) -> torch.Tensor:
    """Run a structure on x (recording the input shape of every module it reaches, for the convolutions)."""
    if isinstance(node, Chain):
        for p in node.parts:
            x = evaluate(p, x, shapes)
        return x
    if isinstance(node, Residual):
        return x + evaluate(node.branch, x, shapes)
    if isinstance(node, Scaled):
        return node.c * evaluate(node.inner, x, shapes)
    if isinstance(node, nn.Module):
        shapes[id(node)] = tuple(x.shape[1:])
        inner = _structure(node, shapes)
        if inner is not None:
            return evaluate(inner, x, shapes)
        if isinstance(node, nn.Sequential):
            for child in node:
                x = evaluate(child, x, shapes)
            return x
        return node(x)
    if callable(node):
        return node(x)
    raise TypeError(f"not a structure node: {node!r}")


def _bound(node: Any, path: str, shapes: dict[int, tuple[int, ...]], rows: list[LayerBound]) -> tuple[float, str]:
    """(upper bound, expression) of a node; appends the leaves' rows."""
    if isinstance(node, Chain):
        value, terms = 1.0, []
        for i, p in enumerate(node.parts):
            v, e = _bound(p, f"{path}[{i}]" if not isinstance(p, nn.Module) else _name(p, path, i), shapes, rows)
            value = _up_mul(value, v)
            if e != "1":
                terms.append(e)
        return value, "·".join(terms) or "1"
    if isinstance(node, Residual):
        v, e = _bound(node.branch, f"{path}.branch" if not isinstance(node.branch, nn.Module) else _name(node.branch, path, 0),
                      shapes, rows)
        return _up_add(1.0, v), f"(1 + {e})"
    if isinstance(node, Scaled):
        v, e = _bound(node.inner, path, shapes, rows)
        return _up_mul(abs(float(node.c)), v), f"{abs(float(node.c)):g}·{e}"
    if not isinstance(node, nn.Module):
        raise UnknownLayer(path, node, "a callable that is not a module")
    m = node
    inner = _structure(m, shapes)
    if inner is not None:
        return _bound(inner, path, shapes, rows)
    if isinstance(m, nn.Sequential):
        return _bound(Chain(*list(m)), path, shapes, rows)
    act = _activation_constant(m)
    if act is not None:
        if act[0] != 1.0:
            rows.append(LayerBound(path, type(m).__name__, act[0], act[1]))
            return act[0], f"{act[0]:g}"
        return 1.0, "1"
    if isinstance(m, (nn.Flatten, nn.Unflatten)) or (isinstance(m, nn.Dropout) and not m.training):
        return 1.0, "1"
    if isinstance(m, nn.Linear):
        v, how = linear_norm(m.weight)
        rows.append(LayerBound(path, "Linear", v, how))
        return v, f"{v:.4g}"
    if isinstance(m, nn.Conv2d):
        shape = shapes.get(id(m))
        if shape is None or len(shape) != 3:
            raise UnknownLayer(path, m, f"its input size is unknown (recorded shape {shape}); the operator norm of a "
                                        "convolution depends on it")
        v, how = conv2d_norm(m, (shape[1], shape[2]), path=path)
        rows.append(LayerBound(path, f"Conv2d on {shape[1]}×{shape[2]}", v, how))
        return v, f"{v:.4g}"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training or m.running_var is None:
            raise UnknownLayer(path, m, "in train mode (batch statistics couple the inputs); call model.eval()")
        scale = (m.running_var.double() + m.eps).rsqrt()
        if m.weight is not None:
            scale = scale * m.weight.detach().double()
        v = math.nextafter(float(scale.abs().max()) * (1 + 8 * EPS64), math.inf)
        rows.append(LayerBound(path, "BatchNorm (eval)", v, "max |γ/√(var + ε)| (diagonal affine map)"))
        return v, f"{v:.4g}"
    raise UnknownLayer(path, m)


_PATHS: dict[int, str] = {}  # id(module) -> its path, for the walk in progress (set by _certify)


def _name(m: nn.Module, parent: str, i: int) -> str:
    return _PATHS.get(id(m)) or f"{parent}[{i}]"


def _certify(m: nn.Module, x: torch.Tensor, root: str, strict: bool) -> CertifiedBound:
    """The bound of one copy of the model: its structure evaluated on x (against its forward when strict), then walked."""
    m.eval()
    _PATHS.clear()
    _PATHS.update({id(sub): (f"{root}.{n}" if n else root) for n, sub in m.named_modules()})
    shapes: dict[Any, Any] = {}
    try:
        with torch.no_grad():
            y = m(x.clone())
            structure = _structure(m, shapes)
            # always evaluated, even for an nn.Sequential: a child may declare its own structure, which must be its
            # forward; the evaluation also records every convolution's input size
            ys = evaluate(m, x.clone(), shapes)
            rel = float((ys - y).abs().max() / (1 + y.abs().max()))
            if strict and not rel <= 1e-9:
                raise StructureMismatch(
                    f"{type(m).__name__}.lipschitz_structure()={structure!r}: evaluated on {x.shape[0]} inputs it "
                    f"differs from the forward by {rel:.3g} (relative, float64); expected the same map (≤ 1e-9). Fix: "
                    "return the structure the forward computes (no certified bound is given for another map)")
        rows: list[LayerBound] = []
        value, expr = _bound(m, root, shapes, rows)
    finally:
        _PATHS.clear()
    check = (f"the structure (declared or nn.Sequential), evaluated in float64 on {x.shape[0]} inputs, equals the "
             f"forward to {rel:.2g} (relative)")
    return CertifiedBound(value=value, layers=rows, expression=expr, structure_check=check)


def certified_bound(model: nn.Module, probe: torch.Tensor, name: str = "") -> CertifiedBound:
    """A certified upper bound of Lip(model) on ℓ², from its structure and weights (float64).

    `probe`: a few inputs of the model's input shape (the structure is evaluated on them and compared with the
    forward; the convolutions' input sizes are read from that evaluation); `name` prefixes the layers' paths.
    Raises UnknownLayer or StructureMismatch.

    Two readings of the weights, and the larger bound counts: the float64 copy's (the map the stored numbers define,
    the one the lower bound searches), and, for a model in another dtype, the weights the model itself computes and
    uses, converted exactly (a parametrised weight such as W/σ̂ is rounded differently in float32: ~1e-7 relative).
    """
    from verify.checking.numeric import model_dtype
    from verify.precision import float64_copy

    root = name or type(model).__name__
    m64 = float64_copy(model)
    best = _certify(m64, probe.detach().to(torch.float64), root, strict=True)
    dtype = model_dtype(model)
    if dtype != torch.float64:
        was = model.training
        try:
            own = _certify(model, probe.detach().to(dtype), root, strict=False)
        finally:
            model.train(was)
        if own.value > best.value:
            own.structure_check = best.structure_check + f"; the bound of the {str(dtype).replace('torch.', '')} " \
                                  "weights the model itself uses is the larger one"
            best = own
    return best


def local_norm(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, iterations: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """‖J_f(x)‖₂ per row of x and the top right singular vector, float64.

    Exact (Jacobian by torch.func.vmap(jacrev), then SVD) while n ≤ 256; beyond, power iteration on JᵀJ with jvp/vjp
    (matrix-free): ‖J v‖/‖v‖ ≤ ‖J‖₂ for every v, so the value is always a *lower* bound of the local norm."""
    n = x[0].numel()
    if iterations == 0 and n <= 256:
        def single(xi: torch.Tensor) -> torch.Tensor:
            return fn(xi.unsqueeze(0)).squeeze(0).flatten()

        J = torch.func.vmap(torch.func.jacrev(single))(x).reshape(x.shape[0], -1, n)
        _, S, Vh = torch.linalg.svd(J, full_matrices=False)
        return S[:, 0], Vh[:, 0, :].reshape(x.shape)
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(max(iterations, 20)):
        _, Jv = torch.func.jvp(fn, (x,), (v,))
        _, pull = torch.func.vjp(fn, x)
        (w,) = pull(Jv)
        v = w / w.flatten(1).norm(dim=1).clamp_min(1e-300).reshape(shape)
    _, Jv = torch.func.jvp(fn, (x,), (v,))
    return Jv.flatten(1).norm(dim=1), v
