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


# --------------------------------------------------------------------------- exceptions from models and libraries
def where_raised(exc: BaseException) -> str:
    """file:line (function) of the frame that raised, shortened to the package path."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    if not frames:
        return ""
    f = frames[-1]
    path = f.filename
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{f.lineno} ({f.name})"


def describe(exc: BaseException) -> str:
    """`Type: message (raised at file:line)` of an exception, for the evidence."""
    where = where_raised(exc)
    return f"{type(exc).__name__}: {exc}" + (f" (raised at {where})" if where else "")


def explain(exc: BaseException, stage: str, subject: str = "the model") -> tuple[str, str, str]:
    """(summary, expected, fix) for an exception raised by a model, its library, a property or a stage.

    The project's own errors carry their own; a known cause from library code gets its known fix; anything else is
    reported as it is, with the stage it came from (a traceback is not a verdict)."""
    import re

    msg = str(exc)
    if isinstance(exc, VerifyError):
        return msg, getattr(exc, "expected", ""), getattr(exc, "fix", "")
    head = f"{type(exc).__name__} in the {stage} stage of {subject}: {msg}"
    missing = re.search(r"missing (\d+) required (?:positional |keyword-only )?arguments?: (.+)", msg)
    if isinstance(exc, TypeError) and missing:
        names = re.findall(r"'(\w+)'", missing.group(2))
        call = ", ".join(f"{n}=..." for n in names)
        return (f"{subject} needs the argument(s) {', '.join(repr(n) for n in names)} that the checker cannot supply "
                f"({type(exc).__name__}: {msg})",
                "forward(x) that maps one batch of shape (B, n) to (B, n) with no further argument",
                f"wrap the module so that forward(x) supplies {', '.join(names)}: "
                f"`def forward(self, x): return self.net(x, {call})` (and inverse likewise), and check the wrapper")
    if re.search(r"expected (?:scalar type|both|m1 and m2 to have the same dtype)|must have the same dtype|"
                 r"Found dtype|dtype.*but got|same dtype|different dtypes", msg, re.IGNORECASE):
        return (head, "one floating dtype in the model, its constants and its inputs",
                "cast the model with model.to(dtype) and register constant tensors as buffers (self.register_buffer), "
                "so that .to() moves them too: a plain tensor attribute keeps the dtype it was made in (a library that "
                "calls torch.set_default_dtype on import makes its own tensors in that dtype)")
    if "graph leaves" in msg and "deepcopy" in msg:
        return (head, "a module that can be deep-copied",
                "keep computed (non-leaf) tensors out of the module's attributes, or detach them; register constants "
                "as buffers")
    if "storage of size 0" in msg or "setStorage" in msg:
        return (head, "a module that leaves the tensors it is given intact",
                "the module frees or resizes its input (memcnn's InvertibleModuleWrapper(keep_input=False) does, to save "
                "memory): the checker calls it on fresh copies; if this persists, build it with keep_input=True and "
                "keep_input_inverse=True for checking")
    if "setup_context" in msg or "functorch" in msg.lower():
        return (head, "an autograd.Function that torch.func can transform (it overrides setup_context)",
                "the checker falls back to per-sample autograd for such functions; if this still fails, give the "
                "autograd.Function a setup_context staticmethod (torch >= 2.0 style)")
    if "not compatible with .grad()" in msg:
        return (head, "a model that torch.autograd can differentiate",
                "the checker computes Jacobians with .backward() for checkpointing functions; if this still fails, "
                "disable the checkpointing for checking (memcnn: InvertibleModuleWrapper(..., disable=True))")
    if "empty parameter list" in msg:
        return (head, "a model with parameters to train", "a parameter-free model needs no training: check it directly "
                "with check(model, claims=[...]) or give it a task-free size")
    if isinstance(exc, NotImplementedError):
        return (head, "every method the claim needs to be implemented",
                "implement the method named in the message, or drop the claim that needs it")
    return (head, f"a {stage} stage that runs", "see the message: the model or a library raised it (where: "
            f"{where_raised(exc) or 'unknown'})")
