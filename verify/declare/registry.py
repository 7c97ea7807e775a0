"""The one registry: architectures with their claims, and the tasks they train on.

Architectures register with the `@architecture(...)` decorator. Third-party
packages register through the entry-point group ``verify.architectures`` (each
entry point names a module whose import registers its architectures), so pytest
and the command find them without editing this project. ``VERIFY_PLUGINS`` (a
comma-separated list of modules) does the same without packaging.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import torch

from verify.declare.claims import Claim, as_claim
from verify.errors import InputError
from verify.derive.symbolic import SymbolicBlock

ENTRY_POINT_GROUP = "verify.architectures"


@dataclass(frozen=True)
class Size:
    """A model configuration and how to train it.

    `optimizer` names the optimiser class by its import path ("torch.optim.Adam", the default, or e.g.
    "geoopt.optim.RiemannianAdam" for a model whose weights live on a manifold), or is a callable
    `(parameters, lr) -> optimizer`; `optimizer_options` are passed to it besides `lr`.
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 300
    lr: float = 1e-2
    n_train: int = 512
    batch: int = 256
    optimizer: str | Callable[..., Any] = "torch.optim.Adam"
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    # the task this size trains and is checked on, where it differs from the architecture's (a task has one dimension:
    # a G-SympNet on a 256- and a 4096-dimensional chain is one architecture with two sizes on two tasks); None: the
    # architecture's own task
    task: str | None = None
    # the search budget (verify.checking.search.Budget) the numeric and binding stages use for this size when the caller
    # gives none; None: the engine's default. For a model whose full Jacobians are costly (a 256-coordinate map costs
    # ~15 ms per input for the Jacobian and as much again for the SVDs of a defect on this CPU) until the matrix-free
    # path exists; the evidence states the budget that ran. Typed Any: the registry does not import the engine's search.
    budget: Any = None

    def make_optimizer(self, parameters: Any) -> Any:
        """The optimiser this size names, on `parameters`; a name that does not resolve is an InputError."""
        from verify.errors import InputError

        factory = self.optimizer
        if isinstance(factory, str):
            module, _, attr = factory.rpartition(".")
            try:
                factory = getattr(importlib.import_module(module), attr) if module else None
            except Exception as exc:  # noqa: BLE001 - any import failure is the same user error
                raise InputError("Size(optimizer=...)", self.optimizer, "an importable optimiser class path",
                                 f"install the package that provides it, or fix the path ({type(exc).__name__}: {exc})") from exc
            if factory is None:
                raise InputError("Size(optimizer=...)", self.optimizer, "a dotted path such as 'torch.optim.Adam'",
                                 "write the full import path of the optimiser class")
        if not callable(factory):
            raise InputError("Size(optimizer=...)", self.optimizer, "an optimiser class path or a callable",
                             "write optimizer='torch.optim.SGD' or optimizer=lambda params, lr: MyOpt(params, lr=lr)")
        return factory(parameters, lr=self.lr, **dict(self.optimizer_options))


@dataclass(frozen=True)
class Architecture:
    """A module class declared with its claims, its task and its symbolic building blocks."""

    name: str
    factory: Callable[..., torch.nn.Module]
    claims: tuple[Claim, ...]
    task: str | None
    sizes: Mapping[str, Size]
    blocks: Callable[[Mapping[str, Any]], Sequence[SymbolicBlock]] | None = None
    composition: str = ""
    reference: str = ""
    description: str = ""
    origin: str = ""
    scheme: str | None = None  # catalogue name of the time-discretisation the network is a step of
    # torch's default dtype when the architecture was declared: it is built, trained and checked under it, so that a
    # library that switches the default on import (strupnet sets float64) gets its own setting and every other
    # architecture keeps its own (load_all restores the default after each plugin)
    default_dtype: torch.dtype = torch.float32

    @property
    def is_control(self) -> bool:
        return any(not c.expected for c in self.claims)

    def size(self, name: str) -> Size:
        if name not in self.sizes:
            raise InputError("size", name, f"one of {sorted(self.sizes)}", "pass --size quick or --size full")
        return self.sizes[name]

    def task_for(self, size: str) -> str | None:
        """The name of the task the given size trains and is checked on: the size's own, else the architecture's."""
        return self.size(size).task or self.task

    def build(self, size: str) -> torch.nn.Module:
        with self.declared_defaults():
            return self.factory(**dict(self.size(size).config))

    def declared_defaults(self) -> "DefaultDtype":
        """A context in which torch's default dtype is the one in force when the architecture was declared."""
        return DefaultDtype(self.default_dtype)

    def symbolic_blocks(self, size: str) -> Sequence[SymbolicBlock]:
        return [] if self.blocks is None else list(self.blocks(self.size(size).config))

    def __repr__(self) -> str:
        claims = ", ".join(str(c) for c in self.claims)
        return f"Architecture({self.name!r}, task={self.task!r}, claims=[{claims}])"


class DefaultDtype:
    """`with DefaultDtype(dtype):` torch.get_default_dtype() is dtype inside, and what it was outside."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.saved: list[torch.dtype] = []

    def __enter__(self) -> "DefaultDtype":
        self.saved.append(torch.get_default_dtype())
        torch.set_default_dtype(self.dtype)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_default_dtype(self.saved.pop())


_ARCHITECTURES: dict[str, Architecture] = {}
_TASKS: dict[str, Any] = {}
_loaded = False

M = TypeVar("M")


def register(arch: Architecture) -> Architecture:
    old = _ARCHITECTURES.get(arch.name)
    if old is not None and old.origin != arch.origin:
        raise InputError(
            "architecture name", arch.name, "a name not yet registered",
            f"{arch.name!r} is already registered by {old.origin}; choose another name",
        )
    _ARCHITECTURES[arch.name] = arch
    return arch


def unregister(name: str) -> None:
    _ARCHITECTURES.pop(name, None)


def architecture(
    name: str,
    *,
    claims: Iterable[object],
    task: str | None = None,
    sizes: Mapping[str, Size] | None = None,
    blocks: Callable[[Mapping[str, Any]], Sequence[SymbolicBlock]] | None = None,
    composition: str = "",
    reference: str = "",
    description: str = "",
    scheme: str | None = None,
) -> Callable[[M], M]:
    """Declare a torch module class as an architecture with typed claims.

    >>> @architecture("my-shear", claims=[Symplectic()], task="pendulum")
    ... class MyShear(torch.nn.Module): ...
    """
    claim_list = tuple(as_claim(c) for c in claims)
    if not claim_list:
        raise InputError("claims", [], "at least one claim", "write claims=[Symplectic()] (or another property)")
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise InputError("name", name, "letters, digits, '-', '_' or '.'", "it becomes a folder under reports/")

    def wrap(cls: M) -> M:
        if not callable(cls):
            raise InputError("architecture target", cls, "a torch.nn.Module class or factory", "decorate the class")
        doc = (getattr(cls, "__doc__", None) or "").strip().split("\n\n")[0]
        register(Architecture(
            name=name, factory=cls, claims=claim_list, task=task,
            sizes=dict(sizes or {"quick": Size(), "full": Size()}), blocks=blocks,
            composition=composition, reference=reference, description=description or " ".join(doc.split()), scheme=scheme,
            origin=f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}",
            default_dtype=torch.get_default_dtype(),
        ))
        return cls

    return wrap


def register_task(task: M) -> M:
    _TASKS[getattr(task, "name")] = task
    return task


def get_task(name: str) -> Any:
    load_all()
    if name not in _TASKS:
        raise InputError("task", name, f"one of {sorted(_TASKS)}", "register the task with register_task() first")
    return _TASKS[name]


_LOAD_ERRORS: list[str] = []
PLUGIN_NOTES: list[str] = []  # side effects of plugin imports that were undone (shown by `verify list`)


def _load_plugin(label: str, load: Callable[[], Any]) -> None:
    """Import one plugin module; a change it makes to torch's default dtype is recorded and undone afterwards (its
    own architectures, declared while it was in force, keep it: Architecture.default_dtype). Raises InputError when
    the module does not import."""
    before = torch.get_default_dtype()
    try:
        load()
    except Exception as exc:
        raise InputError(
            "plugin", label, "an importable module that registers architectures",
            f"it raised {type(exc).__name__}: {exc}; install what it needs, or remove it from the entry points / "
            "VERIFY_PLUGINS",
        ) from exc
    finally:
        after = torch.get_default_dtype()
        if after != before:
            torch.set_default_dtype(before)
            PLUGIN_NOTES.append(
                f"plugin {label} set torch's default dtype to {str(after).replace('torch.', '')} on import; its "
                f"architectures are built, trained and checked under it, every other one under "
                f"{str(before).replace('torch.', '')} (restored after the import)")


def load_plugin(module: str, source: str, load: Callable[[], Any] | None = None) -> bool:
    """Import one plugin module (see _load_plugin); a module that does not import is recorded (one line naming it,
    see `load_errors`) instead of ending every command, so the other architectures still run."""
    try:
        _load_plugin(f"{module} ({source})", load or (lambda: importlib.import_module(module)))
        return True
    except InputError as exc:  # ModuleNotFoundError, a SyntaxError in the plugin, a duplicate name, ...
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        _LOAD_ERRORS.append(f"plugin {module!r} ({source}) did not import: {type(cause).__name__}: {first}; its "
                            f"architectures are not registered. Fix: install it or correct the name ({source})")
        return False


def load_errors() -> list[str]:
    """One line per plugin module that did not import (entry points, VERIFY_PLUGINS, --plugin)."""
    return list(_LOAD_ERRORS)


def load_all() -> None:
    """Import the built-in models, the entry-point plugins and VERIFY_PLUGINS modules (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("verify.models")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        load_plugin(ep.value, f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP}", ep.load)
    for mod in filter(None, (m.strip() for m in os.environ.get("VERIFY_PLUGINS", "").split(","))):
        load_plugin(mod, "VERIFY_PLUGINS")


def all_architectures() -> list[Architecture]:
    load_all()
    return list(_ARCHITECTURES.values())


def get(name: str) -> Architecture:
    load_all()
    if name not in _ARCHITECTURES:
        broken = (f"; {len(_LOAD_ERRORS)} plugin module(s) did not import, see the warning line(s) above"
                  if _LOAD_ERRORS else "")
        raise InputError("architecture", name, f"one of {sorted(_ARCHITECTURES)}", f"run `verify list` to see them{broken}")
    return _ARCHITECTURES[name]
