"""Binding: the evidence that a symbolic twin describes the torch module that runs.

A proof (verify.derive.proofs) is about a hand-written twin: a SymbolicBlock program. It
counts only for the code it was bound to. A model binds itself by returning, from
``symbolic_layers()``, one `Bound` per layer in application order: the block, the
module whose parameters and functions instantiate it, and explicit overrides. The
twin instantiated with the module's own tensors (verify.derive.symbolic.trace_torch) must
then agree with the module's forward (and inverse) to round-off; `mismatch` measures
that in float64, layer by layer, so a disagreement is located ("layer 3 (GradientShear
…) differs by 2e-4 at x = …").

Names: a block symbol's *base name* is what the program passed to the Builder
(``b.matrix("K", r, c)`` → K, whose scalars are K_00 … ; ``b.vector("a", n)`` → a_0 …;
``b.scalar("h")`` → h). A base name is looked up on the module by attribute (dotted
names allowed: "l1.weight"), unless `Bound.parameters` gives it; an abstract function
("sigma", "V") is `Bound.functions[name]`, else the module attribute of that name when
callable. Shapes must match the block's use: vector of n ↔ (n,), matrix r×c ↔ (r, c),
scalar ↔ 0-d or one element.

The engine never imports models: a model implements ``symbolic_layers(self) ->
Sequence[Bound]``; without it, an architecture that declares exactly one block binds
that block to the whole model.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from verify import precision
from verify.errors import InputError
from verify.derive.symbolic import Builder, SymbolicBlock, Vec, _Float, trace_torch

EPS64 = float(torch.finfo(torch.float64).eps)

# --- what a block uses -------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """The symbols a block's programs (forward and inverse) use.

    parameters: base name -> (shape, scalar names in row-major order); shape () for
    `scalar`, (n,) for `vector`/`bias`, (r, c) for `matrix`.
    functions: abstract function name -> "elementwise" (b.act) or "potential" (b.grad).
    """

    parameters: Mapping[str, tuple[tuple[int, ...], tuple[str, ...]]]
    functions: Mapping[str, str]


class _Recorder(_Float):
    """A float run that records every parameter name and abstract function a program touches."""

    jacobian = False

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.names: list[str] = []
        self.kinds: dict[str, str] = {}

    def param(self, name: str) -> Any:
        self.names.append(name)
        return super().param(name)

    def _kind(self, fname: str, kind: str) -> None:
        if self.kinds.setdefault(fname, kind) != kind:
            raise InputError("abstract function", fname, f"used one way in a block (found both {self.kinds[fname]} "
                             f"and {kind})", "give the elementwise function and the potential different names")

    def apply(self, fname: str, arg: Any) -> tuple[Any, Any]:
        self._kind(fname, "elementwise")
        return super().apply(fname, arg)

    def gradient(self, fname: str, args: Sequence[Any]) -> tuple[list[Any], list[list[Any]]]:
        self._kind(fname, "potential")
        return super().gradient(fname, args)


class _RecordingBuilder(Builder):
    def __init__(self, backend: _Recorder) -> None:
        super().__init__(backend)
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}

    def _record(self, base: str, shape: tuple[int, ...], make: Callable[[], Any]) -> Any:
        names = self.backend.names  # type: ignore[attr-defined]
        start = len(names)
        out = make()
        seen = (shape, tuple(names[start:]))
        old = self.shapes.setdefault(base, seen)
        if old[0] != shape:
            raise InputError(f"shape of block symbol {base!r}", shape, f"one shape per symbol (first used as {old[0]})",
                             "give the two uses different names")
        return out

    def scalar(self, name: str) -> Any:
        return self._record(name, (), lambda: Builder.scalar(self, name))

    def vector(self, name: str, n: int) -> list[Any]:
        return self._record(name, (n,), lambda: Builder.vector(self, name, n))

    def matrix(self, name: str, rows: int, cols: int) -> Any:
        return self._record(name, (rows, cols), lambda: Builder.matrix(self, name, rows, cols))


_USAGE: "weakref.WeakKeyDictionary[SymbolicBlock, Usage]" = weakref.WeakKeyDictionary()


def usage(block: SymbolicBlock) -> Usage:
    """The parameters (with shapes) and abstract functions the block's forward and inverse programs use."""
    if block in _USAGE:
        return _USAGE[block]
    backend = _Recorder()
    b = _RecordingBuilder(backend)
    y = block.forward(b, b.state(block.dim))
    if block.inverse is not None:
        block.inverse(b, Vec(b, list(y.vals), None))
    for program in (block.log_det, block.inverse_log_det):  # a reported log-det reads the same parameters
        if program is not None:
            program(b, b.state(block.dim))
    found = Usage(parameters=dict(b.shapes), functions=dict(backend.kinds))
    _USAGE[block] = found
    return found


def block_key(block: SymbolicBlock) -> tuple:
    """Blocks with the same name, dimension and parameter shapes are one lemma to prove."""
    shapes = tuple(sorted((name, shape) for name, (shape, _) in usage(block).parameters.items()))
    return (block.name, block.dim, shapes)


# --- a layer bound to its module ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Bound:
    """One layer of a module bound to its symbolic twin.

    block: the twin (a SymbolicBlock program).
    module: where the block's parameters and functions are looked up by name (None:
        everything comes from `parameters`/`functions`). It is also the code the layer is
        compared with: `mismatch` feeds module(x) (and module.inverse) the module's own
        input and compares with the twin.
    parameters: base name -> tensor, overriding the lookup on the module (e.g. {"c": module.b}).
    functions: abstract function name -> the module's own callable (an elementwise activation;
        for `b.grad` a scalar potential (B, k) -> (B,), differentiated by autograd).
    label: how reports name the layer (default: module class and block name).
    continues_call: this layer is part of the same module call as the layer before it (a
        module whose one forward runs several maps, such as a Hénon layer's 4 iterations,
        binds one Bound per map and marks all but the first); the module call is then
        compared with the composition of their twins. False (the default): each layer is
        one call of its module, so a weight-tied module applied twice binds two layers.
    """

    block: SymbolicBlock
    module: nn.Module | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    label: str = ""
    continues_call: bool = False

    def describe(self) -> str:
        if self.label:
            return self.label
        return f"{type(self.module).__name__} ({self.block.name})" if self.module is not None else self.block.name


@dataclass
class _Resolved:
    bound: Bound
    values: dict[str, torch.Tensor]
    functions: dict[str, Callable[..., Any]]

    def run(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        return trace_torch(self.bound.block, x, self.values, self.functions, inverse=inverse)


def _lookup(module: nn.Module, dotted: str) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


def _tensor_names(module: nn.Module) -> list[str]:
    names = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]
    return sorted(names)


def _resolve(bound: Bound, where: str) -> _Resolved:
    if not isinstance(bound, Bound):
        raise InputError(where, bound, "a verify.derive.binding.Bound", "return Bound(block, module, ...) from symbolic_layers()")
    if not isinstance(bound.block, SymbolicBlock):
        raise InputError(f"{where} block", bound.block, "a SymbolicBlock", "bind the layer's symbolic twin")
    use = usage(bound.block)
    owner = type(bound.module).__name__ if bound.module is not None else "no module"
    for key in bound.parameters:
        if key not in use.parameters:
            raise InputError(f"{where}: parameter override", key, f"one of the block's symbols {sorted(use.parameters)}",
                             f"remove it or use the base name the block {bound.block.name!r} passes to the Builder")
    for key in bound.functions:
        if key not in use.functions:
            raise InputError(f"{where}: function override", key, f"one of the block's functions {sorted(use.functions)}",
                             f"remove it or use the name the block {bound.block.name!r} gives the function")
    values: dict[str, torch.Tensor] = {}
    for base, (shape, names) in use.parameters.items():
        if base in bound.parameters:
            t = bound.parameters[base]
            if not isinstance(t, torch.Tensor):
                t = torch.tensor(float(t), dtype=torch.float64)
        else:
            t = None if bound.module is None else _lookup(bound.module, base)
            if not isinstance(t, torch.Tensor):
                have = _tensor_names(bound.module) if bound.module is not None else []
                raise InputError(
                    f"{where}: block symbol", base,
                    f"a parameter or buffer named {base!r} on {owner} (it has {have})",
                    f"name the module's tensor {base!r}, or bind it explicitly: "
                    f"Bound(block, module, parameters={{{base!r}: module.<tensor>}})",
                )
        if shape == ():
            if t.numel() != 1:
                raise InputError(f"{where}: shape of {base!r}", tuple(t.shape), "a scalar (0-d or one element)",
                                 f"bind a one-element tensor to {base!r}")
            t = t.reshape(())
            values[names[0]] = t
            continue
        if tuple(t.shape) != shape:
            kind = "vector" if len(shape) == 1 else "matrix"
            raise InputError(f"{where}: shape of {base!r}", tuple(t.shape), f"{shape} (the block's {kind} {base!r})",
                             f"build the block with the module's sizes, or bind a tensor of shape {shape}")
        values.update(zip(names, t.reshape(-1).unbind(0)))
    functions: dict[str, Callable[..., Any]] = {}
    for fname, kind in use.functions.items():
        fn = bound.functions.get(fname)
        if fn is None and bound.module is not None:
            cand = _lookup(bound.module, fname)
            fn = cand if callable(cand) and not isinstance(cand, torch.Tensor) else None
        if fn is None:
            what = "elementwise activation" if kind == "elementwise" else "scalar potential (B, k) -> (B,)"
            raise InputError(f"{where}: abstract function", fname, f"the module's own {what}, bound by name",
                             f"give {owner} a callable attribute {fname!r}, or Bound(functions={{{fname!r}: ...}})")
        functions[fname] = fn
    return _Resolved(bound, values, functions)


# --- the model's layers ---------------------------------------------------------------------


def layers_of(model: nn.Module, blocks: Sequence[SymbolicBlock] | None = None, dim: int | None = None) -> list[Bound]:
    """The model's layers bound to their twins, in application order, checked for names and shapes.

    The model's own ``symbolic_layers()`` if it has one; otherwise, when exactly one block is
    declared, that block bound to the whole model by name. `dim` (the model's input
    dimension), when given, must equal every block's dimension.
    """
    own = getattr(model, "symbolic_layers", None)
    if callable(own):
        layers = list(own())
        source = f"{type(model).__name__}.symbolic_layers()"
    else:
        declared = list(blocks or [])
        if len(declared) != 1:
            raise InputError(
                f"symbolic layers of {type(model).__name__}", f"{len(declared)} declared blocks",
                "a model with symbolic_layers(), or exactly one declared block (bound to the whole model)",
                f"implement symbolic_layers(self) -> [Bound(block, submodule), ...] on {type(model).__name__}, "
                "in application order",
            )
        layers = [Bound(declared[0], model)]
        source = "the declared block"
    if not layers:
        raise InputError(source, [], "at least one Bound layer", "return the layers in application order")
    for i, layer in enumerate(layers):
        _resolve(layer, f"layer {i + 1}")
    _steps(layers)  # continues_call is consistent
    dims = {layer.block.dim for layer in layers}
    want = dim if dim is not None else layers[0].block.dim
    for i, layer in enumerate(layers):
        if layer.block.dim != want:
            raise InputError(
                f"dimension of layer {i + 1} ({layer.describe()})", layer.block.dim,
                f"{want}, the model's input dimension" if dim is not None else f"{want}, as every other layer ({sorted(dims)})",
                "build the block with the module's own sizes (dim = 2·d for a (q, p) layer)",
            )
    return layers


def blocks_to_prove(layers: Sequence[Bound]) -> list[SymbolicBlock]:
    """The distinct blocks of the bound layers (by name, dimension and parameter shapes), in first-use order."""
    seen: dict[tuple, SymbolicBlock] = {}
    for layer in layers:
        seen.setdefault(block_key(layer.block), layer.block)
    return list(seen.values())


def twin(layers: Sequence[Bound], x64: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The bound twin of the whole model on a batch (B, n) in float64: layers composed in order
    (inverse: the layers' inverse programs in reverse order)."""
    resolved = [_resolve(layer, f"layer {i + 1}") for i, layer in enumerate(layers)]
    y = x64
    for r in (reversed(resolved) if inverse else resolved):
        y = r.run(y, inverse=inverse)
    return y


def bind(model: nn.Module, blocks: Sequence[SymbolicBlock] | None = None, dim: int | None = None) -> tuple[nn.Module, list[Bound]]:
    """A float64 copy of the model (eval mode) and its layers bound on that copy: what `mismatch` takes."""
    model64 = float64_copy(model)
    return model64, layers_of(model64, blocks, dim)


def float64_copy(model: nn.Module) -> nn.Module:
    """The engine's float64 copy (verify/precision.py: deepcopy, or detached, or the factory re-run), in eval mode.

    A float32 weight is exactly representable in float64, so the copy computes the
    trained map with round-off ~1e9 times smaller: a twin that agrees with it to
    float64 round-off describes the module, not merely approximates it.
    """
    return precision.float64_copy(model).eval()


# --- comparing the twin with the module ------------------------------------------------------

TOLERANCE_SAFETY = 4.0  # c in the error model below; see TOLERANCE_FORMULA

TOLERANCE_FORMULA = (
    "per step g (consecutive layers bound to one module call): local error ≤ c·√m_g·eps64·(1 + ‖J_g‖∞)·S_g, "
    "S_g = 1 + |x_g|∞ + |y_g|∞ (the step's input and output), m_g = n + w_g (n: dimension, w_g: longest tensor "
    "axis the step uses, the length of its inner products; √m: rounding errors of independent sign, as in "
    "Higham–Mary's probabilistic bound), ‖J_g‖∞ its Jacobian (rounding of the step's input, amplified by the "
    "step); whole model: tol(x) = Σ_g ‖J_{g+1}⋯J_G‖∞ · local_g / (1 + |x|∞ + |f(x)|∞), "
    f"the local errors carried to the output by the later steps (first order); c = {TOLERANCE_SAFETY:g} "
    f"(two evaluations, twin and module, with a factor 2 of margin), eps64 = {EPS64:.3g}"
)


def _function_module(fn: Callable[..., Any]) -> nn.Module | None:
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


class _Step:
    """One module call: a layer and the layers that continue its call, compared as module(x) against their twins."""

    def __init__(self, module: nn.Module | None, resolved: list[_Resolved], first: int) -> None:
        self.module, self.resolved, self.first = module, resolved, first
        self.batched_rows: bool | None = None  # None: not tried yet; False: the replicated rows cannot run here
        self.last = first + len(resolved) - 1
        n = resolved[0].bound.block.dim
        widths = [1]
        for r in resolved:
            widths += [max(shape, default=1) for shape, _ in usage(r.bound.block).parameters.values()]
            for fn in r.functions.values():
                fm = _function_module(fn)
                if fm is not None:
                    widths += [max(p.shape, default=1) for p in fm.parameters()]
        self.m = n + max(widths)

    @property
    def label(self) -> str:
        where = f"layer {self.first}" if self.first == self.last else f"layers {self.first}–{self.last}"
        if len(self.resolved) == 1:
            return f"{where} ({self.resolved[0].bound.describe()})"
        return f"{where} ({type(self.module).__name__}: {', '.join(r.bound.describe() for r in self.resolved)})"

    def twin(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        for r in (reversed(self.resolved) if inverse else self.resolved):
            x = r.run(x, inverse=inverse)
        return x

    def code(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        if self.module is None:  # nothing but the twin describes this layer
            return self.twin(x, inverse)
        if not inverse:
            return self.module(x)
        if not callable(getattr(self.module, "inverse", None)):
            raise InputError(f"inverse of {self.label}", type(self.module).__name__, "a module with inverse()",
                             "give the layer's module an inverse(), or bind the layer to a module that has one")
        return self.module.inverse(x)


def _steps(layers: Sequence[Bound]) -> list[_Step]:
    resolved = [_resolve(layer, f"layer {i + 1}") for i, layer in enumerate(layers)]
    steps: list[_Step] = []
    group: list[_Resolved] = []
    for i, r in enumerate(resolved):
        if r.bound.continues_call and (not group or r.bound.module is None or r.bound.module is not group[-1].bound.module):
            raise InputError(f"layer {i + 1} ({r.bound.describe()}) continues_call", True,
                             "a layer whose module is the previous layer's module",
                             "mark continues_call only on the 2nd, 3rd, ... maps of one module call")
        if group and not r.bound.continues_call:
            steps.append(_Step(group[0].bound.module, group, i - len(group) + 1))
            group = []
        group.append(r)
    steps.append(_Step(group[0].bound.module, group, len(resolved) - len(group) + 1))
    return steps


def _check_bound_to(model64: nn.Module, layers: Sequence[Bound]) -> None:
    if not isinstance(model64, nn.Module):
        raise InputError("model", type(model64).__name__, "a torch.nn.Module", "pass the float64 copy from bind()")
    wrong = [n for n, p in list(model64.named_parameters()) + list(model64.named_buffers())
             if p.is_floating_point() and p.dtype != torch.float64]
    if wrong:
        raise InputError("dtype of model tensor", wrong[0], "torch.float64 (the comparison runs in float64)",
                         "pass float64_copy(model) and bind the layers on that copy: bind(model, blocks)")
    mine = {id(m) for m in model64.modules()}
    if not layers:
        raise InputError("layers", [], "at least one Bound layer", "pass layers_of(model64, blocks)")
    for i, layer in enumerate(layers):
        owners = [layer.module] + [_function_module(f) for f in layer.functions.values()]
        for owner in owners:
            if owner is not None and id(owner) not in mine:
                raise InputError(
                    f"module of layer {i + 1} ({layer.describe()})", type(owner).__name__,
                    "a submodule of the model being compared", "bind the layers on the same float64 copy: "
                    "model64, layers = bind(model, blocks)",
                )


def _inf(v: torch.Tensor) -> torch.Tensor:
    return v.abs().amax(dim=-1)


def _jacobian_norms(step: _Step, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """‖J_g‖∞ per input (B,) and J_g itself (B, n, n) by autograd through the module's own code; None if not differentiable.

    The rows eₖᵀJ come from the step run once on k copies of the batch (a batch of k·B rows) and one backward with the
    identity rows as cotangents: the same reverse-mode products as one backward per row (the historical path), in one
    pass per block of rows (~7× faster at B = 1024, n = 64 on this project's CPU). A step that reads other rows of its
    batch is not a per-input map; its binding fails on the twin's mismatch, not here. Code on which the replicated
    call fails gets one backward per row, as before."""
    n = x.shape[1]
    try:
        with torch.enable_grad():
            if step.batched_rows is not False:
                J = _rows_replicated(step, x, inverse)
                if J is not None:
                    step.batched_rows = True
                    return _inf_norm(J), J
                step.batched_rows = False
            z = x.detach().requires_grad_(True)
            y = step.code(z, inverse)
            if not y.requires_grad:
                return None
            rows = [torch.autograd.grad(y[:, i].sum(), z, retain_graph=i < n - 1, allow_unused=True)[0] for i in range(n)]
    except (RuntimeError, NotImplementedError):
        return None
    if any(r is None for r in rows):
        return None
    J = torch.stack(rows, dim=1).detach()
    return _inf_norm(J), J


JACOBIAN_BLOCK_BYTES = 64 << 20  # rows of J computed per replicated call: its batch holds about this many bytes


def _rows_replicated(step: _Step, x: torch.Tensor, inverse: bool) -> torch.Tensor | None:
    """J (B, n, n) by blocks of k rows: the step on the batch repeated k times, one backward with cotangent eⱼ on copy j.
    None where this cannot run (the caller falls back to one backward per row) or the output does not depend on x."""
    B, n = x.shape
    block = max(1, min(n, JACOBIAN_BLOCK_BYTES // max(1, B * n * x.element_size())))
    parts = []
    try:
        for s in range(0, n, block):
            k = min(block, n - s)
            z = x.detach().unsqueeze(0).expand(k, B, n).reshape(k * B, n).clone().requires_grad_(True)
            y = step.code(z, inverse)
            if not isinstance(y, torch.Tensor) or y.shape != z.shape or not y.requires_grad:
                return None
            E = torch.zeros(k, B, n, dtype=y.dtype, device=y.device)
            E[torch.arange(k), :, torch.arange(s, s + k)] = 1
            (g,) = torch.autograd.grad(y, z, E.reshape(k * B, n), allow_unused=True)
            if g is None:
                return None
            parts.append(g.detach().reshape(k, B, n))
    except (RuntimeError, NotImplementedError):
        return None
    return torch.cat(parts, 0).transpose(0, 1)  # (n, B, n) → (B, n, n): row k of J_b is eₖᵀJ_b


def _inf_norm(J: torch.Tensor) -> torch.Tensor:
    return J.abs().sum(dim=-1).amax(dim=-1)


@dataclass
class _Side:
    """One direction (forward or inverse) evaluated on a batch."""

    defects: torch.Tensor  # (B,) relative whole-model mismatch
    tolerances: torch.Tensor  # (B,)
    local: list[torch.Tensor]  # per step (B,) relative local mismatch on the module's own trajectory
    local_tol: list[torch.Tensor]  # per step (B,)
    step_inputs: list[torch.Tensor]  # per step (B, n): the module's own input to that step
    glue: torch.Tensor  # (B,) relative |f(x) − composition of the module steps|
    steps: list[_Step]
    amplification_measured: bool


def _module_output(model64: nn.Module, x: torch.Tensor, inverse: bool) -> torch.Tensor:
    f = model64.inverse(x.clone()) if inverse else model64(x.clone())  # fresh copies: a module may free its input
    if not isinstance(f, torch.Tensor) or f.shape != x.shape:
        raise InputError("model output shape", tuple(getattr(f, "shape", ())), f"{tuple(x.shape)}",
                         "a phase-space map takes and returns (B, n)")
    return f


def _trajectory(steps: list[_Step], x: torch.Tensor, inverse: bool, whole_scale: torch.Tensor,
                twin_too: bool) -> tuple[torch.Tensor, list, list, list, list, torch.Tensor]:
    """Along the module's own trajectory: each step's local tolerance (TOLERANCE_FORMULA) from its Jacobian, and the
    whole-model tolerance (local errors carried to the output by the later steps); with `twin_too`, each step's twin on
    the module's own input and its local mismatch. Returns (tolerances, local mismatches, local tolerances, step inputs,
    Jacobians (None: not differentiable, taken as I), the module's composed output)."""
    order = list(reversed(steps)) if inverse else list(steps)
    B, n = x.shape
    local, local_abs_tol, local_tol, step_inputs = [], [], [], []
    jacs: list[torch.Tensor | None] = []
    z = x
    for s in order:
        step_inputs.append(z)
        y = s.code(z, inverse)
        scale = 1 + _inf(z) + _inf(y)
        if twin_too:
            local.append(_inf(s.twin(z, inverse) - y) / scale)
        jn = _jacobian_norms(s, z, inverse)
        jacs.append(None if jn is None else jn[1])
        norm = torch.ones(B, dtype=x.dtype) if jn is None else jn[0]
        lt = TOLERANCE_SAFETY * math.sqrt(s.m) * EPS64 * (1 + norm)
        local_tol.append(lt)
        local_abs_tol.append(lt * scale)
        z = y
    # carry each step's local error to the output through the later steps' Jacobians
    carry = torch.eye(n, dtype=x.dtype).expand(B, n, n)
    total = torch.zeros(B, dtype=x.dtype)
    for g in range(len(order) - 1, -1, -1):
        total = total + _inf_norm(carry) * local_abs_tol[g]
        J = jacs[g]
        carry = carry @ (J if J is not None else torch.eye(n, dtype=x.dtype))
    return total / whole_scale, local, local_tol, step_inputs, jacs, z


def _evaluate(model64: nn.Module, steps: list[_Step], layers: Sequence[Bound], x: torch.Tensor, inverse: bool) -> _Side:
    order = list(reversed(steps)) if inverse else list(steps)
    with torch.no_grad():
        f = _module_output(model64, x, inverse)
        whole_scale = 1 + _inf(x) + _inf(f)
        full = twin(layers, x, inverse=inverse)
        defects = _inf(full - f) / whole_scale
        tolerances, local, local_tol, step_inputs, jacs, z = _trajectory(steps, x, inverse, whole_scale, twin_too=True)
        glue = _inf(f - z) / whole_scale
    return _Side(defects, tolerances, local, local_tol, step_inputs, glue, order, all(j is not None for j in jacs))


def _row(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x]


def _side_report(side: _Side, x: torch.Tensor) -> dict[str, Any]:
    ratio = side.defects / side.tolerances
    local_ratio = torch.stack([d / t for d, t in zip(side.local, side.local_tol)])  # (steps, B)
    # a step whose module call and twin differ on the module's own input means the layer is
    # not what its twin says, even where later layers happen to make the whole model agree
    combined = torch.maximum(ratio, local_ratio.amax(dim=0))
    worst = int(torch.argmax(ratio))
    out: dict[str, Any] = {
        "agrees": bool(combined.max() <= 1),
        "defects": _row(side.defects), "tolerances": _row(side.tolerances),
        "max_defect": float(side.defects.max()), "max_ratio": float(ratio.max()),
        "max_step_ratio": float(local_ratio.max()),
        "worst_index": worst, "worst_input": _row(x[worst]),
        "worst_defect": float(side.defects[worst]), "worst_tolerance": float(side.tolerances[worst]),
        "glue_defect": float(side.glue.max()),
        "amplification_measured": side.amplification_measured,
        "steps": [
            {"step": s.label, "layers": [s.first, s.last], "max_defect": float(d.max()), "max_ratio": float((d / t).max())}
            for s, d, t in zip(side.steps, side.local, side.local_tol)
        ],
        "first_disagreeing": None,
    }
    if not out["agrees"]:
        # the input where the disagreement is largest; there, the first step in application order
        # that differs from its twin on its own input
        i = int(torch.argmax(combined))
        for s, d, t, z in zip(side.steps, side.local, side.local_tol, side.step_inputs):
            if bool(d[i] > t[i]):
                out["first_disagreeing"] = {"step": s.label, "layers": [s.first, s.last], "defect": float(d[i]),
                                            "tolerance": float(t[i]), "input": _row(x[i]), "step_input": _row(z[i]),
                                            "whole_defect": float(side.defects[i]), "whole_tolerance": float(side.tolerances[i])}
                break
        else:
            out["first_disagreeing"] = {
                "step": "the model's own code between its bound layers (its forward is not their composition)",
                "layers": [], "defect": float(side.glue[i]), "tolerance": float(side.tolerances[i]), "input": _row(x[i]),
                "step_input": _row(x[i]), "whole_defect": float(side.defects[i]), "whole_tolerance": float(side.tolerances[i]),
            }
    return out


def _has_inverse(model64: nn.Module, layers: Sequence[Bound]) -> str:
    """'' when both the model and every twin layer have an inverse, else why not."""
    missing = [layer.describe() for layer in layers if layer.block.inverse is None]
    if missing:
        return f"the twin has no inverse program for {missing[0]}"
    if not callable(getattr(model64, "inverse", None)):
        return f"{type(model64).__name__} has no inverse()"
    return ""


def mismatch(model64: nn.Module, layers: Sequence[Bound], x64: torch.Tensor) -> dict[str, Any]:
    """How far the bound twin is from the module on a batch of inputs, forward and (where both exist) inverse.

    model64: a float64 copy of the model (float64_copy or bind); layers: bound on that copy.
    Per input, the relative mismatch |twin(x) − f(x)|∞ / (1 + |x|∞ + |f(x)|∞), against a
    per-input round-off tolerance (TOLERANCE_FORMULA); layer by layer, each module step
    and its twin are fed the module's own input to that step, so a disagreement names the
    first layer that differs.

    Returns {"agrees", "summary", "tolerance_formula", "layers", "n_inputs", "forward": side,
    "inverse": side or None, "inverse_note"}. A side holds "agrees" (every whole-model defect
    and every step's local defect within tolerance), per-input "defects" and "tolerances",
    "max_defect", "max_ratio" (defect / tolerance, whole model), "max_step_ratio" (the same,
    per step), "worst_index"/"worst_input"/"worst_defect"/"worst_tolerance", per-step maxima
    ("steps"), "glue_defect" (|f(x) − composition of the module calls|, relative),
    "amplification_measured" (False: a step was not differentiable and its Jacobian was
    taken as I) and "first_disagreeing" (None when the side agrees; else the step label, its
    layers, defect and tolerance, the model input and the step's own input).
    """
    _check_input(x64, layers)
    _check_bound_to(model64, layers)
    steps = _steps(layers)
    out: dict[str, Any] = {
        "tolerance_formula": TOLERANCE_FORMULA,
        "layers": [layer.describe() for layer in layers],
        "n_inputs": int(x64.shape[0]),
    }
    out["forward"] = _side_report(_evaluate(model64, steps, layers, x64, inverse=False), x64)
    note = _has_inverse(model64, layers)
    out["inverse"] = None
    if not note:
        try:
            out["inverse"] = _side_report(_evaluate(model64, steps, layers, x64, inverse=True), x64)
        except NotImplementedError as exc:  # a model may define inverse() only to say it has none
            note = f"{type(model64).__name__}.inverse() raised NotImplementedError: {exc}"
    out["inverse_note"] = note
    sides = [("forward", out["forward"])] + ([("inverse", out["inverse"])] if out["inverse"] else [])
    out["agrees"] = all(side["agrees"] for _, side in sides)
    out["summary"] = _summary(sides)
    return out


def _summary(sides: list[tuple[str, dict[str, Any]]]) -> str:
    for name, side in sides:
        first = side["first_disagreeing"]
        if first is not None:
            x = ", ".join(f"{v:.4g}" for v in first["input"])
            return (f"{name}: {first['step']} differs by {first['defect']:.3g} (relative; tolerance "
                    f"{first['tolerance']:.3g}) at x = [{x}]; whole model there {first['whole_defect']:.3g} "
                    f"vs tolerance {first['whole_tolerance']:.3g}")
    worst = max(max(side["max_ratio"], side["max_step_ratio"]) for _, side in sides)
    return (f"the twin agrees with the module ({' and '.join(n for n, _ in sides)}) on every input: "
            f"largest mismatch {worst:.3g} of its round-off tolerance")


def _check_input(x64: torch.Tensor, layers: Sequence[Bound]) -> None:
    if not layers:
        raise InputError("layers", [], "at least one Bound layer", "pass layers_of(model64, blocks)")
    n = layers[0].block.dim
    if not isinstance(x64, torch.Tensor) or x64.dim() != 2 or x64.shape[1] != n:
        raise InputError("inputs shape", tuple(getattr(x64, "shape", ())), f"(B, {n}), the layers' dimension",
                         "pass a batch of phase-space points")
    if x64.dtype != torch.float64:
        raise InputError("inputs dtype", x64.dtype, "torch.float64", "pass x.double()")


def mismatch_defects(model64: nn.Module, layers: Sequence[Bound], inverse: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, n) float64 -> (B,) relative mismatch |twin(x) − f(x)|∞ / (1 + |x|∞ + |f(x)|∞).

    Differentiable in x (the twin's potentials keep their graph when x requires grad),
    so a search engine can climb it. Its tolerance per input: `mismatch_tolerance`.
    """
    _check_bound_to(model64, layers)
    if inverse and _has_inverse(model64, layers):
        raise InputError("inverse", True, "a model and twin that both have an inverse", _has_inverse(model64, layers))
    resolved = [_resolve(layer, f"layer {i + 1}") for i, layer in enumerate(layers)]

    def defects(x: torch.Tensor) -> torch.Tensor:
        _check_input(x, layers)
        # a graph only when the caller differentiates in x (the parameters' own gradients are not wanted)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            f = model64.inverse(x.clone()) if inverse else model64(x.clone())
            y = x
            for r in (reversed(resolved) if inverse else resolved):
                y = r.run(y, inverse=inverse)
            return _inf(y - f) / (1 + _inf(x) + _inf(f))

    return defects


def mismatch_tolerance(model64: nn.Module, layers: Sequence[Bound], inverse: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, n) float64 -> (B,) round-off tolerance of `mismatch_defects` at x (TOLERANCE_FORMULA); not differentiated."""
    _check_bound_to(model64, layers)
    steps = _steps(layers)

    def tolerance(x: torch.Tensor) -> torch.Tensor:
        _check_input(x, layers)
        # the same numbers as mismatch()'s tolerances (one code path, _trajectory), without the twin: the module's own
        # trajectory and its steps' Jacobians are all the tolerance reads
        x = x.detach()
        with torch.no_grad():
            whole_scale = 1 + _inf(x) + _inf(_module_output(model64, x, inverse))
            return _trajectory(steps, x, inverse, whole_scale, twin_too=False)[0]

    return tolerance


# --- the reported log-determinant: the twin's against the module's -----------------------------------------------

LOG_DET_SAFETY = 16.0

LOG_DET_TOLERANCE_FORMULA = (
    f"|Σ_layers twin log-det − model.log_det(x)| ≤ c·eps64·(n + w + L)·(1 + Σ_layers Σ_terms |term|), c = "
    f"{LOG_DET_SAFETY:g}: each layer's twin reads the module's own input to that layer, so the two differ by the "
    "rounding of the terms (inner products of length ≤ n + w) and of their sum over L layers"
)


def log_det_parts(model64: nn.Module, layers: Sequence[Bound], method: str,
                  inverse: bool = False) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """x (B, n) float64 -> (|twin − model| (B,), tolerance (B,), twin (B,), model (B,)) for the log-det the model reports
    through `method` (the inverse's, with `inverse`): the twins' log_det (inverse_log_det) programs summed along the
    module's own trajectory, against model64.<method>(x). A proof of LogDet is about the twins' reports; this is what
    makes it a statement about the number the code returns."""
    _check_bound_to(model64, layers)
    missing = [layer.describe() for layer in layers
               if (layer.block.inverse_log_det if inverse else layer.block.log_det) is None]
    if missing:
        raise InputError(f"reported log-det of layer {missing[0]}", None,
                         "a twin that declares the log-det its layer reports (SymbolicBlock(log_det=..., "
                         "inverse_log_det=...))", "declare it on the block, or drop the LogDet claim's proof")
    fn = getattr(model64, method, None)
    if not callable(fn):
        raise InputError(f"{type(model64).__name__}.{method}", fn, "a method reporting the log-determinant per input",
                         f"implement {method}(x) -> (B,) or name the method with LogDet(method=...)")
    steps = _steps(layers)
    order = list(reversed(steps)) if inverse else list(steps)
    widths = max(s.m for s in steps)

    def parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_input(x, layers)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            reported = fn(x.clone())
            if reported.dim() == 2 and reported.shape[1] == 1:
                reported = reported[:, 0]
            total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            scale = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            z = x
            for step in order:
                zt = z
                within = list(reversed(step.resolved) if inverse else step.resolved)
                for k, r in enumerate(within):
                    terms = trace_torch(r.bound.block, zt, r.values, r.functions, inverse=inverse, log_det="terms")
                    total = total + terms.sum(-1)
                    scale = scale + terms.detach().abs().sum(-1)
                    if k < len(within) - 1:  # the next layer of the same module call reads the twin's output
                        zt = r.run(zt, inverse=inverse)
                z = step.code(z, inverse)
            tol = LOG_DET_SAFETY * EPS64 * (x.shape[1] + widths + len(layers)) * scale
            return (total - reported).abs(), tol, total, reported

    return parts
