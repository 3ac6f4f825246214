"""Every error as one line on stderr and an exit code; tracebacks only with --debug."""
from __future__ import annotations

import functools
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
        except Exception as e:  # noqa: BLE001 - the last resort must catch everything
            if STATE["debug"]:
                traceback.print_exc()
            fail(f"unexpected {e.__class__.__name__}: {worker_message(str(e), type(e))} (run with --debug for the traceback)", 1)

    return wrapper


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
