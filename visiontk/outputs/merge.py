"""`visiontk merge`: the outputs of `predict --shard 0/N ... N-1/N` back into one result.

Shard I predicted images I, I+N, I+2N... of the input, one record each, in
order; so the records of jsonl and csv parts, taken one from each part in
turn, are those of one process in input order. A COCO results part is an
array of detections (none for an image without any): the arrays are joined,
shard after shard -- the same detections as one process, with the same
image ids (a shard numbers images by their place in the whole input), in
another order, which COCO results do not have.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import IO, Iterator, Sequence

from visiontk.errors import UserError

from .json_text import dumps
from .output_file import OutputFile


def _kind(parts: Sequence[Path]) -> str:
    """'coco', 'jsonl' or 'csv', from the first character of the first non-empty part."""
    for part in parts:
        with open(part, encoding="utf-8", errors="surrogateescape") as f:
            head = f.read(4096).lstrip()
        if head:
            return "coco" if head[0] == "[" else "jsonl" if head[0] == "{" else "csv"
    return "jsonl"


def _check_counts(parts: Sequence[Path], counts: list[int]) -> None:
    """Shard I of N has ceil((T - I) / N) records: never more than an earlier part, at most one fewer
    than the first."""
    for i in range(1, len(counts)):
        if not counts[0] - 1 <= counts[i] <= counts[i - 1]:
            listing = ", ".join(f"{p} {n}" for p, n in zip(parts, counts))
            raise UserError(f"{parts[i]}: the record counts ({listing}) are not those of the parts of one "
                            f"--shard run, given in order 0/N ... N-1/N")


def _lines(part: Path) -> list[str]:
    with open(part, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]


def _merge_jsonl(parts: Sequence[Path], out: IO[str]) -> int:
    records = [_lines(p) for p in parts]
    _check_counts(parts, [len(r) for r in records])
    n = 0
    for line in _input_order(records):
        out.write(line)
        n += 1
    return n


def _input_order(parts: Sequence[list]) -> Iterator:
    """Shard I of N holds inputs I, I + N, ...: the parts' items dealt back in turn."""
    for k in range(len(parts[0])):
        for items in parts:
            if k < len(items):
                yield items[k]


def _merge_csv(parts: Sequence[Path], out: IO[str]) -> int:
    tables = []
    for p in parts:
        with open(p, encoding="utf-8", errors="surrogateescape", newline="") as f:
            reader = csv.DictReader(f)
            tables.append((list(reader.fieldnames or []), list(reader)))
    _check_counts(parts, [len(rows) for _, rows in tables])
    # Columns as the writer fixes them (by the first successful record), 'error' last: a part
    # that holds only unreadable images has just path and error.
    columns: list[str] = []
    for names, _ in tables:
        columns += [c for c in names if c not in columns and c != "error"]
    writer = csv.DictWriter(out, fieldnames=[*columns, "error"], extrasaction="ignore")
    writer.writeheader()
    n = 0
    for row in _input_order([rows for _, rows in tables]):
        writer.writerow(row)
        n += 1
    return n


def _merge_coco(parts: Sequence[Path], out: IO[str]) -> int:
    items = []
    for p in parts:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{p}: not a COCO results json ({e})") from None
        if not isinstance(data, list):
            raise UserError(f"{p}: not a COCO results json (a JSON array of detections)")
        items += data
    # As the detect writer lays it out: one detection a line.
    out.write("[" + ",".join("\n" + dumps(item, ensure_ascii=False) for item in items) + "\n]\n")
    return len(items)


def merge_parts(parts: Sequence[str | Path], out: OutputFile) -> tuple[str, int]:
    """Merge the parts (in shard order) into `out`; (their kind, records or detections written)."""
    paths = [Path(p) for p in parts]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: no such file")
        out.refuse_input(p, "a part to merge")
    kind = _kind(paths)
    merge = {"jsonl": _merge_jsonl, "csv": _merge_csv, "coco": _merge_coco}[kind]
    buffer = io.StringIO()  # every part is read and checked before the output is opened
    count = merge(paths, buffer)
    with out.open_text() as stream:
        stream.write(buffer.getvalue())
    return kind, count
