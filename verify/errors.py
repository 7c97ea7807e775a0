"""Errors raised on bad user input.

Every message names the offending value, says what was expected and how to fix
it, in the style of hypothesis' errors: a user who reads only the message can
repair the call.
"""
from __future__ import annotations


class VerifyError(Exception):
    """Base class of every error this framework raises on purpose."""


class InputError(VerifyError, ValueError):
    """The caller gave something the framework cannot check as given."""

    def __init__(self, what: str, value: object, expected: str, fix: str) -> None:
        self.what = what
        self.value = value
        self.expected = expected
        self.fix = fix
        super().__init__(f"{what}={value!r}: expected {expected}. Fix: {fix}")


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable or does not fit its architecture."""


class SymbolicTimeout(VerifyError, TimeoutError):
    """A sympy step ran past its time limit."""

    def __init__(self, step: str, seconds: float) -> None:
        self.step = step
        self.seconds = seconds
        super().__init__(
            f"symbolic step {step!r} ran past its time limit of {seconds:g} s; "
            "the claim is left undecided. Fix: raise the limit (--symbolic-timeout) or "
            "declare the building block per layer so that the proof stays small"
        )
