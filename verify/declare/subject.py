"""What a property's stages are given: the subject of a check and the settings of its search.

The engine builds one Subject per architecture (or bare module) and hands it to every claim's
`symbolic` and `numeric` stage; the properties read what they need from it and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from verify.checking.search import Budget
from verify.derive.symbolic import SymbolicBlock


@dataclass
class Subject:
    """The thing being checked.

    `model` is the trained (or loaded, or given) module, None when the numeric stage is off; `blocks`
    are the symbolic layer types to prove (the distinct blocks of the layers bound to the module when the
    binding succeeded, else the declared ones); `scheme` the catalogued scheme the network declares.
    """

    name: str
    architecture: Any | None = None
    size: str = "quick"
    model: torch.nn.Module | None = None
    task: Any | None = None
    dim: int | None = None
    depth: int = 1
    blocks: Sequence[SymbolicBlock] = ()
    scheme: str | None = None
    time_limit: float = 20.0
    notes: dict[str, Any] = field(default_factory=dict)
    # per claim name, what the claim's property recorded while the model trained (Trained.records); None when the
    # model did not come from the verifier's trainer (a module passed in): a claim about every iterate is then `error`
    training_records: dict[str, Any] | None = None


@dataclass(frozen=True)
class Settings:
    """How the numeric stage searches: every random choice follows from `seed`."""

    seed: int = 0
    budget: Budget = Budget()
