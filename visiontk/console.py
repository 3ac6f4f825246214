"""One place for everything printed to stderr: progress, tables, warnings.

stdout is reserved for results (jsonl, csv, json) so that pipes work.
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    # The message is plain text, never markup: file names such as
    # 'photo [final].jpg' must come out as they are (markup would drop
    # '[final]', and a '[/x]' in a name would raise).
    err_console.print(Text.assemble(("warning:", "yellow"), " ", str(message)), highlight=False)


def info(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


# Listings that are the command's result (recipes list, backbones list) go to stdout.
out_console = Console(highlight=False, soft_wrap=True)
