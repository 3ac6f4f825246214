"""Where prediction records go: jsonl or csv, to stdout or a file, as they come."""
from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from visiontk.errors import UserError


@contextmanager
def open_output(out: str | None, overwrite: bool = False) -> Iterator[IO[str]]:
    """stdout when `out` is None or '-'; a file otherwise, never silently overwritten."""
    if out in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(out)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: output file exists (use --overwrite to replace it)")
    if path.is_dir():
        raise UserError(f"{path}: output path is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        yield f


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
