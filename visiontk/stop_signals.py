"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

Schedulers (Slurm, Kubernetes, systemd) stop jobs with SIGTERM, and a closed
terminal sends SIGHUP. Python's default for both is to die on the spot: no
`interrupted.pt`, temp files left behind, no message. Raising a
KeyboardInterrupt subclass instead sends them down every path Ctrl-C already
takes (the trainer's interrupted.pt, the temp-file cleanups in `finally`
blocks), and the CLI exits 128 + the signal number as a shell would report.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

# What a run treats as "stop now"; SIGINT keeps Python's own handler (KeyboardInterrupt).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, raised where the program was."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise `Stopped` in the main thread (the CLI calls this once).

    A signal the parent set to be ignored stays ignored: `nohup visiontk train`
    must survive the terminal closing.
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _raise_stopped)


def exit_code(exc: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (exc.signum if isinstance(exc, Stopped) else signal.SIGINT)


def describe(exc: BaseException) -> str:
    """'interrupted' for Ctrl-C; 'interrupted by SIGTERM' for the others."""
    if isinstance(exc, Stopped):
        return f"interrupted by {signal.Signals(exc.signum).name}"
    return "interrupted"


@contextmanager
def deferred():
    """Hold the stop signals until the block ends, then act on the first one received.

    A KeyboardInterrupt inside torch.save makes its zip writer fail on exit with
    a RuntimeError that hides the interrupt; deferring lets the write finish,
    then the signal acts as it would have (its handler is called, or the
    default action taken).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(received[0])
