"""One split of a data set, read by the task's own adapter exactly as training reads it.

Each task's reader is the one its `build_dataset` calls (ImageFolder scan,
detection's `read_annotations`, segmentation's `collect_records`), with the
recipe's `data.bad_annotations` forced to 'skip' so that every problem is
counted instead of the first one raised. What comes back is the same for every
task: the images to decode, the labels to count and the reader's report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontk.data.formats.issues import ReadReport
from visiontk.data.formats.options import split_path, under
from visiontk.data.formats.records import AnnotatedImage
from visiontk.data.imagefolder import scan_imagefolder
from visiontk.errors import UserError


@dataclass
class SplitData:
    split: str  # 'train' / 'val'
    name: str  # the split's name in the data set (data.train / data.val)
    source: str  # the folder or file it comes from
    report: ReadReport
    classes: list[str]
    images: list[Path] = field(default_factory=list)  # one per record, in order
    category_ids: list[int] | None = None  # the data set's own id of each class
    # Per task, one entry per image: classify the label, detect its AnnotatedImage,
    # segment its SegmentationRecord.
    records: list[Any] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def _split_name(recipe, split: str) -> str:
    return getattr(recipe.data, split) if split in ("train", "val") else split


def read_classify(recipe, split: str, classes: list[str] | None) -> SplitData:
    name = _split_name(recipe, split)
    split_dir = Path(recipe.data.root) / name
    samples, names = scan_imagefolder(split_dir, classes or recipe.data.classes)
    return SplitData(split, name, str(split_dir), ReadReport(str(split_dir)), list(names),
                     images=[p for p, _ in samples], records=[label for _, label in samples])


def read_detect(recipe, split: str, classes: list[str] | None) -> SplitData:
    from visiontk.tasks.detect.formats import read_annotations

    found, where = read_annotations(recipe, split, classes)
    records: list[AnnotatedImage] = found.records
    source = str(where)
    if recipe.data.format == "voc" and recipe.data.options.ids is not None:
        # Every split reads the same annotation folder: the id list is what tells them apart.
        ids = split_path(recipe.data.options.ids, _split_name(recipe, split), "ids")
        source += f", ids {under(Path(recipe.data.root), ids)}"
    data = SplitData(split, _split_name(recipe, split), source, found.report, list(found.classes),
                     images=[r.image for r in records], category_ids=found.category_ids, records=records)
    negatives = [r.image for r in records if len(r.labels) == 0]
    if negatives:
        data.notes["images_without_objects"] = {"count": len(negatives), "about": "images without any object "
                                                "(negatives: valid, but check they are meant to be)",
                                                "first": [str(p) for p in negatives[:5]]}
    if found.report.crowd:
        data.notes["crowd"] = {"count": found.report.crowd, "about": "COCO crowd regions (never boxes)", "first": []}
    return data


def read_segment(recipe, split: str, classes: list[str] | None) -> SplitData:
    from visiontk.tasks.segment.formats import collect_records

    found = collect_records(recipe, split, classes)
    return SplitData(split, _split_name(recipe, split), str(found.where), found.report, list(found.names),
                     images=[r.image for r in found.records], category_ids=found.class_ids, records=found.records)


READERS = {"classify": read_classify, "detect": read_detect, "segment": read_segment}


def read_split(recipe, split: str, classes: list[str] | None) -> SplitData:
    """The split as the task's dataset adapter reads it. What stops the adapter (a
    missing split folder or data yaml key, a json that does not parse, a class list
    differing from the training split's) is the split's one problem, not the end of
    the check: training would stop there too."""
    try:
        return READERS[recipe.task](recipe, split, classes)
    except UserError as e:
        report = ReadReport(_split_name(recipe, split))
        report.add("unreadable_split", str(e))
        return SplitData(split, _split_name(recipe, split), str(recipe.data.root), report, list(classes or []))
