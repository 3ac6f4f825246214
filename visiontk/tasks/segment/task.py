"""Semantic segmentation as a task: FCN / U-Net decoders on any shared backbone.

What is segmentation's own lives in this package (decoders, loss, confusion
matrix, records, data formats, tiling); this module plugs it into the shared recipe loader,
trainer, evaluator and predictor. The classic backbone-free U-Net is
``model.backbone: unet_encoder`` with ``model.head.decoder: unet`` (see
``visiontk/backbones/unet.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Iterable, Literal, Optional

import cv2
import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from visiontk.console import plural
from visiontk.data.formats.masks import IGNORE_INDEX
from visiontk.backbones.normalization import recipe_preprocess
from visiontk.errors import UserError
from visiontk.metrics.report import MANY_CLASSES
from visiontk.outputs.cam_writer import with_cam_folder
from visiontk.outputs.output_folder import OutputFolder, next_run_dir
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import JsonlWriter
from visiontk.recipe import Expected, Fraction, Number, Section, recipe_error, rule_error
from visiontk.tasks.base import Task, outputs_for, shown_image, spread_indices
from visiontk.tasks.options.segment import MaskValues, SegmentEvalOptions, SegmentPredictOptions
from visiontk.tasks.registry import register_task
from visiontk.viz.report_html import Charts, Heatmap, PageSection

from .common import label_map
from .dataset import SegmentationDataset, collate_segmentation
from .formats import read_records
from .losses import SegmentationLoss
from .metrics import SegmentationMetric, segmentation_report
from .model import SegmentationModel, build_decoder
from .outputs import MaskWriter, full_size_labels
from .tiling import predict_tiled

FCN_DECODERS = ("fcn32s", "fcn16s", "fcn8s")
# Validation images drawn in the run report (two tiles each: truth, prediction).
REPORT_GRID = 6


class SegmentHeadOptions(Section):
    decoder: Literal["fcn32s", "fcn16s", "fcn8s", "unet"] = "unet"
    # U-Net only: width of each x2 stage, deepest first (default: mirror the backbone).
    decoder_channels: Optional[Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1),
                                         Expected("a non-empty list of widths >= 1")]] = None
    # U-Net only: transposed convolution (the paper's up-convolution) or fixed bilinear + 1x1 conv.
    upsample: Literal["transpose", "bilinear"] = "transpose"
    # U-Net only: channel dropout on the deepest feature.
    dropout: Fraction = 0.0
    # How inputs are padded to a multiple of the backbone's stride (cropped back after).
    pad_mode: Literal["reflect", "replicate", "zero"] = "reflect"

    @model_validator(mode="after")
    def _unet_options_need_unet(self) -> "SegmentHeadOptions":
        if self.decoder in FCN_DECODERS:
            for key in ("decoder_channels", "upsample", "dropout"):
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise rule_error("applies to the unet decoder only (FCN upsamples with bilinear-initialised "
                                     "transposed convolutions)", key=key, show_value=False)
        return self


class SegmentLossOptions(Section):
    kind: Literal["ce", "dice", "ce+dice"] = "ce"
    # Mask value counted in neither loss nor metrics. 255 (unlabelled) is always
    # ignored; another value (a class index) is ignored as well.
    ignore_index: Annotated[int, Field(ge=0, le=255)] = IGNORE_INDEX
    # Cross-entropy weight per class (index order); Dice is class-balanced already.
    class_weights: Optional[Annotated[list[Annotated[Number, Field(gt=0.0)]], Field(min_length=1),
                                      Expected("a list of positive numbers")]] = None
    # Weight of the Dice term in ce+dice.
    dice_weight: Annotated[Number, Field(ge=0.0)] = 1.0


class SegmentTask(Task):
    name = "segment"
    head_schema = SegmentHeadOptions
    loss_schema = SegmentLossOptions
    data_formats = ("masks", "voc", "coco")
    predict_defaults: dict = {}
    predict_options = SegmentPredictOptions
    eval_options = SegmentEvalOptions

    # -- recipe ---------------------------------------------------------------
    def validate_recipe(self, recipe, source: str) -> None:
        classes, weights = recipe.data.classes, recipe.loss.class_weights
        if classes is not None and len(classes) < 2:
            raise recipe_error(source, "data.classes", f"needs at least 2 names (index 0 first, e.g. background), "
                                                       f"got {classes!r}")
        if weights is not None and classes and len(weights) != len(classes):
            raise recipe_error(source, "loss.class_weights", f"has {plural(len(weights), 'entry')} for "
                                                             f"{plural(len(classes), 'class')} in data.classes")
        if isinstance(classes, dict) and recipe.data.format != "masks":
            raise recipe_error(source, "data.classes", "an {id: name} map is read by data.format masks only; "
                                                       "give a list of names")
        if recipe.train.label_smoothing:
            raise recipe_error(source, "train.label_smoothing", "is not supported by segment")

    # -- data -------------------------------------------------------------------
    def synthesize(self, root: Path, n: int, size: int, seed: int) -> None:
        from visiontk.data.synth import synth_segment

        synth_segment(root, n=n, size=size, seed=seed)

    def build_dataset(self, recipe, split: str, train: bool, classes=None, root=None, preprocess=None,
                      mask_at: str = "input_size"):
        """`mask_at`: "input_size" (training, per-epoch validation) or "image_size"
        (`segment eval`: masks at each image's own size, where predict writes its masks)."""
        import albumentations as A  # training and eval only: predict never loads it

        from visiontk.data.transforms import build_augmentations

        records, names, ids = read_records(recipe, split, classes, root)
        augment = build_augmentations(recipe.data.augment) if train else []
        dataset = SegmentationDataset(
            records, len(names), preprocess or recipe_preprocess(recipe),
            transform=A.Compose(augment) if augment else None, policy=recipe.data.bad_annotations, mask_at=mask_at,
        )
        # The data set's own mask value of each class (a class map): into the checkpoint, for predict.
        dataset.category_ids = ids
        return dataset, names

    def eval_dataset(self, recipe, split: str, classes, root, preprocess, options: SegmentEvalOptions):
        return self.build_dataset(recipe, split, train=False, classes=classes, root=root, preprocess=preprocess,
                                  mask_at=options.at.mask_at)

    def collate(self, batch: list):
        return collate_segmentation(batch)

    # -- model --------------------------------------------------------------------
    def build_head(self, recipe, backbone, num_classes: int) -> nn.Module:
        h = recipe.model.head
        options = {}
        if h.decoder == "unet":
            options = {"decoder_channels": h.decoder_channels, "upsample": h.upsample, "dropout": h.dropout}
        return build_decoder(h.decoder, backbone.out_channels, backbone.strides, num_classes, **options)

    def build_model(self, recipe, backbone, num_classes: int) -> nn.Module:
        # SegmentationModel pads odd sizes to the backbone's stride and crops back.
        return SegmentationModel(backbone, self.build_head(recipe, backbone, num_classes), recipe.model.head.pad_mode)

    def build_loss(self, recipe, num_classes: int):
        o = recipe.loss
        if o.class_weights is not None and len(o.class_weights) != num_classes:
            raise UserError(f"loss.class_weights: {plural(len(o.class_weights), 'entry')} for "
                            f"{plural(num_classes, 'class')}")
        # The data stage folds loss.ignore_index into 255, so the loss ignores 255 only.
        criterion = SegmentationLoss(o.kind, IGNORE_INDEX, o.class_weights, o.dice_weight)

        def loss_fn(logits, masks):
            if criterion.class_weights is not None and criterion.class_weights.device != logits.device:
                criterion.to(logits.device)
            loss, parts = criterion(logits, masks)
            # The trainer logs the total itself; the parts only say something for ce+dice.
            return loss, ({k: v for k, v in parts.items() if k != "loss"} if o.kind == "ce+dice" else {})

        return loss_fn

    # -- evaluation ---------------------------------------------------------------
    def metric(self, classes, options, dataset=None) -> SegmentationMetric:
        """One confusion matrix over the whole split: mIoU, per-class IoU, pixel accuracy, Dice."""
        # The dataset says where its masks are: at the input size, or at each image's
        # own size (`segment eval --at`), where the logits are upsampled as `predict` writes its masks.
        return SegmentationMetric(classes, IGNORE_INDEX, scored_at=getattr(dataset, "mask_at", "input_size"))

    def eval_outputs(self, outputs, targets, classes, options):
        if torch.is_tensor(targets) and targets.shape[-2:] == outputs.shape[-2:]:
            return label_map(outputs, 1), targets
        labels = [torch.from_numpy(full_size_labels(one, tuple(mask.shape[-2:])).astype(np.int64)).to(mask.device)
                  for one, mask in zip(outputs, targets)]
        return labels, list(targets)

    def metric_scalars(self, metrics: dict) -> dict:
        out = {k: metrics[k] for k in ("miou", "pixel_accuracy", "mean_dice") if k in metrics}
        # Up to MANY_CLASSES classes their IoUs stay in results.csv (and on the epoch
        # line) as they always were; beyond, they are in per_class.csv only.
        if len(metrics.get("iou", {})) <= MANY_CLASSES:
            out.update({f"iou/{name}": v for name, v in metrics.get("iou", {}).items() if v is not None})
        return out

    def per_class_scores(self, metrics: dict, classes: list[str]) -> dict[str, list]:
        return {"iou": [metrics["iou"].get(name) for name in classes],
                "dice": [metrics["dice"].get(name) for name in classes]}

    def report(self, metrics: dict, classes: list[str]):
        return segmentation_report(metrics, classes)

    def report_sections(self, metrics, classes) -> list[PageSection]:
        from visiontk.viz.svg_charts import bar_chart

        if "iou" not in metrics:
            return []
        return [PageSection("IoU per class", [
            Charts([bar_chart(metrics["iou"], f"IoU per class (mIoU {metrics['miou']:.3f})")]),
            Heatmap(classes, classes, metrics["confusion_matrix"], caption=(
                "pixel confusion matrix; rows: true class, columns: predicted; shade: share of the true class"))])]

    def report_samples(self, model, dataset, classes, device) -> dict[str, bytes]:
        """The first REPORT_GRID validation images: the true mask and the predicted one, tinted
        by class over the image, at the model's input size."""
        from visiontk.viz.sample_grid import sample_grid_png

        tiles = []
        for i, image, mask, logits in outputs_for(model, dataset, spread_indices(len(dataset), REPORT_GRID), device):
            shown = shown_image(image, dataset.preprocess)
            name = Path(dataset.records[i].image).name if hasattr(dataset, "records") else f"#{i}"
            predicted = label_map(logits[None], 1)[0].cpu().numpy()
            truth = mask.cpu().numpy()
            if truth.shape != predicted.shape:  # masks at the image's own size: drawn at the input size
                truth = cv2.resize(truth.astype(np.uint8), predicted.shape[::-1], interpolation=cv2.INTER_NEAREST)
            tiles.append({"image": shown, "mask": truth, "num_classes": len(classes), "title": f"{name}: truth"})
            tiles.append({"image": shown, "mask": predicted, "num_classes": len(classes), "title": f"{name}: predicted"})
        return {"val_samples.png": sample_grid_png(tiles, cols=4)} if tiles else {}

    # -- prediction ---------------------------------------------------------------
    def prediction_outputs(self, options: SegmentPredictOptions, out) -> PredictionOutputs:
        # Masks into a folder (never replacing a file), one JSON line per image on stdout.
        directory = Path(options.out_dir) if options.out_dir else next_run_dir(Path("runs"), "segment", "predict")
        masks = OutputFolder(directory, "--out-dir", keep_existing=True)
        outputs = PredictionOutputs(lambda stream: MaskWriter(masks, options.overlay, JsonlWriter(stream)), stream=out,
                                    folders=[masks])
        return with_cam_folder(outputs, options.cam) if options.cam else outputs

    def cam_scores(self, outputs, context):
        """The summed logit of the class over the pixels predicted as it (all pixels when
        none are), as grad-cam's SemanticSegmentationTarget does with the predicted mask."""
        classes, name = context.classes, context.options.cam_class
        labels = label_map(outputs, 1)
        if name is not None:
            if name not in classes:
                raise UserError(f"--cam-class {name!r} is not a class of the checkpoint ({', '.join(classes)})")
            chosen = [classes.index(name)] * len(outputs)
        else:
            chosen = []
            for one in labels:
                counts = torch.bincount(one.flatten(), minlength=len(classes))
                if len(classes) > 1 and counts[1:].sum() > 0:
                    counts[0] = -1  # the first class is background: explain an object when there is one
                chosen.append(int(counts.argmax()))
        c = torch.tensor(chosen, device=outputs.device)
        logits = outputs[torch.arange(len(outputs), device=outputs.device), c]  # [N, H, W]
        where = (labels == c[:, None, None]).to(logits.dtype)
        has = where.flatten(1).sum(1) > 0
        scores = torch.where(has, (logits * where).flatten(1).sum(1), logits.flatten(1).sum(1))
        return scores, [classes[i] for i in chosen]

    def keeps_input_image(self, context) -> bool:
        return context.options.overlay

    def images_per_batch(self, context) -> int:
        # Tiled images are full size: decode one at a time, batch the tiles instead.
        return 1 if context.options.tile else context.batch_size

    def predict_input_size(self, input_size, context):
        # Tiled prediction runs at the image's own resolution, tile by tile.
        return None if context.options.tile else input_size

    def predict_forward(self, model, images, device, context):
        o = context.options
        if not o.tile:
            return super().predict_forward(model, images, device, context)
        k = len(context.classes)
        return [predict_tiled(model, image[None].to(device), o.tile, o.tile_overlap, k, batch_size=context.batch_size)
                for image in images]

    def postprocess(self, outputs, metas, context) -> Iterable[dict]:
        """Records with the mask array (and the image, for overlays) for MaskWriter."""
        classes = context.classes
        for i, meta in enumerate(metas):
            logits = outputs[i] if torch.is_tensor(outputs) else outputs[i][0]
            h, w = meta["orig_size"]
            mask = full_size_labels(logits, (h, w))
            counts = np.bincount(mask.ravel(), minlength=len(classes))
            if context.category_ids and context.options.mask_values == MaskValues.ids:
                # Written in the data set's own ids (its mask values), as its masks are.
                mask = np.asarray(context.category_ids, dtype=np.uint8)[mask]
            record: dict = {"path": meta["path"], "mask": mask}
            if context.options.overlay:
                record["image"] = meta.get("image")
            if "cam" in meta:  # --cam: written by outputs/cam_writer.py
                record["cam"] = meta["cam"]
            record["size"] = [h, w]
            record["share"] = {name: round(float(c) / mask.size, 6) for name, c in zip(classes, counts)}
            yield record


register_task(SegmentTask())
