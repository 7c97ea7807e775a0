"""A symbolic-plus-numeric verifier for structure-preserving neural networks.

    from verify import check, architecture, Size
    from properties import Symplectic
    result = check("g-sympnet")          # evidence as data
    result.result("Symplectic").verdict  # Verdict.PROVED
"""
from verify.evidence import Evidence, Failure, Measurement, Note, Proof, Refutation, Verdict
from verify.registry import Architecture, Size, architecture, register_task
from verify.symbolic import Builder, SymbolicBlock
from verify.claims import Claim
from verify.check import ArchitectureResult, ClaimResult, check

__all__ = [
    "Architecture", "ArchitectureResult", "Builder", "Claim", "ClaimResult", "Evidence", "Failure", "Measurement",
    "Note", "Proof", "Refutation", "Size", "SymbolicBlock", "Verdict", "architecture", "check", "register_task",
]
