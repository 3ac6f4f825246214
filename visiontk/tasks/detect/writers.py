"""Where detection records go besides jsonl: COCO results json, YOLO txt files, annotated images.

Every writer takes one prediction record at a time (as the predictor streams
them) and skips error records: those are reported on stderr and in the exit
code, and have no boxes to write.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import IO

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from visiontk.console import plural, warn
from visiontk.data.formats.coco import image_ids as coco_image_ids
from visiontk.data.images import load_image
from visiontk.errors import UserError, writing
from visiontk.outputs.output_file import OutputFile
from visiontk.outputs.json_text import dumps
from visiontk.outputs.output_folder import OutputFolder
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import JsonlWriter, RecordWriter, Tee
from visiontk.tasks.options.detect import DetectFormat, DetectPredictOptions

# Distinct, readable on light and dark images; class k takes colour k mod len.
PALETTE = ["#FF3838", "#2C99A8", "#FFB21D", "#48F90A", "#8438FF", "#FF37C7", "#00C2FF", "#CFD231",
           "#FF9D97", "#3DDB86", "#1A9334", "#00D4BB", "#344593", "#6473FF", "#FF701F", "#520085"]
# The --out names that choose the format when --format is not given; None: a
# format detect does not write (refused, not filled with JSON lines).
OUT_SUFFIXES = {".json": DetectFormat.coco, ".jsonl": DetectFormat.jsonl, ".ndjson": DetectFormat.jsonl,
                ".csv": None, ".tsv": None}


def _xyxy_to_xywh(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


class CocoResultsWriter(RecordWriter):
    """A COCO detection results file: one JSON array of
    ``{image_id, file_name, category_id, category_name, bbox: [x, y, w, h], score}``,
    which pycocotools' ``COCO.loadRes`` reads against the set's ground truth.

    ``category_id``: the COCO category id the model was trained with (the
    record's ``category_ids``, from the checkpoint), else the class index + 1
    (COCO ids start at 1). ``image_id``: see ``ImageIds``. Written as the
    records come, so memory stays flat.
    """

    def __init__(self, stream: IO[str], image_ids: "ImageIds | None" = None):
        self.stream = stream
        self.image_ids = image_ids or ImageIds()
        self.count = 0
        self.first = True
        stream.write("[")

    def __call__(self, record: dict) -> None:
        self.count += 1
        if "error" in record:
            return
        image_id = self.image_ids(record["path"], self.count, record.get("image_id"))
        categories = record.get("category_ids") or [label + 1 for label in record["label_ids"]]
        for box, score, name, category in zip(record["boxes"], record["scores"], record["labels"], categories):
            item = {"image_id": image_id, "file_name": record["path"], "category_id": category,
                    "category_name": name, "bbox": _xyxy_to_xywh(box), "score": score}
            self.stream.write(("\n" if self.first else ",\n") + dumps(item, ensure_ascii=False))
            self.first = False

    def skip(self, n: int) -> None:
        self.count += n  # positional image ids stay those of the whole input

    def close(self) -> None:
        self.stream.write("\n]\n")
        self.image_ids.summarise()


class ImageIds:
    """The ``image_id`` of a predicted image, as pycocotools users expect, first rule that applies:

    1. its id in a COCO annotation file (``--coco-images-from``), matched by
       ``file_name``: the longest trailing part of the path that is a file_name
       there (``.../val2017/x.jpg`` matches ``val2017/x.jpg`` or ``x.jpg``);
    2. its id in the COCO set the model was trained on, when it lies in one of
       its image folders (the record's ``image_id``, ``image_ids.py``);
    3. its numeric file name (``000000139.jpg`` -> 139), COCO's own naming;
    4. its 1-based position in the input (unreadable images counted, so ids do
       not shift when one fails).

    Images that fell through to a later rule are counted and summarised in one
    warning when the file is closed.
    """

    def __init__(self, known: dict[str, int | str] | None = None, source: str | None = None):
        self.known, self.source = known, source
        # A bare name matches only when one image of the file has it.
        names = Counter(PurePosixPath(k).name for k in (known or {}))
        self.by_name = {PurePosixPath(k).name: v for k, v in (known or {}).items() if names[PurePosixPath(k).name] == 1}
        self.unknown = self.positional = 0

    def __call__(self, path: str, position: int, from_training_set: int | str | None = None) -> int | str:
        if self.known is not None:
            parts = Path(path).parts
            for k in range(len(parts)):
                found = self.known.get("/".join(parts[k:]))
                if found is not None:
                    return found
            if Path(path).name in self.by_name:
                return self.by_name[Path(path).name]
            self.unknown += 1
        if from_training_set is not None:
            return from_training_set
        stem = Path(path).stem
        if stem.isascii() and stem.isdigit():
            return int(stem)
        self.positional += 1
        return position

    def summarise(self) -> None:
        if self.unknown:
            one = self.unknown == 1
            warn(f"{plural(self.unknown, 'image')} {'is' if one else 'are'} not in {self.source} (no matching "
                 f"file_name): image_id is {'its' if one else 'their'} numeric file name, else "
                 f"{'its' if one else 'their'} position")
        if self.positional:
            one = self.positional == 1
            warn(f"{plural(self.positional, 'image')} {'has' if one else 'have'} neither a known image_id nor a numeric "
                 f"file name: image_id is {'its' if one else 'their'} position in the input (give --coco-images-from "
                 f"ANNOTATIONS.json to use the set's ids)")


class YoloTxtWriter(RecordWriter):
    """One ``<image stem>.txt`` per image: ``class cx cy w h`` normalised to the image, a line per box.

    The label format itself (5 fields), so predictions can be read back as
    labels (e.g. pseudo-labels); an image without detections gets an empty file.
    """

    def __init__(self, folder: OutputFolder):
        self.folder = folder

    def __call__(self, record: dict) -> None:
        if "error" in record:
            return
        w, h = record["width"], record["height"]
        lines = []
        for (x1, y1, x2, y2), label in zip(record["boxes"], record["label_ids"]):
            lines.append(f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        target = self.folder.path_for(record["path"], ".txt")
        with writing(target):
            target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


class AnnotatedImageWriter(RecordWriter):
    """Draws each image's boxes with ``label score`` on the original image and saves it into a folder.

    Never writes over an input image, even with --overwrite (OutputFolder).
    """

    SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

    def __init__(self, folder: OutputFolder):
        self.folder = folder

    def __call__(self, record: dict) -> None:
        if "error" in record:
            return
        source = Path(record["path"])
        suffix = source.suffix.lower() if source.suffix.lower() in self.SUFFIXES else ".png"
        target = self.folder.path_for(record["path"], suffix)
        image = torch.from_numpy(load_image(source, "RGB")).permute(2, 0, 1)
        if record["boxes"]:
            side = min(record["width"], record["height"])
            labels = [f"{name} {score:.2f}" for name, score in zip(record["labels"], record["scores"])]
            colors = [PALETTE[k % len(PALETTE)] for k in record["label_ids"]]
            image = draw_bounding_boxes(image, torch.tensor(record["boxes"], dtype=torch.float32), labels=labels,
                                        colors=colors, width=max(1, round(side / 200)))
        extra = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
        with writing(target):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(target, **extra)


def prediction_outputs(options: DetectPredictOptions, out: OutputFile) -> PredictionOutputs:
    """jsonl and coco go to --out (a file) or stdout; yolo needs --out as a folder
    and writes nothing on stdout; --save-images adds a folder of drawn images."""
    fmt = out.format_by_name(options.format, OUT_SUFFIXES, DetectFormat.jsonl, "detect predict")
    options = dataclasses.replace(options, format=fmt)
    if options.format == DetectFormat.yolo and out.path is None:
        raise UserError("--format yolo writes one .txt file per image: give the folder with --out DIR")
    image_ids = None
    if options.coco_images_from:
        if options.format != DetectFormat.coco:
            raise UserError("--coco-images-from: applies to --format coco only")
        # Read now, before the checkpoint: a wrong path fails at once.
        image_ids = ImageIds(coco_image_ids(Path(options.coco_images_from)), options.coco_images_from)
    drawn = OutputFolder(options.save_images, "--save-images", out.overwrite) if options.save_images else None
    labels = OutputFolder(out.path, "--out", out.overwrite) if options.format == DetectFormat.yolo else None

    def writer(stream: IO[str]) -> RecordWriter:
        if labels is not None:
            main: RecordWriter = YoloTxtWriter(labels)
        elif options.format == DetectFormat.coco:
            main = CocoResultsWriter(stream, image_ids)
        else:
            main = JsonlWriter(stream)
        return Tee(main, AnnotatedImageWriter(drawn)) if drawn is not None else main

    return PredictionOutputs(writer, stream=OutputFile(None) if labels is not None else out,
                             folders=[f for f in (labels, drawn) if f is not None],
                             whole_document=labels is None and options.format == DetectFormat.coco)
