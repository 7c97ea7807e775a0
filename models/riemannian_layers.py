"""A Stiefel-constrained layer trained by geoopt's Riemannian optimisers, judged on EVERY iterate; and its controls.

The weight of `nn.Linear(8, 16)` is a `geoopt.ManifoldParameter` on `geoopt.Stiefel()` (16×8, orthonormal columns),
started at a fixed point of St(16, 8), and trained on `linear-stiefel-16x8` (y = W* x, W* ∈ St(16, 8)) by
`geoopt.optim.RiemannianSGD` or `geoopt.optim.RiemannianAdam` (the public API, named by Size(optimizer=...)), for
1000 steps at the quick size (2000 at full), in float32 and in float64. The claim is
`OnManifold(Stiefel(16, 8), "linear.weight", every_iterate=True)`: the trainer records the defect ‖WᵀW − I‖₂ of every
iterate, and the claim holds only if each of the 1001 (2001) iterates is within the round-off tolerance.

What we measured (linear-stiefel-16x8, lr 2e-2, 1000 steps, seed 0): geoopt's Riemannian steps move W by an
orthogonal transform (a Cayley retraction and vector transport), which keeps WᵀW = I in exact arithmetic but never
corrects the round-off already in W: without `stabilize` the defect accumulates, in float32 to 1.7e-4 (SGD) and
5.8e-5 (Adam) after 1000 steps, 45× and 15× the tolerance 3.8e-6; in float64 to 1.7e-14 and 4.3e-14 against 7.1e-15.
geoopt's own remedy is its public `stabilize=K` option (project onto the manifold, here the polar factor by SVD,
every K steps). The genuine layers use `stabilize=1`, which keeps every iterate within tolerance in both dtypes; the
unstabilised float32 RiemannianAdam is registered as a control (its claim is false at round-off tolerance, and the
verifier names the step where it left). benchmarks/manifold.py --drift tabulates all of them.

Controls:
* `geoopt-stiefel-euclidean-sgd`: the same Stiefel-initialised ManifoldParameter trained by torch.optim.SGD (the
  Euclidean gradient step W − η∇L, no retraction): off St(16, 8) after the first step;
* `geoopt-stiefel-radam-unstabilised`: RiemannianAdam without `stabilize` in float32: round-off accumulates.

geoopt 0.5.0 (the last release) imports `scalar_search_wolfe2` from `scipy.optimize.linesearch`, a private module
that recent scipy (1.17 here) keeps only as an empty deprecation stub; `geoopt_module()` points those two names at
`scipy.optimize._linesearch` (where scipy moved them) before importing geoopt, and changes nothing else.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from verify import Size, architecture
from verify.declare.manifolds import Stiefel
from verify.errors import InputError
from verify.properties import OnManifold

N, K = 16, 8
TASK = "linear-stiefel-16x8"  # registered by models/manifold_layers.py
STEPS = 1000  # the issue asks for every iterate over at least 10³ steps


def geoopt_module() -> Any:
    """`import geoopt` (0.5.0), with its scipy import repaired where scipy moved the line-search helpers."""
    try:
        import scipy.optimize._linesearch as moved
        import scipy.optimize.linesearch as stub

        for name in ("scalar_search_wolfe2", "scalar_search_armijo"):
            if not hasattr(stub, name) and hasattr(moved, name):
                setattr(stub, name, getattr(moved, name))
    except ImportError:  # an older scipy has the real module: nothing to repair
        pass
    try:
        return importlib.import_module("geoopt")
    except ImportError as exc:
        raise InputError("import geoopt", f"{type(exc).__name__}: {exc}", "geoopt==0.5.0 installed",
                         "pip install --no-deps geoopt==0.5.0 (its requirements torch, numpy, scipy are already here; "
                         "--no-deps leaves the pinned torch alone)") from exc


def stiefel_start(dtype: torch.dtype) -> torch.Tensor:
    """A fixed point of St(16, 8): the Q factor of a seeded Gaussian, made in float64 and rounded to the dtype."""
    g = torch.Generator().manual_seed(11)
    Q, R = torch.linalg.qr(torch.randn(N, K, generator=g, dtype=torch.float64))
    return (Q * torch.sign(torch.diagonal(R))).to(dtype)


class GeooptStiefelLinear(nn.Module):
    """x ↦ W x with W ∈ St(16, 8) a geoopt.ManifoldParameter on geoopt.Stiefel() (canonical metric)."""

    dtype: torch.dtype = torch.float32

    def __init__(self) -> None:
        super().__init__()
        geoopt = geoopt_module()
        self.linear = nn.Linear(K, N, bias=False)
        self.linear.weight = geoopt.ManifoldParameter(stiefel_start(self.dtype), manifold=geoopt.Stiefel())
        self.to(self.dtype)  # a float64 layer: the ManifoldParameter is created in float64 and stays one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _sizes(optimizer: str, lr: float, **options: Any) -> dict[str, Size]:
    return {"quick": Size(steps=STEPS, lr=lr, n_train=512, batch=128, optimizer=optimizer, optimizer_options=options),
            "full": Size(steps=2 * STEPS, lr=lr, n_train=1024, batch=128, optimizer=optimizer,
                         optimizer_options=options)}


def _every_iterate(reason: str | None = None) -> list[Any]:
    claim = OnManifold(Stiefel(N, K), "linear.weight", every_iterate=True)
    return [claim if reason is None else claim.falsely(reason)]


_REF = "geoopt 0.5.0: geoopt.ManifoldParameter(manifold=geoopt.Stiefel()) trained by geoopt.optim.{opt}"
_ADAM_REASON = ("geoopt's Riemannian step moves W by an orthogonal transform (Cayley retraction), which keeps the "
                "round-off already in W and adds its own: without stabilize= the {dt} defect accumulates past the "
                "round-off tolerance (and stabilize=1 is no remedy for RiemannianAdam in geoopt 0.5.0: it stops "
                "learning and reaches non-finite values)")
for _opt, _lr, _stab in (("RiemannianSGD", 0.1, 1), ("RiemannianAdam", 2e-2, None)):
    for _dtype in (torch.float32, torch.float64):
        _short = "rsgd" if _opt == "RiemannianSGD" else "radam"
        _dt = str(_dtype).replace("torch.", "")
        _how = f"{_opt}(stabilize={_stab})" if _stab else f"{_opt} (no stabilize)"
        _cls = type(f"GeooptStiefel{_opt}{_dt.capitalize()}", (GeooptStiefelLinear,), {
            "dtype": _dtype, "__module__": __name__,
            "__doc__": f"x ↦ W x, W ∈ St(16, 8) a geoopt ManifoldParameter trained by geoopt.optim.{_how} in {_dt}; "
                       "every iterate is claimed on the Stiefel manifold."})
        globals()[_cls.__name__] = _cls
        architecture(f"geoopt-stiefel-{_short}" + ("" if _dtype is torch.float32 else "-float64"), task=TASK,
                     sizes=_sizes(f"geoopt.optim.{_opt}", _lr, **({"stabilize": _stab} if _stab else {})),
                     claims=_every_iterate(None if _stab else _ADAM_REASON.format(dt=_dt)),
                     reference=_REF.format(opt=_how))(_cls)


@architecture("geoopt-stiefel-euclidean-sgd", task=TASK, sizes=_sizes("torch.optim.SGD", 0.1),
              reference="geoopt.ManifoldParameter on geoopt.Stiefel() trained by torch.optim.SGD (Euclidean)",
              claims=_every_iterate(
                  "torch.optim.SGD takes the Euclidean step W − η∇L(W): no projection of the gradient onto the "
                  "tangent space and no retraction, so the first step leaves St(16, 8)"))
class GeooptStiefelEuclideanSGD(GeooptStiefelLinear):
    """x ↦ W x, W started on St(16, 8) (a geoopt ManifoldParameter) but trained by Euclidean torch.optim.SGD."""
