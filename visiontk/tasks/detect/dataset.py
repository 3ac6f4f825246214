"""Detection records -> (normalised image tensor, target dict) for training and evaluation."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import box_convert

from visiontk.data.formats.records import AnnotatedImage
from visiontk.data.preprocess import Preprocess
from visiontk.errors import DataError


def detection_bbox_params(min_visibility: float = 0.0, clip: bool = True) -> A.BboxParams:
    """The BboxParams every detection pipeline must use with `DetectionDataset`.

    Boxes travel as pixel xyxy ('pascal_voc') with their labels in the
    'labels' field; `min_visibility` drops boxes mostly cropped away;
    `clip` clamps boxes to the image before the transforms (albumentations
    rejects boxes outside it otherwise).
    """
    import albumentations as A  # training only: predict never loads it

    return A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=min_visibility, clip=clip)


def size_mismatch(rec: AnnotatedImage, file_hw: tuple[int, int]) -> str | None:
    """What is wrong when the file's (h, w) as displayed is not its annotation's, else None.

    The boxes are in the annotation's pixel frame; guessing a mapping (rescale?
    rotate?) would silently train on wrong boxes.
    """
    h, w = file_hw
    if (w, h) == (rec.width, rec.height):
        return None
    return f"{rec.image}: image is {w}x{h} but its annotation says {rec.width}x{rec.height}"


class DetectionDataset(Dataset):
    """Images and boxes of `records`, augmented, then resized and normalised by `preprocess`.

    Item: ``(image [C, h, w] float, target)`` with target ``{boxes: [K, 4]
    normalised cxcywh, labels: int64 [K], image_id: int (index in records),
    orig_size: int64 tensor (h, w) of the file as displayed}``.

    `transform`: an ``A.Compose`` built with `detection_bbox_params` whose
    output image is still an HWC uint8 array (no Normalize / ToTensorV2:
    `preprocess` resizes and normalises last, as in `predict`). The resize is
    a plain one (no letterbox): normalised box coordinates do not change with
    it. A JPEG draft-decoded smaller than its annotation's frame gets its
    boxes scaled to the decoded array, so augmentations see them aligned.
    """

    def __init__(self, records: Sequence[AnnotatedImage], preprocess: Preprocess,
                 transform: Callable | None = None) -> None:
        self.records = list(records)
        self.preprocess = preprocess
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor | int]]:
        rec = self.records[index]
        image, (h, w) = self.preprocess.decode(rec.image)  # EXIF-upright, DataError naming the file
        problem = size_mismatch(rec, (h, w))
        if problem is not None:
            raise DataError(problem)
        dh, dw = image.shape[:2]
        boxes = rec.boxes.astype(np.float32).reshape(-1, 4)
        if (dh, dw) != (h, w):  # draft-decoded: boxes into the decoded array's frame
            boxes = boxes * np.array([dw / w, dh / h, dw / w, dh / h], dtype=np.float32)
        labels = rec.labels.astype(np.int64).reshape(-1)
        if self.transform is not None:
            out = self.transform(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        th, tw = image.shape[:2]
        norm = torch.from_numpy(boxes / np.array([tw, th, tw, th], dtype=np.float32)).clamp_(0.0, 1.0)
        keep = (norm[:, 2] > norm[:, 0]) & (norm[:, 3] > norm[:, 1])
        target = {
            "boxes": box_convert(norm[keep], "xyxy", "cxcywh"),
            "labels": torch.from_numpy(labels)[keep],
            "image_id": index,
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        return self.preprocess.normalize(self.preprocess.finish(image)), target


def collate_detection(batch: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """Stack the images; keep targets as a list (each image has its own number of boxes)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
