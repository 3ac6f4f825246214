"""SegmentationDataset: normalisation, fixed size, mask-aware augmentation, policies."""
import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from visiontk.data.preprocess import Preprocess
from visiontk.errors import DataError, UserError
from visiontk.tasks.segment import dataset as dataset_module
from visiontk.tasks.segment.dataset import SegmentationDataset
from visiontk.tasks.segment.readers import SegmentationRecord


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared CPU


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def pre(size=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> Preprocess:
    """size None: each image at its own size; an int: square."""
    return Preprocess(size=(size, size) if isinstance(size, int) else size, mean=mean, std=std)


def write_pair(tmp_path, name, image, mask, exif_orientation=None):
    img_path, mask_path = tmp_path / f"{name}.png", tmp_path / f"{name}_mask.png"
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if exif_orientation is None:
        im.save(img_path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(img_path, exif=exif)
    Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="L").save(mask_path)
    return SegmentationRecord(image=img_path, mask=mask_path)


def coded_pair(h=6, w=8):
    """Mask with classes 0..2 and a 255 pixel; the image's red channel encodes the mask."""
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, : w // 2] = 1
    mask[h // 2 :, w // 4 : w // 2 + 1] = 2
    mask[0, w - 1] = 255
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0] = np.where(mask == 255, 250, mask * 80)
    image[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 10  # left-right marker
    return image, mask


def test_returns_normalised_image_and_long_mask(tmp_path):
    image, mask = coded_pair()
    ds = SegmentationDataset([write_pair(tmp_path, "a", image, mask)], num_classes=3, preprocess=pre(mean=MEAN, std=STD))
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8)
    assert y.dtype == torch.int64 and y.shape == (6, 8)
    assert torch.equal(y, torch.from_numpy(mask).long())
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)


def test_resize_uses_nearest_for_masks(tmp_path):
    image, mask = coded_pair()
    record = write_pair(tmp_path, "a", image, mask)
    for size in [(13, 17), 4]:
        x, y = SegmentationDataset([record], 3, pre(size))[0]
        hw = (size, size) if isinstance(size, int) else size
        assert x.shape == (3, *hw) and y.shape == hw
        assert set(y.unique().tolist()) <= {0, 1, 2, 255}
    # upscaling ×2 with nearest repeats every label exactly
    _, y = SegmentationDataset([record], 3, pre((12, 16)))[0]
    assert torch.equal(y, torch.from_numpy(mask).long().repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_flip_moves_image_and_mask_together(tmp_path):
    image, mask = coded_pair()
    record = write_pair(tmp_path, "a", image, mask)
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    x, y = SegmentationDataset([record], 3, pre(mean=(0, 0, 0), std=(1 / 255,) * 3), transform=flip)[0]
    assert torch.equal(y, torch.from_numpy(mask[:, ::-1].copy()).long())
    assert torch.allclose(x, torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1).float(), atol=1e-3)


def test_geometric_augmentation_keeps_labels_discrete_and_aligned(tmp_path):
    """albumentations resamples masks with nearest: no blended label values appear."""
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (32, 32)).astype(np.uint8)
    mask[:4] = 255
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[..., 0] = np.where(mask == 255, 250, mask * 80)
    record = write_pair(tmp_path, "a", image, mask)
    aug = A.Compose([A.Affine(rotate=(25, 25), scale=(1.3, 1.3), p=1.0, fill_mask=255,
                              interpolation=0)])  # nearest for the image too, to compare
    x, y = SegmentationDataset([record], 3, pre(mean=(0, 0, 0), std=(1 / 255,) * 3), transform=aug)[0]
    assert set(y.unique().tolist()) <= {0, 1, 2, 255}
    inside = y != 255
    assert inside.sum() > 300
    red = x[0].round().long()
    assert torch.equal(red[inside], y[inside] * 80)  # each label still sits under its pixel


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    record = write_pair(tmp_path, "r", image, np.zeros((6, 4)), exif_orientation=6)
    x, y = SegmentationDataset([record], 2, pre())[0]
    assert x.shape == (3, 6, 4) and y.shape == (6, 4)


def test_bad_mask_at_load_time_follows_the_policy(tmp_path, monkeypatch):
    image, mask = coded_pair()
    wrong_size = write_pair(tmp_path, "small", image, mask[:3])
    out_of_range = write_pair(tmp_path, "range", image, np.where(mask == 2, 9, mask))
    cases = [(wrong_size, "small_mask.png: mask size 8x3"), (out_of_range, "class values 9")]
    for record, message in cases:
        with pytest.raises(DataError, match=message):
            SegmentationDataset([record], 3, pre())[0]
    seen = []
    monkeypatch.setattr(dataset_module, "warn", seen.append)
    ds = SegmentationDataset([wrong_size, out_of_range], 3, pre(5), policy="skip")
    for i in range(2):
        x, y = ds[i]
        assert x.shape == (3, 5, 5) and (y == 255).all()
    ds[0]
    assert len(seen) == 2  # once per record


def test_transform_must_not_normalise(tmp_path):
    image, mask = coded_pair()
    record = write_pair(tmp_path, "a", image, mask)
    with pytest.raises(UserError, match="Normalize"):
        SegmentationDataset([record], 3, pre(), transform=A.Compose([A.Normalize()]))[0]
