"""SIGTERM handled like Ctrl-C, and critical sections that finish before either stops the run.

A batch scheduler (SLURM, Kubernetes) stops a job with SIGTERM. :func:`terminate_as_exception`
turns it into :class:`Terminated` (a ``KeyboardInterrupt`` subclass, so ``finally`` blocks and
atomic writers clean up exactly as on Ctrl-C). Inside :func:`critical` (a checkpoint write) both
signals are only recorded; the write completes, then the recorded signal is raised, so a
checkpoint is either fully written or not started, never half-written by our own process.
"""
import contextlib
import signal
import threading

EXIT_SIGTERM = 143  # 128 + SIGTERM, the shell convention
EXIT_SIGINT = 130   # 128 + SIGINT


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process received SIGTERM."""


_state = {"depth": 0, "pending": None}


def _raise_for(signum):
    if signum == signal.SIGTERM:
        raise Terminated("terminated by SIGTERM")
    raise KeyboardInterrupt


def _handler(signum, frame):
    if _state["depth"] > 0:
        _state["pending"] = signum  # finish the critical section first
        return
    _raise_for(signum)


@contextlib.contextmanager
def terminate_as_exception():
    """Within the block SIGTERM and SIGINT raise :class:`Terminated` / KeyboardInterrupt
    (deferred inside :func:`critical`); the previous handlers are restored afterwards. A no-op
    outside the main thread (signals are delivered to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in old:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _state["pending"] = None


@contextlib.contextmanager
def critical():
    """Defer SIGTERM/SIGINT until the block ends (re-entrant)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            _raise_for(signum)


def exit_code(exc: BaseException) -> int:
    """143 for :class:`Terminated`, 130 for any other KeyboardInterrupt."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
