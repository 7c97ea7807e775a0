"""A symbolic-plus-numeric verifier for structure-preserving neural networks.

    from verify import check
    result = check("g-sympnet")          # evidence as data
    result.result("Symplectic").verdict  # Verdict.PROVED

Names are loaded on first use, so that `properties` and `verify` can import each
other's small modules in either order.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Evidence": "verify.evidence", "Failure": "verify.evidence", "Measurement": "verify.evidence",
    "Note": "verify.evidence", "Proof": "verify.evidence", "Refutation": "verify.evidence", "Verdict": "verify.evidence",
    "Architecture": "verify.registry", "Size": "verify.registry", "architecture": "verify.registry",
    "register_task": "verify.registry", "Builder": "verify.symbolic", "SymbolicBlock": "verify.symbolic",
    "Bound": "verify.binding",
    "Claim": "verify.claims", "ArchitectureResult": "verify.checking", "ClaimResult": "verify.checking", "check": "verify.checking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
