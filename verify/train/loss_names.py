"""What a task's training loss is called, for reports and the CLI (kept out of training.py: the training fingerprint
hashes that file's text, and a label changes no trained model)."""
from __future__ import annotations

from typing import Any

MSE = "MSE"


def loss_label(task: Any) -> str:
    """The task's own name for its loss (`loss_name`), else "MSE" for a task the trainer scores by mean squared error
    (no `loss`, no `model_loss`), else "loss" (a custom loss the task does not name)."""
    name = getattr(task, "loss_name", None)
    if isinstance(name, str) and name.strip():
        return name.strip()
    if getattr(task, "loss", None) is None and not callable(getattr(task, "model_loss", None)):
        return MSE
    return "loss"


def loss_phrase(task: Any, final: float | str, held_out: float | str) -> str:
    """"final training MSE 1e-3, held-out MSE 2e-3", or for another loss "final training loss (negative
    log-likelihood, nats per input) 1.1, held-out 1.2": the number is never called an MSE when it is not one."""
    label = loss_label(task)
    if label == MSE:
        return f"final training MSE {final}, held-out MSE {held_out}"
    return f"final training loss ({label}) {final}, held-out {held_out}"
