"""One place for everything printed to stderr: progress, tables, warnings.

stdout is reserved for results (jsonl, csv, json) so that pipes work.
"""
from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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


# Nouns ending in "ch" said as "k": "epochs", not "epoches".
_CH_AS_K = {"epoch", "stomach", "monarch", "tech"}


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and its noun, singular for 1: ``plural(1, "image")`` is "1 image", ``plural(3, "box")``
    "3 boxes", ``plural(2, "class")`` "2 classes"; ``nouns``: an irregular plural ("1 index", "2 indices").
    The noun may be several words, the last one counted ("1 listed image", "2 listed images")."""
    if count == 1:
        return f"{count} {noun}"
    if nouns is None:
        head, _, last = noun.rpartition(" ")
        if last.endswith(("s", "x", "z", "ch", "sh")) and last not in _CH_AS_K:
            last += "es"
        elif len(last) > 1 and last.endswith("y") and last[-2] not in "aeiou":
            last = last[:-1] + "ies"
        else:
            last += "s"
        nouns = f"{head} {last}" if head else last
    return f"{count} {nouns}"


# The lists of `recorded_warnings` blocks running now (any thread's warnings go to each).
_recorders: list[list[str]] = []
_recorders_lock = threading.Lock()
_local = threading.local()  # .counted: in a `counted_problems` block of this thread


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """A list that receives the text of each warning printed while the block runs, in order,
    besides its printing (`data check` carries them into its summary). Warnings about a
    problem that a report already counts (printed in `counted_problems`) are left out."""
    seen: list[str] = []
    with _recorders_lock:
        _recorders.append(seen)
    try:
        yield seen
    finally:
        with _recorders_lock:
            _recorders.remove(seen)


@contextmanager
def counted_problems() -> Iterator[None]:
    """Warnings printed in this block (by this thread) are about problems a report counts
    (the formats' bad annotations): `recorded_warnings` does not take them as warnings."""
    before = getattr(_local, "counted", False)
    _local.counted = True
    try:
        yield
    finally:
        _local.counted = before


def warn(message: str) -> None:
    # The message is plain text, never markup: file names such as
    # 'photo [final].jpg' must come out as they are (markup would drop
    # '[final]', and a '[/x]' in a name would raise).
    text = printable(str(message), newlines=False)
    if _recorders and not getattr(_local, "counted", False):
        with _recorders_lock:
            for seen in _recorders:
                seen.append(text)
    err_console.print(Text.assemble(("warning:", "yellow"), " ", text), highlight=False)


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
