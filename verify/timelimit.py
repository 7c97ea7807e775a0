"""Run a step under a wall-clock limit, so that sympy never hangs a check.

sympy is pure Python, so a SIGALRM timer interrupts it between bytecodes. The
timer only works in the main thread; elsewhere the step runs in a forked child
that is killed at the limit.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
from typing import Any, Callable, Iterator, TypeVar

from verify.errors import SymbolicTimeout

T = TypeVar("T")


class _Alarm(BaseException):
    # BaseException so that a broad `except Exception` inside sympy cannot swallow it.
    pass


def _can_use_alarm() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0.0  # never clobber an outer timer
    )


@contextlib.contextmanager
def _alarm(seconds: float, step: str) -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm:
        raise SymbolicTimeout(step, seconds) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _child(conn: Any, fn: Callable[[], Any]) -> None:
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:  # the parent re-raises it
        conn.send(("err", exc))
    finally:
        conn.close()


def run_with_time_limit(fn: Callable[[], T], seconds: float, step: str) -> T:
    """Return fn() or raise SymbolicTimeout after `seconds` of wall-clock time."""
    if seconds <= 0:
        raise SymbolicTimeout(step, seconds)
    if _can_use_alarm():
        with _alarm(seconds, step):
            return fn()
    if not hasattr(os, "fork"):
        return fn()  # no way to interrupt; documented limitation on non-POSIX systems
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(seconds):
        proc.kill()
        proc.join()
        raise SymbolicTimeout(step, seconds)
    status, value = parent.recv()
    proc.join()
    if status == "err":
        raise value
    return value
