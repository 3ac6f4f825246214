"""The one bad-annotation policy of every format, and the report it fills.

``policy='skip'``: each problem is counted by kind in the ``ReadReport``,
warned about (the first ``MAX_WARNINGS``, then one summary line: a broken
export can have thousands of identical problems) and the bad entry is dropped
-- or clipped, for a box that only partly leaves its image. ``policy='error'``:
the first problem raises ``DataError``, one line naming the file and the
entry. A file that cannot be parsed at all (json, xml, yaml) is a
``DataError`` under both policies.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from visiontk.console import counted_problems, plural, warn
from visiontk.errors import DataError

Policy = Literal["skip", "error"]

# Problem kinds: the keys of ReadReport.counts, the same in every format.
BOX_CLIPPED = "box_clipped"  # partly outside the image: clipped, kept
BOX_OUTSIDE = "box_outside"  # entirely outside: dropped
BOX_EMPTY = "box_empty"  # zero or negative width/height: dropped
UNKNOWN_CLASS = "unknown_class"
MISSING_IMAGE = "missing_image"
BAD_IMAGE = "bad_image"  # exists but its size cannot be read
MISSING_MASK = "missing_mask"  # an image without its mask PNG
BAD_MASK = "bad_mask"  # unreadable, wrong size, values outside the classes
ORPHAN_LABEL = "orphan_label"  # YOLO label file without an image
MISSING_ANNOTATION = "missing_annotation"  # an id listed but no annotation file
MALFORMED = "malformed"  # bad line, missing/invalid field
UNSAFE_PATH = "unsafe_path"  # a file name escaping its root
# Found by `visiontk data check` (data/formats/boxes.py, the detection dataset's
# size rule), not by the readers: training keeps duplicates, and skips an image
# whose file size differs from its annotation's when it meets it.
BOX_DUPLICATE = "box_duplicate"  # same class, same box as another object of its image
SIZE_MISMATCH = "size_mismatch"  # the image file's size differs from the one its annotation gives

MAX_WARNINGS = 20


def check_policy(policy: str) -> None:
    if policy not in ("skip", "error"):
        raise ValueError(f"policy must be 'skip' or 'error', got {policy!r}")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass
class ReadReport:
    source: str
    messages: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # the kind of each message
    counts: Counter = field(default_factory=Counter)
    # COCO iscrowd annotations: valid regions of many objects, kept for masks
    # but never a box of one object; counted here, not as problems.
    crowd: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        self.messages.append(message)
        self.kinds.append(kind)

    def examples(self, kind: str, n: int) -> list[str]:
        """The first ``n`` messages of ``kind``, in the order met (each names its file)."""
        return [m for k, m in zip(self.kinds, self.messages) if k == kind][:n]

    def summary(self) -> str:
        if not self.total:
            return f"{self.source}: no problems"
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        return f"{self.source}: {plural(self.total, 'problem')} ({kinds})"


class Issues:
    """Applies the policy to each problem: raise, or record and warn.

    ``report``: go on filling an earlier report (a task's own checks after a
    reader's), so the warning cap and the summary cover both.
    """

    def __init__(self, source: Path | str, policy: str, report: ReadReport | None = None) -> None:
        check_policy(policy)
        self.policy = policy
        self.report = report if report is not None else ReadReport(str(source))

    def __call__(self, kind: str, where: str, problem: str, action: str = "skipped") -> None:
        self.message(kind, f"{where}: {problem}", action)

    def message(self, kind: str, text: str, action: str = "skipped") -> None:
        """A problem whose message already names its file (e.g. a DataError's)."""
        text = one_line(text)
        if self.policy == "error":
            raise DataError(text)
        self.report.add(kind, f"{text} ({action})")
        if len(self.report.messages) <= MAX_WARNINGS:
            # warn() prints plain text: '[x, y, w, h]' stays as is. The report counts it: not a warning of its own.
            with counted_problems():
                warn(f"{text} ({action})")

    def finish(self) -> ReadReport:
        if self.report.total > MAX_WARNINGS:
            with counted_problems():
                warn(f"{plural(self.report.total - MAX_WARNINGS, 'more problem')} not shown; {self.report.summary()}")
        return self.report
