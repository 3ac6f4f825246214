"""The one rule for a file the user names: it is read only when it is a regular file.

Every file a recipe, a data set, a list or a mask names is checked here and
opened with `open_regular`: a FIFO, a device, a socket or a folder is refused
without blocking (a FIFO named `x.png` would otherwise hang the reader
forever; /dev/zero would never end), and is reported as what it is -- never as
"not found". Folder walks (data/regular_files.py) build on this.

It sits at the bottom layer so that recipe files, which are read before any
data set, follow the same rule.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from visiontk.errors import DataError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


# What Path.is_file takes for "no file": nothing there, a path through a file, a link loop.
_NOTHING_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF})


def file_kind(mode: int) -> str:
    """'a FIFO', 'a character device'... for a stat mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class NotRegularFile(DataError):
    def __init__(self, path: str | Path, mode: int):
        super().__init__(f"{path}: {file_kind(mode)}, not a regular file; not read")


def file_present(path: str | Path) -> bool:
    """True for a regular file (a link to one included), False when nothing is there
    (a dangling link included); NotRegularFile for anything else.

    The check every "is the file there?" question goes through, so that a FIFO or
    a folder where a file is expected is named as such (stat never blocks).
    """
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # a NUL in the name
        return False
    except OSError as e:
        if e.errno in _NOTHING_THERE:
            return False
        raise
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, mode)
    return True


def require_file(path: str | Path, missing: str) -> Path:
    """`path` when it is a regular file; DataError(`missing`) when nothing is there,
    NotRegularFile when something else is."""
    if not file_present(path):
        raise DataError(missing)
    return Path(path)


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
