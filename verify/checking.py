"""check(): the Python API. Declare → derive → train (or load) → check, returning the evidence as data."""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import sympy
import torch

from verify.claims import Claim, as_claim
from verify.derive import DEFAULT_TIME_LIMIT, block_latex, derive, derive_scheme
from verify.errors import InputError, VerifyError
from verify.evidence import Evidence, Failure, Note, Verdict, combine
from verify.numeric import SearchSpace, measure
from verify.registry import Architecture, get, get_task
from verify.training import Trained, load_checkpoint, train


@dataclass
class ClaimResult:
    claim: Claim
    verdict: Verdict
    symbolic: Evidence | None
    numeric: Evidence | None

    @property
    def as_expected(self) -> bool:
        """A genuine claim must be proved or hold; a control's false claim must be violated."""
        return self.verdict.passed if self.claim.expected else self.verdict is Verdict.VIOLATED

    @property
    def symbolic_text(self) -> str:
        return "no symbolic form (numeric only)" if self.symbolic is None else self.symbolic.summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "property": self.claim.name,
            "claimed_true": self.claim.expected,
            "control_reason": self.claim.reason,
            "verdict": self.verdict.value,
            "as_expected": self.as_expected,
            "symbolic": None if self.symbolic is None else self.symbolic.to_dict(),
            "numeric": None if self.numeric is None else self.numeric.to_dict(),
        }


@dataclass
class ArchitectureResult:
    name: str
    size: str
    results: list[ClaimResult]
    trained: Trained | None = None
    rollout: Note | None = None
    blocks_latex: list[tuple[str, str, str]] = field(default_factory=list)  # (name, description, latex)
    errors: list[str] = field(default_factory=list)  # stage failures outside any claim (e.g. training)
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    architecture: Architecture | None = None

    @property
    def passed(self) -> bool:
        """Exit-status semantics: every claim as expected and no stage failed."""
        return not self.errors and all(r.as_expected for r in self.results)

    def result(self, prop: str) -> ClaimResult:
        for r in self.results:
            if r.claim.name == prop:
                return r
        raise KeyError(prop)


def environment(seed: int, device: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sympy": sympy.__version__,
        "platform": platform.platform(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": seed,
    }


def _depth(model: torch.nn.Module) -> int:
    depth = getattr(model, "depth", None)
    if isinstance(depth, int) and depth > 0:
        return depth
    return max(1, sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False))))


def _guarded(stage: str, fn: Any) -> Evidence | None:
    """A property's own stage; bad input becomes `error` evidence instead of an exception."""
    try:
        return fn()
    except VerifyError as exc:
        return Failure(stage=stage, verdict=Verdict.ERROR, summary=str(exc),
                       expected=getattr(exc, "expected", ""), fix=getattr(exc, "fix", ""))


def check(
    target: str | Architecture | torch.nn.Module,
    claims: Sequence[object] | None = None,
    *,
    size: str = "quick",
    seed: int = 0,
    model: torch.nn.Module | None = None,
    checkpoint: Path | str | None = None,
    checkpoint_dir: Path | str | None = None,
    space: SearchSpace | None = None,
    dim: int | None = None,
    symbolic: bool = True,
    numeric: bool = True,
    time_limit: float = DEFAULT_TIME_LIMIT,
    n_inputs: int = 2048,
    max_examples: int = 150,
    rollout_steps: int = 10_000,
    device: str | None = None,
    progress: bool = False,
) -> ArchitectureResult:
    """Check the claims of an architecture (by name or object) or of a bare module.

    The model comes from `model`, else `checkpoint` (a folder), else training
    (saved into `checkpoint_dir` when given). Nothing here raises on a bad model
    or claim: failures become `error`/`undecided` evidence with a message.
    """
    from verify.rollout import rollout

    start = time.perf_counter()
    arch: Architecture | None
    if isinstance(target, torch.nn.Module):
        arch, model = None, target
        if not claims:
            raise InputError("claims", claims, "the claims to check for a bare module", "pass claims=[Symplectic()]")
    else:
        arch = get(target) if isinstance(target, str) else target
    claim_list = [as_claim(c) for c in claims] if claims else list(arch.claims)
    name = arch.name if arch else type(model).__name__
    result = ArchitectureResult(name=name, size=size, results=[], architecture=arch)

    blocks = arch.symbolic_blocks(size) if arch else []
    try:
        result.blocks_latex = [(b.name, b.description, block_latex(b)) for b in blocks]
    except Exception as exc:  # a broken block program: the symbolic stage reports it per claim
        result.errors.append(f"symbolic form of {name}: {type(exc).__name__}: {exc}")

    trained: Trained | None = None
    if numeric and model is None:
        try:
            if checkpoint is not None:
                trained = load_checkpoint(checkpoint, arch, device=device)
            else:
                trained = train(arch, size, seed=seed, device=device, progress=progress, out_dir=checkpoint_dir)
            model = trained.model
        except VerifyError as exc:
            result.errors.append(str(exc))
    result.trained = trained

    task = get_task(arch.task) if arch and arch.task else None
    if dim is None:
        dim = (arch.size(size).config.get("dim") if arch else None) or getattr(task, "dim", None)
        dim = dim or next((c.property.dim for c in claim_list if c.property.dim), None) or getattr(model, "dim", None)
    if space is None and dim is not None and (task is None or hasattr(task, "low")):
        space = SearchSpace(task.low, task.high) if task else SearchSpace([-1.0] * dim, [1.0] * dim)

    for claim in claim_list:
        sym = None
        if symbolic:
            if arch is not None and hasattr(claim.property, "derive_symbolic"):
                # properties with their own symbolic form (e.g. the steerable-kernel constraint of Equivariant)
                sym = _guarded("symbolic", lambda: claim.property.derive_symbolic(arch, size, time_limit))
            elif arch is not None and arch.scheme is not None:
                sym = _guarded("symbolic", lambda: derive_scheme(claim.property, arch.scheme, time_limit))
            if sym is None and hasattr(claim.property, "derive_trained") and model is not None:
                # exact decisions that need the trained weights (e.g. the largest stable step of a linear layer)
                sym = _guarded("symbolic", lambda: claim.property.derive_trained(model, time_limit))
            if sym is None and not hasattr(claim.property, "derive_symbolic"):
                sym = derive(claim.property, blocks, time_limit)
        num: Evidence | None = None
        if numeric:
            if model is None:
                num = Failure(stage="numeric", verdict=Verdict.ERROR, summary="; ".join(result.errors) or "no model",
                              expected="a trained model or a loadable checkpoint", fix="see the message")
            elif hasattr(claim.property, "measure_model"):
                # properties whose inputs are not phase-space vectors (images, sets, graphs): no `dim` needed
                num = _guarded("numeric", lambda: claim.property.measure_model(model, task=task, seed=seed,
                                                                               max_examples=max_examples))
            elif dim is None:
                num = Failure(stage="numeric", verdict=Verdict.ERROR, summary="dim=None: the phase-space dimension is unknown",
                              expected="dim=... or a claim with dim", fix="pass dim=n to check()")
            else:
                num = measure(claim.property, model, dim=dim, depth=_depth(model), space=space, seed=seed,
                              n_inputs=n_inputs, max_examples=max_examples)
        result.results.append(ClaimResult(claim, combine(sym.verdict if sym else None, num.verdict if num else None), sym, num))

    if numeric and model is not None and task is not None and rollout_steps > 0 and hasattr(task, "energy"):
        try:
            result.rollout = rollout(model, task, steps=rollout_steps)
        except Exception as exc:  # the rollout informs; its failure is reported, not hidden
            result.errors.append(f"rollout: {type(exc).__name__}: {exc}")
    dev = trained.device if trained else (str(next(model.parameters()).device) if model is not None and any(True for _ in model.parameters()) else "cpu")
    result.environment = environment(seed, dev)
    result.seconds = time.perf_counter() - start
    return result
