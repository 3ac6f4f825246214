"""Semantic segmentation as a task: FCN / U-Net decoders on any shared backbone.

What is segmentation's own lives in this package (decoders, loss, confusion
matrix, readers, tiling); this module plugs it into the shared recipe loader,
trainer, evaluator and predictor. The classic backbone-free U-Net is
``model.backbone: unet_encoder`` with ``model.head.decoder: unet`` (see
``visiontk/backbones/unet.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional

import albumentations as A
import numpy as np
import torch
from torch import nn

from visiontk.console import err_console
from visiontk.data.transforms import build_augmentations
from visiontk.engine.normalization import recipe_preprocess
from visiontk.errors import UserError
from visiontk.tasks.base import Task
from visiontk.tasks.registry import register_task

from .common import label_map
from .dataset import SCORED_AT, SegmentationDataset, collate_segmentation
from .formats import read_records, validate_data
from .losses import SegmentationLoss
from .metrics import ConfusionMatrix
from .model import SegmentationModel, build_decoder
from .outputs import MaskSaver, full_size_labels
from .readers import IGNORE_INDEX
from .tiling import predict_tiled

FCN_DECODERS = ("fcn32s", "fcn16s", "fcn8s")


@dataclass
class SegmentHeadOptions:
    decoder: Literal["fcn32s", "fcn16s", "fcn8s", "unet"] = "unet"
    # U-Net only: width of each x2 stage, deepest first (default: mirror the backbone).
    decoder_channels: Optional[list[int]] = None
    # U-Net only: transposed convolution (the paper's up-convolution) or fixed bilinear + 1x1 conv.
    upsample: Literal["transpose", "bilinear"] = "transpose"
    # U-Net only: channel dropout on the deepest feature.
    dropout: float = 0.0
    # How inputs are padded to a multiple of the backbone's stride (cropped back after).
    pad_mode: Literal["reflect", "replicate", "zero"] = "reflect"


@dataclass
class SegmentLossOptions:
    kind: Literal["ce", "dice", "ce+dice"] = "ce"
    # Mask value counted in neither loss nor metrics. 255 (unlabelled) is always
    # ignored; another value (a class index) is ignored as well.
    ignore_index: int = IGNORE_INDEX
    # Cross-entropy weight per class (index order); Dice is class-balanced already.
    class_weights: Optional[list[float]] = None
    # Weight of the Dice term in ce+dice.
    dice_weight: float = 1.0


def _clean(value: float) -> float | None:
    """NaN (a class absent from both prediction and truth) becomes null in JSON."""
    return None if value is None or math.isnan(value) else value


class SegmentTask(Task):
    name = "segment"
    head_schema = SegmentHeadOptions
    loss_schema = SegmentLossOptions
    predict_defaults: dict = {}

    # -- recipe ---------------------------------------------------------------
    def validate_recipe(self, recipe, source: str) -> None:
        validate_data(recipe, source)
        head, loss = recipe.model.head, recipe.loss
        if head["decoder"] in FCN_DECODERS:
            unet_only = {"decoder_channels": None, "upsample": "transpose", "dropout": 0.0}
            for key, default in unet_only.items():
                if head[key] != default:
                    raise UserError(f"{source}: 'model.head.{key}' applies to the unet decoder only "
                                    f"(FCN upsamples with bilinear-initialised transposed convolutions)")
        if not 0.0 <= head["dropout"] < 1.0:
            raise UserError(f"{source}: 'model.head.dropout' must be in [0, 1), got {head['dropout']!r}")
        if head["decoder_channels"] is not None and (not head["decoder_channels"] or min(head["decoder_channels"]) < 1):
            raise UserError(f"{source}: 'model.head.decoder_channels' must be a non-empty list of widths >= 1")
        if not 0 <= loss["ignore_index"] <= 255:
            raise UserError(f"{source}: 'loss.ignore_index' must be in 0..255, got {loss['ignore_index']!r}")
        if loss["dice_weight"] < 0:
            raise UserError(f"{source}: 'loss.dice_weight' must be >= 0, got {loss['dice_weight']!r}")
        weights = loss["class_weights"]
        if weights is not None:
            if min(weights, default=0) <= 0:
                raise UserError(f"{source}: 'loss.class_weights' must be positive numbers, got {weights!r}")
            if recipe.data.classes and len(weights) != len(recipe.data.classes):
                raise UserError(f"{source}: 'loss.class_weights' has {len(weights)} entries for "
                                f"{len(recipe.data.classes)} classes in data.classes")
        if recipe.train.label_smoothing:
            raise UserError(f"{source}: 'train.label_smoothing' is not supported by segment")

    # -- data -------------------------------------------------------------------
    def prepare_data(self, recipe) -> None:
        root = Path(recipe.data.root)
        if recipe.data.synthetic is not None and not (root / recipe.data.train).is_dir():
            from visiontk.data.synth import synth_segment

            s = recipe.data.synthetic
            err_console.print(f"generating the synthetic shapes set into {root}", highlight=False)
            synth_segment(root, n=s.n, size=s.size, seed=s.seed)

    def build_dataset(self, recipe, split: str, train: bool, classes=None, root=None, preprocess=None,
                      mask_at: str = "input_size"):
        """`mask_at`: "input_size" (training, per-epoch validation) or "image_size"
        (`segment eval`: masks at each image's own size, where predict writes its masks)."""
        records, names = read_records(recipe, split, classes, root)
        augment = build_augmentations(recipe.data.augment) if train else []
        dataset = SegmentationDataset(
            records, len(names), preprocess or recipe_preprocess(recipe),
            transform=A.Compose(augment) if augment else None, policy=recipe.data.bad_annotations, mask_at=mask_at,
        )
        return dataset, names

    def eval_dataset(self, recipe, split: str, classes, root, preprocess, options: dict):
        at = options.get("at", "image_size")
        if at not in SCORED_AT:
            raise UserError(f"--at: '{at}' is not one of {', '.join(a.replace('_', '-') for a in SCORED_AT)}")
        return self.build_dataset(recipe, split, train=False, classes=classes, root=root, preprocess=preprocess,
                                  mask_at=at)

    def collate(self, batch: list):
        return collate_segmentation(batch)

    # -- model --------------------------------------------------------------------
    def build_head(self, recipe, backbone, num_classes: int) -> nn.Module:
        h = recipe.model.head
        options = {}
        if h["decoder"] == "unet":
            options = {"decoder_channels": h["decoder_channels"], "upsample": h["upsample"], "dropout": h["dropout"]}
        return build_decoder(h["decoder"], backbone.out_channels, backbone.strides, num_classes, **options)

    def build_model(self, recipe, backbone, num_classes: int) -> nn.Module:
        # SegmentationModel pads odd sizes to the backbone's stride and crops back.
        return SegmentationModel(backbone, self.build_head(recipe, backbone, num_classes), recipe.model.head["pad_mode"])

    def build_loss(self, recipe, num_classes: int):
        o = recipe.loss
        if o["class_weights"] is not None and len(o["class_weights"]) != num_classes:
            raise UserError(f"loss.class_weights: {len(o['class_weights'])} entries for {num_classes} classes")
        # The data stage folds loss.ignore_index into 255, so the loss ignores 255 only.
        criterion = SegmentationLoss(o["kind"], IGNORE_INDEX, o["class_weights"], o["dice_weight"])

        def loss_fn(logits, masks):
            if criterion.class_weights is not None and criterion.class_weights.device != logits.device:
                criterion.to(logits.device)
            loss, parts = criterion(logits, masks)
            # The trainer logs the total itself; the parts only say something for ce+dice.
            return loss, ({k: v for k, v in parts.items() if k != "loss"} if o["kind"] == "ce+dice" else {})

        return loss_fn

    # -- evaluation ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, loader, device, classes, options=None) -> dict:
        """One confusion matrix over the whole split: mIoU, per-class IoU, pixel accuracy, Dice."""
        model.eval()
        cm = ConfusionMatrix(len(classes), IGNORE_INDEX, device=device)
        # The dataset says where its masks are: at the input size, or at each image's
        # own size, where the logits are upsampled exactly as `predict` writes its masks.
        scored_at = getattr(getattr(loader, "dataset", None), "mask_at", "input_size")
        images = 0
        for item in loader:
            if item is None:  # the collate's "nothing left in this batch"
                continue
            batch, masks = item
            logits = model(batch.to(device, non_blocking=True))
            if torch.is_tensor(masks) and masks.shape[-2:] == logits.shape[-2:]:
                cm.update(label_map(logits, 1), masks.to(device, non_blocking=True))
            else:
                for one, mask in zip(logits, masks):
                    labels = torch.from_numpy(full_size_labels(one, tuple(mask.shape[-2:])).astype(np.int64))
                    cm.update(labels.to(device), mask.to(device))
            images += batch.shape[0]
        m = cm.compute()
        mat = cm.mat.cpu()
        return {
            "miou": m["miou"],
            "pixel_accuracy": m["pixel_accuracy"],
            "mean_dice": m["mean_dice"],
            "iou": {name: _clean(v) for name, v in zip(classes, m["per_class_iou"])},
            "dice": {name: _clean(v) for name, v in zip(classes, m["per_class_dice"])},
            "images": images,
            "pixels": int(mat.sum()),
            "confusion_matrix": mat.tolist(),
            "scored_at": scored_at,
            "fitness": m["miou"],
        }

    def metric_scalars(self, metrics: dict) -> dict:
        out = {k: metrics[k] for k in ("miou", "pixel_accuracy", "mean_dice") if k in metrics}
        out.update({f"iou/{name}": v for name, v in metrics.get("iou", {}).items() if v is not None})
        return out

    def write_eval_plots(self, metrics, classes, plots_dir: Path, suffix: str = "") -> list[Path]:
        from visiontk.viz.plots import plot_confusion_matrix

        path = plots_dir / f"confusion_matrix{suffix}.png"
        plot_confusion_matrix(metrics["confusion_matrix"], classes, path)
        return [path]

    def print_metrics(self, metrics: dict, classes: list[str]) -> None:
        from rich.table import Table

        def fmt(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

        where = {"image_size": "at each image's own size", "input_size": "at the model's input size"}
        scored_at = metrics.get("scored_at", "input_size")
        summary = Table(title=f"segmentation (scored {where.get(scored_at, scored_at)})", show_header=True)
        for col in ("images", "pixels", "mIoU", "pixel acc.", "mean Dice"):
            summary.add_column(col, justify="right")
        summary.add_row(str(metrics["images"]), str(metrics["pixels"]), fmt(metrics["miou"]),
                        fmt(metrics["pixel_accuracy"]), fmt(metrics["mean_dice"]))
        err_console.print(summary)
        mat = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
        truth = mat.sum(1) / max(mat.sum(), 1)
        per_class = Table(title="per class", show_header=True)
        for col in ("class", "IoU", "Dice", "pixel share"):
            per_class.add_column(col, justify="left" if col == "class" else "right")
        for i, name in enumerate(classes):
            per_class.add_row(name, fmt(metrics["iou"].get(name)), fmt(metrics["dice"].get(name)), f"{truth[i]:.4f}")
        err_console.print(per_class)

    # -- prediction ---------------------------------------------------------------
    def predict_input_size(self, input_size, options):
        # Tiled prediction runs at the image's own resolution, tile by tile.
        return None if options.get("tile") else input_size

    def predict_forward(self, model, images, device, options):
        if not options.get("tile"):
            return super().predict_forward(model, images, device, options)
        k = len(options["classes"])
        return [predict_tiled(model, image[None].to(device), options["tile"], options["tile_overlap"], k,
                              batch_size=options.get("tile_batch", 4)) for image in images]

    def postprocess(self, outputs, metas, options) -> Iterable[dict]:
        classes = options["classes"]
        saver: MaskSaver | None = options.get("saver")
        for i, meta in enumerate(metas):
            logits = outputs[i] if torch.is_tensor(outputs) else outputs[i][0]
            h, w = meta["orig_size"]
            mask = full_size_labels(logits, (h, w))
            counts = np.bincount(mask.ravel(), minlength=len(classes))
            record: dict = {"path": meta["path"]}
            if saver is not None:
                record.update(saver.save(meta["path"], mask, meta.get("image")))
            record["size"] = [h, w]
            record["share"] = {name: round(float(c) / mask.size, 6) for name, c in zip(classes, counts)}
            yield record


def predict_options(out_dir: str | None, overlay: bool, tile: int | None, tile_overlap: int, batch_size: int) -> dict:
    """Options of `segment predict`: where masks go, overlays, tiling. Checked before any image is read."""
    from visiontk.engine.trainer import next_run_dir

    if tile is not None and tile < 2 * tile_overlap + 1:
        raise UserError(f"--tile {tile} must be larger than 2 x --tile-overlap ({tile_overlap})")
    directory = Path(out_dir) if out_dir else next_run_dir(Path("runs"), "segment", "predict")
    return {"saver": MaskSaver(directory, overlay), "keep_image": overlay, "tile": tile, "tile_overlap": tile_overlap,
            "tile_batch": batch_size}


register_task(SegmentTask())
