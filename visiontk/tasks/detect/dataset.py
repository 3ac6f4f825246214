"""Detection records -> (normalised image tensor, target dict) for training and evaluation."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import box_convert

from visiontk.data.formats.records import AnnotatedImage
from visiontk.data.images import load_image
from visiontk.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def detection_bbox_params(min_visibility: float = 0.0, clip: bool = True) -> A.BboxParams:
    """The BboxParams every detection pipeline must use with `DetectionDataset`.

    Boxes travel as pixel xyxy ('pascal_voc') with their labels in the
    'labels' field; `min_visibility` drops boxes mostly cropped away;
    `clip` clamps boxes to the image before the transforms (albumentations
    rejects boxes outside it otherwise).
    """
    return A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=min_visibility, clip=clip)


class DetectionDataset(Dataset):
    """Images and boxes of `records`, augmented, resized to a square and normalised.

    Item: ``(image [3, S, S] float, target)`` with target ``{boxes: [K, 4]
    normalised cxcywh, labels: int64 [K], image_id: int (index in records),
    orig_size: int64 tensor (h, w) of the file as loaded}``.

    `transform`: an ``A.Compose`` built with `detection_bbox_params` whose
    output image is still an HWC uint8 array (no Normalize / ToTensorV2: this
    class resizes and normalises last, so every pipeline ends the same way).
    The resize is a plain one (no letterbox): normalised box coordinates do
    not change with it. mean/std are on the 0-1 scale.
    """

    def __init__(
        self,
        records: Sequence[AnnotatedImage],
        input_size: int,
        transform: Callable | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.records = list(records)
        self.input_size = int(input_size)
        self.transform = transform
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor | int]]:
        rec = self.records[index]
        image = load_image(rec.image, "RGB")  # EXIF-upright RGB uint8, DataError naming the file
        h, w = image.shape[:2]
        if (w, h) != (rec.width, rec.height):
            # The boxes are in the annotation's pixel frame; guessing a mapping
            # (rescale? rotate?) would silently train on wrong boxes.
            raise DataError(f"{rec.image}: image is {w}x{h} but its annotation says {rec.width}x{rec.height}")
        boxes = rec.boxes.astype(np.float32).reshape(-1, 4)
        labels = rec.labels.astype(np.int64).reshape(-1)
        if self.transform is not None:
            out = self.transform(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        th, tw = image.shape[:2]
        norm = torch.from_numpy(boxes / np.array([tw, th, tw, th], dtype=np.float32)).clamp_(0.0, 1.0)
        keep = (norm[:, 2] > norm[:, 0]) & (norm[:, 3] > norm[:, 1])
        if (th, tw) != (self.input_size, self.input_size):
            image = cv2.resize(image, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
        pixels = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        target = {
            "boxes": box_convert(norm[keep], "xyxy", "cxcywh"),
            "labels": torch.from_numpy(labels)[keep],
            "image_id": index,
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        return tensor, target


def collate_detection(batch: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """Stack the images; keep targets as a list (each image has its own number of boxes)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
