"""Stage 4, check: `check()` (the Python API, in `api`), the binding stage, domains and the one search engine, the
numeric stage of map properties, long rollouts."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"check": "api", "ClaimResult": "api", "ArchitectureResult": "api"}


def __getattr__(name: str) -> Any:  # lazy: properties import the engine's small modules and the engine imports them
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
