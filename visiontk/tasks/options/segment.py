"""`segment` command options and help texts."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from visiontk.errors import UserError
from visiontk.tasks.options.fields import option
from visiontk.tasks.options.spec import CommandSpec


class MaskValues(str, Enum):
    """What the pixel values of predicted masks are."""

    ids = "ids"
    index = "index"


@dataclass(frozen=True)
class SegmentPredictOptions:
    out_dir: Optional[str] = option(None, "Folder for the mask PNGs (default: runs/segment/predict, -2, -3... when "
                                          "taken). Existing files are never replaced.", flags=("--out-dir",))
    overlay: bool = option(False, "Also write <name>_overlay.jpg: the image tinted by class.", flags=("--overlay",))
    tile: Optional[int] = option(None, "Predict at the image's own resolution in SIZE x SIZE tiles, stitched (for "
                                       "images larger than the model's input).", flags=("--tile",), min=8)
    tile_overlap: int = option(32, "Pixels of context on each side of a tile's kept centre.", flags=("--tile-overlap",),
                               min=0)
    mask_values: MaskValues = option(MaskValues.ids, "ids: mask pixels are the data set's own class ids (its class "
                                                     "map, e.g. 0, 7, 200, or the stored values of its "
                                                     "data.options.mask_values, e.g. 0 and 255; the class index when it "
                                                     "has neither) | index: contiguous class indices 0..K-1.",
                                     flags=("--mask-values",))

    cam: Optional[str] = option(None, "Write a Grad-CAM overlay per image into this folder (<name>_cam.png, at the "
                                      "model's input size) for --cam-class; a new or empty folder, never a source "
                                      "folder.", flags=("--cam",))
    cam_class: Optional[str] = option(None, "The class --cam explains (default: each image's largest predicted "
                                            "class other than the first, background).", flags=("--cam-class",))

    def __post_init__(self) -> None:
        # Checked when the options are made, before any image is read.
        if self.tile is not None and self.tile < 2 * self.tile_overlap + 1:
            raise UserError(f"--tile {self.tile} must be larger than 2 x --tile-overlap ({self.tile_overlap})")
        if self.cam and self.tile:
            raise UserError("--cam works at the model's input size; it cannot be used with --tile")
        if self.cam_class is not None and not self.cam:
            raise UserError("--cam-class chooses the class of --cam; give --cam DIR too")


class ScoredAt(str, Enum):
    """Where `segment eval` compares predictions with the truth."""

    image_size = "image-size"
    input_size = "input-size"

    @property
    def mask_at(self) -> str:
        """The dataset's name for it (tasks/segment/dataset.py SCORED_AT, the output's 'scored_at')."""
        return self.value.replace("-", "_")


@dataclass(frozen=True)
class SegmentEvalOptions:
    at: ScoredAt = option(ScoredAt.image_size, "Where predictions meet the truth: image-size (each image's own size: "
                                               "logits upsampled as predict writes its masks; as VOC and Cityscapes "
                                               "score) | input-size (masks shrunk to the model's input, as the "
                                               "per-epoch validation of training).", flags=("--at",))

    def __post_init__(self) -> None:
        # The library may be given the plain string (as the command line spells it, or the dataset does).
        try:
            at = ScoredAt(self.at.replace("_", "-") if isinstance(self.at, str) else self.at)
        except ValueError:
            raise UserError(f"--at: {self.at!r} is not one of {', '.join(a.value for a in ScoredAt)}") from None
        object.__setattr__(self, "at", at)


COMMANDS = CommandSpec(
    name="segment",
    help="Semantic segmentation (FCN, U-Net).",
    train_help="Train a segmentation model from a recipe.",
    eval_help="mIoU, per-class IoU, pixel accuracy and mean Dice over a split (one confusion matrix).\n\n"
              "Scored at each image's own size by default; the output says where ('scored_at').",
    predict_help="Segment images: a mask PNG per image (original size) and one JSON line per image on stdout.\n\n"
                 "Mask pixels are class indices, or the data set's own class ids when the model was trained with a "
                 "class map (data.classes {id: name}, data.options.data_yaml) or a value table "
                 "(data.options.mask_values: {0: 0, 255: 1} writes 0 and 255); see --mask-values.",
    split_help="Split: train, val (the recipe's), or another split name of the data set.",
    plots_help="Where the confusion matrix PNG goes (default: next to the checkpoint).",
    eval_batch_size=16,
    predict_batch_size=8,
    predict_batch_help="Images per batch (tiles per batch with --tile).",
    predict_options=SegmentPredictOptions,
    eval_options=SegmentEvalOptions,
)
