"""Where detection records go besides jsonl: COCO results json, YOLO txt files, annotated images.

Every writer takes one prediction record at a time (as the predictor streams
them) and skips error records: those are reported on stderr and in the exit
code, and have no boxes to write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Callable

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from visiontk.data.images import load_image
from visiontk.errors import UserError

# Distinct, readable on light and dark images; class k takes colour k mod len.
PALETTE = ["#FF3838", "#2C99A8", "#FFB21D", "#48F90A", "#8438FF", "#FF37C7", "#00C2FF", "#CFD231",
           "#FF9D97", "#3DDB86", "#1A9334", "#00D4BB", "#344593", "#6473FF", "#FF701F", "#520085"]


def _xyxy_to_xywh(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


class CocoResultsWriter:
    """A COCO detection results file: one JSON array of
    ``{image_id, file_name, category_id, category_name, bbox: [x, y, w, h], score}``.

    ``image_id`` is the 1-based position of the image in the input (unreadable
    ones included, so ids do not shift when one fails); ``category_id`` is the
    checkpoint's class index + 1 (COCO ids start at 1). Written as the records
    come, so memory stays flat.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.count = 0
        self.first = True
        stream.write("[")

    def __call__(self, record: dict) -> None:
        self.count += 1
        if "error" in record:
            return
        for box, score, name, label in zip(record["boxes"], record["scores"], record["labels"], record["label_ids"]):
            item = {"image_id": self.count, "file_name": record["path"], "category_id": label + 1,
                    "category_name": name, "bbox": _xyxy_to_xywh(box), "score": score}
            self.stream.write(("\n" if self.first else ",\n") + json.dumps(item, ensure_ascii=False))
            self.first = False

    def close(self) -> None:
        self.stream.write("\n]\n")


class _OutputFolder:
    """An output folder, checked up front and created at the first file (so a run that
    fails early leaves nothing behind); file names are the input's with `suffix`,
    then `_2`, `_3`... for inputs of the same name in one run."""

    def __init__(self, folder: Path, option: str, overwrite: bool):
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: {option} must be a directory, and this is a file")
        if folder.is_dir() and any(folder.iterdir()) and not overwrite:
            raise UserError(f"{folder}: {option} directory is not empty (use --overwrite to write into it)")
        self.folder, self.option = folder, option
        self.used: set[str] = set()

    def path_for(self, source: str, suffix: str) -> Path:
        if not self.used:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"{self.folder}: cannot create the {self.option} directory ({e.strerror or e})") from None
        stem = Path(source).stem or "image"
        name, n = f"{stem}{suffix}", 2
        while name in self.used:
            name, n = f"{stem}_{n}{suffix}", n + 1
        self.used.add(name)
        return self.folder / name


class YoloTxtWriter:
    """One ``<image stem>.txt`` per image: ``class cx cy w h`` normalised to the image, a line per box.

    The label format itself (5 fields), so predictions can be read back as
    labels (e.g. pseudo-labels); an image without detections gets an empty file.
    """

    def __init__(self, folder: Path, overwrite: bool = False):
        self.names = _OutputFolder(Path(folder), "--out", overwrite)

    def __call__(self, record: dict) -> None:
        if "error" in record:
            return
        w, h = record["width"], record["height"]
        lines = []
        for (x1, y1, x2, y2), label in zip(record["boxes"], record["label_ids"]):
            lines.append(f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        self.names.path_for(record["path"], ".txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


class AnnotatedImageWriter:
    """Draws each image's boxes with ``label score`` on the original image and saves it into a folder.

    Never writes over an input image, even with --overwrite.
    """

    SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

    def __init__(self, folder: Path, overwrite: bool = False):
        self.names = _OutputFolder(Path(folder), "--save-images", overwrite)

    def __call__(self, record: dict) -> None:
        if "error" in record:
            return
        source = Path(record["path"])
        suffix = source.suffix.lower() if source.suffix.lower() in self.SUFFIXES else ".png"
        target = self.names.path_for(record["path"], suffix)
        if target.exists() and os.path.samefile(target, source):
            raise UserError(f"{target}: --save-images would overwrite the input image; choose another directory")
        image = torch.from_numpy(load_image(source, "RGB")).permute(2, 0, 1)
        if record["boxes"]:
            side = min(record["width"], record["height"])
            labels = [f"{name} {score:.2f}" for name, score in zip(record["labels"], record["scores"])]
            colors = [PALETTE[k % len(PALETTE)] for k in record["label_ids"]]
            image = draw_bounding_boxes(image, torch.tensor(record["boxes"], dtype=torch.float32), labels=labels,
                                        colors=colors, width=max(1, round(side / 200)))
        extra = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(target, **extra)


class Tee:
    """Hands every record to several writers; closes those that need it."""

    def __init__(self, *writers: Callable[[dict], None]):
        self.writers = writers

    def __call__(self, record: dict) -> None:
        for w in self.writers:
            w(record)

    def close(self) -> None:
        for w in self.writers:
            if hasattr(w, "close"):
                w.close()


def prediction_writers(fmt: str, out: str | None, save_images: str | None, overwrite: bool):
    """(writer factory for `run_predict`, the file `run_predict` should open or None for stdout).

    jsonl and coco go to `out` (a file) or stdout; yolo needs `out` as a folder
    and writes nothing on stdout.
    """
    from visiontk.engine.writers import JsonlWriter

    if fmt == "yolo" and out in (None, "-"):
        raise UserError("--format yolo writes one .txt file per image: give the folder with --out DIR")
    drawer = AnnotatedImageWriter(Path(save_images), overwrite) if save_images else None
    yolo = YoloTxtWriter(Path(out), overwrite) if fmt == "yolo" else None

    def factory(stream: IO[str]):
        main = yolo if yolo is not None else (CocoResultsWriter(stream) if fmt == "coco" else JsonlWriter(stream))
        return Tee(main, drawer) if drawer is not None else main

    return factory, (None if fmt == "yolo" else out)
