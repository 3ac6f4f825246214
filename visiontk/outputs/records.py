"""Writers of prediction records, one record (a dict) at a time, as the predictor streams them.

A writer is called with each record, then closed at the end of the run (the
stream is still open: a format with a footer writes it then), or aborted when
the run fails.
"""
from __future__ import annotations

import csv
from typing import IO

from .json_text import dumps


class RecordWriter:
    def __call__(self, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """After the last record, before the output is closed."""

    def abort(self) -> None:
        """The run failed: leave no partial file behind (what close would have written)."""

    def skip(self, n: int) -> None:
        """`n` images of the input, predicted by another shard (predict --shard), come
        before the next record: a writer that numbers images by position counts them."""


class JsonlWriter(RecordWriter):
    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, record: dict) -> None:
        self.stream.write(dumps(record, ensure_ascii=False) + "\n")


class CsvWriter(RecordWriter):
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
        self.writer.writerow({k: dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()})

    def close(self) -> None:
        if self.writer is None and self.pending:
            self._start(["path"])
            for r in self.pending:
                self._write(r)


class Tee(RecordWriter):
    """Hands every record to several writers (e.g. detect's results file and its drawn images)."""

    def __init__(self, *writers: RecordWriter):
        self.writers = writers

    def __call__(self, record: dict) -> None:
        for w in self.writers:
            w(record)

    def close(self) -> None:
        for w in self.writers:
            w.close()

    def abort(self) -> None:
        for w in self.writers:
            w.abort()

    def skip(self, n: int) -> None:
        for w in self.writers:
            w.skip(n)
