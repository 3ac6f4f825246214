"""Preprocess: the one path from a file to the model's input, and what travels in checkpoints."""
from __future__ import annotations

import json

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from visiontk.data.preprocess import DRAFT_DEFAULT, RESIZE_DEFAULT, RESIZE_RULES, Preprocess
from visiontk.errors import UserError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1) + rng.normal(0, 20, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- plain data


def test_round_trip_through_plain_json_and_checks():
    pre = Preprocess(size=(48, 64), channels=3, mean=MEAN, std=STD, resize="bilinear", jpeg_draft=False)
    d = json.loads(json.dumps(pre.to_dict()))
    assert d == {"size": [48, 64], "channels": 3, "mean": list(MEAN), "std": list(STD), "resize": "bilinear",
                 "jpeg_draft": False}
    assert Preprocess.from_dict(d) == pre
    assert RESIZE_DEFAULT in RESIZE_RULES
    for bad, message in [({**d, "resize": "cubic"}, "resize must be one of"), ({**d, "channels": 2}, "channels must be"),
                         ({**d, "std": [0, 1, 1]}, "std must be positive"), ({**d, "extra": 1}, "unknown keys extra")]:
        with pytest.raises(UserError, match=message):
            Preprocess.from_dict(bad)


def test_old_checkpoints_are_rebuilt_from_their_fields():
    old = {"input_size": [32, 40], "in_channels": 1, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    pre = Preprocess.from_checkpoint(old)
    # A grey model normalises with the first value, as predict always did.
    assert pre.size == (32, 40) and pre.channels == 1 and pre.mean == (0.485,) and pre.std == (0.229,)
    assert pre.resize == RESIZE_DEFAULT and pre.jpeg_draft
    new = {**old, "preprocess": Preprocess(size=(8, 8), mean=MEAN, std=STD, resize="bilinear").to_dict()}
    assert Preprocess.from_checkpoint(new).size == (8, 8)


def test_recipe_keys_offer_the_rules_with_the_measured_default():
    import typing

    from visiontk.recipe import DataConfig
    from visiontk.tasks.recipes import load_recipe

    fields = DataConfig.model_fields
    assert fields["resize"].default == RESIZE_DEFAULT and fields["jpeg_draft"].default is DRAFT_DEFAULT
    assert typing.get_args(fields["resize"].annotation) == RESIZE_RULES
    r = load_recipe("classify/shapes")
    assert (r.data.resize, r.data.jpeg_draft) == (RESIZE_DEFAULT, DRAFT_DEFAULT)
    # Checked as every recipe key is: one line naming the key, the choices and the value.
    with pytest.raises(UserError, match=r"'data\.resize' must be one of 'bilinear' \| 'area_from_2x', got 'cubic'$"):
        load_recipe("classify/shapes", ["data.resize=cubic"])
    with pytest.raises(UserError, match=r"'data\.jpeg_draft' must be true/false, got 1$"):
        load_recipe("classify/shapes", ["data.jpeg_draft=1"])


def test_checkpoint_meta_carries_the_recipes_preprocess():
    from visiontk.engine.build import checkpoint_meta
    from visiontk.tasks.recipes import load_recipe

    r = load_recipe("classify/shapes", ["data.image_size=[40, 56]", "model.in_channels=1", "data.resize=bilinear",
                                        "data.jpeg_draft=false"])
    meta = checkpoint_meta(r, ["a", "b"])
    assert meta["preprocess"] == {"size": [40, 56], "channels": 1, "mean": [0.5], "std": [0.25], "resize": "bilinear",
                                  "jpeg_draft": False}
    assert meta["input_size"] == [40, 56] and meta["mean"] == [0.5, 0.5, 0.5]  # the older fields, as before


# ---------------------------------------------------------------- normalisation


def test_per_image_and_fused_batch_normalisation_agree():
    pre = Preprocess(size=(12, 10), mean=MEAN, std=STD)
    images = [photo(10, 12, s) for s in range(3)]
    one = torch.stack([pre.normalize(im) for im in images])
    batch = pre.normalize_batch(torch.stack([torch.from_numpy(im) for im in images]))
    assert torch.allclose(one, batch, atol=1e-6, rtol=0)
    reference = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255
                 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(batch.double(), reference, atol=1e-5)
    with pytest.raises(ValueError, match="1 channels, expected 3"):
        pre.normalize(images[0][..., :1])


# ---------------------------------------------------------------- decode


def test_decode_gives_the_models_channels_for_every_kind_of_file(tmp_path):
    base = photo(30, 20)
    files = {
        "rgb.png": Image.fromarray(base),
        "grey.png": Image.fromarray(base).convert("L"),
        "rgba.png": Image.fromarray(np.dstack([base, np.full((20, 30), 128, np.uint8)]), "RGBA"),
        "palette.png": Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE),
        "cmyk.jpg": Image.fromarray(base).convert("CMYK"),
        "grey16.png": Image.fromarray((np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)),
    }
    for name, img in files.items():
        img.save(tmp_path / name)
    rgb, grey = Preprocess(size=(20, 30)), Preprocess(size=(20, 30), channels=1)  # no draft decoding
    for name in files:
        a, size = rgb.decode(tmp_path / name)
        g, _ = grey.decode(tmp_path / name)
        assert a.shape == (20, 30, 3) and g.shape == (20, 30, 1) and a.dtype == g.dtype == np.uint8, name
        assert size == (20, 30)
    wide, _ = rgb.decode(tmp_path / "grey16.png")
    # 16-bit: the full range scaled to 8 bits (59900 -> 233), not clipped to 255.
    assert wide[..., 0].max() == round(59900 / 65535 * 255) and wide[0, 0, 0] == 0


def test_exif_rotation_and_draft_decoding(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 400 x 200, displayed 200 x 400
    Image.fromarray(photo(400, 200)).save(tmp_path / "rot.jpg", exif=exif, quality=90)
    image, size = Preprocess(size=(40, 20)).decode(tmp_path / "rot.jpg")
    assert size == (400, 200)  # displayed (h, w) of the file
    assert image.shape == (50, 25, 3)  # decoded at 1/8: still >= (40, 20) in the displayed frame
    full, _ = Preprocess(size=(40, 20), jpeg_draft=False).decode(tmp_path / "rot.jpg")
    assert full.shape == (400, 200, 3)
    # No input size (tiled prediction): never draft-decoded.
    assert Preprocess(size=None).decode(tmp_path / "rot.jpg")[0].shape == (400, 200, 3)


# ---------------------------------------------------------------- resize


@pytest.mark.parametrize("src, rule, expected", [
    ((100, 80), "area_from_2x", cv2.INTER_AREA),  # shrink 2.5x
    ((60, 50), "area_from_2x", cv2.INTER_LINEAR),  # shrink 1.5x
    ((20, 16), "area_from_2x", cv2.INTER_LINEAR),  # enlarge
    ((100, 80), "bilinear", cv2.INTER_LINEAR),
])
def test_resize_rule(src, rule, expected):
    pre = Preprocess(size=(40, 32), resize=rule)
    image = photo(src[1], src[0])
    assert pre.interpolation(image.shape[:2]) == expected
    assert np.array_equal(pre.finish(image), cv2.resize(image, (32, 40), interpolation=expected))
    grey = pre.finish(image[..., :1])
    assert grey.shape == (40, 32, 1)
    assert Preprocess(size=None).finish(image) is image


# ---------------------------------------------------------------- datasets follow the decoded image


def test_detection_boxes_follow_a_draft_decoded_image(tmp_path):
    from visiontk.tasks.detect.dataset import DetectionDataset, detection_bbox_params
    from visiontk.data.formats.records import AnnotatedImage

    arr = np.zeros((400, 600, 3), np.uint8)
    arr[100:300, 150:450] = 255  # a white box under the annotation
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    rec = AnnotatedImage(tmp_path / "big.jpg", height=400, width=600, boxes=np.array([[150, 100, 450, 300]], np.float32),
                         labels=np.array([0]))
    pre = Preprocess(size=(64, 64), mean=(0, 0, 0), std=(1, 1, 1))
    assert pre.decode(rec.image)[0].shape[:2] == (100, 150)  # 1/4
    seen = {}

    def look(image, bboxes, labels):  # what the augmentations get: the box on its pixels
        seen["image"], seen["box"] = image, np.asarray(bboxes)[0]
        return {"image": image, "bboxes": bboxes, "labels": labels}

    x, target = DetectionDataset([rec], pre, transform=look)[0]
    assert np.allclose(seen["box"], [37.5, 25, 112.5, 75])
    x1, y1, x2, y2 = seen["box"].round().astype(int)
    assert seen["image"][y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 200 and seen["image"][:y1 - 2].max() < 50
    assert target["orig_size"].tolist() == [400, 600]
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=detection_bbox_params())
    _, flipped = DetectionDataset([rec], pre, transform=flip)[0]
    torch.testing.assert_close(flipped["boxes"], torch.tensor([[0.5, 0.5, 0.5, 0.5]]))


def test_segmentation_masks_follow_a_draft_decoded_image(tmp_path):
    from visiontk.tasks.segment.dataset import SegmentationDataset, collate_segmentation
    from visiontk.tasks.segment.readers import SegmentationRecord

    mask = np.zeros((400, 600), np.uint8)
    mask[:, 300:] = 1  # right half: class 1, and white in the image
    image = np.repeat((mask * 255)[..., None], 3, axis=2)
    Image.fromarray(image).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(mask).save(tmp_path / "big.png")
    rec = SegmentationRecord(tmp_path / "big.jpg", tmp_path / "big.png")
    pre = Preprocess(size=(32, 48), mean=(0, 0, 0), std=(1 / 255,) * 3)
    seen = {}

    def look(image, mask):
        seen["image"], seen["mask"] = image, mask
        return {"image": image, "mask": mask}

    x, y = SegmentationDataset([rec], 2, pre, transform=look)[0]
    assert seen["image"].shape[:2] == seen["mask"].shape == (50, 75)  # draft 1/8: the mask brought along
    away = np.abs(np.arange(75) - 37.5) > 1  # the boundary column of the decoded image is grey
    red, labels = seen["image"][:, away, 0], seen["mask"][:, away]
    assert (red[labels == 1] > 200).all() and (red[labels == 0] < 50).all()
    assert x.shape == (3, 32, 48) and y.shape == (32, 48) and y[:, 25:].eq(1).all() and y[:, :23].eq(0).all()
    at_input = SegmentationDataset([rec], 2, pre)
    at_image = SegmentationDataset([rec], 2, pre, mask_at="image_size")
    assert at_input[0][1].shape == (32, 48) and at_input.mask_at == "input_size"
    x, full = at_image[0]
    assert x.shape == (3, 32, 48) and torch.equal(full, torch.from_numpy(mask).long())  # the file's own mask
    # Masks of different sizes travel as a list; the images are stacked.
    Image.fromarray(image[:30, 280:320]).save(tmp_path / "small.png")
    Image.fromarray(mask[:30, 280:320]).save(tmp_path / "small_mask.png")
    small = SegmentationDataset([SegmentationRecord(tmp_path / "small.png", tmp_path / "small_mask.png")], 2, pre,
                                mask_at="image_size")
    images, masks = collate_segmentation([at_image[0], small[0], None])
    assert images.shape == (2, 3, 32, 48) and [tuple(m.shape) for m in masks] == [(400, 600), (30, 40)]


def test_grey_models_read_grey_pixels_in_every_task(tmp_path):
    """A 1-channel model decodes 'L' in training and eval, as predict does (it used to get
    RGB in detect/segment training, averaged after normalisation by the backbone)."""
    from visiontk.data.formats.records import AnnotatedImage
    from visiontk.tasks.detect.dataset import DetectionDataset
    from visiontk.tasks.segment.dataset import SegmentationDataset
    from visiontk.tasks.segment.readers import SegmentationRecord

    Image.fromarray(photo(40, 30)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "a_mask.png")
    pre = Preprocess(size=(16, 16), channels=1, mean=(0.5,), std=(0.25,))
    x, _ = DetectionDataset([AnnotatedImage(tmp_path / "a.png", height=30, width=40)], pre)[0]
    y, _ = SegmentationDataset([SegmentationRecord(tmp_path / "a.png", tmp_path / "a_mask.png")], 1, pre)[0]
    assert x.shape == y.shape == (1, 16, 16)
    assert torch.equal(x, pre(tmp_path / "a.png")) and torch.equal(y, x)


def test_grey_model_on_three_value_normalisation_checkpoints_load(tmp_path):
    """Found with transfer/membrane-lite0 (grey input, ImageNet-Lite0's (x - 127) / 128 for 3
    channels): training wrote 'mean' with 3 values beside preprocess.mean with 1, and eval and
    predict of its best.pt then refused it ("'mean' is [...] x3 but 'preprocess.mean' is [...]").
    The older key is read as the preprocess reads a longer list, its first value: the checkpoint
    loads, and a first value that disagrees is still refused."""
    from untrained import save_untrained_checkpoint

    from visiontk.engine.build import model_from_checkpoint

    path = save_untrained_checkpoint(tmp_path / "best.pt", "classify/shapes",
                                     ["model.in_channels=1", "data.mean=[0.5, 0.4, 0.3]", "data.std=[0.25, 0.2, 0.2]",
                                      "data.image_size=16", "model.backbone_options.width=4"], ["a", "b"])
    _, ckpt = model_from_checkpoint(path, "classify")
    assert (ckpt["mean"], ckpt["std"]) == ([0.5, 0.4, 0.3], [0.25, 0.2, 0.2])  # the older keys, as written
    assert (ckpt["preprocess"]["mean"], ckpt["preprocess"]["std"]) == ([0.5], [0.25])
    tampered = torch.load(path, weights_only=True)
    tampered["mean"] = [0.9, 0.4, 0.3]
    torch.save(tampered, tmp_path / "tampered.pt")
    with pytest.raises(UserError, match=r"'mean' is \[0.9, 0.4, 0.3\] but 'preprocess.mean' is \[0.5\]"):
        model_from_checkpoint(tmp_path / "tampered.pt", "classify")


def test_stack_images_gives_torch_stacks_batch_from_arrays_and_tensors():
    from visiontk.engine.decode_batches import stack_images

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(4)]
    expected = torch.stack([torch.as_tensor(a) for a in arrays])
    got = stack_images(arrays)
    assert got.dtype == torch.uint8 and got.shape == (4, 5, 7, 3) and torch.equal(got, expected)
    # Tensors (from worker processes) and a mix of both.
    assert torch.equal(stack_images([torch.as_tensor(a) for a in arrays]), expected)
    assert torch.equal(stack_images([arrays[0], torch.as_tensor(arrays[1]), arrays[2], arrays[3]]), expected)
