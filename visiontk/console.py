"""One place for everything printed to stderr: progress, tables, warnings.

stdout is reserved for results (jsonl, csv, json) so that pipes work.
"""
from __future__ import annotations

import re
import sys

from rich.console import Console
from rich.text import Text

# Control characters (C0 but tab and newline, DEL, C1) can come with file and
# class names: an ESC in a folder name must not recolour, move or clear the
# user's terminal. Lone surrogates are the bytes of names that are not UTF-8.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else char.encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(text: str, newlines: bool = True) -> str:
    """`text` with control characters shown as escapes (`\\x1b`); `newlines=False` escapes those too."""
    text = _CONTROL.sub(lambda m: _escape(m.group()), text)
    return text if newlines else text.replace("\n", "\\n")


class _EscapingConsole(Console):
    """Every string printed (messages, table cells) passes `printable` first: the one
    place between names read from files and the terminal. Emoji codes are off: rich
    would print a file named ':smile:.jpg' as a smiley (and it saves loading rich's
    emoji table, ~10 ms of every start-up)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("emoji", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs):
        return super().render_str(printable(text), **kwargs)


err_console = _EscapingConsole(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    # The message is plain text, never markup: file names such as
    # 'photo [final].jpg' must come out as they are (markup would drop
    # '[final]', and a '[/x]' in a name would raise).
    err_console.print(Text.assemble(("warning:", "yellow"), " ", printable(str(message), newlines=False)), highlight=False)


def info(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


# Listings that are the command's result (recipes list, backbones list) go to stdout.
out_console = _EscapingConsole(highlight=False, soft_wrap=True)


def print_table(table, console: Console | None = None) -> None:
    """A rich table, whole. On a terminal rich fits it to the window; elsewhere (a CI log,
    `2> log`, a pipe) there is no window, and fitting it to the 80 columns rich assumes
    would cut cells ('efficientn…'): there it is printed at its natural width instead."""
    from rich.measure import Measurement

    console = console or err_console
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    wide = _EscapingConsole(file=console.file, width=max(width, console.width), highlight=False,
                            soft_wrap=True, color_system=None)
    wide.print(table)
