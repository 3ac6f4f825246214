"""Turning SOURCE arguments (files, folders, globs, `-` for stdin) into inputs.

Inputs are yielded lazily so a stdin list of millions of images is streamed,
never held in memory. What a folder holds and what a stdin line is depend on
the model's input modality (data/modality.py): for images, image files and
one path a line; for signals and text, their files and one input a line
(a `StdinLine`: numbers, or a sentence).
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

from visiontk.console import warn
from visiontk.data.images import is_image_file
from visiontk.data.regular_files import is_regular, walk_files, warn_skipped
from visiontk.errors import UserError


@dataclass(frozen=True)
class StdinLine:
    """One input given on a stdin line itself (not a file name): a signal's numbers or a sentence."""

    number: int  # 1-based
    text: str

    def __str__(self) -> str:
        return f"<stdin>:{self.number}"


@dataclass(frozen=True)
class SourceRule:
    """What a modality reads from SOURCE arguments."""

    # Files a folder or a pattern contributes.
    accept: Callable[[Path], bool] = is_image_file
    # True: a stdin line is the input itself (StdinLine); False: a file name.
    lines_are_data: bool = False
    # The word for the inputs in messages ("images", "signal files").
    noun: str = "images"


IMAGES = SourceRule()
Source = Union[Path, StdinLine]


def iter_sources(sources: Iterable[str], stdin=None, rule: SourceRule = IMAGES) -> Iterator[Source]:
    """Yield inputs: paths, or stdin lines when `rule` says lines are data.
    Missing explicit files are yielded too (they get an error record)."""
    for src in sources:
        if src == "-":
            stream = stdin if stdin is not None else sys.stdin
            # Paths are bytes on POSIX, not always UTF-8 (an old Latin-1 archive):
            # read them as bytes and decode as the OS does (surrogateescape), so
            # every name opens; the writers escape what is not UTF-8.
            raw = getattr(stream, "buffer", stream)
            for number, line in enumerate(raw, 1):
                if rule.lines_are_data:
                    # Data, not a name: UTF-8, undecodable bytes replaced rather than the run stopped.
                    line = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
                    line = line.rstrip("\r\n")
                    if line.strip():
                        yield StdinLine(number, line)
                    continue
                line = os.fsdecode(line) if isinstance(line, bytes) else line
                line = line.rstrip("\r\n")
                if line.strip():
                    yield Path(line)
            continue
        path = Path(src)
        if path.is_dir():
            found = False
            # Sorted, lazily, loops cut, FIFOs and devices skipped (regular_files.py).
            for p in walk_files(path, rule.accept):
                found = True
                yield p
            if not found:
                warn(f"{path}: folder holds no {rule.noun}")
        elif path.exists():
            yield path
        elif glob.has_magic(src):
            matches = sorted(glob.glob(src, recursive=True))
            images = []
            for m in matches:
                if not rule.accept(Path(m)) or os.path.isdir(m):
                    continue
                if is_regular(m):
                    images.append(Path(m))
                elif os.path.exists(m):  # a FIFO or device the pattern matched: skipped as in a folder
                    warn_skipped(m, os.stat(m).st_mode)
            if not images:
                warn(f"{src}: pattern matches no {rule.noun}")
            yield from images
        else:
            raise UserError(f"{src}: no such file, folder or pattern")
