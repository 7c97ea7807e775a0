"""The steerability constraint of convolution kernels, exactly, for groups that act on the pixel grid (C4, D4, ...).

A kernel κ: grid → R^{c_out×c_in} gives an equivariant convolution iff
κ(g·u) = ρ_out(g) κ(u) ρ_in(g)⁻¹ for every g and grid point u. For groups whose
elements permute the grid (rotations by 90°, flips) and representations that are
signed permutations (regular, trivial, sign), the constraint only moves and negates
entries, so the residual of a float filter is computed without any rounding: a zero
residual is an exact zero, a non-zero one is a true violation.

Two tools:
- `solve_kernel_constraint`: the general solution (nullspace of the linear constraint,
  exact rationals in sympy) on a small grid, and a check that a given basis lies in it.
- `derive_steerable`: the symbolic stage of `Equivariant`. It walks the model's path
  from input to output (`PathWalk`: forward hooks on every module, a TorchFunctionMode
  for the operations written in `forward`) and covers every step or lists it. A
  convolution's filter is an affine map of its parameters, κ(w) = Σ w_i B_i + κ₀, so
  the residual vanishes for all w iff it vanishes on every B_i and on κ₀ (linearity
  of the constraint); pointwise nonlinearities, group pooling, pooling over an
  invariant mask and functions of invariant features are covered by stated lemmas
  whose preconditions are checked exactly. The stage is `proved` only when nothing
  on the path is left uncovered; otherwise it is `undecided` and names the steps.

Protocols a module may implement so the walk can cover it (the engine never imports
`models/`): `filter_parametrisation() -> (base_conv, offset)` (a convolution whose
filter is base_conv's steerable filter plus a fixed tensor) and
`spatial_pooling() -> (mask, statistics)` (per-channel statistics that depend on the
input only through sums over the mask of pointwise functions, concatenated).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

import numpy as np
import sympy as sp
import torch

from verify.errors import InputError
from verify.evidence import BlockResult, Evidence, Failure, Proof, Refutation, Verdict
from verify.declare.groups import PlaneGroup, Representation

OBLIGATION = r"\kappa(g\cdot u) = \rho_{out}(g)\,\kappa(u)\,\rho_{in}(g)^{-1}\quad \forall g \in G,\ u \in \text{grid}"


def grid_permutation(group: PlaneGroup, g: Any, size: int) -> np.ndarray:
    """perm[j] = index of g·u_j on the size×size grid (row-major; rows = −Y, columns = X)."""
    if not group.is_exact_on_grid(g):
        raise InputError("group element", g, "an element that maps the pixel grid onto itself (multiples of 90°, flips)",
                         "the kernel constraint is exact on the grid only for such elements; use C4/D4 (or C2, D2, D1)")
    M = np.rint(group.plane_matrix(g)).astype(int)
    c = (size - 1) // 2
    perm = np.empty(size * size, dtype=int)
    for r, col in itertools.product(range(size), range(size)):
        X, Y = col - c, c - r
        X2, Y2 = M @ np.array([X, Y])
        perm[r * size + col] = (c - Y2) * size + (c + X2)
    return perm


def integer_matrix(rho: np.ndarray, what: str) -> np.ndarray:
    R = np.rint(rho)
    if np.abs(R - rho).max() > 1e-9:
        raise InputError(what, np.round(rho, 3).tolist(), "a signed-permutation (integer) matrix",
                         "exact grid constraints need regular/trivial/sign representations of C4 or D4")
    return R.astype(int)


def residual(filter_: np.ndarray, perm: np.ndarray, rho_out: np.ndarray, rho_in_inv: np.ndarray) -> np.ndarray:
    """κ(g·u) − ρ_out κ(u) ρ_in⁻¹ for a float filter (c_out, c_in, k, k); integer ρ, so no rounding."""
    co, ci, k, _ = filter_.shape
    flat = filter_.reshape(co, ci, k * k)
    moved = flat[:, :, perm]  # κ(g·u) at position u
    # two tensor contractions (BLAS) instead of an unoptimised three-operand einsum: 14 s -> well under 1 s for D4
    right = np.tensordot(np.tensordot(rho_out, flat, axes=(1, 0)), rho_in_inv, axes=(1, 0)).transpose(0, 2, 1)
    return (moved - right).reshape(filter_.shape)


def solve_kernel_constraint(group: PlaneGroup, rho_in: Representation, rho_out: Representation, size: int = 3) -> sp.Matrix:
    """Exact basis (columns, rationals) of all kernels κ on a size×size grid that satisfy the constraint for every g."""
    if not group.finite:
        raise InputError("group", group.name, "a finite group acting on the grid", "use C4 or D4")
    co, ci, n = rho_out.size, rho_in.size, size * size
    rows = []
    for g in group.elements():
        perm = grid_permutation(group, g, size)
        Ro, Ri = rho_out.exact(g), rho_in.exact(group.inverse(g))
        # unknown κ[o, i, u] at column (o·ci + i)·n + u
        for o, i, u in itertools.product(range(co), range(ci), range(n)):
            row = {}
            key = (o * ci + i) * n + perm[u]
            row[key] = row.get(key, 0) + 1
            for a, b in itertools.product(range(co), range(ci)):
                coef = Ro[o, a] * Ri[b, i]
                if coef != 0:
                    k2 = (a * ci + b) * n + u
                    row[k2] = row.get(k2, 0) - coef
            rows.append(row)
    A = sp.SparseMatrix(len(rows), co * ci * n, {(r, c): v for r, row in enumerate(rows) for c, v in row.items() if v != 0})
    null = A.nullspace()
    return sp.Matrix.hstack(*null) if null else sp.zeros(co * ci * n, 0)


def in_span_exactly(basis: sp.Matrix, filters: Sequence[np.ndarray]) -> list[float]:
    """For each float filter (converted to exact rationals), the norm of its component outside span(basis), exactly."""
    out = []
    if basis.shape[1] == 0:
        return [float(np.abs(f).max()) for f in filters]
    B = basis
    G = (B.T * B)
    for f in filters:
        v = sp.Matrix([sp.Rational(Fraction(float(x))) for x in np.asarray(f, dtype=np.float64).ravel()])
        coef = G.LUsolve(B.T * v)
        r = v - B * coef
        out.append(float(max((abs(e) for e in r), default=0)))
    return out


# --------------------------------------------------------------------------- the path walk
# The symbolic stage proves the network, not only its convolutions: it runs the model once on a sample input and
# follows every tensor from the input to the output (forward hooks on every module, a TorchFunctionMode for the
# operations written in `forward` between modules). Each step is either covered, by the kernel constraint or by a
# stated lemma whose precondition is checked exactly, or listed as not covered. What G does to each tensor is
# tracked as a Tag; a step is covered only if its input tags are what its lemma needs.

LEMMAS = {
    "conv": r"\kappa(g\cdot u) = \rho_{out}(g)\,\kappa(u)\,\rho_{in}(g)^{-1},\ \rho_{out}(g)\,b = b",
    "pointwise": r"\sigma(P v) = P\,\sigma(v)\ \text{for a permutation matrix } P \text{ and a pointwise } \sigma "
                 r"\text{(and pixelwise, so it commutes with moving pixels)}",
    "group pooling": r"\max_i (P v)_i = \max_i v_i\ \text{for a permutation } P \text{ of each field's fibre}",
    "spatial pooling": r"\sum_p m(p)\,\phi(x(g^{-1}p)) = \sum_p m(g p)\,\phi(x(p)) = \sum_p m(p)\,\phi(x(p))\ \text{when } "
                       r"m(g p) = m(p) \text{ on the grid (checked exactly), per channel}",
    "invariant": r"h(x) = h(g\cdot x) \Rightarrow k(h(x)) = k(h(g\cdot x))\ \text{for any } k:\ "
                 r"\text{functions of invariant features are invariant}",
    "sum": r"f_1(g x) + f_2(g x) = \rho(g)(f_1(x) + f_2(x))\ \text{when both sides carry the same } \rho",
    "scalar": r"c\,\rho(g) v = \rho(g)\,(c\,v)",
    "shift": r"\rho(g)(v + c\mathbf{1}) = \rho(g)v + c\mathbf{1}\ \text{for permutation } \rho",
    "identity": r"\text{a cast, copy or view that keeps every entry: } \rho \text{ unchanged}",
    "output": r"\text{the traced output carries the claimed } \rho_{out}",
}

# metadata reads in forward code (shape checks and the like): no value flows through them
_METADATA = {"shape", "dtype", "device", "ndim", "size", "dim", "numel", "is_floating_point", "requires_grad", "is_cuda",
             "layout", "names", "grad_fn", "is_complex", "__len__", "element_size", "stride", "is_contiguous",
             "get_device", "nelement", "is_leaf", "grad"}
_IDENTITY = {"to", "float", "double", "half", "bfloat16", "contiguous", "clone", "detach", "data", "requires_grad_",
             "type_as", "cpu", "cuda", "__deepcopy__"}
_POINTWISE = {"relu", "relu_", "tanh", "sigmoid", "elu", "elu_", "gelu", "silu", "softplus", "leaky_relu", "exp", "abs",
              "square", "sin", "cos", "selu", "celu", "mish", "hardtanh", "relu6", "softsign", "tanhshrink", "logsigmoid"}
_NEGATE = {"neg", "__neg__", "negative"}
_SUM = {"add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__", "add_", "sub_"}
_SCALE = {"mul", "__mul__", "__rmul__", "__imul__", "mul_", "div", "__truediv__", "__itruediv__", "div_", "true_divide"}
_FACTORY = {"zeros", "ones", "empty", "full", "arange", "linspace", "eye", "rand", "randn", "tensor", "as_tensor",
            "zeros_like", "ones_like", "empty_like", "full_like", "logspace"}


@dataclass(frozen=True, eq=False)
class Tag:
    """How G acts on a tensor the walk has seen.

    kind: "field" (a feature map: pixels move, fibres transform by ρ), "vector" (fibres only), "invariant" (G does
    nothing to the whole tensor), "const" (does not depend on the input at all), "unknown" (came out of a step that
    is not covered). `mats` holds ρ(g) for every element of the group (integers for C4/D4 fields), `blocks` the
    field sizes of an escnn field type.
    """

    kind: str
    mats: tuple[np.ndarray, ...] = ()
    blocks: tuple[int, ...] = ()
    name: str = ""

    @staticmethod
    def of(kind: str, mats: Sequence[np.ndarray], name: str, blocks: Sequence[int] = ()) -> "Tag":
        mats = tuple(np.rint(m).astype(int) if np.abs(m - np.rint(m)).max() <= 1e-9 else np.asarray(m) for m in mats)
        if kind == "vector" and all(np.array_equal(m, np.eye(m.shape[0])) for m in mats):
            return Tag("invariant", name=name)
        return Tag(kind, mats, tuple(blocks) or (mats[0].shape[0],), name)

    def same(self, other: "Tag") -> bool:
        if self.kind != other.kind:
            return False
        if self.kind not in ("field", "vector"):
            return self.kind in ("invariant", "const")
        return len(self.mats) == len(other.mats) and all(a.shape == b.shape and np.allclose(a, b, atol=1e-9)
                                                         for a, b in zip(self.mats, other.mats))

    @property
    def size(self) -> int:
        return self.mats[0].shape[0] if self.mats else 0

    def trivial(self) -> bool:
        return self.kind in ("invariant", "const") or (
            bool(self.mats) and all(np.array_equal(m, np.eye(m.shape[0])) for m in self.mats))

    def permutation(self) -> bool:
        """Every ρ(g) a 0/1 matrix with one 1 per row and column (regular, quotient, trivial fibres)."""
        if self.kind in ("invariant", "const"):
            return True
        return bool(self.mats) and all(
            m.dtype.kind == "i" and set(np.unique(m)) <= {0, 1} and (m.sum(0) == 1).all() and (m.sum(1) == 1).all()
            for m in self.mats)

    def __str__(self) -> str:
        if self.kind in ("field", "vector"):
            return f"{self.kind} {self.name or '?'} (dim {self.size})"
        return self.kind


@dataclass
class Step:
    """One module call or one operation on the traced path."""

    name: str
    kind: str  # what it is (class or operation name)
    # "covered" | "constraint" (a convolution, decided by the kernel constraint) | "not covered" (no lemma applies) |
    # "downstream" (reads what an uncovered step produced: not judged on its own)
    status: str
    lemma: str = ""
    message: str = ""
    layer: Any = None  # the convolution (for the constraint)
    rho_in: Tag | None = None
    rho_out: Tag | None = None


def _escnn_nn() -> Any:
    try:
        from escnn import nn as enn
    except Exception:  # escnn not installed: no escnn module can be on the path either
        return None
    return enn


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors in a call's arguments or result (GeometricTensors by their underlying tensor)."""
    out: list[torch.Tensor] = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif hasattr(obj, "tensor") and isinstance(getattr(obj, "tensor", None), torch.Tensor) and hasattr(obj, "type"):
        out.append(obj.tensor)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            out += _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            out += _tensors(o)
    return out


def _gap(live: Sequence["Tag"]) -> str:
    """A step no lemma covers is a gap of its own, unless what it reads is already uncovered (then it is downstream)."""
    return "downstream" if any(t.kind == "unknown" for t in live) else "not covered"


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name == "__get__":  # a tensor attribute (x.shape, x.T, x.data): the descriptor names it
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class PathWalk(torch.overrides.TorchFunctionMode):
    """Runs the model once and records every step from the input to the output, with the tags of what flows."""

    def __init__(self, group: PlaneGroup, model: torch.nn.Module) -> None:
        super().__init__()
        self.group, self.model = group, model
        self.els = list(group.elements())
        self.tags: dict[int, Tag] = {}
        self.keep: list[torch.Tensor] = []  # tagged tensors stay alive, so their ids stay unique during the walk
        self.steps: list[Step] = []
        self.const_ids = {id(t) for t in list(model.parameters()) + list(model.buffers())}
        self.names = {id(m): (n or type(model).__name__) for n, m in model.named_modules()}
        self.stack: list[tuple[torch.nn.Module, str, Step | None]] = []
        self.opaque = 0
        self.busy = 0
        self.scope: list[str] = [type(model).__name__]
        self.called: set[int] = set()
        self.enn = _escnn_nn()

    # -- tags -----------------------------------------------------------------
    def tag_of(self, t: torch.Tensor) -> Tag:
        tag = self.tags.get(id(t))
        # a tensor the walk never produced was made before the forward pass (a parameter, a buffer, a constant
        # attribute): it does not depend on the input
        return tag if tag is not None else Tag("const")

    def set_tag(self, obj: Any, tag: Tag) -> None:
        for t in _tensors(obj):
            self.tags[id(t)] = tag
            self.keep.append(t)

    def field_tag(self, field_type: Any) -> Tag:
        from verify.declare.groups import field_representation

        rep = field_representation(self.group, field_type)
        return Tag.of("field", [rep.matrix(g) for g in self.els], str(field_type),
                      [r.size for r in field_type.representations])

    def action_tag(self, action: Any) -> Tag:
        rep = action.rep
        return Tag.of("field" if action.spatial else "vector", [rep.matrix(g) for g in self.els], repr(rep))

    def where(self) -> str:
        return self.scope[-1]

    # -- modules ----------------------------------------------------------------
    def pre(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.called.add(id(module))
        if self.opaque:
            self.stack.append((module, "inside", None))
            self.opaque += 1
            return
        self.busy += 1
        try:
            step = self.classify(module, [self.tag_of(t) for t in _tensors(args) + _tensors(kwargs)])
        finally:
            self.busy -= 1
        if step is None:
            self.stack.append((module, "transparent", None))
            self.scope.append(f"{self.names.get(id(module), '?')} ({type(module).__name__})")
        else:
            self.stack.append((module, "opaque", step))
            self.opaque += 1

    def post(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        _, how, step = self.stack.pop()
        if how == "inside":
            self.opaque -= 1
            return
        if how == "transparent":
            self.scope.pop()
            return
        self.opaque -= 1
        self.steps.append(step)
        self.set_tag(output, step.rho_out if step.rho_out is not None else Tag("unknown"))

    def classify(self, m: torch.nn.Module, tags: list[Tag]) -> Step | None:
        """A Step for a module the walk knows (its body is then not looked into), None to walk into it."""
        name = self.names.get(id(m), type(m).__name__)
        kind = type(m).__name__
        enn = self.enn
        inputs = [t for t in tags if t.kind != "const"]
        if m is self.model:
            return None
        if inputs and all(t.kind == "invariant" for t in inputs):
            return Step(name, kind, "covered", LEMMAS["invariant"], "every input is invariant", rho_in=inputs[0],
                        rho_out=Tag("invariant"))
        if not inputs:
            return Step(name, kind, "covered", "", "no input-dependent argument", rho_out=Tag("const"))
        if any(u.kind == "unknown" for u in inputs):
            return Step(name, kind, "downstream", "", "its input comes out of a step that is not covered",
                        rho_out=Tag("unknown"))
        t = inputs[0]
        if len(inputs) > 1 and not all(u.same(t) for u in inputs):
            return None  # several differently-acted inputs: walk into it, its operations decide

        def need(ok: bool, why: str, step: Step) -> Step:
            if ok:
                return step
            return Step(name, kind, "not covered", step.lemma, why, rho_in=t, rho_out=Tag("unknown"))

        # a convolution whose filter is declared as base_conv's steerable filter plus a fixed offset
        if callable(getattr(m, "filter_parametrisation", None)):
            base, _ = m.filter_parametrisation()
            want = self.field_tag(base.in_type)
            return need(t.same(want), f"its input carries {t}, not its declared in_type {want}",
                        Step(name, kind, "constraint", LEMMAS["conv"], layer=m, rho_in=want, rho_out=self.field_tag(base.out_type)))
        if enn is not None and isinstance(m, enn.R2Conv):
            want = self.field_tag(m.in_type)
            return need(t.same(want), f"its input carries {t}, not its in_type {want}",
                        Step(name, kind, "constraint", LEMMAS["conv"], layer=m, rho_in=want, rho_out=self.field_tag(m.out_type)))
        if enn is not None and isinstance(m, (enn.ReLU, enn.ELU, enn.LeakyReLU, enn.PointwiseNonLinearity)):
            want = self.field_tag(m.in_type)
            return need(t.same(want) and t.permutation(),
                        f"its input carries {t}; the lemma needs its in_type {want} with permutation fibres",
                        Step(name, kind, "covered", LEMMAS["pointwise"], "fibres are permutation matrices (checked exactly)",
                             rho_in=t, rho_out=t))
        if enn is not None and isinstance(m, enn.GroupPooling):
            want = self.field_tag(m.in_type)
            return need(t.same(want) and t.permutation(),
                        f"its input carries {t}; group pooling needs permutation fibres",
                        Step(name, kind, "covered", LEMMAS["group pooling"],
                             "every field's fibre is a permutation representation (checked exactly)",
                             rho_in=t, rho_out=self.field_tag(m.out_type)))
        if enn is not None and isinstance(m, enn.IdentityModule):
            return Step(name, kind, "covered", LEMMAS["identity"], rho_in=t, rho_out=t)
        if enn is not None and isinstance(m, enn.SequentialModule):
            return None
        if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.ELU, torch.nn.GELU, torch.nn.SiLU,
                          torch.nn.LeakyReLU, torch.nn.Softplus, torch.nn.Hardtanh, torch.nn.SELU, torch.nn.CELU)):
            return need(t.permutation(), f"its input carries {t}, whose fibres are not permutations",
                        Step(name, kind, "covered", LEMMAS["pointwise"], "fibres are permutation matrices (checked exactly)",
                             rho_in=t, rho_out=t))
        if isinstance(m, torch.nn.Identity) or (isinstance(m, torch.nn.modules.dropout._DropoutNd) and not m.training):
            return Step(name, kind, "covered", LEMMAS["identity"], rho_in=t, rho_out=t)
        if callable(getattr(m, "spatial_pooling", None)):
            mask, stats = m.spatial_pooling()
            bad = self.mask_violations(mask)
            ok = t.kind == "field" and t.permutation() and not bad
            out = Tag.of("vector", [np.kron(np.eye(stats, dtype=int), g) for g in t.mats], f"{stats}×{t.name}") \
                if t.kind == "field" else Tag("unknown")
            return need(ok, f"its input carries {t} (needs a field with permutation fibres)"
                            + (f"; its mask is not invariant under {', '.join(bad)}" if bad else ""),
                        Step(name, kind, "covered", LEMMAS["spatial pooling"],
                             f"mask {tuple(mask.shape)} invariant under every element (exact comparison), {stats} "
                             "statistics per channel (declared by the module's spatial_pooling())", rho_in=t, rho_out=out))
        if isinstance(m, torch.nn.Conv2d):
            if t.kind == "field" and t.trivial():
                co = m.out_channels
                out = Tag.of("field", [np.eye(co)] * len(self.els), f"trivial×{co}")
                return Step(name, kind, "constraint", LEMMAS["conv"], "a plain convolution: its fibres are taken as trivial",
                            layer=m, rho_in=t, rho_out=out)
            return Step(name, kind, "not covered", LEMMAS["conv"],
                        f"a plain Conv2d on {t}: its output representation is not declared, so no kernel constraint "
                        "can be stated", rho_in=t, rho_out=Tag("unknown"))
        return None  # containers and modules the walk does not know: walk into them, their operations decide

    def mask_violations(self, mask: torch.Tensor) -> list[str]:
        m = mask.detach().double().cpu().numpy()
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] % 2 == 0:
            return ["(a mask must be an odd square)"]
        n = m.shape[0]
        bad = []
        for g in self.els:
            perm = grid_permutation(self.group, g, n)
            if not np.array_equal(m.reshape(-1)[perm], m.reshape(-1)):
                bad.append(repr(g))
        return bad

    # -- operations written in forward --------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.opaque or self.busy:
            return out
        self.busy += 1
        try:
            self.glue(_op_name(func), args, kwargs, out)
        finally:
            self.busy -= 1
        return out

    def glue(self, op: str, args: tuple, kwargs: dict, out: Any) -> None:
        if op in _METADATA:
            return
        tensors = _tensors(args) + _tensors(kwargs)
        tags = [self.tag_of(t) for t in tensors]
        live = [t for t in tags if t.kind != "const"]
        where = self.where()

        def record(status: str, lemma: str, message: str, tag: Tag) -> None:
            self.set_tag(out, tag)
            if status != "silent":
                self.steps.append(Step(f"{op} in {where}", op, status, lemma, message, rho_in=live[0] if live else None,
                                       rho_out=tag))

        invariant = bool(live) and all(t.kind == "invariant" for t in live)
        if op == "__setitem__" and tensors:  # writes into its first argument, returns nothing
            if live and not invariant:
                self.set_tag(tensors[0], Tag("unknown"))
                self.steps.append(Step(f"{op} in {where}", op, _gap(live), "",
                                       f"an in-place write of {', '.join(str(u) for u in live)}", rho_out=Tag("unknown")))
            elif invariant:
                self.set_tag(tensors[0], Tag("invariant"))
            return
        if not _tensors(out):
            # a Python value read out of the input (bool, item, tolist): what follows may branch on it
            if live and not invariant:
                self.steps.append(Step(f"{op} in {where}", op, _gap(live), "",
                                       f"a Python value read from {live[0]}: control flow or numbers downstream depend "
                                       "on the input in a way the walk cannot follow"))
            return
        if not live:
            return record("silent", "", "", Tag("const"))
        if all(t.kind == "invariant" for t in live):
            return record("silent", LEMMAS["invariant"], "", Tag("invariant"))
        if any(t.kind == "unknown" for t in live):
            return record("downstream", "", "an operand comes out of a step that is not covered", Tag("unknown"))
        t = live[0]
        scalars = [a for a in args[1:] + tuple(kwargs.values()) if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if op in _IDENTITY and len(live) == 1:
            return record("silent", LEMMAS["identity"], "", t)
        if op in _NEGATE and len(live) == 1:
            return record("covered", LEMMAS["scalar"], "negation", t)
        if op in _POINTWISE and len(live) == 1 and len(tensors) == 1:
            if t.permutation():
                return record("covered", LEMMAS["pointwise"], "fibres are permutation matrices (checked exactly)", t)
            return record("not covered", LEMMAS["pointwise"], f"pointwise {op} on {t}, whose fibres are not permutations",
                          Tag("unknown"))
        if op in _SUM:
            if len(tensors) == 2 and len(live) == 2 and live[0].same(live[1]) and tensors[0].shape == tensors[1].shape:
                return record("covered", LEMMAS["sum"], f"both operands carry {t}", t)
            if len(tensors) == 1 and len(live) == 1 and scalars and t.permutation():
                return record("covered", LEMMAS["shift"], "a scalar shift of permutation fibres", t)
            return record("not covered", LEMMAS["sum"],
                          f"operands {', '.join(str(u) for u in tags)}: not two tensors of the same representation", Tag("unknown"))
        if op in _SCALE and len(tensors) == 1 and len(live) == 1 and scalars:
            return record("covered", LEMMAS["scalar"], f"a scalar multiple of {t}", t)
        return record("not covered", "", f"operation {op} on {', '.join(str(u) for u in tags)}: no lemma covers it",
                      Tag("unknown"))

    # -- running ----------------------------------------------------------------
    def run(self, x: torch.Tensor, rho_in: Tag) -> Tag:
        self.set_tag(x, rho_in)
        handles = []
        for m in self.model.modules():
            handles.append(m.register_forward_pre_hook(self.pre, with_kwargs=True))
            handles.append(m.register_forward_hook(self.post, with_kwargs=True))
        try:
            with torch.no_grad(), self:
                y = self.model(x)
        finally:
            for h in handles:
                h.remove()
        outs = _tensors(y)
        if len(outs) != 1:
            return Tag("unknown")
        return self.tag_of(outs[0])

    def not_called(self) -> list[str]:
        """Modules that neither ran nor sit inside one that ran (a module inside an opaque one need not run)."""
        ran = {n for n, m in self.model.named_modules() if id(m) in self.called}
        return [n for n, m in self.model.named_modules() if n and n not in ran
                and not any(n.startswith(r + ".") for r in ran if r)]


# --------------------------------------------------------------------------- the symbolic stage
def _layer_filters(layer: Any) -> tuple[str, list[np.ndarray], np.ndarray | None, np.ndarray | None]:
    """(kind, basis filters B_i, fixed offset κ₀, bias basis (columns) or None) of a convolution on the path."""
    if callable(getattr(layer, "filter_parametrisation", None)):
        base, offset = layer.filter_parametrisation()
        kind, basis, _, bias = _layer_filters(base)
        return "escnn basis + fixed offset", basis, offset.detach().double().cpu().numpy(), bias
    if hasattr(layer, "basisexpansion") and hasattr(layer, "weights"):
        # the filter is linear in the weights, so its Jacobian's columns are the basis filters B_i (one call)
        w = torch.zeros_like(layer.weights)
        J = torch.func.jacfwd(layer.basisexpansion)(w).detach().double().cpu().numpy()
        shape = (layer.out_type.size, layer.in_type.size, layer.kernel_size, layer.kernel_size)
        basis = [J[..., i].reshape(shape) for i in range(J.shape[-1])]
        bias = getattr(layer, "bias_expansion", None)
        return "escnn steerable basis", basis, None, None if bias is None else bias.detach().double().cpu().numpy()
    if isinstance(layer, torch.nn.Conv2d):
        co, ci, k, _ = layer.weight.shape
        basis = []
        for idx in itertools.product(range(co), range(ci), range(k), range(k)):
            B = np.zeros((co, ci, k, k))
            B[idx] = 1.0
            basis.append(B)
        bias = None if layer.bias is None else np.eye(co)
        return "free filter (every entry a parameter)", basis, None, bias
    raise InputError("layer", type(layer).__name__, "an escnn R2Conv, a torch Conv2d or a module with "
                     "filter_parametrisation()", "declare the layer's filter")


def _constraint(step: Step, group: PlaneGroup, deadline: float) -> BlockResult:
    """The kernel constraint of one convolution for every element and every basis filter (and its bias)."""
    t0 = time.perf_counter()
    kind, basis, offset, bias = _layer_filters(step.layer)
    worst, where, inst = 0.0, "", None
    for gi, g in enumerate(group.elements()):
        perm = grid_permutation(group, g, basis[0].shape[-1])
        Ro = integer_matrix(step.rho_out.mats[gi], f"ρ_out({g!r})")
        Rii = integer_matrix(step.rho_in.mats[group.elements().index(group.inverse(g))], f"ρ_in({g!r})⁻¹")
        for j, B in enumerate(basis + ([offset] if offset is not None else [])):
            r = np.abs(residual(B, perm, Ro, Rii)).max()
            if r > worst:
                worst = float(r)
                where = f"{'κ₀ (fixed)' if offset is not None and j == len(basis) else f'B_{j}'} at g = {g!r}"
                inst = {"element": repr(g), "filter": where.split(' at')[0], "residual": float(r),
                        "activation": "any (the constraint is on the linear filter)", "x": [], "parameters": {}, "seed": 0}
        if bias is not None:  # ρ_out(g) b = b for every bias the parameters can give
            r = float(np.abs(Ro @ bias - bias).max())
            if r > worst:
                worst, where = r, f"bias basis at g = {g!r}"
                inst = {"element": repr(g), "filter": "bias", "residual": r, "activation": "any", "x": [],
                        "parameters": {}, "seed": 0}
        if time.perf_counter() > deadline:
            return BlockResult(step.name, Verdict.UNDECIDED, LEMMAS["conv"], "", time.perf_counter() - t0,
                               message="ran past the time limit")
    # escnn stores its sampled basis in float32: values on one orbit agree to the last bit or two, not exactly. A
    # residual within 4 ulps of the largest entry is the float32 rounding of a steerable filter (the exact solution
    # space is solved in sympy by solve_kernel_constraint); a real violation is O(1).
    scale = max(float(np.abs(B).max()) for B in basis)
    rounding = 4 * float(np.finfo(np.float32).eps) * scale if kind.startswith("escnn steerable") else 0.0
    label = f"{step.name} ({step.kind}: {kind}, {len(basis)} basis filters; {step.rho_in} → {step.rho_out})"
    if worst <= rounding:
        return BlockResult(label, Verdict.PROVED, LEMMAS["conv"], "0", time.perf_counter() - t0,
                           message=f"kernel constraint: largest residual {worst:.3g} ≤ float32 rounding of the basis {rounding:.3g}")
    return BlockResult(label, Verdict.VIOLATED, LEMMAS["conv"], rf"\max|\text{{residual}}| = {worst:.4g}\ \text{{({where})}}",
                       time.perf_counter() - t0, instance=inst, message="kernel constraint violated")


@dataclass(frozen=True)
class PartialProof(Failure):
    """The symbolic stage with a gap: every step's result, and the steps that no lemma covers (verdict UNDECIDED)."""

    statement: str = ""
    blocks: Sequence[BlockResult] = ()
    not_covered: Sequence[str] = ()


def _sample_input(prop: Any, arch: Any, dtype: torch.dtype) -> torch.Tensor:
    C = prop.rho_in.rep.size
    size = prop.image_size
    if getattr(arch, "task", None):
        from verify.declare.registry import get_task

        try:
            size = int(get_task(arch.task).dataset(1, 0)[0].shape[-1])
        except Exception:  # a task without image data: the claim's own image size
            pass
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, C, size, size, generator=gen, dtype=torch.float64).to(dtype)


def derive_steerable(prop: Any, arch: Any, size: str, time_limit: float,
                     model: torch.nn.Module | None = None) -> Evidence | None:
    """The symbolic stage of a C4/D4 claim: walk the path, prove what is covered, list what is not; None where there is
    no exact grid statement (groups with elements off the grid, declarations that only exist at the network level)."""
    group = prop.group
    if not isinstance(group, PlaneGroup) or not group.finite or any(not group.is_exact_on_grid(g) for g in group.elements()):
        return None  # e.g. C8: 45° is not a grid symmetry, so there is no exact grid constraint to prove
    if getattr(getattr(prop.rho_out, "rep", None), "inverted", False) or getattr(prop.rho_out, "table", ()) \
            or getattr(getattr(prop.rho_in, "rep", None), "inverted", False) or getattr(prop.rho_in, "table", ()):
        return None  # a network-level declaration, not a layer kernel: judged numerically only
    # the walk runs on the module that is checked (the trained one) when there is one: a proof counts only for the
    # code it was made on; otherwise on a freshly built one (the same code, initial weights)
    if model is None:
        with torch.random.fork_rng():  # building draws initial weights: from a fixed seed, not the caller's RNG
            torch.manual_seed(0)
            try:
                model = arch.build(size)
            except Exception as exc:  # the architecture could not be built: the stage did not run
                return Failure(stage="symbolic", verdict=Verdict.ERROR, summary=f"building {arch.name}: {exc}",
                               expected="a buildable architecture", fix="see the message")
    # the limit guards the walk and the constraint checks; building escnn's bases (≈10 s for D4) is not part of it
    start = time.perf_counter()
    model.eval()
    walk = PathWalk(group, model)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    try:
        out_tag = walk.run(_sample_input(prop, arch, dtype), walk.action_tag(prop.rho_in))
    except Exception as exc:  # the walk could not run the model: the stage did not run
        return Failure(stage="symbolic", verdict=Verdict.ERROR, seconds=time.perf_counter() - start,
                       summary=f"walking {getattr(arch, 'name', type(model).__name__)}'s path: {type(exc).__name__}: {exc}",
                       expected="a model that runs on one sample input", fix="see the message")
    want = walk.action_tag(prop.rho_out)
    out_ok = out_tag.same(want)
    blocks: list[BlockResult] = []
    deadline = start + time_limit
    convs = 0
    for step in walk.steps:
        if step.status == "constraint":
            convs += 1
            blocks.append(_constraint(step, group, deadline))
        elif step.status == "covered":
            blocks.append(BlockResult(f"{step.name} ({step.kind}; {step.rho_in} → {step.rho_out})", Verdict.PROVED,
                                      step.lemma or LEMMAS["identity"], "0", 0.0, message=step.message))
        elif step.status == "downstream":
            blocks.append(BlockResult(f"{step.name} ({step.kind})", Verdict.UNDECIDED, step.lemma or "—", "", 0.0,
                                      message=f"not judged: {step.message}"))
        else:
            blocks.append(BlockResult(f"{step.name} ({step.kind})", Verdict.UNDECIDED, step.lemma or "—", "", 0.0,
                                      message=f"not covered: {step.message}"))
    out_note = "" if out_ok else ("not judged: the output comes out of a step that is not covered; " if out_tag.kind == "unknown"
                                  else f"not covered: the walk found {out_tag}; ")
    blocks.append(BlockResult(f"output ({out_tag})", Verdict.PROVED if out_ok else Verdict.UNDECIDED, LEMMAS["output"],
                              "0" if out_ok else "", 0.0, message=f"{out_note}claimed ρ_out = {want}"))
    seconds = time.perf_counter() - start
    skipped = walk.not_called()
    caveat = ("The path is traced on one sample input (forward hooks on every module, every tensor operation in forward "
              "recorded); Python branches on input values would show as uncovered operations (bool/item)."
              + (f" Modules not on the traced path: {', '.join(skipped)}." if skipped else ""))
    refuted = [b for b in blocks if b.verdict is Verdict.VIOLATED]
    gaps = [b for b in blocks if b.verdict is Verdict.UNDECIDED]
    if refuted:
        bad = refuted[0]
        return Refutation(stage="symbolic", verdict=Verdict.VIOLATED, seconds=seconds, statement=prop.statement, blocks=blocks,
                          summary=f"layer {bad.block!r} violates the kernel constraint: {bad.instance['filter']} has residual "
                                  f"{bad.instance['residual']:.3g} at {bad.instance['element']} (exact: index moves and sign flips only)"
                                  + (f"; also not covered: {', '.join(b.block for b in gaps)}" if gaps else ""))
    if gaps:
        roots = [b for b in gaps if b.message.startswith("not covered")]
        after = len(gaps) - len(roots)
        names = [b.block for b in roots] or [b.block for b in gaps]
        return PartialProof(stage="symbolic", verdict=Verdict.UNDECIDED, seconds=seconds, statement=prop.statement,
                            blocks=blocks, not_covered=names,
                            summary=f"not proved: {len(names)} step(s) on the path are not covered: {'; '.join(names[:6])}"
                                    f"{'…' if len(names) > 6 else ''} ({(roots or gaps)[0].message})"
                                    + (f"; {after} step(s) downstream of them are not judged" if after else "")
                                    + f"; {len(blocks) - len(gaps)} step(s) are covered. {caveat}",
                            expected="every module and operation from input to output covered by the kernel constraint "
                                     "or a stated lemma",
                            fix="build the network from escnn modules (R2Conv, pointwise nonlinearities, GroupPooling) and "
                                "pooling that declares spatial_pooling(); the claim is judged numerically meanwhile")
    return Proof(stage="symbolic", verdict=Verdict.PROVED, seconds=seconds, statement=prop.statement, blocks=blocks,
                 lemma=prop.lemma,
                 summary=f"every step on the path from input to output is covered: {convs} convolution(s) satisfy the kernel "
                         f"constraint for all {len(group.elements())} elements of {group} (exact index moves and sign flips; "
                         "escnn's float32 basis to within its own rounding) for every parameter value (the filter is linear "
                         f"in them), and {len(blocks) - convs - 1} other step(s) by their lemmas (pointwise nonlinearities on "
                         "permutation fibres, group pooling, invariant-mask pooling, functions of invariant features); "
                         f"the output carries the claimed ρ_out. {caveat}")
