"""The one rule for what is read from disk: regular files only, and folder walks that end.

Every file a data set, a SOURCE folder, a list or a mask names is checked and
opened by visiontk/regular_files.py (re-exported here): a FIFO, a device or a
socket is refused without blocking and named as what it is. Every folder is
walked with `walk_files`: a symlinked folder is followed once per real folder,
and never into a folder that contains the walk's root
(`up -> ..` would walk out of the root and round the loop forever).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterator

from visiontk.console import warn
from visiontk.regular_files import (NotRegularFile, file_kind, file_present, is_regular, open_regular,  # noqa: F401
                                    read_regular_text, require_file)


def walk_files(folder: str | Path, wanted: Callable[[Path], bool] = lambda p: True,
               exclude: Path | None = None) -> Iterator[Path]:
    """Regular files under `folder` for which `wanted(path)` holds, sorted, lazily.

    Symlinked folders are followed (a data set may link to shared storage),
    each real folder once: a loop is cut where it closes, and a link to a
    folder holding the root (`..`, `/`) is not followed. A wanted name that
    is not a regular file (a FIFO `x.png`) is skipped with a warning.
    `exclude`: a subfolder to leave out (e.g. an output folder).
    """
    root_real = os.path.realpath(folder)
    skip = os.path.realpath(exclude) if exclude is not None else None
    seen = {root_real}

    def follow(dir_path: str) -> bool:
        real = os.path.realpath(dir_path)
        contains_root = real == root_real or root_real.startswith(real.rstrip(os.sep) + os.sep)
        if real in seen or contains_root or real == skip:
            return False
        seen.add(real)
        return True

    for current, dirs, files in os.walk(folder, followlinks=True):
        # Real folders claim their place before links to them: a folder and a
        # link to it give the folder's paths.
        dirs.sort()
        kept = {d for d in dirs if not os.path.islink(os.path.join(current, d)) and follow(os.path.join(current, d))}
        kept |= {d for d in dirs if os.path.islink(os.path.join(current, d)) and follow(os.path.join(current, d))}
        dirs[:] = [d for d in dirs if d in kept]
        for name in sorted(files):
            path = Path(current) / name
            if not wanted(path):
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # a dangling link: nothing to read
            if stat.S_ISREG(mode):
                yield path
            else:
                warn_skipped(path, mode)


def warn_skipped(path: str | Path, mode: int) -> None:
    """The one warning for a special file met in a folder or a pattern's matches."""
    warn(f"{path}: {file_kind(mode)}, not a regular file; skipped")
