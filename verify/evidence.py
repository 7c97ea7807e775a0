"""Verdicts and the evidence behind them.

Checkers return these objects; the report, the command line and the pytest
helpers all read them, so a verdict is never computed twice in two ways.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


class Verdict(str, enum.Enum):
    """Outcome of checking one claim.

    PROVED: exact symbolic proof for all parameters (and, when run, the numeric
    stage agrees). HOLDS: numerically within the stated tolerance. VIOLATED:
    refuted, symbolically or numerically. UNDECIDED: a step timed out or is not
    supported. ERROR: the check itself could not run.
    """

    PROVED = "proved"
    HOLDS = "holds"
    VIOLATED = "violated"
    UNDECIDED = "undecided"
    ERROR = "error"

    @property
    def passed(self) -> bool:
        return self in (Verdict.PROVED, Verdict.HOLDS)

    def __str__(self) -> str:
        return self.value


def combine(symbolic: "Evidence | None", numeric: "Evidence | None", binding: "Evidence | None" = None) -> Verdict:
    """The claim's verdict from its stages.

    A refutation anywhere wins (the trained implementation is what we check, so a proof of
    the block does not excuse a violating network, and a symbolic form that does not describe
    the module is a violation of the claim as declared); a stage that could not run makes the
    claim `error`. `proved` needs a proof that is *bound* to the code that runs (the binding
    held, or the proof itself was made on the module's own weights), and, when the numeric stage
    ran, its agreement. An unbound proof counts for nothing: the verdict is then the numeric one.
    """
    verdicts = [e.verdict for e in (symbolic, numeric, binding) if e is not None]
    if not verdicts:
        return Verdict.UNDECIDED
    if Verdict.VIOLATED in verdicts:
        return Verdict.VIOLATED
    if Verdict.ERROR in verdicts:
        return Verdict.ERROR
    num = numeric.verdict if numeric is not None else None
    if symbolic is not None and symbolic.verdict is Verdict.PROVED and num in (None, Verdict.HOLDS) and is_bound(symbolic, binding):
        return Verdict.PROVED
    if num is Verdict.HOLDS:
        return Verdict.HOLDS
    return Verdict.UNDECIDED


def is_bound(symbolic: "Evidence", binding: "Evidence | None") -> bool:
    """A proof counts only for the code it was bound to: by a binding that held, or by construction."""
    if binding is not None:
        return binding.verdict in (Verdict.HOLDS, Verdict.PROVED)
    return bool(getattr(symbolic, "bound_by", ""))


def _plain(value: Any) -> Any:
    """JSON-friendly copy of evidence fields (tuples, enums, floats that are inf/nan)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclass(frozen=True)
class Evidence:
    """What one stage of a check produced."""

    stage: str  # "symbolic" | "numeric" | "rollout" | ...
    verdict: Verdict
    summary: str
    seconds: float = 0.0

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()

    def to_dict(self) -> dict[str, Any]:
        data = _plain(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class BlockResult:
    """The symbolic obligation of one layer type."""

    block: str
    verdict: Verdict | None  # None for a Note, which informs but does not judge
    obligation: str  # LaTeX of the identity that was tested
    residual: str  # LaTeX of the simplified residual ("0" for a proof)
    seconds: float
    instance: Mapping[str, Any] | None = None  # concrete numbers where the residual is non-zero
    legend: Mapping[str, str] = field(default_factory=dict)  # symbol -> what it stands for
    message: str = ""


@dataclass(frozen=True)
class Proof(Evidence):
    """Exact symbolic proof: every layer lemma reduced to 0, lifted by composition."""

    statement: str = ""  # LaTeX
    lemma: str = ""  # the composition lemma that lifts layer proofs to the network
    blocks: Sequence[BlockResult] = ()
    # set when the proof was made on the module's own trained numbers (e.g. the kernel constraint on its
    # expanded filters, the stability bound on its trained W): then it needs no separate binding
    bound_by: str = ""


@dataclass(frozen=True)
class Refutation(Evidence):
    """Exact non-zero residual of a layer obligation, with a concrete numeric instance."""

    statement: str = ""
    blocks: Sequence[BlockResult] = ()


@dataclass(frozen=True)
class Measurement(Evidence):
    """Numeric defects of a trained model over many drawn inputs."""

    property: str = ""
    defect: str = ""  # what was measured, in words/LaTeX
    dtype: str = ""
    device: str = ""
    seed: int = 0
    n_inputs: int = 0
    max_defect: float = math.nan
    quantiles: Mapping[str, float] = field(default_factory=dict)
    worst_input: Sequence[float] = ()
    tolerance: float = math.nan
    tolerance_formula: str = ""
    max_defect_float64: float = math.nan
    tolerance_float64: float = math.nan
    classification: str = ""  # "none" | "structural" | "round-off"
    counterexample: Sequence[float] | None = None
    counterexample_defect: float | None = None
    search: Mapping[str, Any] = field(default_factory=dict)
    defects_sample: Sequence[float] = ()  # for plots (model dtype)
    defects_sample_float64: Sequence[float] = ()


@dataclass(frozen=True)
class Failure(Evidence):
    """A stage that could not run (verdict ERROR) or did not finish (UNDECIDED)."""

    expected: str = ""
    fix: str = ""
    exception: str = ""  # `Type: message (raised at file:line)` when an exception stopped the stage


@dataclass(frozen=True)
class Note(Evidence):
    """Information that is not a verdict on the claim (e.g. a long-rollout energy error)."""

    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding(Evidence):
    """Whether a symbolic form describes the module that runs: the form, instantiated with the module's own
    parameters and functions, against the module's forward (and inverse) over the searched inputs."""

    method: str = ""  # "hand-written twin bound by name" | "generated from the code (torch.fx)" | "scheme stepped by the engine"
    layers: Sequence[str] = ()
    n_inputs: int = 0
    max_mismatch: float = math.nan
    tolerance: float = math.nan
    tolerance_formula: str = ""
    worst_input: Sequence[float] = ()
    where: str = ""  # which layer / part disagrees first
    search: Mapping[str, Any] = field(default_factory=dict)
    expected: str = ""
    fix: str = ""


_NUM = r"(?<![\w.])[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan)(?![\w.])"
# `a ≤ b`, `a > b`, and `a > tolerance b` (one word between): the relations a message states between two numbers
_RELATION = re.compile(rf"({_NUM}) (≤|>) (?:[A-Za-z][\w-]* )?({_NUM})")


def contradictions(text: str) -> list[str]:
    """The relations `a ≤ b` / `a > b` in a message that its own numbers contradict (a message must never say
    `5.24e-08 > 1.91e-06`)."""
    bad = []
    for a, rel, b in _RELATION.findall(text):
        x, y = float(a), float(b)
        if not ((x <= y) if rel == "≤" else (x > y)):
            bad.append(f"{a} {rel} {b}")
    return bad
