"""The permissions of a file written through a temp file and renamed into place.

`tempfile.mkstemp` makes its file 0600 (readable by its owner alone), and the
rename keeps that mode: checkpoints, reports and `--out` files written
atomically came out 0600 where a plain `open()` gives 0666 & ~umask (0644 under
the usual umask 022). `new_file_mode` is the mode the file should get instead:
the mode of the file it replaces, when there is one (a file the user made
group-readable stays so), else the mode a new file gets under the process's
umask.

The umask is read without changing it: `os.umask(0)` then restoring it is the
only portable way to read it, and another thread creating a file in between
would create it with umask 0 (world-writable). Linux says it in
/proc/self/status ("Umask:", since 4.7), read at each call (so a umask set
after import counts); elsewhere it is read once, when this module is imported.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DEFAULT_UMASK = 0o022


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    found = _umask_from_proc()
    if found is not None:
        return found
    # Import time (the package's first import, before the commands start threads):
    # the one moment the read-and-restore is safe enough.
    old = os.umask(DEFAULT_UMASK)
    os.umask(old)
    return old


_IMPORT_UMASK = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it (see the module's text)."""
    found = _umask_from_proc()
    return _IMPORT_UMASK if found is None else found


def new_file_mode(replacing: str | os.PathLike | None = None) -> int:
    """The permission bits for a file about to be renamed over `replacing`: the replaced
    regular file's own, else 0o666 & ~umask."""
    if replacing is not None:
        try:
            st = os.lstat(replacing)
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    return 0o666 & ~current_umask()


def set_new_file_mode(fd_or_path: int | str | os.PathLike, replacing: str | os.PathLike | None) -> None:
    """Give a staged temp file (an open descriptor, or a path) the mode of `new_file_mode(replacing)`.
    Best effort: a file system without modes (FAT, some network mounts) keeps its own."""
    mode = new_file_mode(replacing)
    try:
        if isinstance(fd_or_path, int):
            os.fchmod(fd_or_path, mode)
        else:
            os.chmod(Path(fd_or_path), mode)
    except OSError:
        pass
