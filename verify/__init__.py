"""A symbolic-plus-numeric verifier for structure-preserving neural networks.

    from verify import check
    result = check("g-sympnet")          # evidence as data
    result.result("Symplectic").verdict  # Verdict.PROVED

Names are loaded on first use, so that `verify.properties` and the engine can import
each other's small modules in either order.

The folders `models/` and `properties/` sit beside `verify/` in the checkout (the
project's layout fixes them there) but import as `verify.models` and
`verify.properties`, so that a user's own `models` package never clashes with ours. An
installed wheel maps them with setuptools' package-dir; in a checkout (run from the
working folder, or an editable install) the finder below maps the two names to the
sibling folders, and nothing else.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_SIBLINGS = {f"verify.{name}": _HERE.parent / name for name in ("models", "properties")
             if not (_HERE / name).is_dir() and (_HERE.parent / name / "__init__.py").is_file()}


class _SiblingFolders(importlib.abc.MetaPathFinder):
    """Finds verify.models and verify.properties in the checkout's top-level folders (their submodules then
    resolve through the package's own __path__)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        folder = _SIBLINGS.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


if _SIBLINGS and not any(isinstance(f, _SiblingFolders) for f in sys.meta_path):
    sys.meta_path.insert(0, _SiblingFolders())

_EXPORTS = {
    "Evidence": "verify.evidence", "Failure": "verify.evidence", "Measurement": "verify.evidence",
    "Note": "verify.evidence", "Proof": "verify.evidence", "Refutation": "verify.evidence", "Verdict": "verify.evidence",
    "Architecture": "verify.declare.registry", "Size": "verify.declare.registry", "architecture": "verify.declare.registry",
    "register_task": "verify.declare.registry", "unregister": "verify.declare.registry",
    "get_task": "verify.declare.registry", "all_architectures": "verify.declare.registry", "Builder": "verify.derive.symbolic", "SymbolicBlock": "verify.derive.symbolic",
    "Bound": "verify.derive.binding",
    "Claim": "verify.declare.claims", "ArchitectureResult": "verify.checking.api", "ClaimResult": "verify.checking.api", "check": "verify.checking.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
