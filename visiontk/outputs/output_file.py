"""One file a run writes as a whole: results (or stdout), embeddings, an exported model.

The rules, the same for every command:
- stdout when the path is None or '-';
- never a directory; an existing file only with --overwrite;
- a FIFO or a character device (/dev/null, a terminal) is a stream: written
  into as it is, never unlinked or replaced by a regular file (no --overwrite
  needed: nothing is replaced); any other special file (a block device, a
  socket) is refused;
- an existing file is replaced only when the run ends without error: the new
  content goes to a temp file in the same folder, renamed over it at the end,
  so a failed run leaves the old file intact (a new file is written in place,
  as results come, so it can be followed with tail -f);
- never an input of the same run (`same_file`; plan.py applies it to the
  streamed inputs of predict).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from visiontk.errors import UserError, writing
from visiontk.file_modes import set_new_file_mode
from visiontk.stop_signals import deferred


def make_temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temp file in `path`'s folder (made if missing), named after it, with the permissions
    `path` gets once the temp is renamed over it: (open descriptor, name). Callers make it
    under `stop_signals.deferred()` until their cleanup holds the name: a stop signal acted
    on in between leaves it behind (a SIGTERM during training once left a
    .val_metrics.json.*.tmp in the run folder). A folder that cannot hold it is one line
    about `path`, not about a temp name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e.__class__.__name__})") from None
    # mkstemp's 0600 would survive the rename: the mode of a new file (or of the one replaced).
    set_new_file_mode(fd, path)
    return fd, tmp


def _special_kind(path: Path) -> str | None:
    """None for a missing or regular file; 'stream' for a FIFO or a character device; else what it is."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "stream"
    return "a directory" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode) else "a socket"


def same_file(a: str | Path, b: str | Path) -> bool:
    """The same file, whatever the spelling: links, '..' through symlinks, hard links."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return Path(a).name == Path(b).name and os.path.samefile(a, b)
    except OSError:
        return False


# Control characters but tab, newline and carriage return (CSV ends its rows with \r\n).
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _TerminalText:
    """A text stream to a terminal: what is written has its control characters escaped (\x1b)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(_TERMINAL_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class OutputFile:
    def __init__(self, path: str | Path | None, overwrite: bool = False):
        self.path = None if path is None or str(path) == "-" else Path(path)
        self.overwrite = overwrite

    def __repr__(self) -> str:
        return f"OutputFile({str(self.path) if self.path else '-'}, overwrite={self.overwrite})"

    def check(self) -> None:
        """Refuse a directory, or an existing file without --overwrite (before any work, where possible)."""
        if self.path is None:
            return
        kind = _special_kind(self.path)
        if kind == "a directory":
            raise UserError(f"{self.path}: output path is a directory")
        if kind == "stream":
            return
        if kind is not None:
            raise UserError(f"{self.path}: output path is {kind}, not a file; refusing to write to it")
        if self.path.exists() and not self.overwrite:
            raise UserError(f"{self.path}: output file exists (use --overwrite to replace it)")

    def format_by_name(self, given, by_suffix: dict, default, what: str = "this command"):
        """The results format: `given` (--format) when the user gave one, else the one --out's
        name says (`by_suffix`: '.csv' -> csv), else `default`. A name whose suffix maps to
        None is a format the command does not write: refused rather than written as another
        (a preds.csv holding JSON lines)."""
        if given is not None:
            return given
        suffix = self.path.suffix.lower() if self.path is not None else ""
        if suffix not in by_suffix:
            return default
        if by_suffix[suffix] is None:
            known = ", ".join(f"{s} ({getattr(f, 'value', f)})" for s, f in by_suffix.items() if f is not None)
            raise UserError(f"{self.path}: {what} does not write {suffix} files (--out names: {known}; "
                            f"or give --format)")
        return by_suffix[suffix]

    def refuse_input(self, path: str | Path, what: str = "an input image") -> None:
        if self.path is not None and same_file(path, self.path):
            raise UserError(f"{path}: is both {what} and the --out file; refusing to overwrite an input")

    @contextmanager
    def open_text(self, whole: bool = False) -> Iterator[IO[str]]:
        """The stream to write: stdout, the new file, or a temp file that replaces the existing one at the end.

        `whole`: the content is one document (a JSON array) that is valid only once
        finished: a new file is staged too, so a failed or stopped run leaves none.
        A full disk met while writing is one line naming the file (`writing`).
        """
        if self.path is None:
            # A name that is not UTF-8 (read from stdin as the OS's bytes) is
            # written escaped (\\udcff, which JSON reads back as that byte) instead
            # of ending the run with a UnicodeEncodeError.
            if hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(errors="backslashreplace")
            with writing("<stdout>"):
                # On a terminal, control characters of names (an ESC in a folder name) are
                # shown escaped, as everything printed is; into a pipe or file they stay data.
                yield _TerminalText(sys.stdout) if sys.stdout.isatty() else sys.stdout
                sys.stdout.flush()
            return
        self.check()
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if (not whole and not self.path.exists()) or self.is_stream:
                with open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
                    yield f
                return
        with self.staged() as tmp, open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            yield f

    @contextmanager
    def staged(self, suffix: str = ".tmp") -> Iterator[Path]:
        """A temp path next to the file, renamed over it when the block ends without error
        (and removed otherwise). `suffix`: for writers that pick the format by extension."""
        if self.path is None:
            raise UserError("this output needs a file, not stdout")
        self.check()
        if self.is_stream:
            # A FIFO or /dev/null is written into, whole at the end, and stays what it is.
            yield from self._staged_into_stream(suffix)
            return
        tmp = None
        try:
            with writing(self.path), deferred():
                fd, tmp = make_temp_beside(self.path, suffix)
                os.close(fd)
            with writing(self.path, tmp):
                yield Path(tmp)
                # On disk before the rename: a crash leaves the old file or the new one, whole.
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    @property
    def is_stream(self) -> bool:
        return self.path is not None and _special_kind(self.path) == "stream"

    def _staged_into_stream(self, suffix: str) -> Iterator[Path]:
        assert self.path is not None
        fd, tmp = tempfile.mkstemp(prefix=".visiontk-out.", suffix=suffix)
        os.close(fd)
        try:
            with writing(self.path, tmp):
                yield Path(tmp)
                with open(tmp, "rb") as src, open(self.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def write_text(self, text: str) -> None:
        with self.staged() as tmp:
            tmp.write_text(text, encoding="utf-8")
