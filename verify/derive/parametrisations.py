"""Parametrisations that land on a manifold: their symbolic forms, exact obligations, twins, and how they are found.

A constrained tensor is the output of a parametrisation Q = B·g(X)[:, :k] of a raw parameter X (torch's
`parametrizations.orthogonal`, geotorch's SO/Stiefel, or a module that declares `manifold_form = Parametrisation(...)`).
For each kind the symbolic stage proves, exactly with sympy on symbols, the obligations that make g(X) land on the
manifold for *every* X, and states the matrix lemma that turns them into membership:

* matrix_exp: A = gen(X) is skew (A + Aᵀ = 0, entrywise); lemma: exp(A)ᵀexp(A) = exp(Aᵀ)exp(A) = exp(−A)exp(A) = I
  (A and −A commute), det exp(A) = e^{tr A} = e^0 = 1.
* cayley, Q = (I − αA)⁻¹(I + αA), M = I − αA, P = I + αA: Pᵀ − M = 0, MMᵀ − PPᵀ = 0, MᵀM − (I + α²AᵀA) = 0
  (σ_min(M) ≥ 1: M is invertible); lemma: QᵀQ = PᵀM⁻ᵀM⁻¹P = Pᵀ(MMᵀ)⁻¹P = Pᵀ(PPᵀ)⁻¹P = I, det Q = det Mᵀ/det M = 1.
* householder (torch's, from the strictly lower part of X) and reflections (declared vectors): each
  H = I − 2vvᵀ/(vᵀv) has s²(HᵀH − I) = (sI − 2vvᵀ)ᵀ(sI − 2vvᵀ) − s²I = 0 with s = vᵀv, and det H = 1 − 2vᵀv/s = −1
  (matrix determinant lemma); torch's τ_i = 2/(1 + Σ_{j>i} X_ji²) is 2/vᵢᵀvᵢ (checked as an identity); its column
  signs d_i = int(X_ii) must be ±1 (checked on the trained numbers); det Q = (−1)^{#reflectors}·∏d_i.
* llt, S = LLᵀ + εI with L = tril(X): S − Sᵀ = 0, xᵀSx − (‖Lᵀx‖² + ε‖x‖²) = 0; with ε > 0 (the module's number),
  λ_min(S) ≥ ε > 0.
* normalise, y = x/‖x‖: ‖y‖² − 1 = 0 (x ≠ 0).
* qr, Q = X R⁻¹ with R the upper-triangular factor, diag R > 0, of RᵀR = XᵀX (the Q of the thin QR with the sign fix:
  Householder QR then the sign flip computes it), and polar, Q = X S⁻¹ with S = (XᵀX)^{1/2} symmetric (Q = UVᵀ of the
  SVD X = UΣVᵀ): a lemma with its premises. The conclusion is an exact identity between symbolic matrices of any size
  (sympy's non-commutative MatrixSymbol algebra, so it holds at every n and k, not only at the size checked), with
  T = R⁻¹ (or S⁻¹):  QᵀQ − I ≡ Tᵀ(XᵀX − RᵀR)T + (RT − I)ᵀRT + (RT − I),  so RᵀR = XᵀX and RT = I give QᵀQ = I (for
  polar, S = Sᵀ and S² = XᵀX give SᵀS = XᵀX). The premises' own obligations, exact at n: G = XᵀX is symmetric and
  zᵀGz = ‖Xz‖² (G is SPD when X has full column rank, so its Cholesky factor R with diag R > 0 and its SPD square root S
  exist, are unique and invertible: standard theorems, stated, not re-proved). Full column rank of the module's raw X
  is a condition on its numbers (σ_min(X) > 0, read in float64).
* column_normalise, Q = X·diag(1/‖x_j‖) (a WRONG Stiefel map): (QᵀQ − I)_{ij} = x_iᵀx_j/(‖x_i‖‖x_j‖) for i ≠ j is not 0:
  refuted with an exact instance.

The identities are matrix algebra, so they hold at every size; sympy checks them exactly, entry by entry, at the
tensor's size n when n ≤ CHECK_MAX_N, else at CHECK_MAX_N (stated in the evidence). A base B (a stored buffer) enters
as Q = B·g(X): g's membership is proved, B's is a property of stored numbers (the numeric stage measures it; its
det sign is read from the stored numbers in float64).

Binding: the twin (an independent float64 implementation: scipy's expm, an explicit inverse, an explicit product of
reflectors; for qr and polar the declared formula itself, X R⁻¹ with scipy's Cholesky of XᵀX, X(XᵀX)^{-1/2} by numpy's
eigh, against the module's Householder QR or SVD) is instantiated with the module's own raw parameter and base and compared with the module's parametrised
output computed from its float64 copy.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import sympy as sp
import torch

from verify.errors import InputError

KINDS = ("matrix_exp", "cayley", "householder", "reflections", "llt", "normalise", "qr", "polar", "column_normalise")
GENERATORS = ("skew_tril", "skew_tril_strict", "skew_triu_strict", "skew", "symmetric")
CHECK_MAX_N = 8  # the exact per-size check runs at min(n, 8): n = 8 takes ≤ 0.1 s per kind
BIND_SAFETY = 64.0


@dataclass(frozen=True)
class Parametrisation:
    """The declared symbolic form of a parametrisation module (set `manifold_form = Parametrisation(...)` on it).

    kind: one of KINDS; generator: how A is built from the raw X (matrix_exp, cayley): "skew" (X − Xᵀ), "skew_tril"
    (tril(X) − tril(X)ᵀ), "skew_tril_strict"/"skew_triu_strict" (the strict triangle), "symmetric" (X + Xᵀ: not skew,
    a wrong parametrisation that the obligations refute); alpha: the Cayley step (I − αA)⁻¹(I + αA); eps_attr: the
    module attribute that holds ε (llt).
    """

    kind: str
    generator: str = "skew"
    alpha: Fraction = Fraction(1, 2)
    eps_attr: str = "eps"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError("Parametrisation(kind=...)", self.kind, f"one of {KINDS}", "pick the kind whose formula the module computes")
        if self.generator not in GENERATORS:
            raise InputError("Parametrisation(generator=...)", self.generator, f"one of {GENERATORS}",
                             "name how the module builds A from its raw parameter")


@dataclass
class Found:
    """A parametrisation located on a module: its form and the numbers the twin needs."""

    form: Parametrisation
    source: str  # where the form comes from, in words
    raw: torch.Tensor  # the raw parameter X (as stored on the module it was found on)
    base: torch.Tensor | None = None
    columns: int | None = None  # Q = (...)[:, :k]
    transposed: bool = False
    eps: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def skew_norm(self) -> float:
        """‖A‖₂ of the generated A (float64): the Cayley solve's and the exponential's error grow with it."""
        if self.form.kind not in ("matrix_exp", "cayley"):
            return 0.0
        X = self._square(self.raw.detach().to(torch.float64).cpu())
        return float(torch.linalg.matrix_norm(generate(X, self.form.generator), ord=2))

    def map_units(self, n: int) -> tuple[float, str]:
        """The parametrisation's own round-off, in units of eps (see verify/declare/manifolds.py)."""
        k = self.form.kind
        a = self.skew_norm()
        if k == "householder" or k == "reflections":
            return math.sqrt(n), "√n: a product of Householder reflectors, backward stable, errors adding as a random walk"
        if k == "cayley":
            return (math.sqrt(n) * (1 + float(self.form.alpha) * a),
                    f"√n·(1 + α‖A‖₂) with ‖A‖₂ = {a:.3g}: the solve with κ(I − αA) ≤ 1 + α‖A‖₂")
        if k == "matrix_exp":
            # the polynomial evaluation's matrix products (∝ n·u each) and the squarings (∝ ‖A‖); float64 evaluates a
            # higher degree than float32 (more products): measured up to 2.6× float32's error in units of eps, so 2n
            return (2 * n + math.sqrt(n) * a,
                    f"2n + √n·‖A‖₂ with ‖A‖₂ = {a:.3g}: the exponential's polynomial products and squarings")
        if k == "normalise":
            # x/‖x‖ is off the sphere by the relative error of its ‖x‖ (√n·u/2: a square root of an n-long sum) plus
            # one rounding per entry (≈ u/√n on the norm)
            return math.sqrt(n) / 2, "√n/2: the norm ‖x‖ that x/‖x‖ divides by (the square root halves the sum's rounding)"
        if k in ("qr", "polar"):
            return math.sqrt(n), ("√n: Householder QR (or the SVD) is backward stable: its Q is orthonormal to O(√n·u) "
                                  "whatever the conditioning of X")
        return math.sqrt(n), "√n: the norms and products that build it"

    def _square(self, X: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            X = X.mT
        n, k = X.shape[-2], X.shape[-1]
        if self.form.kind in ("matrix_exp", "cayley") and n != k:
            X = torch.cat([X, X.new_zeros(n, n - k)], dim=-1)
        return X


# --------------------------------------------------------------------------- generators (torch and sympy alike)
def _tril(X: Any, k: int = 0) -> Any:
    if isinstance(X, torch.Tensor):
        return X.tril(k)
    n = X.shape[0]
    return sp.Matrix(n, X.shape[1], lambda i, j: X[i, j] if i - j >= -k else 0)


def _triu(X: Any, k: int = 0) -> Any:
    if isinstance(X, torch.Tensor):
        return X.triu(k)
    n = X.shape[0]
    return sp.Matrix(n, X.shape[1], lambda i, j: X[i, j] if j - i >= k else 0)


def _T(X: Any) -> Any:
    return X.mT if isinstance(X, torch.Tensor) else X.T


def generate(X: Any, generator: str) -> Any:
    """A from the raw X (a torch tensor or a sympy Matrix), as the module builds it."""
    if generator == "skew":
        return X - _T(X)
    if generator == "symmetric":
        return X + _T(X)
    if generator == "skew_tril":
        L = _tril(X)
    elif generator == "skew_tril_strict":
        L = _tril(X, -1)
    else:
        L = _triu(X, 1)
    return L - _T(L)


# --------------------------------------------------------------------------- finding the parametrisation
def recognise(p: torch.nn.Module, raw: torch.Tensor) -> Found | None:
    """The form of one parametrisation module, or None when it is not one whose form is known."""
    declared = getattr(p, "manifold_form", None)
    if isinstance(declared, Parametrisation):
        eps = None
        if declared.kind == "llt":
            e = getattr(p, declared.eps_attr, None)
            eps = float(e) if e is not None else None
        return Found(declared, f"declared by {type(p).__name__}.manifold_form", raw, eps=eps,
                     base=getattr(p, "base", None) if isinstance(getattr(p, "base", None), torch.Tensor) else None)
    cls, mod = type(p).__name__, type(p).__module__
    if cls == "_Orthogonal" and mod.startswith("torch.nn.utils"):
        kind = p.orthogonal_map.name
        n, k = raw.shape[-2], raw.shape[-1]
        transposed = n < k
        base = getattr(p, "base", None)
        found = Found(Parametrisation(kind, "skew_tril"), f"torch.nn.utils.parametrizations.orthogonal ({kind}"
                      f"{', use_trivialization=True: Q = base·g(X)' if base is not None else ''})", raw,
                      base=base, columns=min(n, k) if n != k else None, transposed=transposed)
        if kind == "householder":
            X = raw.mT if transposed else raw
            found.notes["signs"] = X.diagonal(dim1=-2, dim2=-1).detach().int().tolist()
        return found
    if mod.startswith("geotorch") and cls in ("SO", "Stiefel"):
        triv = getattr(p, "triv", None)
        name = getattr(triv, "__name__", "")
        kind = "matrix_exp" if triv in (torch.linalg.matrix_exp, torch.matrix_exp) or name == "matrix_exp" else (
            "cayley" if name == "cayley_map" else None)
        if kind is None:
            return None  # a user's own trivialisation: no known form
        gen = "skew_tril_strict" if getattr(p, "lower", True) else "skew_triu_strict"
        k = getattr(p, "k", None)
        transposed = bool(getattr(p, "transposed", False))
        return Found(Parametrisation(kind, gen), f"geotorch.{cls} (triv={name}): Q = base·g(X)", raw, base=p.base,
                     columns=k if cls == "Stiefel" and k != p.n else None, transposed=transposed)
    return None


# --------------------------------------------------------------------------- the twin (float64, independent code)
def twin(found: Found) -> torch.Tensor:
    """The declared form evaluated in float64 with the module's own raw parameter (and base, ε)."""
    import numpy as np
    import scipy.linalg

    f = found.form
    X = found.raw.detach().to(torch.float64).cpu()
    if f.kind == "normalise":
        return X / X.norm()
    if f.kind == "column_normalise":
        return X / X.norm(dim=0, keepdim=True)
    if f.kind in ("qr", "polar"):
        # the declared formula, not the module's algorithm: Q = X R⁻¹ with R = chol(XᵀX) (scipy, diag R > 0), or
        # Q = X S⁻¹ with S⁻¹ = V diag(λ^{-1/2}) Vᵀ from the eigendecomposition of XᵀX (numpy)
        Xn = X.numpy()
        G = Xn.T @ Xn
        if f.kind == "qr":
            R = scipy.linalg.cholesky(G, lower=False)
            Q = scipy.linalg.solve_triangular(R, Xn.T, trans="T", lower=False).T  # X R⁻¹ = (R⁻ᵀXᵀ)ᵀ
        else:
            lam, V = np.linalg.eigh(G)
            Q = Xn @ (V @ np.diag(lam ** -0.5) @ V.T)
        return torch.from_numpy(np.ascontiguousarray(Q))
    if f.kind == "llt":
        L = X.tril()
        return L @ L.T + (found.eps or 0.0) * torch.eye(X.shape[0], dtype=torch.float64)
    if f.kind == "reflections":  # rows of X are the vectors v_i; Q = H(v_1)·…·H(v_r)
        n = X.shape[1]
        Q = torch.eye(n, dtype=torch.float64)
        for v in X:
            Q = Q @ (torch.eye(n, dtype=torch.float64) - 2 * torch.outer(v, v) / (v @ v))
        return Q
    Xs = X.mT if found.transposed else X
    n, k = Xs.shape
    if f.kind == "householder":
        Lo = Xs.tril(-1)
        Q = torch.eye(n, dtype=torch.float64)
        for i in range(k):
            v = Lo[:, i].clone()
            v[i] = 1.0
            Q = Q @ (torch.eye(n, dtype=torch.float64) - 2 * torch.outer(v, v) / (v @ v))
        Q = Q[:, :k] * torch.tensor(found.notes.get("signs", [1] * k), dtype=torch.float64)
    else:
        A = generate(found._square(X), f.generator).numpy()
        I = np.eye(A.shape[0])
        if f.kind == "matrix_exp":
            G = scipy.linalg.expm(A)
        else:
            a = float(f.alpha)
            G = np.linalg.inv(I - a * A) @ (I + a * A)
        Q = torch.from_numpy(G)
        if found.columns is not None:
            Q = Q[:, : found.columns]
    if found.base is not None:
        Q = found.base.detach().to(torch.float64).cpu() @ Q
    return Q.mT if found.transposed else Q


_TWIN_CODE = {"matrix_exp": "scipy.linalg.expm", "cayley": "explicit inverse",
              "qr": "X R⁻¹ with R = scipy.linalg.cholesky(XᵀX)", "polar": "X (XᵀX)^{-1/2} by numpy.linalg.eigh"}


def bind(found: Found, output64: torch.Tensor) -> tuple[bool, float, float, str]:
    """(agrees, max mismatch, tolerance, text): the twin against the module's own float64 output."""
    T = twin(found)
    out = output64.detach().to(torch.float64).cpu()
    if T.shape != out.shape:
        return False, math.inf, 0.0, f"the twin has shape {tuple(T.shape)}, the module's tensor {tuple(out.shape)}"
    n = max(out.shape)
    units, _ = found.map_units(n)
    scale = max(1.0, float(out.abs().max()))
    tol = BIND_SAFETY * (n + units) * float(torch.finfo(torch.float64).eps) * scale
    mismatch = float((T - out).abs().max())
    ok = mismatch <= tol
    text = (f"{found.source}: the declared form, instantiated with the module's own raw parameter"
            f"{' and base' if found.base is not None else ''} in float64 (independent code: "
            f"{_TWIN_CODE.get(found.form.kind, 'explicit products')}), "
            f"reproduces the module's float64 output to max |Δ| = {mismatch:.3g} {'≤' if ok else '>'} {tol:.3g} "
            f"({BIND_SAFETY:g}·(n + m)·eps64·max(1, |Q|max))")
    return ok, mismatch, tol, text


# --------------------------------------------------------------------------- exact obligations
@dataclass
class Obligation:
    name: str
    latex: str  # the identity reduced to 0
    residual: Any  # sympy Matrix or expression (0 when proved)
    instance: dict[str, Any] | None = None

    @property
    def holds(self) -> bool:
        r = self.residual
        if isinstance(r, sp.MatrixBase):
            return all(sp.expand(e) == 0 for e in r)
        return sp.simplify(r) == 0


def _symbols(n: int, k: int, name: str = "x") -> sp.Matrix:
    return sp.Matrix(n, k, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


def _zero(M: sp.Matrix) -> sp.Matrix:
    return M.applyfunc(sp.expand)


def obligations(form: Parametrisation, n: int) -> list[Obligation]:
    """The exact identities of the form at size n (n×n raw X; vectors of length n)."""
    I = sp.eye(n)
    kind = form.kind
    out: list[Obligation] = []
    if kind in ("matrix_exp", "cayley"):
        X = _symbols(n, n)
        A = generate(X, form.generator)
        out.append(Obligation("A is skew", r"A + A^\top = 0", _zero(A + A.T)))
        if kind == "matrix_exp":
            out.append(Obligation("tr A = 0 (det exp A = e^{tr A} = 1)", r"\operatorname{tr} A = 0", sp.expand(A.trace())))
        else:
            from sympy.polys.matrices import DomainMatrix

            # the products in the polynomial ring QQ[x_ij] (sympy's DomainMatrix): exact, and 3× faster than expanding
            # sympy expressions (n = 8: ~0.08 s against 0.26 s)
            ring = sp.QQ[tuple(sorted(A.free_symbols, key=str))]
            dA = DomainMatrix.from_Matrix(A).convert_to(ring)
            dI = DomainMatrix.eye(n, ring)
            a = ring.convert(sp.Rational(form.alpha.numerator, form.alpha.denominator))
            M, P = dI - dA * a, dI + dA * a
            out.append(Obligation("Pᵀ = M (det Q = det Mᵀ/det M = 1)", r"(I + \alpha A)^\top - (I - \alpha A) = 0",
                                  (P.transpose() - M).to_Matrix()))
            out.append(Obligation("MMᵀ = PPᵀ (QᵀQ = Pᵀ(MMᵀ)⁻¹P = I)", r"MM^\top - PP^\top = 0",
                                  (M * M.transpose() - P * P.transpose()).to_Matrix()))
            out.append(Obligation("MᵀM = I + α²AᵀA (σ_min(M) ≥ 1: M invertible)", r"M^\top M - (I + \alpha^2 A^\top A) = 0",
                                  (M.transpose() * M - (dI + dA.transpose() * dA * (a * a))).to_Matrix()))
    elif kind in ("householder", "reflections"):
        v = _symbols(n, 1, "v")
        s = (v.T * v)[0, 0]
        sH = s * I - 2 * v * v.T
        out.append(Obligation("each reflector H = I − 2vvᵀ/vᵀv is orthogonal", r"s^2(H^\top H - I) = 0,\ s = v^\top v",
                              _zero(sH.T * sH - s * s * I)))
        out.append(Obligation("det H = 1 − 2vᵀv/vᵀv = −1 (matrix determinant lemma)", r"\det H + 1 = 0",
                              sp.simplify(1 - 2 * s / s + 1)))
        if kind == "householder":
            X = _symbols(n, n)
            i = 0  # the first column is the general case (the others have fewer free entries)
            col = sp.Matrix([1 if j == i else (X[j, i] if j > i else 0) for j in range(n)])
            out.append(Obligation("torch's τ_i = 2/(1 + Σ_{j>i} X_ji²) is 2/vᵢᵀvᵢ", r"(1 + \sum_{j>i} X_{ji}^2) - v_i^\top v_i = 0",
                                  sp.expand(1 + sum(X[j, i] ** 2 for j in range(i + 1, n)) - (col.T * col)[0, 0])))
    elif kind == "llt":
        X = _symbols(n, n)
        L = _tril(X)
        e = sp.Symbol("epsilon", positive=True)
        S = L * L.T + e * I
        x = _symbols(n, 1, "z")
        out.append(Obligation("S = LLᵀ + εI is symmetric", r"S - S^\top = 0", _zero(S - S.T)))
        out.append(Obligation("xᵀSx = ‖Lᵀx‖² + ε‖x‖² (> 0 for x ≠ 0 when ε > 0)", r"x^\top S x - (\|L^\top x\|^2 + \varepsilon\|x\|^2) = 0",
                              sp.expand((x.T * S * x)[0, 0] - ((L.T * x).T * (L.T * x))[0, 0] - e * (x.T * x)[0, 0])))
    elif kind == "normalise":
        x = _symbols(n, 1)
        s = (x.T * x)[0, 0]
        y = x / sp.sqrt(s)
        out.append(Obligation("‖x/‖x‖‖ = 1", r"\|x/\|x\|\|^2 - 1 = 0", sp.simplify((y.T * y)[0, 0] - 1)))
    elif kind in ("qr", "polar"):
        out += _retraction_obligations(kind, n)
    elif kind == "column_normalise":
        m = min(n, 3)  # the off-diagonal entries carry square roots: 3 columns show every kind of entry
        X = _symbols(m, m)
        Q = X * sp.diag(*[1 / sp.sqrt((X[:, j].T * X[:, j])[0, 0]) for j in range(m)])
        out.append(Obligation("QᵀQ = I for Q = X·diag(1/‖x_j‖)", r"Q^\top Q - I = 0",
                              (Q.T * Q - sp.eye(m)).applyfunc(lambda e: sp.cancel(sp.together(e)))))
    return out


def _retraction_obligations(kind: str, n: int) -> list[Obligation]:
    """The QR / polar lemma: the size-free certificate of its conclusion and the exact obligations of its premises."""
    r, c = sp.Symbol("n", integer=True, positive=True), sp.Symbol("k", integer=True, positive=True)
    name = "R" if kind == "qr" else "S"
    Xm, Fm, Tm = sp.MatrixSymbol("X", r, c), sp.MatrixSymbol(name, c, c), sp.MatrixSymbol("T", c, c)
    Ik = sp.Identity(c)
    Q = Xm * Tm
    # every term of the certificate carries a premise as a factor: XᵀX − RᵀR (Cholesky) or XᵀX − S² (square root),
    # S − Sᵀ (S symmetric, polar only) and RT − I (T = R⁻¹)
    if kind == "qr":
        certificate = Tm.T * (Xm.T * Xm - Fm.T * Fm) * Tm + (Fm * Tm - Ik).T * (Fm * Tm) + (Fm * Tm - Ik)
        text, latex = ("QᵀQ − I = Tᵀ(XᵀX − RᵀR)T + (RT − I)ᵀRT + (RT − I), Q = XT (symbolic n×k X, k×k R, T; any n, k): "
                       "RᵀR = XᵀX and RT = I give QᵀQ = I",
                       r"Q^\top Q - I - [T^\top(X^\top X - R^\top R)T + (RT - I)^\top RT + (RT - I)] = 0")
    else:
        certificate = (Tm.T * (Xm.T * Xm - Fm * Fm) * Tm + Tm.T * (Fm - Fm.T) * Fm * Tm + (Fm * Tm - Ik).T * (Fm * Tm)
                       + (Fm * Tm - Ik))
        text, latex = ("QᵀQ − I = Tᵀ(XᵀX − S²)T + Tᵀ(S − Sᵀ)ST + (ST − I)ᵀST + (ST − I), Q = XT (symbolic n×k X, k×k "
                       "S, T; any n, k): S² = XᵀX, S = Sᵀ and ST = I give QᵀQ = I",
                       r"Q^\top Q - I - [T^\top(X^\top X - S^2)T + T^\top(S - S^\top)ST + (ST - I)^\top ST + (ST - I)] = 0")
    diff = (Q.T * Q - Ik - certificate).expand()
    residual = sp.S.Zero if isinstance(diff, sp.ZeroMatrix) or diff == 0 else diff
    out = [Obligation(text, latex, residual)]
    # the premises' obligations, exact at n, in the polynomial ring QQ[x_ij, z_i] (sympy's sparse polynomials: ~0.01 s
    # at n = 8, against ~0.2 s through sympy expressions): G = XᵀX is symmetric, zᵀGz = ‖Xz‖² (SPD for full rank)
    _, *gens = sp.ring([f"x_{i}{j}" for i in range(n) for j in range(n)] + [f"z_{i}" for i in range(n)], sp.QQ)
    X = [gens[i * n:(i + 1) * n] for i in range(n)]
    z = gens[n * n:]
    G = [[sum((X[a][i] * X[a][j] for a in range(n)), gens[0] * 0) for j in range(n)] for i in range(n)]
    Xz = [sum((X[i][j] * z[j] for j in range(n)), gens[0] * 0) for i in range(n)]
    zGz = sum((z[i] * G[i][j] * z[j] for i in range(n) for j in range(n)), gens[0] * 0)
    out.append(Obligation("G = XᵀX is symmetric", r"G - G^\top = 0",
                          sp.Matrix(n, n, lambda i, j: (G[i][j] - G[j][i]).as_expr())))
    out.append(Obligation("zᵀGz = ‖Xz‖² (G is SPD for X of full column rank, so its Cholesky factor R with diag R > 0 "
                          "and its SPD square root S exist, are unique and invertible)",
                          r"z^\top X^\top X z - (Xz)^\top (Xz) = 0",
                          (zGz - sum((v * v for v in Xz), gens[0] * 0)).as_expr()))
    return out


def _instance(X: sp.Matrix, Q: sp.Matrix, seed: int, worst: float) -> dict[str, Any]:
    """A refuting instance as evidence: the exact rational X, the Q the form makes of it, and max |QᵀQ − I|."""
    m = X.shape[0]
    return {"activation": f"none (a parametrisation, exact rational X at n = {m})", "x": [],
            "parameters": {"X": [[str(v) for v in X.row(i)] for i in range(m)],
                           "Q": [[str(sp.nsimplify(v)) for v in Q.row(i)] for i in range(m)]},
            "seed": seed, "residual": worst, "what": "max |QᵀQ − I| entry, exact"}


def refuting_instance(form: Parametrisation, n: int, seed: int = 0) -> dict[str, Any] | None:
    """A concrete rational X at which the form's output is exactly off O(n) (for a failed obligation)."""
    rng = random.Random(seed)
    m = min(n, 3)
    if form.kind == "column_normalise":
        for _ in range(20):
            X = sp.Matrix(m, m, lambda i, j: sp.Rational(rng.randint(-3, 3), 2))
            if any((X[:, j].T * X[:, j])[0, 0] == 0 for j in range(m)):
                continue
            Q = X * sp.diag(*[1 / sp.sqrt((X[:, j].T * X[:, j])[0, 0]) for j in range(m)])
            R = (Q.T * Q - sp.eye(m)).applyfunc(sp.nsimplify)
            worst = max((abs(float(e)) for e in R), default=0.0)
            if worst > 0:
                return _instance(X, Q, seed, worst)
        return None
    if form.kind not in ("matrix_exp", "cayley"):
        return None
    for _ in range(20):
        X = sp.Matrix(m, m, lambda i, j: sp.Rational(rng.randint(-3, 3), 4))
        A = generate(X, form.generator)
        if form.kind == "cayley":
            a = sp.Rational(form.alpha.numerator, form.alpha.denominator)
            M = sp.eye(m) - a * A
            if M.det() == 0:
                continue
            Q = M.inv() * (sp.eye(m) + a * A)
        else:
            Q = (A).exp()
        R = (Q.T * Q - sp.eye(m)).applyfunc(sp.nsimplify)
        worst = max((abs(float(e)) for e in R), default=0.0)
        if worst > 0:
            return _instance(X, Q, seed, worst)
    return None


def check_form(form: Parametrisation, n: int) -> tuple[list[Obligation], float, int]:
    """The obligations at n_check = min(n, CHECK_MAX_N), with the seconds they took."""
    start = time.perf_counter()
    n_check = max(2, min(n, CHECK_MAX_N))
    obs = obligations(form, n_check)
    failed = [ob for ob in obs if not ob.holds]
    if failed:
        inst = refuting_instance(form, n_check)  # one concrete X refutes the map itself (shared by its obligations)
        for ob in failed:
            ob.instance = inst
    return obs, time.perf_counter() - start, n_check


def residual_latex(ob: Obligation) -> str:
    if ob.holds:
        return "0"
    r = ob.residual
    if isinstance(r, sp.MatrixBase):
        nz = [(i, j, e) for i in range(r.rows) for j in range(r.cols) if (e := sp.expand(r[i, j])) != 0]
        i, j, e = nz[0]
        return rf"\text{{{len(nz)} non-zero entries, e.g. }} ({i},{j}): {sp.latex(e)}"
    return sp.latex(r)


Recogniser = Callable[[torch.nn.Module, torch.Tensor], "Found | None"]
