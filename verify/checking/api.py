"""check(): the Python API. Declare → derive → train (or load) → check, returning the evidence as data."""
from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import sympy
import torch

from verify.properties.base import MapProperty
from verify.checking.binding_stage import bind_stage, resolve_layers
from verify.declare.claims import Claim, as_claim
from verify.derive.proofs import DEFAULT_TIME_LIMIT, block_latex
from verify.checking.domains import Domain
from verify.errors import InputError, VerifyError, describe, explain
from verify.evidence import Binding, Evidence, Failure, Note, Verdict, combine
from verify.declare.registry import Architecture, get, get_task
from verify.checking.search import Budget
from verify.declare.subject import Settings, Subject
from verify.train.training import Trained, load_checkpoint, save_checkpoint, train_cached


@dataclass
class ClaimResult:
    claim: Claim
    verdict: Verdict
    symbolic: Evidence | None
    numeric: Evidence | None
    binding: Evidence | None = None

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
            "binding": None if self.binding is None else self.binding.to_dict(),
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
    options: dict[str, Any] = field(default_factory=dict)  # the settings that shaped the evidence (for reproduce lines)

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


def failure(stage: str, exc: BaseException, subject: str = "the model") -> Failure:
    """An exception from a model, its library, a property or a stage, as `error` evidence: the exception, the stage,
    and the fix where the cause is known (verify.errors.explain)."""
    summary, expected, fix = explain(exc, stage, subject)
    return Failure(stage=stage, verdict=Verdict.ERROR, summary=summary, expected=expected, fix=fix,
                   exception="" if isinstance(exc, VerifyError) else describe(exc))


def _guarded(stage: str, fn: Callable[[], Evidence | None], subject: str = "the model") -> Evidence | None:
    """A property's own stage; bad input, and any exception from a user's model or a library, becomes `error` evidence."""
    try:
        return fn()
    except Exception as exc:  # a traceback is not a verdict: the check could not run, and says where and why
        return failure(stage, exc, subject)


def check(
    target: str | Architecture | torch.nn.Module,
    claims: Sequence[object] | None = None,
    *,
    size: str = "quick",
    seed: int = 0,
    model: torch.nn.Module | None = None,
    checkpoint: Path | str | None = None,
    checkpoint_dir: Path | str | None = None,
    domain: Domain | None = None,
    dim: int | None = None,
    symbolic: bool = True,
    numeric: bool = True,
    time_limit: float = DEFAULT_TIME_LIMIT,
    budget: Budget | None = None,
    n_inputs: int | None = None,
    max_examples: int | None = None,
    rollout_steps: int = 10_000,
    device: str | None = None,
    progress: bool = False,
) -> ArchitectureResult:
    """Check the claims of an architecture (by name or object) or of a bare module.

    The model comes from `model`, else `checkpoint` (a folder), else training
    (saved into `checkpoint_dir` when given). Every claim goes through the same
    protocol: `property.symbolic(subject)`, `property.numeric(subject, domain,
    settings)`, and, where a proof rests on a symbolic form, the binding of that
    form to the module. Nothing here raises on a bad model or claim: failures
    become `error`/`undecided` evidence with a message.
    """
    from verify.checking.rollout import rollout

    start = time.perf_counter()
    _validate_options(seed=seed, n_inputs=n_inputs, max_examples=max_examples, time_limit=time_limit,
                      rollout_steps=rollout_steps)
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
    # the caller's budget, else the one the size declares (a high-dimensional model's affordable search), else the
    # engine's default
    declared = arch.size(size).budget if arch is not None and size in arch.sizes else None
    from_size = budget is None and declared is not None  # (--inputs/--examples may still replace two of its fields)
    budget = budget or declared or Budget()
    if n_inputs is not None or max_examples is not None:
        budget = dataclasses.replace(budget, n_inputs=budget.n_inputs if n_inputs is None else n_inputs,
                                     examples=budget.examples if max_examples is None else max_examples)
    settings = Settings(seed=seed, budget=budget)
    result.options = {"seed": seed, "n_inputs": budget.n_inputs, "max_examples": budget.examples, "time_limit": time_limit,
                      "budget": dataclasses.asdict(budget), "budget_declared_by_size": from_size,
                      "rollout_steps": rollout_steps, "symbolic": symbolic, "numeric": numeric, "device": device}

    try:
        blocks = arch.symbolic_blocks(size) if arch else []
    except VerifyError:
        raise  # a wrong size name: the caller's input, reported with its fix
    except Exception as exc:  # the user's blocks= function raised: every claim's symbolic stage has no form
        blocks = []
        result.errors.append(f"symbolic form of {name}: blocks() raised {type(exc).__name__}: {exc}")
    try:
        result.blocks_latex = [(b.name, b.description, block_latex(b)) for b in blocks]
    except Exception as exc:  # a broken block program: the symbolic stage reports it per claim
        result.errors.append(f"symbolic form of {name}: {type(exc).__name__}: {exc}")

    with arch.declared_defaults() if arch is not None else contextlib.nullcontext():
        trained: Trained | None = None
        train_failure: Failure | None = None
        if numeric and model is None:
            try:
                if checkpoint is not None:
                    trained = load_checkpoint(checkpoint, arch, device=device)
                else:
                    trained = train_cached(arch, size, seed=seed, device=device, progress=progress)
                    if checkpoint_dir is not None:
                        trained.checkpoint = str(save_checkpoint(trained, arch, Path(checkpoint_dir)))
                model = trained.model
            except Exception as exc:  # a user's model or a library raised while training: a verdict, not a traceback
                train_failure = failure("training", exc, name)
                result.errors.append(f"training {name} failed: {train_failure.summary}"
                                     + (f". Expected: {train_failure.expected}. Fix: {train_failure.fix}"
                                        if not isinstance(exc, VerifyError) else ""))
        result.trained = trained

        task = get_task(arch.task_for(size)) if arch and arch.task_for(size) else None
        if dim is None:
            dim = (arch.size(size).config.get("dim") if arch else None) or getattr(task, "dim", None)
            dim = dim or next((c.property.dim for c in claim_list if c.property.dim), None) or getattr(model, "dim", None)
        subject = Subject(name=name, architecture=arch, size=size, model=model if numeric else None, task=task, dim=dim,
                          depth=_depth(model) if model is not None else 1, blocks=blocks,
                          scheme=arch.scheme if arch else None, time_limit=time_limit,
                          training_records=trained.records if trained is not None else None)
        if symbolic:
            try:
                resolve_layers(subject, arch, size, wants_layers=any(isinstance(c.property, MapProperty) for c in claim_list))
            except Exception as exc:  # recorded: every claim whose proof needs the binding gets it as an error
                subject.notes["layers"] = exc
        bindings: dict[Any, Evidence | None] = {}

        for claim in claim_list:
            prop = claim.property
            claim_domain, domain_failure = (domain, None) if domain is not None else _guarded_domain(prop, subject)
            sym = _guarded("symbolic", lambda: prop.symbolic(subject)) if symbolic else None
            bind = None
            if sym is not None and sym.verdict is Verdict.PROVED and not prop.binds_itself:
                key = claim_domain.describe() if claim_domain is not None else None
                # the twin's forward and inverse are bound once per domain, whichever claims rest on them (one module,
                # one float64 copy, one set of layers per check); a LogDet proof also binds the twins' reported log-dets
                # to the module's (log_det: its methods): that part is searched per claim, beside the shared one
                shared = repr((key, None))
                fresh = shared not in bindings
                if fresh:
                    bindings[shared] = _guarded("binding", lambda: bind_stage(subject, arch, size, claim_domain, settings))
                bind = bindings[shared]
                log_det = getattr(prop, "binds_log_det", None)
                if log_det is not None and isinstance(bind, Binding):
                    own = repr((key, log_det))
                    if own not in bindings:
                        twin = bind
                        bindings[own] = _guarded("binding", lambda: bind_stage(subject, arch, size, claim_domain,
                                                                               settings, log_det=log_det, twin=twin))
                        if fresh and bindings[own] is not None:  # the shared search ran for this claim: its time too
                            bindings[own] = dataclasses.replace(bindings[own],
                                                                seconds=bindings[own].seconds + twin.seconds)
                    bind = bindings[own]
            num: Evidence | None = None
            if numeric:
                if model is None:
                    num = train_failure or Failure(stage="numeric", verdict=Verdict.ERROR,
                                                   summary="; ".join(result.errors) or "no model",
                                                   expected="a trained model or a loadable checkpoint", fix="see the message")
                elif domain_failure is not None:
                    num = domain_failure
                else:
                    num = _guarded("numeric", lambda: prop.numeric(subject, claim_domain, settings))
            result.results.append(ClaimResult(claim, combine(sym, num, bind), sym, num, bind))

        if numeric and model is not None and task is not None and rollout_steps > 0 and hasattr(task, "energy"):
            try:
                result.rollout = rollout(model, task, steps=rollout_steps)
            except Exception as exc:  # the rollout informs; its failure is reported, not hidden
                result.errors.append(f"rollout: {failure('rollout', exc, name).summary}")
        dev = trained.device if trained else (str(next(model.parameters()).device) if model is not None and any(True for _ in model.parameters()) else "cpu")
    result.environment = environment(seed, dev)
    result.seconds = time.perf_counter() - start
    return result


def _validate_options(*, seed: int, n_inputs: int | None, max_examples: int | None, time_limit: float,
                      rollout_steps: int) -> None:
    """The numeric options of check(), refused with a fix before anything runs (the CLI checks its own spelling)."""
    import math
    import numbers

    def whole(name: str, value: object, low: int, example: str, high: int | None = None) -> None:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
        if not ok:
            span = f"from {low} to {high}" if high is not None else f">= {low}"
            raise InputError(name, value, f"a whole number {span}", f"pass e.g. {name}={example}")

    whole("seed", seed, 0, "0", 2 ** 32 - 1)
    if n_inputs is not None:
        whole("n_inputs", n_inputs, 1, "256 (or None: the engine's budget)")
    if max_examples is not None:
        whole("max_examples", max_examples, 0, "60 (0 skips the hypothesis search)")
    whole("rollout_steps", rollout_steps, 0, "10000 (0 skips the rollout)")
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and time_limit > 0):
        raise InputError("time_limit", time_limit, "a finite number of seconds > 0", "pass e.g. time_limit=20")


def _guarded_domain(prop: Any, subject: Subject) -> tuple[Domain | None, Failure | None]:
    """The claim's domain, or (None, why not): a VerifyError leaves it to the numeric stage to say why there are no
    inputs (no dimension); any other exception from the property is that claim's numeric `error`."""
    try:
        return prop.domain(subject), None
    except VerifyError:
        return None, None
    except Exception as exc:
        return None, failure("numeric (domain)", exc, subject.name)
