"""Run a computation under a wall-clock limit without ever hanging.

In the main thread a SIGALRM timer interrupts the computation (nested limits
are honoured: the innermost deadline that expired is the one reported).  In
other threads signals cannot be delivered, so the computation runs in a forked
child whose result comes back through a pipe; the child is terminated when it
overruns.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from typing import Any, Callable, Tuple

__all__ = ["TimeLimitExceeded", "remaining", "run_with_time_limit", "within_limit"]


class TimeLimitExceeded(BaseException):
    """Raised inside the computation when its time limit expires.

    A BaseException, so that a broad ``except Exception`` inside sympy cannot swallow it.
    """


_deadlines: list[float] = []


BACKSTOP = 0.5  # seconds: if the exception was swallowed, the alarm fires again this much later


def _handler(signum: int, frame: Any) -> None:  # pragma: no cover - timing dependent
    now = time.monotonic()
    if not _deadlines or now < min(_deadlines) - 1e-3:
        _arm(now)  # a stale alarm: nothing has expired yet
        return
    # Code that runs while the exception unwinds can swallow it (an `except BaseException` in a library, or a gc
    # callback, where Python prints "Exception ignored" and carries on): keep firing until the limit's own
    # `finally` disarms the timer, so a swallowed alarm delays the stop by BACKSTOP instead of losing it.
    signal.setitimer(signal.ITIMER_REAL, BACKSTOP)
    raise TimeLimitExceeded()


def _arm(now: float) -> None:
    if _deadlines:
        remaining = min(_deadlines) - now
        signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-4))
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:  # pragma: no cover
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        try:
            conn.send(("err", exc))
        except Exception:
            conn.send(("err", RuntimeError(repr(exc))))
    finally:
        conn.close()


def run_with_time_limit(fn: Callable[..., Any], seconds: float, *args: Any,
                        **kwargs: Any) -> Tuple[bool, Any]:
    """Return ``(True, fn(*args))`` or ``(False, None)`` if ``seconds`` elapsed.

    Exceptions raised by ``fn`` propagate to the caller.
    """
    if seconds <= 0:
        return False, None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        now = time.monotonic()
        mine = now + seconds
        outermost = not _deadlines
        previous = signal.signal(signal.SIGALRM, _handler) if outermost else None
        _deadlines.append(mine)
        _arm(now)
        try:
            return True, fn(*args, **kwargs)
        except TimeLimitExceeded:
            signal.setitimer(signal.ITIMER_REAL, 0)  # the backstop must not fire in the clean-up below
            # the outer limit may be the one that fired; then let it propagate
            if time.monotonic() >= mine - 1e-3 or min(_deadlines) == mine:
                return False, None
            raise
        finally:
            _deadlines.remove(mine)
            if outermost:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            else:
                _arm(time.monotonic())
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(seconds):
            kind, value = parent.recv()
            proc.join(1.0)
            if kind == "err":
                raise value
            return True, value
        return False, None
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        parent.close()


def remaining() -> float | None:
    """Seconds left before the innermost time limit of this thread expires (None: no limit is running here)."""
    if not _deadlines or threading.current_thread() is not threading.main_thread():
        return None
    return min(_deadlines) - time.monotonic()


def within_limit(fn: Callable[[], Any], seconds: float, step: str) -> Any:
    """fn() or SymbolicTimeout naming the step: the form the symbolic stage uses."""
    from verify.errors import SymbolicTimeout

    ok, value = run_with_time_limit(fn, seconds)
    if not ok:
        raise SymbolicTimeout(step, seconds)
    return value
