from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from visiontk.data.formats.records import AnnotatedImage
from visiontk.data.preprocess import Preprocess
from visiontk.errors import DataError
from visiontk.tasks.detect.dataset import DetectionDataset, collate_detection, detection_bbox_params

BOX = [4.0, 2.0, 14.0, 10.0]  # pixel xyxy on a 40 x 20 image


def pre(side: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> Preprocess:
    return Preprocess(size=(side, side), mean=mean, std=std)


def _record(tmp_path: Path, name="red.png", boxes=(BOX,), labels=(1,)) -> AnnotatedImage:
    arr = np.zeros((20, 40, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        arr[int(y1) : int(y2), int(x1) : int(x2), 0] = 255  # a red rectangle exactly under each box
    path = tmp_path / name
    Image.fromarray(arr).save(path)
    return AnnotatedImage(path, height=20, width=40, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                          labels=np.array(labels, np.int64))


def test_plain_item_normalised_boxes_and_image(tmp_path):
    ds = DetectionDataset([_record(tmp_path)], pre(32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    image, target = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= -1.0 and image.max() <= 1.0 and image[0].max() == 1.0  # (255/255 - .5) / .5
    torch.testing.assert_close(target["boxes"], torch.tensor([[9 / 40, 6 / 20, 10 / 40, 8 / 20]]))
    assert target["labels"].tolist() == [1] and target["labels"].dtype == torch.long
    assert target["image_id"] == 0 and target["orig_size"].tolist() == [20, 40]


def test_horizontal_flip_moves_box_and_pixels(tmp_path):
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=detection_bbox_params(min_visibility=0.0, clip=True))
    ds = DetectionDataset([_record(tmp_path)], pre(40, mean=(0, 0, 0), std=(1, 1, 1)), transform=flip)
    image, target = ds[0]
    cx, cy, w, h = target["boxes"][0].tolist()
    assert cx == pytest.approx(1 - 9 / 40, abs=1e-6) and cy == pytest.approx(6 / 20, abs=1e-6)
    assert (w, h) == pytest.approx((10 / 40, 8 / 20), abs=1e-6)
    # the red pixels moved with the box: image resized 40x20 -> 40x40, box [26, 4, 36, 20]
    red = image[0]
    assert red[6:18, 27:35].min() > 0.99
    assert red[:, :25].max() < 0.01 and red[:, 37:].max() < 0.01


def test_boxes_cropped_away_are_dropped_with_their_labels(tmp_path):
    rec = _record(tmp_path, boxes=(BOX, [30.0, 12.0, 38.0, 18.0]), labels=(1, 2))
    crop = A.Compose([A.Crop(x_min=0, y_min=0, x_max=20, y_max=20)], bbox_params=detection_bbox_params(0.5, True))
    _, target = DetectionDataset([rec], pre(16), transform=crop)[0]
    assert target["labels"].tolist() == [1]
    torch.testing.assert_close(target["boxes"], torch.tensor([[9 / 20, 6 / 20, 10 / 20, 8 / 20]]))


def test_empty_image_and_collate(tmp_path):
    recs = [_record(tmp_path), _record(tmp_path, "empty.png", boxes=(), labels=())]
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=detection_bbox_params(0.0, True))
    ds = DetectionDataset(recs, pre(24), transform=flip)
    images, targets = collate_detection([ds[0], ds[1]])
    assert images.shape == (2, 3, 24, 24)
    assert [t["boxes"].shape for t in targets] == [(1, 4), (0, 4)]
    assert targets[1]["labels"].shape == (0,) and targets[1]["image_id"] == 1


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)  # stored 20 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed 10 wide, 20 high
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif)
    rec = AnnotatedImage(path, height=20, width=10, boxes=np.array([[1, 1, 5, 5]], np.float32), labels=np.array([0]))
    _, target = DetectionDataset([rec], pre(8))[0]
    assert target["orig_size"].tolist() == [20, 10]


def test_size_mismatch_is_a_data_error(tmp_path):
    rec = _record(tmp_path)
    rec.width = 50
    with pytest.raises(DataError, match="red.png"):
        DetectionDataset([rec], pre(8))[0]


def test_bbox_params_helper():
    p = detection_bbox_params(min_visibility=0.3, clip=False)
    assert p.format == "pascal_voc" and list(p.label_fields) == ["labels"]
    assert p.min_visibility == 0.3 and p.clip is False
