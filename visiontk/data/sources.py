"""Turning SOURCE arguments (files, folders, globs, `-` for stdin) into image paths.

Paths are yielded lazily so a stdin list of millions of images is streamed,
never held in memory.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from visiontk.console import warn
from visiontk.data.images import is_image_file
from visiontk.data.regular_files import is_regular, walk_files, warn_skipped
from visiontk.errors import UserError


def iter_sources(sources: Iterable[str], stdin=None) -> Iterator[Path]:
    """Yield image paths. Missing explicit files are yielded too (they get an error record)."""
    for src in sources:
        if src == "-":
            stream = stdin if stdin is not None else sys.stdin
            # Paths are bytes on POSIX, not always UTF-8 (an old Latin-1 archive):
            # read them as bytes and decode as the OS does (surrogateescape), so
            # every name opens; the writers escape what is not UTF-8.
            raw = getattr(stream, "buffer", stream)
            for line in raw:
                line = os.fsdecode(line) if isinstance(line, bytes) else line
                line = line.rstrip("\r\n")
                if line.strip():
                    yield Path(line)
            continue
        path = Path(src)
        if path.is_dir():
            found = False
            # Sorted, lazily, loops cut, FIFOs and devices skipped (regular_files.py).
            for p in walk_files(path, is_image_file):
                found = True
                yield p
            if not found:
                warn(f"{path}: folder holds no images")
        elif path.exists():
            yield path
        elif glob.has_magic(src):
            matches = sorted(glob.glob(src, recursive=True))
            images = []
            for m in matches:
                if not is_image_file(Path(m)) or os.path.isdir(m):
                    continue
                if is_regular(m):
                    images.append(Path(m))
                elif os.path.exists(m):  # a FIFO or device the pattern matched: skipped as in a folder
                    warn_skipped(m, os.stat(m).st_mode)
            if not images:
                warn(f"{src}: pattern matches no images")
            yield from images
        else:
            raise UserError(f"{src}: no such file, folder or pattern")
