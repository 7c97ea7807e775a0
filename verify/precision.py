"""Float64 copies of a model for the oracle, and the precision its numbers were stored in.

One implementation, used by every stage that needs a float64 twin of a trained model (the map
properties' oracle, the binding stage, the scheme stepper, the equivariance oracle). A copy is tried
by three paths, and the one that ran is recorded (`copy_path`), so the evidence can say how the
oracle was made:

1. ``deepcopy`` (in train mode, mode restored: escnn caches non-leaf filters in eval mode only), then
   ``.to(float64)``, then every *plain tensor attribute* too (a constant kept as ``self.J = torch.tensor(...)``
   rather than a buffer: ``.to()`` does not move it, and the float64 copy would mix dtypes);
2. the same with every non-leaf tensor attribute detached first (a neural-ODE wrapper that keeps a computed
   tensor: ``deepcopy`` refuses non-leaf tensors);
3. a fresh instance from the architecture's factory (remembered by training and checkpoint loading), with the
   trained state dict loaded, in float64.

Storage precision: a float32 model's numbers are float32 numbers. A weight that is orthogonal, or a basis that
is equivariant, *to float32 precision* is not exactly so in float64, and the float64 oracle must not call that
a structural violation. ``float64_copy(model, generator)`` makes a copy whose every stored non-integer number
θ is moved by eps(its stored dtype)·u·(|θ| + rms of its tensor), u ~ U[−1, 1]; the spread of a defect over
STORAGE_DRAWS such copies, times LAMBDA_STORAGE, is what the parameters' storage alone can explain.
"""
from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from verify.errors import InputError

# The storage model (the same constants as the equivariance oracle's, properties/equivariant.py, where they were
# calibrated: over 8 draws the actual storage defect was at most 2.8× the largest drawn change; λ = 6 leaves ×2).
STORAGE_DRAWS = 8
LAMBDA_STORAGE = 6.0
STORAGE_RULE = (
    "storage allowance = λ_s·max over {draws} draws |d64(θ + δ) − d64(θ)| with every stored non-integer number θ "
    "moved by δ = eps(its stored dtype)·u·(|θ| + rms of its tensor), u ~ U[−1, 1], λ_s = {ls:g}: the defect the "
    "precision the trained parameters were stored in can explain (a weight exact to float32 is not structural)"
).format(draws=STORAGE_DRAWS, ls=LAMBDA_STORAGE)

_FACTORIES: "weakref.WeakKeyDictionary[nn.Module, Callable[[], nn.Module]]" = weakref.WeakKeyDictionary()
_PATHS: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
_STORED: "weakref.WeakKeyDictionary[nn.Module, dict[str, torch.dtype]]" = weakref.WeakKeyDictionary()


class CopyError(InputError):
    """No float64 copy of the model could be made by any path."""


def remember_factory(model: nn.Module, factory: Callable[[], nn.Module]) -> None:
    """Record how to rebuild `model` (a fresh, untrained instance of the same configuration): the last copy path."""
    _FACTORIES[model] = factory


def copy_path(model64: nn.Module) -> str:
    """How a copy made by float64_copy was made (empty for a module this module did not make)."""
    return _PATHS.get(model64, "")


# --------------------------------------------------------------------------- the tensors a module stores
def _plain_tensor_slots(model: nn.Module) -> Iterator[tuple[nn.Module, str, int | None, torch.Tensor]]:
    """(module, attribute, index or None, tensor) for every tensor kept as a plain attribute (not a parameter or
    buffer), directly or in a list/tuple."""
    for m in model.modules():
        for k, v in vars(m).items():
            if k.startswith("_") and k in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                yield m, k, None, v
            elif isinstance(v, (list, tuple)):
                for i, t in enumerate(v):
                    if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter):
                        yield m, k, i, t


def stored_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every floating tensor the model keeps: parameters, buffers and plain tensor attributes, by name."""
    out = [(n, t) for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_floating_point()]
    names = {id(m): n for n, m in model.named_modules()}
    for m, k, i, t in _plain_tensor_slots(model):
        if t.is_floating_point():
            base = names.get(id(m), "?")
            out.append((f"{base + '.' if base else ''}{k}{'' if i is None else f'[{i}]'}", t))
    return out


def _cast_plain(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast every floating plain tensor attribute to dtype (detached); returns how many were cast."""
    n = 0
    for m, k, i, t in list(_plain_tensor_slots(model)):
        if not t.is_floating_point() or t.dtype == dtype:
            continue
        new = t.detach().to(dtype)
        if i is None:
            m.__dict__[k] = new
        else:
            seq = list(getattr(m, k))
            seq[i] = new
            m.__dict__[k] = type(getattr(m, k))(seq) if isinstance(getattr(m, k), tuple) else seq
        n += 1
    return n


def _not_float64(model: nn.Module) -> list[str]:
    return [f"{n} ({str(t.dtype).replace('torch.', '')})" for n, t in stored_tensors(model) if t.dtype != torch.float64]


# --------------------------------------------------------------------------- the copy
def _deepcopy(model: nn.Module, detach_nonleaf: bool) -> nn.Module:
    memo: dict[int, Any] = {}
    keep = []
    if detach_nonleaf:
        for _, _, _, t in _plain_tensor_slots(model):
            if t.grad_fn is not None:
                d = t.detach().clone()
                memo[id(t)] = d
                keep.append(t)
    twin = copy.deepcopy(model, memo)
    del keep
    return twin


def _rebuild(model: nn.Module) -> nn.Module:
    factory = _FACTORIES.get(model)
    if factory is None:
        raise LookupError("no factory is known for this module (a bare module, not built by train() or a checkpoint)")
    with torch.random.fork_rng(devices=[]):
        fresh = factory()
    fresh.load_state_dict(model.state_dict(), strict=True)
    device = next((t.device for _, t in stored_tensors(model)), torch.device("cpu"))
    return fresh.to(device)


PATHS = (
    ("deepcopy", "deepcopy(model).to(float64)"),
    ("detached", "deepcopy with its non-leaf tensor attributes detached, .to(float64)"),
    ("factory", "a fresh instance from the architecture's factory with the trained state dict loaded, .to(float64)"),
)


def float64_copy(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """A float64 copy of the model, in the model's mode; the model itself is left as it is.

    With a generator, every stored non-integer number is moved by its storage precision (see the module
    docstring). Raises CopyError (name, value, expected, fix) when no path can make the copy; `copy_path(copy)`
    says which path ran.
    """
    was = model.training
    stored = {n: t.dtype for n, t in stored_tensors(model)}
    failures: list[str] = []
    twin: nn.Module | None = None
    how = ""
    for key, text in PATHS:
        try:
            model.train()  # escnn's eval-mode caches are non-leaf tensors, which deepcopy refuses
            try:
                if key == "factory":
                    candidate = _rebuild(model)
                else:
                    if key == "detached" and not any(t.grad_fn is not None for _, _, _, t in _plain_tensor_slots(model)):
                        continue  # nothing to detach: the plain deepcopy already said why it failed
                    candidate = _deepcopy(model, detach_nonleaf=key == "detached")
            finally:
                model.train(was)
            candidate = candidate.to(torch.float64)
            cast = _cast_plain(candidate, torch.float64)
            left = _not_float64(candidate)
            if left:
                raise TypeError(f"the copy still holds {left[:3]} in another dtype")
            twin = candidate
            how = text + (f", and {cast} plain tensor attribute(s) cast too" if cast else "")
            break
        except Exception as exc:  # this path cannot copy the module: the next one may
            failures.append(f"{key}: {type(exc).__name__}: {exc}")
    if twin is None:
        raise CopyError(
            f"float64 copy of {type(model).__name__}", "; ".join(failures),
            "a module that can be deep-copied, or one built from a registered architecture (its factory is re-run "
            "and the trained state dict loaded)",
            "register constant tensors as buffers and keep computed tensors out of the module's attributes (or detach "
            "them), so that copy.deepcopy(model) works; or check the model through its registered architecture",
        )
    if generator is not None:
        _perturb(twin, stored, generator)
    twin.train()
    twin.train(was)  # eval(): escnn recomputes its cached filters from the (moved) float64 numbers
    _PATHS[twin] = how
    _STORED[twin] = stored
    return twin


def _perturb(twin: nn.Module, stored: dict[str, torch.dtype], generator: torch.Generator) -> None:
    move_stored(stored_tensors(twin), stored, generator)


def move_stored(tensors: Sequence[tuple[str, torch.Tensor]], stored: Mapping[str, torch.dtype],
                generator: torch.Generator) -> None:
    """Move every stored non-integer number of (float64) tensors by the precision it was stored in, in place: by
    eps(stored dtype)·u·(|θ| + rms) with u uniform in [−1, 1] (the one storage-precision draw of the project)."""
    with torch.no_grad():
        for name, t in tensors:
            kind = stored.get(name, torch.float32)
            if not t.is_floating_point() or not kind.is_floating_point:
                continue
            free = t != torch.round(t)  # integers (0, ±1, masks) are exact in every format
            if not bool(free.any()):
                continue
            rms = t.pow(2).mean().sqrt()
            u = (torch.rand(t.shape, generator=generator, dtype=torch.float64) * 2 - 1).to(t.device)
            t.add_(float(torch.finfo(kind).eps) * u * (t.abs() + rms) * free)


def rounding_draw(t: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A copy of float64 `t` whose samples `rows` (a mask on the first axis) are moved as float64 rounding moves a
    computed number: by eps64·u·(|v| + rms of the sample), u uniform in [−1, 1]. What a group action's own round-off
    (a rotation's rounded entries and dot products) does to the oracle is measured with it, like the storage draws."""
    if not bool(rows.any()):
        return t
    sub = t[rows]
    rms = sub.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (sub.dim() - 1)))
    u = (torch.rand(sub.shape, generator=generator, dtype=torch.float64) * 2 - 1).to(t.device)
    out = t.clone()
    out[rows] = sub + float(torch.finfo(torch.float64).eps) * u * (sub.abs() + rms)
    return out


def stored_precision(model: nn.Module) -> dict[str, int]:
    """How many stored non-integer numbers the model keeps per dtype (what the storage draws move)."""
    out: dict[str, int] = {}
    for _, t in stored_tensors(model):
        n = int((t != torch.round(t)).sum())
        if n:
            key = str(t.dtype).replace("torch.", "")
            out[key] = out.get(key, 0) + n
    return out
