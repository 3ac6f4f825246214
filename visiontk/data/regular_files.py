"""The one rule for what is read from disk: regular files only, and folder walks that end.

Every file a data set, a SOURCE folder, a list or a mask names is opened with
`open_regular`: a FIFO, a device or a socket is refused without blocking (a FIFO
named `x.png` would otherwise hang the reader forever; /dev/zero would never
end). Every folder is walked with `walk_files`: a symlinked folder is followed
once per real folder, and never into a folder that contains the walk's root
(`up -> ..` would walk out of the root and round the loop forever).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from visiontk.console import warn
from visiontk.errors import DataError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str:
    """'a FIFO', 'a character device'... for a stat mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class NotRegularFile(DataError):
    def __init__(self, path: str | Path, mode: int):
        super().__init__(f"{path}: {file_kind(mode)}, not a regular file; not read")


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading, or NotRegularFile (a DataError) when it is not a regular file.

    O_NONBLOCK makes opening a FIFO return at once (it would wait for a
    writer), and fstat on the opened descriptor checks the very file that
    will be read (a stat before open could be raced by a rename).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_text(path: str | Path) -> str:
    """The UTF-8 text of a regular file (OSError, UnicodeDecodeError or NotRegularFile otherwise)."""
    with open_regular(path) as f:
        return f.read().decode("utf-8")


def is_regular(path: str | Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


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
