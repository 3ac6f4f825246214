"""Every error as one line on stderr and an exit code; tracebacks only with --debug."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Callable

import typer
from rich.markup import escape
from typer.core import TyperGroup

from visiontk.console import err_console
from visiontk.errors import VisionTKError, worker_message
from visiontk.stop_signals import describe, exit_code

try:  # recent Typer carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on click
    from click.exceptions import UsageError

STATE = {"debug": False}


def fail(message: str, code: int) -> None:
    # One line whatever the message holds (a wrapped worker error, a multi-line
    # library message): scripts grep it and humans read it at a glance.
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn library errors into one line on stderr and an exit code; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except VisionTKError as e:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (stop_signals.py)
            fail(describe(e), exit_code(e))
        except BrokenPipeError:
            # A consumer such as `head` closed the pipe: stop quietly.
            sys.stderr.close()
            raise typer.Exit(0)
        except OSError as e:
            if not isinstance(e.filename, (str, bytes, os.PathLike)):
                fail_unexpected(e)
            if STATE["debug"]:
                traceback.print_exc()
            fail(os_error_message(e), 2)
        except Exception as e:  # noqa: BLE001 - the last resort must catch everything
            fail_unexpected(e)

    return wrapper


def os_error_message(e: OSError) -> str:
    """A failure to create, write or read a named path (an --out under /proc, a --project
    on a read-only disk, a folder path through a file) is bad input: the path and the
    system's reason, whichever command and writer met it."""
    path = os.fsdecode(e.filename)
    if isinstance(e, (FileExistsError, NotADirectoryError)) and os.path.isfile(path):
        # mkdir of an --out's folder when that "folder" is a file: x.png/p.jsonl.
        return f"{path}: is a file, not a folder"
    reason = e.strerror or e.__class__.__name__
    if e.filename2 is not None:
        return f"{path} -> {os.fsdecode(e.filename2)}: {reason}"
    return f"{path}: {reason}"


def fail_unexpected(e: Exception) -> None:
    # The last resort: a bug, with the way to its traceback.
    if STATE["debug"]:
        traceback.print_exc()
    fail(f"unexpected {e.__class__.__name__}: {worker_message(str(e), type(e))} (run with --debug for the traceback)", 1)


class OneLineUsageErrors(TyperGroup):
    """The root command group: a usage error (an unknown option, a value out of its
    bounds or choices, a missing argument) is one line and exit 2 like any other
    bad input, instead of Typer's usage box."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as e:
            _usage_error(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            _usage_error(e)


def _usage_error(e: UsageError) -> None:
    # A group called without a command prints its help (Typer does, on this exception).
    if type(e).__name__ == "NoArgsIsHelpError":
        raise e
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    fail(f"{e.format_message()}{hint}", e.exit_code)
