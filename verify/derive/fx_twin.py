"""Symbolic twins generated from a layer's own code with torch.fx.

A hand-written twin (a SymbolicBlock program) is a second copy of the layer that can
drift from the code that runs. Here the twin is read off the code: `layer.forward`
(and `layer.inverse`, when the layer has one) is traced symbolically with torch.fx,
every submodule call inlined, and the graph is replayed as a Builder program on the
symbolic backends. Parameters and buffers become parameter symbols, concrete
activations (tanh, sigmoid, exp, softplus, sin, cos) carry their real derivative
identities (verify.derive.symbolic.KNOWN_FUNCTIONS), numeric literals become exact rationals.

Nothing is guessed: every node's result is checked against the shape torch itself
computes on an example batch (B, dim), and the program, instantiated with the layer's
own parameters, must reproduce the layer's output on an example input. Anything
outside the supported set raises `Untraceable`, naming the node and the source line.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import operator
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy as sp
import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_arg
from torch.fx.passes.shape_prop import ShapeProp

from verify.errors import InputError
from verify.derive.symbolic import Builder, Mat, SymbolicBlock, Vec, matrix_entry, trace_float

__all__ = ["GeneratedTwin", "SUPPORTED", "Untraceable", "generate_block", "generate_layers", "generate_stages"]

SUPPORTED = (
    "slicing the last dim (x[..., a:b], x[:, a:b]), x.chunk/x.split and torch.cat on dim -1, "
    "+ - * / by numeric constants, unary -, integer powers x ** n, "
    "@ / torch.matmul / F.linear / nn.Linear with a parameter matrix (or its .T), "
    "elementwise products of tensors, products and sums with parameter scalars or vectors, "
    "torch.tanh / sigmoid / exp / softplus / sin / cos, and calls into submodules and their methods"
)
FIX = "write a hand-written twin (blocks=...) or check numerically only"


class Untraceable(InputError):
    """The layer's code uses something the twin generator cannot translate exactly."""

    def __init__(self, where: str, problem: str, fix: str = FIX) -> None:
        super().__init__(where, problem, f"only supported operations ({SUPPORTED})", fix)

    def __reduce__(self) -> tuple:  # crosses process boundaries (verify.timelimit's child) intact
        return (Untraceable, (self.what, self.value, self.fix))


# --- tracing ---------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    # buffers (a step size h) must stay symbols, not be folded into constants at trace time
    proxy_buffer_attributes = True
    record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return False  # inline nn.Linear, nn.Tanh, nn.Sequential, ...: only functional ops remain


class _Method(nn.Module):
    """Makes `layer.<method>` the forward of a root module, so fx can trace any method."""

    def __init__(self, layer: nn.Module, method: str) -> None:
        super().__init__()
        self.layer = layer
        self._method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.layer, self._method)(x)


def _user_line(tb_frames: Sequence[traceback.FrameSummary] | None = None, stack: str | None = None) -> str:
    """The innermost line of the layer's own code (not torch's, not this file's) in a traceback or fx stack trace."""
    frames: list[tuple[str, int, str]] = []
    if tb_frames is not None:
        frames = [(f.filename, f.lineno or 0, (f.line or "").strip()) for f in tb_frames]
    elif stack:
        lines = stack.splitlines()
        for i, ln in enumerate(lines):
            m = re.match(r'\s*File "(.+)", line (\d+), in', ln)
            if m:
                code = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("File ") else ""
                frames.append((m.group(1), int(m.group(2)), code))
    here = os.path.abspath(__file__)
    own = [f for f in frames if "/torch/" not in f[0] and os.path.abspath(f[0]) != here]
    if not own:
        return ""
    fname, line, code = own[-1]  # both list the outermost frame first
    return f" at {fname}:{line}" + (f": {code}" if code else "")


class _ShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running, to name it when torch fails there."""

    current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        return super().run_node(n)


def _trace(layer: nn.Module, method: str, where: str) -> fx.GraphModule:
    root = _Method(layer, method)
    try:
        graph = _Tracer().trace(root)
    except Untraceable:
        raise
    except Exception as exc:  # noqa: BLE001 - every tracing failure is reported the same way
        frames = traceback.extract_tb(exc.__traceback__)
        msg = str(exc).split("\n")[0]
        if isinstance(exc, fx.proxy.TraceError) and "control flow" in msg:
            problem = f"data-dependent control flow{_user_line(frames)} ({msg})"
        else:
            problem = f"torch.fx could not trace it{_user_line(frames)}: {type(exc).__name__}: {msg}"
        raise Untraceable(where, problem) from exc
    return fx.GraphModule(root, graph)


# --- values during interpretation -------------------------------------------------------------------
# Vec: depends on the input; per sample a vector (torch shape (B, k)).
# np.ndarray (dtype object) of backend scalars: does not depend on the input (parameters, constants).
# sp.Rational: a Python number of the code (exact), also shape-arithmetic ints.
# list: the parts of chunk/split, or a shape tuple.


def _num(v: Any, where: str) -> sp.Rational:
    if isinstance(v, bool):
        raise Untraceable(where, f"a boolean {v!r} used as a number")
    if isinstance(v, int):
        return sp.Integer(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise Untraceable(where, f"the non-finite constant {v!r}")
        return sp.Rational(repr(v))  # the shortest decimal that reads back as the same double
    raise Untraceable(where, f"the Python value {v!r} of type {type(v).__name__}")


def _wrap(r: Any) -> np.ndarray:
    if isinstance(r, np.ndarray) and r.dtype == object:
        return r
    out = np.empty((), dtype=object)
    out[()] = r
    return out


def _const_array(values: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out.reshape(shape)


@dataclass
class _Param:
    base: str  # symbol base name
    shape: tuple[int, ...]

    def names(self) -> list[str]:
        if self.shape in ((), (1,)):
            return [self.base]
        if len(self.shape) == 1:
            return [f"{self.base}_{i}" for i in range(self.shape[0])]
        r, c = self.shape
        return [matrix_entry(self.base, i, j, r, c) for i in range(r) for j in range(c)]


_FUNCTIONS: dict[Any, str] = {
    operator.add: "add", torch.add: "add",
    operator.sub: "sub", torch.sub: "sub", torch.subtract: "sub",
    operator.mul: "mul", torch.mul: "mul", torch.multiply: "mul",
    operator.truediv: "div", torch.div: "div", torch.true_divide: "div", torch.divide: "div",
    operator.floordiv: "floordiv",
    operator.neg: "neg", torch.neg: "neg", torch.negative: "neg",
    operator.pow: "pow", torch.pow: "pow", torch.square: "square",
    operator.matmul: "matmul", torch.matmul: "matmul", torch.mm: "matmul",
    torch._C._nn.linear: "linear",
    torch.cat: "cat", torch.concat: "cat", torch.concatenate: "cat",
    torch.chunk: "chunk", torch.split: "split",
    operator.getitem: "getitem", getattr: "getattr",
    torch.tanh: "tanh", torch.sigmoid: "sigmoid", torch.exp: "exp", torch._C._nn.softplus: "softplus",
    torch.sin: "sin", torch.cos: "cos",
}
_METHODS = {
    "add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg", "pow": "pow", "square": "square",
    "matmul": "matmul", "tanh": "tanh", "sigmoid": "sigmoid", "exp": "exp", "sin": "sin", "cos": "cos",
    "chunk": "chunk", "split": "split", "t": "transpose", "size": "size", "contiguous": "identity", "clone": "identity",
    "__rsub__": "rsub", "__radd__": "radd", "__rmul__": "rmul",
}
_INPLACE = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ipow, operator.imatmul,
            operator.setitem}
_REDUCTIONS = {"sum", "mean", "prod", "max", "min", "amax", "amin", "norm", "std", "var", "logsumexp", "cumsum",
               "argmax", "argmin", "all", "any"}
_KNOWN = ("tanh", "sigmoid", "exp", "softplus", "sin", "cos")


def _target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    if node.op == "call_function":
        mod = getattr(t, "__module__", None) or ""
        name = getattr(t, "__name__", repr(t))
        if mod in ("_operator", "operator"):
            return f"operator.{name}"
        if t in (torch._C._nn.linear, torch._C._nn.softplus):
            return f"torch.nn.functional.{name}"
        if "torch" in mod or getattr(torch, name, None) is t:
            return f"torch.{name}"
        return f"{mod}.{name}" if mod else name
    return f"{node.op} {t}"


class _Interpreter:
    """Replays one traced graph as a Builder program."""

    def __init__(self, gm: fx.GraphModule, where: str, params: Mapping[str, _Param],
                 constants: Mapping[str, tuple[list[sp.Rational], tuple[int, ...]]], batch: int,
                 check_shapes: bool) -> None:
        self.gm, self.where, self.params, self.constants = gm, where, params, constants
        self.batch, self.check_shapes = batch, check_shapes
        self.dependent = _input_dependent(gm)

    # errors ----------------------------------------------------------------------------------------
    def fail(self, node: fx.Node, problem: str) -> Untraceable:
        line = _user_line(stack=node.stack_trace) if node.stack_trace else ""
        return Untraceable(f"{self.where} node {node.name!r} ({_target_name(node)}{line})", problem)

    # running ---------------------------------------------------------------------------------------
    def run(self, b: Builder, x: Vec, stage: "_Stage | None" = None) -> Vec:
        """The whole graph on input x; or one stage: x holds the values of the stage's entry nodes, in order."""
        nodes = list(self.gm.graph.nodes)
        env: dict[fx.Node, Any] = {}
        if stage is None or not stage.entry:
            env[nodes[0]] = x
        else:
            start = 0
            for n in stage.entry:
                k = int(n.meta["tensor_meta"].shape[-1])
                env[n] = x[start : start + k]
                start += k
        first = 0 if stage is None else stage.first
        last = len(nodes) - 1 if stage is None or not stage.exit else stage.last
        dependent = self.dependent
        for i, node in enumerate(nodes[: last + 1]):
            if node in env or (i < first and node in dependent):
                continue  # entry values, or input-dependent values of earlier stages (dead here)
            if node.op == "placeholder":
                if node is nodes[0]:
                    raise RuntimeError(f"stage entry misses the input (node {node.name})")  # pragma: no cover
                if not node.args:
                    raise self.fail(node, "a second input without a default value (the twin maps one vector)")
                env[node] = self.lift(node, node.args[0])
                continue
            if node.op == "output":
                out = map_arg(node.args[0], lambda n: env[n])
                if not isinstance(out, Vec):
                    raise self.fail(node, f"the layer returns {self.kind(out)}, not one tensor that depends on its input")
                return out
            args = map_arg(node.args, lambda n: env[n])
            kwargs = map_arg(node.kwargs, lambda n: env[n])
            value = self.evaluate(node, b, args, kwargs)
            if self.check_shapes:
                self.check(node, value)
            env[node] = value
        assert stage is not None and stage.exit
        parts = [env[n] for n in stage.exit]
        vals = [v for p in parts for v in p.vals]
        jac = None if any(p.jac is None for p in parts) else [r for p in parts for r in p.jac]
        return Vec(b, vals, jac)

    def lift(self, node: fx.Node, v: Any) -> Any:
        if isinstance(v, (Vec, np.ndarray, sp.Rational, list, tuple, slice, type(None), type(Ellipsis), str)):
            return v
        if isinstance(v, torch.dtype):
            return v
        return _num(v, f"{self.where} node {node.name!r}")

    def kind(self, v: Any) -> str:
        if isinstance(v, Vec):
            return f"a per-sample vector of length {len(v)}"
        if isinstance(v, np.ndarray):
            return f"an input-independent tensor of shape {tuple(v.shape)}"
        return f"{type(v).__name__} {v!r}"

    def check(self, node: fx.Node, value: Any) -> None:
        """The program's value must have the shape torch computed for this node on the (B, dim) example."""
        meta = node.meta.get("tensor_meta")
        if meta is None:
            if isinstance(value, (Vec, np.ndarray)):
                raise self.fail(node, f"torch gave no tensor here but the program has {self.kind(value)}")
            return

        def expect(v: Any, m: Any) -> bool:
            if isinstance(v, (list, tuple)):
                return isinstance(m, (list, tuple)) and len(m) == len(v) and all(map(expect, v, m))
            shape = tuple(getattr(m, "shape", ()))
            if isinstance(v, Vec):
                return shape == (self.batch, len(v))
            if isinstance(v, np.ndarray):
                return shape == tuple(v.shape)
            return False

        if not expect(value, meta):
            shape = (tuple(meta.shape) if hasattr(meta, "shape") else
                     [tuple(getattr(m, "shape", ())) for m in meta] if isinstance(meta, (list, tuple)) else meta)
            raise self.fail(node, f"torch computes shape {shape} on a ({self.batch}, dim) batch where the program has "
                                  f"{self.kind(value)}: the operation does not act on each sample's vector alone")

    # leaves ----------------------------------------------------------------------------------------
    def attribute(self, node: fx.Node, b: Builder) -> np.ndarray:
        target = str(node.target)
        if target in self.params:
            p = self.params[target]
            if p.shape in ((), (1,)):
                return _const_array([b.scalar(p.base)], p.shape)
            if len(p.shape) == 1:
                return _const_array(b.vector(p.base, p.shape[0]), p.shape)
            return _const_array([v for row in b.matrix(p.base, *p.shape).rows for v in row], p.shape)
        if target in self.constants:
            vals, shape = self.constants[target]
            return _const_array([b.backend.const(v) for v in vals], shape)
        raise self.fail(node, f"the attribute {target!r} is not a parameter, buffer or tensor constant of the layer")

    # operations ------------------------------------------------------------------------------------
    def evaluate(self, node: fx.Node, b: Builder, args: tuple, kwargs: dict) -> Any:
        if node.op == "get_attr":
            return self.attribute(node, b)
        if node.op == "call_module":
            raise self.fail(node, "a submodule call that was not inlined")
        if node.op == "call_function":
            if node.target in _INPLACE:
                raise self.fail(node, "an in-place operation (the twin needs every value once)")
            op = _FUNCTIONS.get(node.target)
        elif node.op == "call_method":
            name = str(node.target)
            if name.endswith("_") and not name.endswith("__"):
                raise self.fail(node, f"the in-place operation .{name}() (the twin needs every value once)")
            op = _METHODS.get(name)
            if op is None and name in _REDUCTIONS:
                raise self.fail(node, f"the reduction .{name}(): over the batch dimension it mixes samples, over "
                                      "the features it leaves the per-sample vector form")
        else:  # pragma: no cover - fx has no other node kinds
            raise self.fail(node, f"the node kind {node.op}")
        if op is None:
            target = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
            if str(target) in _REDUCTIONS:
                raise self.fail(node, f"the reduction {target}: over the batch dimension it mixes samples, over the "
                                      "features it leaves the per-sample vector form")
            raise self.fail(node, "an unsupported operation")
        args = tuple(self.lift(node, a) for a in args)
        kwargs = {k: self.lift(node, v) for k, v in kwargs.items()}
        return getattr(self, f"op_{op}")(node, b, *args, **kwargs)

    # broadcasting helpers
    def features(self, node: fx.Node, b: Builder, c: Any, k: int) -> list[Any]:
        """An input-independent value broadcast against per-sample vectors of length k (torch's rule)."""
        if isinstance(c, sp.Rational):
            return [b.backend.const(c)] * k
        s = c.shape
        if len(s) > 2 or (len(s) == 2 and s[0] != 1):
            raise self.fail(node, f"an input-independent tensor of shape {tuple(s)} combined with per-sample vectors "
                                  "(it would broadcast across the batch)")
        flat = list(c.reshape(-1))
        last = s[-1] if s else 1
        if last == k:
            return flat
        if last == 1:
            return flat * k
        raise self.fail(node, f"shapes {tuple(s)} and (B, {k}) do not broadcast")

    @staticmethod
    def widen(v: Vec, k: int) -> Vec:
        if len(v) == k:
            return v
        return Vec(v.b, v.vals * k, None if v.jac is None else v.jac * k)

    def pair(self, node: fx.Node, b: Builder, u: Vec, v: Any) -> tuple[Vec, Any]:
        """Bring a Vec and another operand to a common per-sample length."""
        if isinstance(v, Vec):
            k = max(len(u), len(v))
            if min(len(u), len(v)) not in (1, k):
                raise self.fail(node, f"per-sample lengths {len(u)} and {len(v)} do not broadcast")
            return self.widen(u, k), self.widen(v, k)
        if isinstance(v, np.ndarray) and v.ndim >= 1 and len(u) == 1 and v.shape[-1] > 1:
            u = self.widen(u, v.shape[-1])
        return u, self.features(node, b, v, len(u))

    def const(self, b: Builder, c: Any) -> np.ndarray:
        return _wrap(b.backend.const(c)) if isinstance(c, sp.Rational) else c

    def operands(self, node: fx.Node, a: Any, c: Any) -> None:
        for v in (a, c):
            if not isinstance(v, (Vec, np.ndarray, sp.Rational)):
                raise self.fail(node, f"an operand {self.kind(v)}")

    # arithmetic
    def op_add(self, node, b, a, c, alpha=None):
        if alpha is not None:
            c = self.op_mul(node, b, alpha, c)
        self.operands(node, a, c)
        if isinstance(a, sp.Rational) and isinstance(c, sp.Rational):
            return a + c
        if isinstance(c, Vec) and not isinstance(a, Vec):
            a, c = c, a
        if isinstance(a, Vec):
            a, c = self.pair(node, b, a, c)
            return a + (c if isinstance(c, Vec) else b.constant_vec(c))
        return _wrap(self.const(b, a) + self.const(b, c))

    op_radd = op_add

    def op_sub(self, node, b, a, c, alpha=None):
        if alpha is not None:
            c = self.op_mul(node, b, alpha, c)
        return self.op_add(node, b, a, self.op_neg(node, b, c))

    def op_rsub(self, node, b, a, c, alpha=None):
        return self.op_sub(node, b, c, a, alpha)

    def op_neg(self, node, b, a):
        self.operands(node, a, a)
        if isinstance(a, np.ndarray):
            return _wrap(-a)
        return -a

    def op_mul(self, node, b, a, c):
        self.operands(node, a, c)
        if isinstance(a, sp.Rational) and isinstance(c, sp.Rational):
            return a * c
        if isinstance(c, Vec) and not isinstance(a, Vec):
            a, c = c, a
        if isinstance(a, Vec):
            a, c = self.pair(node, b, a, c)
            return a * c if isinstance(c, Vec) else a.hadamard(c)
        return _wrap(self.const(b, a) * self.const(b, c))

    op_rmul = op_mul

    def op_div(self, node, b, a, c, rounding_mode=None):
        if rounding_mode is not None:
            raise self.fail(node, f"division with rounding_mode={rounding_mode!r}")
        if not isinstance(c, sp.Rational):
            raise self.fail(node, f"division by {self.kind(c)} (only division by a numeric constant is exact here)")
        if c == 0:
            raise self.fail(node, "division by zero")
        return self.op_mul(node, b, a, 1 / c)

    def op_floordiv(self, node, b, a, c):
        if isinstance(a, sp.Rational) and isinstance(c, sp.Rational) and c != 0:
            return sp.floor(a / c)
        raise self.fail(node, "floor division of tensors")

    def op_pow(self, node, b, a, n):
        if not isinstance(n, sp.Rational) or not n.is_integer or n < 0:
            raise self.fail(node, f"the power {self.kind(n)} (only integer powers n >= 0 are polynomial)")
        if isinstance(a, sp.Rational):
            return a ** n
        if not isinstance(a, (Vec, np.ndarray)):
            raise self.fail(node, f"a power of {self.kind(a)}")
        if n == 0:
            return self.op_add(node, b, self.op_mul(node, b, a, sp.Integer(0)), sp.Integer(1))
        out = a
        for _ in range(int(n) - 1):
            out = self.op_mul(node, b, out, a)
        return out

    def op_square(self, node, b, a):
        return self.op_pow(node, b, a, sp.Integer(2))

    # linear algebra
    def op_matmul(self, node, b, a, c):
        if isinstance(a, Vec) and isinstance(c, np.ndarray) and c.ndim == 2:
            if c.shape[0] != len(a):
                raise self.fail(node, f"x @ W with x of length {len(a)} and W of shape {tuple(c.shape)}")
            return Mat([list(r) for r in c.T]) @ a
        if isinstance(a, np.ndarray) and isinstance(c, np.ndarray):
            return _wrap(np.matmul(a, c))
        if isinstance(a, np.ndarray) and isinstance(c, Vec):
            raise self.fail(node, "W @ x contracts W with the batch dimension of a (B, n) batch; write x @ W.T")
        if isinstance(a, Vec) and isinstance(c, Vec):
            raise self.fail(node, "a product of two input-dependent tensors with @ (not elementwise)")
        raise self.fail(node, f"matmul of {self.kind(a)} and {self.kind(c)} (it leaves the per-sample vector form)")

    def op_linear(self, node, b, a, weight, bias=None):
        if not (isinstance(weight, np.ndarray) and weight.ndim == 2):
            raise self.fail(node, f"F.linear with weight {self.kind(weight)}")
        out = self.op_matmul(node, b, a, _wrap(weight.T))
        return out if bias is None else self.op_add(node, b, out, bias)

    def op_transpose(self, node, b, a):
        if isinstance(a, np.ndarray) and a.ndim <= 2:
            return _wrap(a.T)
        raise self.fail(node, f"transposing {self.kind(a)}")

    # structure
    def last_dim(self, node, dim) -> None:
        if dim not in (-1, 1):
            raise self.fail(node, f"dim={dim} (only the feature dimension -1 of a (B, n) batch)")

    def op_cat(self, node, b, tensors, dim=0):
        self.last_dim(node, dim)
        parts = list(tensors)
        if all(isinstance(p, Vec) for p in parts):
            vals = [v for p in parts for v in p.vals]
            jac = None if any(p.jac is None for p in parts) else [r for p in parts for r in p.jac]
            return Vec(b, vals, jac)
        raise self.fail(node, "concatenating input-independent tensors with per-sample vectors")

    def op_chunk(self, node, b, a, chunks, dim=0):
        self.last_dim(node, dim)
        if not isinstance(a, Vec):
            raise self.fail(node, f"chunk of {self.kind(a)}")
        size = -(-len(a) // int(chunks))
        return [a[i : i + size] for i in range(0, len(a), size)]

    def op_split(self, node, b, a, split_size_or_sections, dim=0):
        self.last_dim(node, dim)
        if not isinstance(a, Vec):
            raise self.fail(node, f"split of {self.kind(a)}")
        s = split_size_or_sections
        if isinstance(s, (list, tuple)):
            sizes = [int(v) for v in s]
            if sum(sizes) != len(a):
                raise self.fail(node, f"split sizes {sizes} do not add up to {len(a)}")
        else:
            sizes = [int(s)] * (len(a) // int(s)) + ([len(a) % int(s)] if len(a) % int(s) else [])
        out, start = [], 0
        for n in sizes:
            out.append(a[start : start + n])
            start += n
        return out

    def op_identity(self, node, b, a, *args, **kwargs):
        if args or kwargs:
            raise self.fail(node, "arguments to a copy")
        return a

    def op_getattr(self, node, b, a, name):
        if name in ("T", "mT") and isinstance(a, np.ndarray):
            return self.op_transpose(node, b, a)
        if name == "shape" and isinstance(a, Vec):
            return ["batch", sp.Integer(len(a))]
        raise self.fail(node, f"the attribute .{name} of {self.kind(a)}")

    def op_size(self, node, b, a, dim=None):
        if isinstance(a, Vec) and dim in (-1, 1):
            return sp.Integer(len(a))
        raise self.fail(node, f".size({dim}) of {self.kind(a)} (only the feature size x.size(-1) is fixed)")

    def op_getitem(self, node, b, a, idx):
        if isinstance(a, list):  # chunk/split parts, or a shape
            value = a[int(idx)]
            if isinstance(value, str):
                raise self.fail(node, "the batch size (the twin is per sample)")
            return value
        if isinstance(a, np.ndarray):
            return _wrap(a[self.plain_index(node, idx)])
        if not isinstance(a, Vec):
            raise self.fail(node, f"indexing {self.kind(a)}")
        idx = idx if isinstance(idx, tuple) else (idx,)
        if sum(i is Ellipsis for i in idx) > 1 or any(i is None for i in idx):
            raise self.fail(node, f"the index {idx!r}")
        if Ellipsis in idx:
            k = idx.index(Ellipsis)
            idx = idx[:k] + (slice(None),) * (2 - (len(idx) - 1)) + idx[k + 1 :]
        while len(idx) < 2:
            idx = idx + (slice(None),)
        if len(idx) != 2 or idx[0] != slice(None):
            raise self.fail(node, f"the index {idx!r} (it selects along the batch dimension)")
        s = idx[1]
        if not isinstance(s, slice):
            stop = "" if int(s) == -1 else int(s) + 1
            raise self.fail(node, f"x[..., {s}] drops the feature dimension; write x[..., {s}:{stop}]")
        s = slice(*(None if v is None else int(v) for v in (s.start, s.stop, s.step)))
        return a[s]

    def plain_index(self, node, idx):
        parts = idx if isinstance(idx, tuple) else (idx,)
        ok = all(p is None or p is Ellipsis or isinstance(p, (slice, sp.Integer, int)) for p in parts)
        if not ok:
            raise self.fail(node, f"the index {idx!r} of a parameter (only ints and slices)")

        def plain(p: Any) -> Any:
            if isinstance(p, slice):
                return slice(*(None if v is None else int(v) for v in (p.start, p.stop, p.step)))
            return int(p) if isinstance(p, sp.Integer) else p

        conv = tuple(plain(p) for p in parts)
        return conv if isinstance(idx, tuple) else conv[0]

    # functions
    def known(self, node, b, fname, a):
        if isinstance(a, Vec):
            return b.act_known(fname, a)
        if isinstance(a, np.ndarray):
            flat = [b.backend.apply_known(fname, v)[0] for v in a.reshape(-1)]
            return _const_array(flat, a.shape)
        raise self.fail(node, f"{fname} of {self.kind(a)}")

    def op_tanh(self, node, b, a):
        return self.known(node, b, "tanh", a)

    def op_sigmoid(self, node, b, a):
        return self.known(node, b, "sigmoid", a)

    def op_exp(self, node, b, a):
        return self.known(node, b, "exp", a)

    def op_sin(self, node, b, a):
        return self.known(node, b, "sin", a)

    def op_cos(self, node, b, a):
        return self.known(node, b, "cos", a)

    def op_softplus(self, node, b, a, beta=sp.Integer(1), threshold=None):
        # softplus_β(z) = softplus(βz)/β; torch's threshold switch to z for βz > threshold is a rounding shortcut
        if not isinstance(beta, sp.Rational) or beta == 0:
            raise self.fail(node, f"softplus with beta {self.kind(beta)}")
        if beta == 1:
            return self.known(node, b, "softplus", a)
        return self.op_mul(node, b, self.known(node, b, "softplus", self.op_mul(node, b, a, beta)), 1 / beta)


# --- generation ---------------------------------------------------------------------------------------


@dataclass
class GeneratedTwin:
    """A SymbolicBlock generated from a layer's code, with what a binder needs to instantiate it.

    `parameters` maps each parameter symbol base name of the block (e.g. "K", "V_l1_weight") to the dotted name
    of the layer's parameter or buffer it stands for ("K", "V.l1.weight"); `shapes` gives that tensor's shape
    (() or (1,): one scalar symbol `base`; (n,): `base_i`; (r, c): `base_ij`, see verify.derive.symbolic.matrix_entry).
    """

    block: SymbolicBlock
    parameters: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    functions: tuple[str, ...]
    layer_type: str
    path: str = ""  # where the layer sits in the model given to generate_layers ("" for the module itself)
    inverse_error: str | None = None  # why the block has no inverse, when the layer has one that did not trace
    ops: tuple[str, ...] = field(default_factory=tuple)  # distinct torch operations translated
    stage: tuple[int, int] | None = None  # (k, m): stage k (from 0) of m of the layer's forward (generate_stages)

    def symbol_names(self) -> dict[str, list[str]]:
        """Base name -> the element symbol names, in the tensor's row-major order."""
        return {base: _Param(base, shape).names() for base, shape in self.shapes.items()}

    def values(self, layer: nn.Module) -> dict[str, float]:
        """The block's parameter symbols instantiated with the layer's own tensors."""
        tensors = dict(layer.named_parameters())
        tensors.update(dict(layer.named_buffers()))
        out: dict[str, float] = {}
        for base, dotted in self.parameters.items():
            if dotted not in tensors:
                raise InputError("layer", type(layer).__name__, f"a module with the parameter or buffer {dotted!r}",
                                 f"pass the {self.layer_type} the twin was generated from")
            t = tensors[dotted].detach()
            if tuple(t.shape) != self.shapes[base]:
                raise InputError(f"{dotted}.shape", tuple(t.shape), f"{self.shapes[base]} as when the twin was generated",
                                 "regenerate the twin for this layer")
            for name, v in zip(_Param(base, self.shapes[base]).names(), t.double().reshape(-1).tolist()):
                out[name] = v
        return out

    def evaluate(self, layer: nn.Module, x: Sequence[float], inverse: bool = False) -> list[float]:
        """The twin on the float backend at one input, with the layer's own parameter values."""
        program = self.block.inverse if inverse else self.block.forward
        if program is None:
            raise InputError("inverse", None, "a twin generated from a layer with an inverse method",
                             self.inverse_error or "the layer has no inverse")
        block = SymbolicBlock(self.block.name, self.block.dim, program)
        vals = self.values(layer)
        t = trace_float(block, seed=0, x=list(x), values=vals)
        drawn = set(t.backend.values) - set(vals) - {f"x_{i}" for i in range(self.block.dim)}
        if drawn:  # a symbol without a tensor behind it would be a random value: refuse rather than report it
            raise RuntimeError(f"twin {self.block.name!r} uses parameters {sorted(drawn)} that no tensor instantiates")
        return [float(v) for v in t.outputs]


def _symbol_base(dotted: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", dotted.replace(".", "_"))
    k = 1
    cand = base
    while cand in taken:
        cand = f"{base}_p{k}"
        k += 1
    return cand


def _pick_batch(layer: nn.Module, dim: int) -> int:
    """A batch size no size of the layer (nor a concatenation of up to three of them) can equal, so that a
    confusion of the batch with a feature dimension shows in torch's shapes."""
    sizes = [1, dim]
    for t in list(layer.parameters()) + list(layer.buffers()):
        sizes.extend(int(s) for s in t.shape)
    return 3 * max(sizes) + 1


@dataclass
class _Prepared:
    """A layer's traced graphs (forward, and inverse when it traces), its parameters named, its example batch."""

    cls: str
    dim: int
    graphs: dict[str, fx.GraphModule]
    params: dict[str, _Param]  # get_attr target -> parameter symbol
    mapping: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    constants: dict[str, tuple[list[sp.Rational], tuple[int, ...]]]
    functions: tuple[str, ...]
    ops: tuple[str, ...]
    batch: int
    example: torch.Tensor
    values: dict[str, float]  # the layer's own parameter values, by symbol name
    inverse_error: str | None

    def interpreter(self, method: str, check_shapes: bool = False) -> _Interpreter:
        return _Interpreter(self.graphs[method], f"{self.cls}.{method}", self.params, self.constants, self.batch,
                            check_shapes)


def _prepare(layer: nn.Module, dim: int, with_inverse: bool = True) -> _Prepared:
    if not isinstance(layer, nn.Module):
        raise InputError("layer", type(layer).__name__, "a torch.nn.Module", "pass the layer module itself")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise InputError("dim", dim, "a positive int, the size of the phase-space vector", "pass the layer's input size")
    cls = type(layer).__name__
    tensors = {n: t for n, t in layer.named_parameters()}
    tensors.update({n: t for n, t in layer.named_buffers()})
    ref = next((t for t in tensors.values() if t.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else torch.device("cpu")
    batch = _pick_batch(layer, dim)
    example = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype).to(device)

    has_inverse = with_inverse and callable(getattr(layer, "inverse", None))
    graphs: dict[str, fx.GraphModule] = {}
    inverse_error = None
    for method in ["forward", "inverse"] if has_inverse else ["forward"]:
        where = f"{cls}.{method}"
        try:
            gm = _trace(layer, method, where)
            prop = _ShapeProp(gm)
            try:
                # ShapeProp prints the traceback of a failing node; the message below says it once, plainly
                with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                    prop.propagate(example)
            except Exception as exc:  # noqa: BLE001
                cause = exc.__cause__ or exc
                node = prop.current
                line = _user_line(stack=node.stack_trace) if node is not None and node.stack_trace else ""
                text = str(cause).splitlines()[0] if str(cause) else ""
                raise Untraceable(where, f"the layer does not run on a ({batch}, {dim}) batch{line}: "
                                         f"{type(cause).__name__}: {text}",
                                  "pass the layer's phase-space dimension as dim; the layer must map (B, dim) batches "
                                  f"of row vectors to (B, dim) (write x @ W.T, not W @ x). Otherwise {FIX}") from cause
        except Untraceable as exc:
            if method == "forward":
                raise
            # the block then has no inverse, so Invertible stays undecided: the reason is kept for the report
            if isinstance(exc.__cause__, NotImplementedError):
                inverse_error = f"{cls}.inverse raises NotImplementedError"
            else:
                inverse_error = str(exc)
            continue
        graphs[method] = gm

    # parameters and constants, named once for both graphs
    params: dict[str, _Param] = {}
    mapping: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    constants: dict[str, tuple[list[sp.Rational], tuple[int, ...]]] = {}
    taken = {f"x_{i}" for i in range(dim)}
    functions: set[str] = set()
    ops: set[str] = set()
    for method, gm in graphs.items():
        for node in gm.graph.nodes:
            if node.op in ("call_function", "call_method"):
                ops.add(_target_name(node))
                if _op_name(node) in _KNOWN:
                    functions.add(_op_name(node))
            if node.op != "get_attr":
                continue
            target = str(node.target)
            where = f"{cls}.{method} node {node.name!r}"
            if target.startswith("layer.") and target[len("layer."):] in tensors:
                dotted = target[len("layer."):]
                if target in params:
                    continue
                t = tensors[dotted]
                shape = tuple(int(s) for s in t.shape)
                if len(shape) > 2:
                    raise Untraceable(where, f"the parameter {dotted!r} of shape {shape} (only scalars, vectors, "
                                             "matrices)")
                if not t.is_floating_point():
                    raise Untraceable(where, f"the non-floating parameter {dotted!r} ({t.dtype})")
                base = _symbol_base(dotted, set())
                p = _Param(base, shape)
                while base in mapping or taken & set(p.names()):
                    base = _symbol_base(dotted, taken | set(mapping) | {base})
                    p = _Param(base, shape)
                taken.update(p.names())
                params[target] = p
                mapping[base] = dotted
                shapes[base] = shape
            else:
                value = getattr(gm, target, None) if "." not in target else None
                if not isinstance(value, torch.Tensor) or value.dim() > 2:
                    raise Untraceable(where, f"the attribute {target!r}")
                vals = [_num(float(v), where) for v in value.detach().double().reshape(-1).tolist()]
                constants[target] = (vals, tuple(int(s) for s in value.shape))

    # the layer's own values (the same naming as GeneratedTwin.values), for the self-checks
    values: dict[str, float] = {}
    for base, dotted in mapping.items():
        values.update(zip(_Param(base, shapes[base]).names(), tensors[dotted].detach().double().reshape(-1).tolist()))
    prepared = _Prepared(cls, dim, graphs, params, mapping, shapes, constants, tuple(sorted(functions)),
                         tuple(sorted(ops)), batch, example, values, inverse_error)
    for method in list(graphs):
        try:
            _self_check(layer, prepared, method)
        except Untraceable as exc:
            if method == "forward":
                raise
            del graphs[method]
            prepared.inverse_error = str(exc)
    return prepared


def _program(interp: _Interpreter, stage: _Stage | None = None) -> Callable[[Builder, Vec], Vec]:
    def program(b: Builder, x: Vec) -> Vec:
        return interp.run(b, x, stage)

    return program


def generate_block(layer: nn.Module, dim: int, name: str | None = None) -> GeneratedTwin:
    """The symbolic twin of `layer` (a map R^dim -> R^dim on (B, dim) batches), read off its forward/inverse code.

    Raises Untraceable when the forward uses anything outside SUPPORTED. An inverse that does not trace leaves the
    block without inverse (Invertible is then undecided) and its reason in `inverse_error`.
    """
    prep = _prepare(layer, dim)
    programs = {method: _program(prep.interpreter(method)) for method in prep.graphs}
    description = (f"generated by torch.fx from {prep.cls}.{' and .'.join(programs)}"
                   + (f" ({', '.join(prep.functions)} with their derivative identities)" if prep.functions else ""))
    block = SymbolicBlock(name or f"{prep.cls} (generated)", dim, programs["forward"], programs.get("inverse"),
                          description)
    return GeneratedTwin(block, prep.mapping, prep.shapes, prep.functions, prep.cls, inverse_error=prep.inverse_error,
                         ops=prep.ops)


def generate_stages(layer: nn.Module, dim: int, name: str | None = None, order: str = "slots") -> list[GeneratedTwin]:
    """The layer's forward cut into stages wherever its live state is exactly `dim` numbers; one twin per stage.

    layer.forward = stages[-1] ∘ … ∘ stages[0], where each stage maps the coordinates at one cut (the live values)
    to those at the next. A composition-closed property (Symplectic, VolumePreserving) proved for every stage is
    proved for the layer, with polynomials the size of one stage instead of their product (a Störmer–Verlet step:
    kick, drift, kick). The order of a cut's coordinates is a choice: order="slots" (default) puts each value where
    the input slot it updates was (p' = p − h∇V(q) takes p's place: right for shears and splitting steps);
    order="nodes" keeps the order the code computes them in (right for maps that move values, such as a Hénon map
    (x, y) ↦ (y + η, −x + ∇V(y)) written as `x, y = y + eta, -x + grad(y)`). A stage that fails proves nothing
    about the layer (its cut coordinates may not be canonical): try the other order or prove generate_block's twin.
    Stages carry no inverse. A forward without interior cut gives [generate_block(layer, dim, name)].
    """
    if order not in ("slots", "nodes"):
        raise InputError("order", order, '"slots" or "nodes"', "pick how a cut's coordinates are ordered")
    prep = _prepare(layer, dim, with_inverse=False)
    stages = _stages(prep.graphs["forward"], dim, prep.batch, by_slots=order == "slots")
    if len(stages) == 1:
        return [generate_block(layer, dim, name)]
    _check_stages(layer, prep, stages)
    interp = prep.interpreter("forward")
    twins = []
    for k, st in enumerate(stages):
        src = ", ".join(n.name for n in st.entry) or "x"
        dst = ", ".join(n.name for n in st.exit) or "output"
        label = f"{name or prep.cls} stage {k + 1}/{len(stages)}"
        block = SymbolicBlock(f"{label} ({src}) -> ({dst})", dim, _program(interp, st),
                              description=f"stage {k + 1} of {len(stages)} of {prep.cls}.forward, generated by torch.fx")
        twins.append(GeneratedTwin(block, prep.mapping, prep.shapes, prep.functions, prep.cls,
                                   inverse_error="a stage carries no inverse; prove Invertible on generate_block's twin",
                                   ops=prep.ops, stage=(k, len(stages))))
    return twins


# --- stages -----------------------------------------------------------------------------------------------

_RESTRUCTURING = {"getitem", "cat", "chunk", "split", "identity", "getattr", "size", "floordiv"}


def _op_name(node: fx.Node) -> str | None:
    if node.op == "call_function":
        return _FUNCTIONS.get(node.target)
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    return None


def _input_dependent(gm: fx.GraphModule) -> set[fx.Node]:
    nodes = list(gm.graph.nodes)
    dep = {nodes[0]}
    for n in nodes[1:]:
        if any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    return dep


@dataclass(frozen=True)
class _Stage:
    entry: tuple[fx.Node, ...]  # live values at the cut before (empty: the layer's input)
    exit: tuple[fx.Node, ...]  # live values at the cut after (empty: the layer's output)
    first: int  # index of the stage's first node
    last: int  # index of its last node


def _feature_slice(idx: Any) -> slice | None:
    """The feature slice of a (B, n) index such as [..., a:b] or [:, a:b]; None for anything else."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if sum(i is Ellipsis for i in idx) > 1 or any(i is None for i in idx):
        return None
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (2 - (len(idx) - 1)) + idx[k + 1:]
    idx = idx + (slice(None),) * (2 - len(idx))
    if len(idx) != 2 or idx[0] != slice(None) or not isinstance(idx[1], slice):
        return None
    s = idx[1]
    if not all(v is None or isinstance(v, int) for v in (s.start, s.stop, s.step)):
        return None
    return s


def _labels(gm: fx.GraphModule, dim: int) -> dict[fx.Node, Any]:
    """Which input slots each value updates: x[..., a:b] has slots a..b-1, p + f(q) keeps p's, cat joins them."""
    nodes = list(gm.graph.nodes)
    lab: dict[fx.Node, Any] = {nodes[0]: tuple(range(dim))}

    def length(n: fx.Node) -> int | None:
        m = n.meta.get("tensor_meta")
        shape = getattr(m, "shape", None)
        return int(shape[-1]) if shape is not None and len(shape) == 2 else None

    for n in nodes[1:]:
        op = _op_name(n)
        if op == "getitem" and isinstance(n.args[0], fx.Node) and n.args[0] in lab:
            src = lab[n.args[0]]
            if isinstance(src, list) and isinstance(n.args[1], int):
                lab[n] = src[n.args[1]]
            elif isinstance(src, tuple):
                s = _feature_slice(n.args[1])
                if s is not None:
                    lab[n] = src[s]
        elif op in ("chunk", "split") and n.args[0] in lab and isinstance(lab[n.args[0]], tuple):
            metas = n.meta.get("tensor_meta")
            if isinstance(metas, (list, tuple)):
                parts, start = [], 0
                for m in metas:
                    k = int(m.shape[-1])
                    parts.append(lab[n.args[0]][start:start + k])
                    start += k
                lab[n] = parts
        elif op == "cat" and isinstance(n.args[0], (list, tuple)):
            parts = [lab.get(a) if isinstance(a, fx.Node) else None for a in n.args[0]]
            if all(isinstance(p, tuple) for p in parts):
                lab[n] = tuple(s for p in parts for s in p)
        elif op in ("add", "sub", "mul", "neg", "rsub", "radd", "rmul", "div", "identity"):
            for a in n.all_input_nodes:
                if isinstance(lab.get(a), tuple) and len(lab[a]) == length(n):
                    lab[n] = lab[a]
                    break
    return lab


def _stages(gm: fx.GraphModule, dim: int, batch: int, by_slots: bool) -> list[_Stage]:
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    dep = _input_dependent(gm)
    last_use = {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}
    labels = _labels(gm, dim)

    def width(n: fx.Node) -> int | None:
        shape = getattr(n.meta.get("tensor_meta"), "shape", None)
        return int(shape[1]) if shape is not None and len(shape) == 2 and int(shape[0]) == batch else None

    def computes(lo: int, hi: int) -> bool:
        return any(n in dep and n.op in ("call_function", "call_method") and _op_name(n) not in _RESTRUCTURING
                   for n in nodes[lo:hi + 1])

    cuts: list[tuple[int, tuple[fx.Node, ...]]] = []
    seg_start = 0
    for i in range(len(nodes) - 1):
        live = [n for n in nodes[: i + 1] if n in dep and last_use[n] > i]
        widths = [width(n) for n in live]
        if not live or None in widths or sum(widths) != dim:
            continue
        if not computes(seg_start, i):
            continue  # a stage of slicing alone is merged into the next one
        labs = [labels.get(n) for n in live]
        if by_slots and all(isinstance(l, tuple) and l for l in labs) and sorted(s for l in labs for s in l) == list(range(dim)):
            live.sort(key=lambda n: min(labels[n]))  # canonical order: the slots each value updates
        cuts.append((i, tuple(live)))
        seg_start = i + 1
    if cuts and not computes(seg_start, len(nodes) - 1):
        cuts.pop()  # the tail only reassembles the output: it joins the last stage
    stages, entry, first = [], (), 0
    for i, live in cuts:
        stages.append(_Stage(entry, live, first, i))
        entry, first = live, i + 1
    stages.append(_Stage(entry, (), first, len(nodes) - 1))
    return stages


def _float_builder(prep: _Prepared, x: Sequence[float]) -> tuple[Builder, Vec]:
    from verify.derive.symbolic import _Float  # the float backend, instantiated with the layer's own values

    backend = _Float(0)
    backend.values.update(prep.values)
    for i, xi in enumerate(x):
        backend.values[f"x_{i}"] = float(xi)
    b = Builder(backend)
    return b, b.state(len(x))


def _compare(where: str, got: Sequence[float], want: Sequence[float], prep: _Prepared, nodes: int) -> None:
    scale = 1.0 + max(abs(v) for v in want)
    eps = torch.finfo(prep.example.dtype).eps
    err = max(abs(g - w) for g, w in zip(got, want))
    if not err <= 1e3 * eps * scale * max(1, nodes):
        raise Untraceable(where, f"the generated program differs from the layer by {err:.3g} on an example input "
                                 "(a translation the generator cannot vouch for)")


def _self_check(layer: nn.Module, prep: _Prepared, method: str) -> None:
    """Replay the graph once with every node's shape checked against torch's, then compare with the layer's output."""
    where = f"{prep.cls}.{method}"
    b, x = _float_builder(prep, prep.example[0].double().tolist())
    out = prep.interpreter(method, check_shapes=True).run(b, x)
    if len(out) != prep.dim:
        raise Untraceable(where, f"a vector of length {len(out)} is returned, not one of dim={prep.dim}",
                          f"pass the layer's phase-space dimension as dim; otherwise {FIX}")
    drawn = set(b.backend.values) - set(prep.values) - {f"x_{i}" for i in range(prep.dim)}
    if drawn:  # pragma: no cover - every symbol comes from a get_attr node
        raise RuntimeError(f"{where}: symbols {sorted(drawn)} have no tensor behind them")
    with torch.no_grad():
        want = getattr(layer, method)(prep.example[:1]).double()[0].tolist()
    _compare(where, [float(v) for v in out.vals], want, prep, len(prep.graphs[method].graph.nodes))


def _check_stages(layer: nn.Module, prep: _Prepared, stages: Sequence[_Stage]) -> None:
    """The stages, run one after the other on the example, reproduce the layer (and each keeps torch's shapes)."""
    interp = prep.interpreter("forward", check_shapes=True)
    z = prep.example[0].double().tolist()
    for st in stages:
        b, x = _float_builder(prep, z)
        z = [float(v) for v in interp.run(b, x, st).vals]
    with torch.no_grad():
        want = layer(prep.example[:1]).double()[0].tolist()
    _compare(f"{prep.cls}.forward (stages)", z, want, prep, len(prep.graphs["forward"].graph.nodes))


def generate_layers(model: nn.Module, dim: int) -> list[GeneratedTwin]:
    """One twin per layer (model.layers as an nn.ModuleList, or an nn.Sequential), in order; else one for the model."""
    if isinstance(model, nn.Sequential):
        items = [(name, layer) for name, layer in model.named_children()]
    elif isinstance(getattr(model, "layers", None), nn.ModuleList):
        items = [(f"layers.{i}", layer) for i, layer in enumerate(model.layers)]
    else:
        items = [("", model)]
    twins = []
    for path, layer in items:
        label = f"{path} {type(layer).__name__}".strip()
        twin = generate_block(layer, dim, name=f"{label} (generated)")
        twin.path = path
        twins.append(twin)
    if len(items) > 1:
        # per-layer twins describe the model only if its forward is the composition of its layers
        ref = next((t for t in model.parameters() if t.is_floating_point()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        x = torch.randn(1, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        z = x[0].tolist()
        for twin, (_, layer) in zip(twins, items):
            z = twin.evaluate(layer, z)
        with torch.no_grad():
            want = model(x.to(dtype)).double()[0].tolist()
        err = max(abs(a - b) for a, b in zip(z, want))
        if not err <= 1e4 * torch.finfo(dtype).eps * (1 + max(abs(v) for v in want)) * len(items):
            raise Untraceable(f"{type(model).__name__}.forward", f"the composition of its {len(items)} layers differs "
                                                                 f"from the model by {err:.3g} on an example input "
                                                                 "(the forward does more than compose model.layers)",
                              f"use generate_block(model, dim) for the whole model; otherwise {FIX}")
    return twins
