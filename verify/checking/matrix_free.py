"""Matrix-free Jacobian products: the numeric stage at sizes where a full Jacobian per input does not fit.

A full Jacobian costs n² numbers per input (d = 3072: 75 MB in float64, 77 GB for a chunk of 1024 inputs) and n
reverse passes. Every Jacobian property needs far less than J itself:

* **products**: J·v (forward mode, `torch.func.jvp`) and Jᵀ·w (reverse mode, `torch.func.vjp`), chunked over inputs and
  tangents, on the model's device; code that torch.func rejects falls back to classic autograd (J·v by the double-vjp
  trick), and the path that ran is recorded per model, as `batched_jacobian`'s is;
* **Lanczos** on a symmetric positive semi-definite operator given by its products (JᵀJ for ‖J‖₂ and κ₂, RᵀR for the
  symplectic residual R = JᵀΩJ − Ω), with full re-orthogonalisation. Its largest Ritz value is never above the true
  largest eigenvalue (a lower bound, exact when the Krylov space is the whole space), and from a start drawn uniformly on
  the sphere it is within a factor (1 − ε) of it except with probability ≤ 1.648·√n·exp(−√ε·(2k − 1)) after k steps
  (Kuczyński & Woźniakowski 1992, Thm 4.2(a)): `kw_epsilon` turns a stated failure probability δ into ε;
* **J assembled in column blocks** by forward-mode products with blocks of the identity, for an exact `slogdet` while
  n² per input is affordable (memory) and the LU's (2/3)·n³ flops are (time);
* **stochastic Lanczos quadrature** of log|det J| = ½·tr log(JᵀJ) beyond that: an *estimate* with a standard error over
  its probes; no sound bound at that size (SLQ's known bounds need κ(J) and a probe count far beyond a check's budget),
  so a claim judged by it is `undecided`, never `holds`.

The method is chosen *before* computing, from a memory estimate per input (`plan`), or refused with the numbers
(`MemoryRefused`, an InputError: the numeric stage reports it as an `error` with the estimate, the limit and the fix).
`Policy` is the one declaration of thresholds; `using(...)` changes it for a block (tests force a method with it).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from verify.errors import InputError

# kinds of Jacobian work a property asks for
SYMPLECTIC = "symplectic"  # ω(Ju, Jw) − ω(u, w): the residual R = JᵀΩJ − Ω
LOGDET = "logdet"  # log|det J| and its sign
CONDITION = "condition"  # κ₂(J) (round-trip normalisation) and ‖J‖₂

KW_CONSTANT = 1.648  # Kuczyński & Woźniakowski (1992), Thm 4.2(a): P(θ_k < (1−ε)λ₁) ≤ 1.648·√n·e^{−√ε(2k−1)}


@dataclass(frozen=True)
class Policy:
    """When the numeric stage leaves full Jacobians, and how hard the matrix-free methods work.

    * `full_max_dim`: full Jacobians (vmap(jacrev), the historical path, numbers unchanged) up to this n. At n = 64 a
      chunk of 1024 float64 Jacobians is 32 MB and costs 64 reverse passes per input; the Lanczos path costs
      2·`lanczos_steps` + 2 passes (42 at the default), so above ~64 the matrix-free path is both smaller and faster.
    * `exact_max_dim`: log|det J| by an exact LU of J assembled in column blocks up to this n: (2/3)·n³ flops, 4.6·10¹⁰
      at n = 4096, a few seconds per input on one core; at n = 10⁴ it is 6.7·10¹¹ (minutes per input), so beyond it
      the stochastic estimate runs and the claim is `undecided`.
    * `memory_limit`: bytes one batch of the method may hold (None: a quarter of the device's memory, or of the host's
      physical memory on CPU); inputs are processed as many at a time as fit, and a method none of whose inputs fits
      is refused with the numbers.
    * `lanczos_steps` (k) and `confidence` (δ): the failure probability stated with every Lanczos norm.
    * `seconds`: what the search of one claim may spend once a per-input evaluation is costly (the budget is scaled
      to it, and the evidence says how many inputs were searched).
    * `method`: force "full" or "matrix-free" (tests compare the two at small n).
    """

    full_max_dim: int = 64
    exact_max_dim: int = 4096
    memory_limit: int | None = None
    lanczos_steps: int = 20
    condition_steps: int = 12
    confidence: float = 1e-3
    block: int = 256
    seconds: float = 40.0
    exact_batch_bytes: int = 256 << 20
    slq_probes: int = 8
    slq_steps: int = 24
    method: str | None = None
    seed: int = 20240611  # the start vectors of every Lanczos run (same seed, same verdict)

    def __post_init__(self) -> None:
        if self.method not in (None, "full", "matrix-free"):
            raise InputError("Policy(method=...)", self.method, 'None, "full" or "matrix-free"',
                             'leave method=None (chosen by size) or force "full" / "matrix-free"')
        if not (isinstance(self.confidence, float) and 0 < self.confidence < 1):
            raise InputError("Policy(confidence=...)", self.confidence, "a failure probability in (0, 1)",
                             "write e.g. confidence=1e-3")


_POLICY: contextvars.ContextVar[Policy] = contextvars.ContextVar("matrix_free_policy", default=Policy())


def policy() -> Policy:
    """The policy in force."""
    return _POLICY.get()


@contextlib.contextmanager
def using(**changes: object) -> Iterator[Policy]:
    """`with using(method="matrix-free", memory_limit=10**6): ...`: the policy with these fields changed."""
    token = _POLICY.set(dataclasses.replace(_POLICY.get(), **changes))  # type: ignore[arg-type]
    try:
        yield _POLICY.get()
    finally:
        _POLICY.reset(token)


class MemoryRefused(InputError):
    """The memory a method needs per input exceeds the limit: refused before anything is computed."""


# -- memory ---------------------------------------------------------------------------------------------------------
def memory_limit(device: torch.device, pol: Policy | None = None) -> int:
    """Bytes a method may hold at once: the policy's, else a quarter of the device's (or the host's) memory."""
    pol = pol or policy()
    if pol.memory_limit is not None:
        return int(pol.memory_limit)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free) // 4
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total) // 4


def bytes_per_input(method: str, n: int, itemsize: int, pol: Policy | None = None, graph: bool = False) -> int:
    """What one input costs a method in the tensors the method itself holds (the model's own activations for one
    pass come on top: a block of `block` tangents is pushed through the model at once). `graph`: the defect is being
    differentiated (the ascent), which keeps every intermediate: ×3."""
    pol = pol or policy()
    if method == "full":  # J, JᵀΩJ (or its LU / SVD workspace), jacrev's own n×n intermediates
        b = 4 * n * n * itemsize
    elif method == "exact":  # J assembled, its LU copy, one block of tangents and outputs
        b = 2 * n * n * itemsize + 4 * min(pol.block, n) * n * itemsize
    elif method == "lanczos":  # the Krylov basis (k + 1 vectors), a few work vectors
        b = (max(pol.lanczos_steps, pol.condition_steps) + 8) * n * itemsize
    elif method == "slq":
        b = (pol.slq_steps + 8) * n * itemsize
    elif method == "round-trip":
        b = 8 * n * itemsize
    else:
        raise ValueError(method)
    return b * (3 if graph else 1)


def _fmt_bytes(b: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


@dataclass(frozen=True)
class Plan:
    """The method a property's Jacobian work takes at this size, chosen before computing, and why."""

    kind: str
    method: str  # "full" | "exact" | "lanczos" | "slq"
    n: int
    bytes_per_input: int
    limit: int
    inputs_at_once: int
    sound: bool  # False: an estimate without a sound bound (the claim can only be `undecided`)
    statement: str

    def record(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def kw_epsilon(n: int, k: int, delta: float) -> float:
    """ε such that k Lanczos steps from a uniform start find λ̂ ≥ (1 − ε)·λ_max except with probability ≤ δ (0 when
    the Krylov space is the whole space, k ≥ n: the Ritz values are then the eigenvalues)."""
    if k >= n:
        return 0.0
    root = math.log(KW_CONSTANT * math.sqrt(n) / delta) / (2 * k - 1)
    return min(root * root, 1.0)


def full_jacobians(n: int, pol: Policy | None = None) -> bool:
    """Whether the numeric stage takes full Jacobians at dimension n under the policy (the round-off law of a
    property depends on the path: properties/base.py, jacobian_tolerance)."""
    pol = pol or policy()
    return pol.method == "full" or (pol.method is None and n <= pol.full_max_dim)


def plan(kind: str, n: int, dtype: torch.dtype, device: torch.device, pol: Policy | None = None,
         graph: bool = False) -> Plan:
    """Choose the method for `kind` at dimension n, or raise MemoryRefused with the numbers."""
    pol = pol or policy()
    item = torch.empty((), dtype=dtype).element_size()
    limit = memory_limit(device, pol)
    forced = pol.method
    if full_jacobians(n, pol):
        method = "full"
    elif kind == LOGDET:
        method = "exact" if n <= pol.exact_max_dim else "slq"
        if method == "exact" and bytes_per_input("exact", n, item, pol, graph) > limit:
            method = "slq"  # J does not fit: fall back to the estimate (which can only leave the claim undecided)
    else:
        method = "lanczos"
    need = bytes_per_input(method, n, item, pol, graph)
    if need > limit:
        raise MemoryRefused(
            f"memory per input for the {method} {kind} method at n={n} ({str(dtype).replace('torch.', '')})",
            _fmt_bytes(need), f"at most the limit {_fmt_bytes(limit)} "
            f"({'Policy.memory_limit' if pol.memory_limit is not None else 'a quarter of the memory of ' + str(device)})",
            "raise the limit (verify.checking.matrix_free.using(memory_limit=...)), run on a device with more memory, "
            "or lower Policy.lanczos_steps / Policy.block")
    at_once = max(1, limit // max(need, 1))
    if method == "exact":
        # assembled Jacobians are n² each: at most Policy.exact_batch_bytes of them at once (one input at a time at
        # n = 3072), so that the peak stays near one input's need rather than the limit's (the LU is per input anyway)
        at_once = max(1, min(at_once, pol.exact_batch_bytes // max(n * n * item, 1)))
    k = min(pol.lanczos_steps, n)
    eps_kw = kw_epsilon(n, k, pol.confidence)
    if method == "full":
        text = (f"full Jacobians (n = {n} ≤ {pol.full_max_dim}" + (", forced" if forced == "full" else "") +
                f"): {_fmt_bytes(need)} per input")
    elif method == "exact":
        text = (f"log|det J| exact: J assembled in blocks of {min(pol.block, n)} rows eₖᵀJ (reverse-mode products "
                f"batched over one forward; columns J·eₖ where that cannot run), then LU (torch.linalg.slogdet); {_fmt_bytes(need)} per input, {at_once} at a time within "
                f"{_fmt_bytes(limit)}; κ₂(J) by Lanczos on JᵀJ ({min(pol.condition_steps, n)} steps): an estimate "
                "never above κ₂, so the normalisation never excuses more than the exact κ₂ would. At every input it "
                "evaluates it cannot miss a det ≠ 1 (the LU is exact up to round-off); what it can miss is an input the "
                "search did not reach, and at this cost it reaches few (the evidence states how many)")
    elif method == "slq":
        text = (f"log|det J| estimated by stochastic Lanczos quadrature ({pol.slq_probes} Rademacher probes × "
                f"{pol.slq_steps} steps on JᵀJ) because an exact LU at n = {n} exceeds "
                + (f"Policy.exact_max_dim = {pol.exact_max_dim} (time)" if n > pol.exact_max_dim else
                   f"the memory limit ({_fmt_bytes(bytes_per_input('exact', n, item, pol, graph))} per input > "
                   f"{_fmt_bytes(limit)})")
                + "; no sound confidence bound is known at this size, so the claim is left undecided")
    elif kind == SYMPLECTIC:
        text = (f"matrix-free: ‖JᵀΩJ − Ω‖₂ by Lanczos on RᵀR (R·v = Jᵀ(Ω·J·v) − Ω·v, one forward- and one reverse-mode "
                f"product; {k} steps = {4 * k} products per input, full re-orthogonalisation), reported as the upper "
                f"confidence bound σ̂/√(1−ε), ε = {eps_kw:.3g} (P(miss) ≤ {pol.confidence:g} per input, Kuczyński–"
                f"Woźniakowski); ‖J‖₂ by {min(pol.condition_steps, n)} Lanczos steps on JᵀJ, a lower bound (so the "
                f"normalised defect is never understated by it); {_fmt_bytes(need)} per input. It sees a violation "
                "confined to any 2×2 block at its full size (the Krylov space aligns with R's top singular vectors); "
                "it can miss one only with the stated probability per input, and it reads the spectral norm of R, not "
                "its largest entry")
    else:
        text = (f"round trips both ways, normalised by κ̂₂(J) from {min(pol.condition_steps, n)} Lanczos steps on JᵀJ "
                f"(products J·v and Jᵀ·w): the Ritz ratio never exceeds κ₂, so the normalisation never "
                f"excuses more than the exact κ₂ would; {_fmt_bytes(need)} per input")
    return Plan(kind=kind, method=method, n=n, bytes_per_input=need, limit=limit, inputs_at_once=int(at_once),
                sound=method != "slq", statement=text)


# -- products -----------------------------------------------------------------------------------------------------
# Measured on this project's CPU machine (G-SympNet, n = 256, one input): torch.func.jvp costs 8–23 ms a call where the
# forward costs 0.24 ms (forward-mode AD's per-op overhead), while a classic-autograd linearisation (one forward, one
# create_graph backward, then each product one backward: Jᵀw through y's graph, Jv through the graph of u ↦ Jᵀu) costs
# ~1 ms a product and re-uses the forward across all the products of a Lanczos run. So the autograd linearisation is
# the first path, and torch.func (jvp / vjp, one forward per product) the fallback for code whose graph cannot be
# differentiated twice; the path that ran is recorded per model and stated in the evidence.
PATHS = {
    "autograd": "a classic-autograd linearisation (one forward; Jᵀ·w by torch.autograd.grad, J·v by the double-vjp "
                "trick: the gradient of ⟨Jᵀu, v⟩ with respect to u)",
    "func": "torch.func.jvp / torch.func.vjp (one forward per product)",
}
_PATH: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[str, str]]" = weakref.WeakKeyDictionary()


def product_path(model: torch.nn.Module) -> tuple[str, str]:
    """(the path the model's products ran by, why the faster one could not) or ("", "")."""
    return _PATH.get(model, ("", ""))


class _Autograd:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, graph: bool) -> None:
        self.graph = graph
        with torch.enable_grad():
            self.leaf = x if graph else x.detach().clone().requires_grad_(True)
            self.y = model(self.leaf.clone())
            self.u = torch.zeros_like(self.y, requires_grad=True)
            (g,) = torch.autograd.grad(self.y, self.leaf, self.u, create_graph=True, allow_unused=True)
        self.g = g

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        if self.g is None or not self.g.requires_grad:  # Jᵀu does not depend on u: J = 0
            return torch.zeros_like(self.y)
        with torch.enable_grad():
            (jv,) = torch.autograd.grad(self.g, self.u, v.to(self.g.dtype), retain_graph=True, create_graph=self.graph,
                                        allow_unused=True)
        jv = torch.zeros_like(self.y) if jv is None else jv
        return jv if self.graph else jv.detach()

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.y, self.leaf, w.to(self.y.dtype), retain_graph=True,
                                       create_graph=self.graph, allow_unused=True)
        g = torch.zeros_like(self.leaf) if g is None else g
        return g if self.graph else g.detach()


class _Func:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, graph: bool) -> None:
        self.model, self.x = model, x

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.clone())

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(self._f, (self.x,), (v.to(self.x.dtype).contiguous(),))[1]

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        _, fn = torch.func.vjp(self._f, self.x)
        return fn(w.to(self.x.dtype).contiguous())[0]


class Linearization:
    """J_f at every row of x, as products: `.jvp(v)` = J·v and `.vjp(w)` = Jᵀ·w per row ((B, n) each). Built once per
    batch (one forward) and re-used by every product of a Lanczos run. Differentiable with respect to x when x requires
    grad and grad mode is on (the search's ascent differentiates the defect)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        graph = torch.is_grad_enabled() and x.requires_grad
        known, _ = _PATH.get(model, ("", ""))
        order = list(PATHS) if not known else list(PATHS)[list(PATHS).index(known):]
        failures: list[str] = []
        last: BaseException | None = None
        for path in order:
            try:
                impl = (_Autograd if path == "autograd" else _Func)(model, x, graph)
                v = torch.ones_like(x)
                probe_out = impl.jvp(v), impl.vjp(v)  # both products must run on this code
            except InputError:
                raise
            except Exception as exc:  # this path cannot run on this model's code: the next may
                failures.append(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                last = exc
                continue
            if path != known:  # first use of this path on this model: the batch semantics, checked once
                _rows_independent(model, x, path, probe_out)
                _PATH[model] = (path, "; ".join(failures))
            self.impl = impl
            return
        assert last is not None
        raise last

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return self.impl.jvp(v)

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        return self.impl.vjp(w)


def _rows_independent(model: torch.nn.Module, x: torch.Tensor, path: str,
                      out: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Products over a batch read row i's from the batched call, right only when each row is its own input of the map:
    checked once per model against single-row products."""
    k = min(2, x.shape[0])
    for i in range(k):
        xi = x[i:i + 1].detach()
        impl = (_Autograd if path == "autograd" else _Func)(model, xi, False)
        v = torch.ones_like(xi)
        for mode, single, batched in (("J·v", impl.jvp(v), out[0][i:i + 1]), ("Jᵀ·w", impl.vjp(v), out[1][i:i + 1])):
            diff = float((single.detach() - batched.detach()).abs().max())
            limit = 1e3 * float(torch.finfo(single.dtype).eps) * (1.0 + float(single.abs().max()))
            if not diff <= limit:
                raise InputError(
                    f"{type(model).__name__}: {mode} of row {i} in a batch vs alone", f"differs by {diff:.3g}",
                    f"the same (≤ {limit:.3g}): each row of a batch is one input of the map",
                    "make the model treat each input independently (eval() mode, no batch statistics or cross-row "
                    "terms)")


def _product(kind: str, model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """J·t (kind "jvp") or Jᵀ·t ("vjp") per row; t (B, k, n) gives k tangents per input, each input repeated k times."""
    if t.dim() == x.dim() + 1:
        B, k = t.shape[0], t.shape[1]
        # contiguous copies: an expanded (stride-0) tensor makes in-place code in the model fail
        xr = x.unsqueeze(1).expand(B, k, *x.shape[1:]).reshape(B * k, *x.shape[1:]).contiguous()
        return _product(kind, model, xr, t.reshape(B * k, *t.shape[2:]).contiguous()).reshape(t.shape)
    return getattr(Linearization(model, x), kind)(t)


def jvp(model: torch.nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J_f(x_i)·v_i per row (x, v: (B, n)), or for several tangents per input (v: (B, k, n) → (B, k, n))."""
    return _product("jvp", model, x, v)


def vjp(model: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """J_f(x_i)ᵀ·w_i per row (shapes as `jvp`)."""
    return _product("vjp", model, x, w)


_ROWS_PATH: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def jacobian_blocks(model: torch.nn.Module, x: torch.Tensor, block: int) -> torch.Tensor:
    """J_f(x_i) for every row of x, (B, n, n), in blocks of `block` rows eₖᵀJ: one forward, then reverse-mode products
    with a block of identity cotangents batched over that forward (torch.autograd.grad(is_grads_batched=True)): ~3.6×
    faster than columns by double-vjp at n = 3072 (3.3 s against 11.9 s for one input of the Glow-like benchmark flow).
    Code that the batched backward (vmap) rejects falls back to `jacobian_by_columns`; the path is recorded per model."""
    if _ROWS_PATH.get(model) != "columns":
        try:
            J = _jacobian_by_rows(model, x, block)
            _ROWS_PATH[model] = "rows"
            return J
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - vmap over the backward cannot run on this code: columns can
            _ROWS_PATH[model] = "columns"
            _PATH.setdefault(model, ("", f"batched rows: {type(exc).__name__}: {str(exc)[:160]}"))
    return jacobian_by_columns(model, x, block)


def _jacobian_by_rows(model: torch.nn.Module, x: torch.Tensor, block: int) -> torch.Tensor:
    B, n = x.shape
    graph = torch.is_grad_enabled() and x.requires_grad
    rows = []
    with torch.enable_grad():
        leaf = x if graph else x.detach().clone().requires_grad_(True)
        y = model(leaf.clone())
        for s in range(0, n, block):
            k = min(block, n - s)
            E = torch.zeros(k, B, n, dtype=y.dtype, device=y.device)
            E[torch.arange(k), :, torch.arange(s, s + k)] = 1
            (g,) = torch.autograd.grad(y, leaf, E, retain_graph=True, create_graph=graph, is_grads_batched=True)
            rows.append(g if graph else g.detach())
    return torch.cat(rows, 0).transpose(0, 1)  # (n, B, n) → (B, n, n): row k of J_i is eₖᵀJ_i


def jacobian_by_columns(model: torch.nn.Module, x: torch.Tensor, block: int) -> torch.Tensor:
    """J_f(x_i) for every row, (B, n, n), assembled from products with `block` identity columns at a time (x repeated
    `block` times, one linearisation per block): memory n² per input for J itself plus one block of tangents, never a
    chunk of n² intermediates."""
    B, n = x.shape
    cols = []
    for s in range(0, n, block):
        e = torch.zeros(min(block, n - s), n, dtype=x.dtype, device=x.device)
        e[torch.arange(e.shape[0]), torch.arange(s, s + e.shape[0])] = 1
        cols.append(jvp(model, x, e.unsqueeze(0).expand(B, -1, -1)))  # (B, b, n): J e_j as rows
    return torch.cat(cols, dim=1).transpose(1, 2)


# -- Lanczos --------------------------------------------------------------------------------------------------------
def start_vectors(B: int, n: int, dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """Gaussian, normalised: uniform on the sphere (what the Kuczyński–Woźniakowski bound assumes), seeded."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(B, n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True)


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, k: int) -> torch.Tensor:
    """Ritz values (ascending, (B, k)) of the symmetric PSD operator `matvec` after k Lanczos steps from v0 (B, n),
    with full re-orthogonalisation (twice, Gram–Schmidt), batched and differentiable. An invariant subspace found
    early (β ≈ 0: e.g. a rank-2 residual) restarts from a fresh vector orthogonal to the basis, with β = 0 in T, so
    the Ritz values stay those of the Krylov spaces explored."""
    B, n = v0.shape
    k = max(1, min(k, n))
    V = [v0]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    gen = torch.Generator().manual_seed(1729)
    for j in range(k):
        w = matvec(V[-1])
        a = (w * V[-1]).sum(-1)
        alphas.append(a)
        if j == k - 1:
            break
        Q = torch.stack(V, dim=1)  # (B, j+1, n)
        for _ in range(2):
            w = w - torch.einsum("bj,bjn->bn", torch.einsum("bjn,bn->bj", Q, w), Q)
        b = w.norm(dim=-1)
        scale = torch.stack(alphas, -1).abs().amax(-1).clamp_min(torch.finfo(w.dtype).tiny)
        broke = b <= 1e3 * torch.finfo(w.dtype).eps * scale
        if bool(broke.any()):
            fresh = torch.randn(B, n, generator=gen, dtype=torch.float64).to(w)
            for _ in range(2):
                fresh = fresh - torch.einsum("bj,bjn->bn", torch.einsum("bjn,bn->bj", Q, fresh), Q)
            fresh = fresh / fresh.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
            nxt = torch.where(broke.unsqueeze(-1), fresh, w / b.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(-1))
            b = torch.where(broke, torch.zeros_like(b), b)
        else:
            nxt = w / b.unsqueeze(-1)
        betas.append(b)
        V.append(nxt)
    m = len(alphas)
    T = torch.diag_embed(torch.stack(alphas, -1))
    if m > 1:
        off = torch.diag_embed(torch.stack(betas, -1), offset=1)
        T = T + off + off.transpose(-1, -2)
    return torch.linalg.eigvalsh(T)


def slq_logdet(matvec: Callable[[torch.Tensor], torch.Tensor], B: int, n: int, dtype: torch.dtype,
               device: torch.device, probes: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """½·tr log(JᵀJ) = log|det J| by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017): Rademacher probes z,
    log-weights of the Lanczos Gauss quadrature of zᵀ log(A) z. Returns (estimate, standard error over the probes),
    (B,) each. An estimate: its error has no sound bound here."""
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(probes):
        z = (torch.randint(0, 2, (B, n), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        v0 = z / math.sqrt(n)
        V = [v0]
        alphas, betas = [], []
        k = min(steps, n)
        for j in range(k):
            w = matvec(V[-1])
            a = (w * V[-1]).sum(-1)
            alphas.append(a)
            if j == k - 1:
                break
            Q = torch.stack(V, dim=1)
            for _ in range(2):
                w = w - torch.einsum("bj,bjn->bn", torch.einsum("bjn,bn->bj", Q, w), Q)
            b = w.norm(dim=-1).clamp_min(torch.finfo(w.dtype).tiny)
            betas.append(b)
            V.append(w / b.unsqueeze(-1))
        T = torch.diag_embed(torch.stack(alphas, -1))
        if betas:
            off = torch.diag_embed(torch.stack(betas, -1), offset=1)
            T = T + off + off.transpose(-1, -2)
        theta, U = torch.linalg.eigh(T)
        tau2 = U[:, 0, :].square()
        vals.append(n * (tau2 * torch.log(theta.clamp_min(torch.finfo(theta.dtype).tiny))).sum(-1) / 2)
    S = torch.stack(vals, 0)
    se = S.std(0) / math.sqrt(probes) if probes > 1 else torch.full_like(S[0], math.inf)
    return S.mean(0), se
