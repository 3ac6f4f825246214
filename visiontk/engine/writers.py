"""Where prediction records go: jsonl or csv, to stdout or a file, as they come."""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from visiontk.console import warn
from visiontk.errors import UserError


@contextmanager
def open_output(out: str | None, overwrite: bool = False) -> Iterator[IO[str]]:
    """stdout when `out` is None or '-'; a file otherwise, never silently overwritten.

    A new file is written as results come (it can be followed with tail -f).
    An existing one (--overwrite) is replaced only when the run ends without
    error: results go to a temp file renamed over it at the end, so a failed
    run, or one that finds `out` among its inputs, leaves the old file intact.
    """
    if out in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(out)
    if path.is_dir():
        raise UserError(f"{path}: output path is a directory")
    if path.exists() and not overwrite:
        raise UserError(f"{path}: output file exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with open(path, "w", encoding="utf-8", newline="") as f:
            yield f
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _same_path(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:  # links, '..' through symlinks, hard links
        return a.name == b.name and os.path.samefile(a, b)
    except OSError:
        return False


def _strictly_inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_output_inputs(paths: Iterable[Path], out: str | None, out_dirs: Iterable[Path] = (),
                         sources: Iterable[str] = ()) -> Iterator[Path]:
    """Pass `paths` through, stopping with a UserError at an input that is the --out file,
    and leaving out what lies in an output folder nested in a source folder.

    Checked as the paths stream by (stdin lists are never held in memory);
    `open_output` has not touched an existing file by then. The folder rule:
    `predict photos/ --out-dir photos/masks` must not read back the masks (of
    this run, or of the last one) as photos. An output folder that *is* a
    source folder is the user's choice of writing next to the inputs; the
    writer then gives its files new names.
    """
    target = None if out in (None, "-") else Path(out)
    walked = [os.path.abspath(s) for s in sources if s != "-" and os.path.isdir(s)]
    nested = [(os.path.abspath(d), d) for d in out_dirs
              if any(_strictly_inside(os.path.abspath(d), w) for w in walked)]
    warned = False
    for p in paths:
        if target is not None and _same_path(Path(p), target):
            raise UserError(f"{p}: is both an input image and the --out file; refusing to overwrite an input")
        inside = next((given for folder, given in nested if _strictly_inside(os.path.abspath(p), folder)), None)
        if inside is not None:
            if not warned:
                warn(f"{inside}: output folder; the images in it are not read as inputs")
                warned = True
            continue
        yield p


class JsonlWriter:
    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, record: dict) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")


class CsvWriter:
    """Columns are fixed by the first successful record; nested values are JSON."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.writer: csv.DictWriter | None = None
        self.pending: list[dict] = []

    def _start(self, keys: list[str]) -> None:
        self.writer = csv.DictWriter(self.stream, fieldnames=[*keys, "error"], extrasaction="ignore")
        self.writer.writeheader()

    def __call__(self, record: dict) -> None:
        if self.writer is None:
            if "error" in record:
                self.pending.append(record)  # wait for a successful record to learn the columns
                return
            self._start(list(record))
            for r in self.pending:
                self._write(r)
            self.pending = []
        self._write(record)

    def _write(self, record: dict) -> None:
        assert self.writer is not None
        self.writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()})

    def close(self) -> None:
        if self.writer is None and self.pending:
            self._start(["path"])
            for r in self.pending:
                self._write(r)
