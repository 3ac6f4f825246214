"""Exceptions that the CLI turns into one-line messages and exit codes."""
from __future__ import annotations


def worker_message(message: str, exc_type: type) -> str:
    """The original message of an exception re-raised by a DataLoader worker.

    torch re-raises a worker's exception in the main process with the
    worker's whole traceback as its message ("Caught DataError in DataLoader
    worker process 0. Original Traceback ... visiontk.errors.DataError: x.jpg:
    ..."); users must see only the last part. Other messages pass unchanged.
    """
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    lines = message.splitlines()
    # The raised exception is the last block of a (possibly chained) traceback:
    # its first unindented line after the last "Traceback" header.
    starts = [i for i, line in enumerate(lines) if line.rstrip().endswith("Traceback (most recent call last):")]
    body = lines[starts[-1] + 1:] if starts else lines[1:]
    for i, line in enumerate(body):
        if line and not line[0].isspace():
            module = exc_type.__module__
            name = exc_type.__qualname__ if module in ("builtins", "__main__") else f"{module}.{exc_type.__qualname__}"
            first = line[len(name) + 2:] if line.startswith(f"{name}: ") else line
            return "\n".join([first, *body[i + 1:]]).strip()
    return lines[0]


class VisionTKError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (worker_message(args[0], type(self)), *args[1:])
        super().__init__(*args)


class UserError(VisionTKError):
    """Bad usage or bad input (a file, a key, a value): exit code 2.

    The message must name the file or key and the problem in one line.
    """

    exit_code = 2


class DataError(UserError):
    """A data file (image, annotation, mask) that cannot be used."""


class JobError(VisionTKError):
    """The job itself failed (e.g. some images could not be read): exit code 1."""

    exit_code = 1


# Failures only a write meets: a full disk or quota, a file too large for its file system.
# The OS reports them from write() and close(), which name no file: `writing` names it.
_WRITE_ERRNOS = frozenset(getattr(__import__("errno"), name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS")
                          if hasattr(__import__("errno"), name))


def write_failure(path, e: OSError) -> "UserError | None":
    """The one-line error for `e` met while writing `path`, or None when `e` is not a write failure
    (a read error inside the block keeps its own message)."""
    if e.errno not in _WRITE_ERRNOS:
        return None
    return UserError(f"{path}: cannot write ({e.strerror or e.__class__.__name__})")


class writing:
    """`with writing(path):` -- a full disk (or quota, or a read-only file system) met while
    writing `path` is one line naming `path`, exit 2, instead of an unnamed OSError.

    `also`: other paths written in the block (a temp file renamed to `path` at the
    end) whose errors are reported as `path`'s. A stop signal or any other error
    passes unchanged.
    """

    def __init__(self, path, *also):
        import os

        self.path = path
        self.names = {os.fspath(p) for p in (path, *also) if p is not None}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        import os

        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            named = exc.filename is not None and os.fsdecode(exc.filename) in self.names
            if exc.filename is None or named:
                error = write_failure(self.path, exc)
                if error is None and named and exc.filename != os.fspath(self.path):
                    # A temp file's own error (permission, a path through a file): said of the user's path.
                    error = UserError(f"{self.path}: cannot write ({exc.strerror or exc.__class__.__name__})")
                if error is not None:
                    raise error from None
        return False
