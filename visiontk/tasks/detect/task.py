"""YOLO-v1 detection plugged into the shared recipe loader, trainer, evaluator and predictor.

The detector itself lives in the sibling modules (head, encode, loss, decode,
coco_eval, formats, dataset); this module only wires them to a recipe:

* data: `data.format` coco | yolo | voc read through `formats` (the
  per-format paths in `data.options` may hold `{split}`, or be a mapping
  split -> path; each format's options model is registered by its reader),
  albumentations with bbox_params from `data.augment`;
* targets: the collated batch keeps boxes as a list of per-image tensors; the
  loss encodes them into the grid of the head's actual output, so S can never
  disagree between the head and the targets;
* evaluation: decode + class-aware NMS, then pycocotools; fitness (what picks
  best.pt) is 0.1 mAP@.5 + 0.9 mAP@[.5:.95], which rewards tight boxes and
  still moves early in training when only mAP@.5 does;
* prediction: boxes in pixel xyxy of the original image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Iterable, Literal, Union

import torch
from pydantic import Field
from torch import Tensor, nn
from torchvision.ops import box_convert

from visiontk.console import warn
from visiontk.backbones.normalization import recipe_preprocess
from visiontk.errors import DataError, UserError
from visiontk.outputs.rounding import rounded
from visiontk.recipe import Fraction, Number, Section, recipe_error
from visiontk.tasks.base import Task, TaskModel, outputs_for, shown_image, spread_indices
from visiontk.tasks.detect.dataset import DetectionDataset, collate_detection, detection_bbox_params
from visiontk.tasks.detect.decode import decode_batch, decode_predictions, scale_to_pixels
from visiontk.tasks.detect.encode import encode_batch
from visiontk.tasks.detect.formats import annotation_source, read_split
from visiontk.tasks.detect.head import YoloV1Head
from visiontk.tasks.detect.image_ids import recipe_image_id
from visiontk.tasks.detect.loss import YoloV1Loss
from visiontk.tasks.detect.metric import DetectionMetric, detection_report
from visiontk.tasks.detect.writers import prediction_outputs
from visiontk.tasks.options.detect import DetectEvalOptions, DetectPredictOptions
from visiontk.tasks.registry import register_task
from visiontk.viz.report_html import Charts, PageSection

# mAP integrates precision over every recall level: a 0.25 score cut (right
# for showing boxes) would truncate the PR curve and under-report it, so
# evaluation scores everything above this unless --conf says otherwise.
EVAL_CONF = 0.001
# Validation images drawn in the run report.
REPORT_GRID = 8


class DetectHeadOptions(Section):
    # Grid side; auto: the side of the head's feature map at the recipe's input
    # size (ceil(size / stride): it follows model.output_stride), so nothing is pooled.
    S: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = 7
    B: Annotated[int, Field(ge=1)] = 2  # boxes per cell
    width: Annotated[int, Field(ge=1)] = 256  # channels of the head's 3x3 convolutions
    depth: Annotated[int, Field(ge=0)] = 2  # number of 3x3 conv-BN-LeakyReLU blocks
    dropout: Fraction = 0.0
    # initial box confidence (keeps the no-object loss small at the start)
    conf_prior: Annotated[Number, Field(gt=0.0, lt=1.0)] = 0.1
    # Which backbone feature map feeds the head (index into the backbone's list,
    # negative from the end). auto: the deepest one that is at least S x S at
    # the recipe's input size, so the head's adaptive pool only ever reduces.
    feature: Union[int, Literal["auto"]] = "auto"


class DetectLossOptions(Section):
    lambda_coord: Annotated[Number, Field(ge=0.0)] = 5.0
    lambda_noobj: Annotated[Number, Field(ge=0.0)] = 0.5
    # Target of the responsible box's confidence: 1 (stable on small data) or
    # its IoU with the object (the paper's).
    obj_target: Literal["one", "iou"] = "one"


class GridHead(YoloV1Head):
    """YoloV1Head fed by one chosen feature map of the backbone's list."""

    def __init__(self, in_channels: int, feature_index: int, **options) -> None:
        super().__init__(in_channels, **options)
        self.feature_index = feature_index

    def forward_raw(self, features: Tensor | list[Tensor]) -> Tensor:
        x = features if isinstance(features, Tensor) else features[self.feature_index]
        return super().forward_raw(x)


class SkippingDetectionDataset(DetectionDataset):
    """An image that cannot be decoded yields None (dropped by collate) unless the policy is 'error'."""

    def __init__(self, *args, policy: str = "skip", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except DataError as e:
            if self.policy == "error":
                raise
            warn(f"{e} (skipped)")
            return None


def boxes_per_cell(pred: Tensor, num_classes: int) -> int:
    """B from the head's output layout [N, S, S, 5B + C]: no need to reach into the model."""
    d = pred.shape[-1] - num_classes
    if d <= 0 or d % 5:
        raise ValueError(f"detect: output has {pred.shape[-1]} values per cell, not 5*B + {num_classes}")
    return d // 5


class DetectTask(Task):
    name = "detect"
    head_schema = DetectHeadOptions
    loss_schema = DetectLossOptions
    data_formats = ("coco", "yolo", "voc")
    # `eval_conf` is the score threshold of evaluation (see EVAL_CONF); the
    # other three are shared by predict and eval.
    predict_defaults = {"conf": 0.25, "iou": 0.5, "max_det": 100, "eval_conf": EVAL_CONF}
    predict_options = DetectPredictOptions
    eval_options = DetectEvalOptions

    # -- recipe ---------------------------------------------------------------
    def validate_recipe(self, recipe, source: str) -> None:
        d = recipe.data
        height, width = recipe.image_size
        if height != width:
            raise recipe_error(source, "data.image_size", f"must be square for the S x S grid, got {d.image_size!r}")
        if isinstance(d.classes, dict):
            raise recipe_error(source, "data.classes", "must be a list of names here (the files' own ids are kept: "
                                                       "COCO category ids travel into the checkpoint)")
        if d.synthetic is not None and d.format == "voc":
            raise recipe_error(source, "data.synthetic", "writes COCO and YOLO files: use data.format coco or yolo")

    # -- data -----------------------------------------------------------------
    def has_training_data(self, recipe) -> bool:
        try:
            return annotation_source(recipe, "train", Path(recipe.data.root)).exists()
        except UserError:  # a YOLO data yaml not there (yet)
            return False

    def synthesize(self, root: Path, n: int, size: int, seed: int) -> None:
        from visiontk.data.synth import synth_detect

        synth_detect(root, n=n, size=size, seed=seed)

    def build_dataset(self, recipe, split: str, train: bool, classes=None, root=None, preprocess=None):
        found = read_split(recipe, split, classes, root)
        transform = None
        if train and recipe.data.augment:
            import albumentations as A  # training only: predict never loads it

            from visiontk.data.transforms import build_augmentations

            transform = A.Compose(build_augmentations(recipe.data.augment),
                                  bbox_params=detection_bbox_params(recipe.data.options.min_visibility, clip=True))
        dataset = SkippingDetectionDataset(found.records, preprocess or recipe_preprocess(recipe), transform,
                                           policy=recipe.data.bad_annotations)
        # COCO's own category ids (gaps kept) go into the checkpoint, so results are
        # written with them; YOLO's and VOC's are the label order (written as label + 1).
        dataset.category_ids = list(found.category_ids) if recipe.data.format == "coco" else None
        return dataset, found.classes

    def collate(self, batch: list):
        # Images the dataset skipped (None) are left out; nothing left: None, which the loops skip.
        kept = [b for b in batch if b is not None]
        return collate_detection(kept) if kept else None

    def targets_to(self, targets, device: torch.device):
        return [{**t, "boxes": t["boxes"].to(device, non_blocking=True), "labels": t["labels"].to(device, non_blocking=True)}
                for t in targets]

    # -- model ----------------------------------------------------------------
    @staticmethod
    @torch.no_grad()
    def _feature_sizes(backbone, recipe) -> list[tuple[int, int]]:
        # Measured at the recipe's input size (the backbone's own strides are
        # probed at 64 px, where very deep maps round down).
        was_training = backbone.training
        backbone.eval()
        feats = backbone(torch.zeros(1, recipe.model.in_channels, *recipe.image_size))
        backbone.train(was_training)
        return [tuple(f.shape[-2:]) for f in feats]

    def _feature_index(self, recipe, sizes: list[tuple[int, int]]) -> int:
        S, choice = recipe.model.head.S, recipe.model.head.feature
        size = recipe.image_size[0]
        listing = ", ".join(f"{i}: {h}x{w}" for i, (h, w) in enumerate(sizes))
        if S == "auto":
            # The grid is the map itself: any feature fits, the deepest by default.
            S = 1
        if choice == "auto":
            fits = [i for i, (h, w) in enumerate(sizes) if min(h, w) >= S]
            if not fits:
                raise UserError(f"model.head.S: a {S}x{S} grid needs a feature map at least that large, but "
                                f"{recipe.model.backbone} at {size} px gives {listing}; lower S or raise data.image_size")
            return fits[-1]
        if not -len(sizes) <= choice < len(sizes):
            raise UserError(f"model.head.feature: {choice} is not a feature index of {recipe.model.backbone} ({listing})")
        index = choice % len(sizes)
        if min(sizes[index]) < S:
            raise UserError(f"model.head.feature: feature {choice} is {sizes[index][0]}x{sizes[index][1]} at {size} px, "
                            f"smaller than the {S}x{S} grid (model.head.S); features: {listing}")
        return index

    def build_head(self, recipe, backbone, num_classes: int) -> nn.Module:
        h = recipe.model.head
        sizes = self._feature_sizes(backbone, recipe)
        index = self._feature_index(recipe, sizes)
        # S auto: the map's own side (square input), ceil(size / stride) as grid_size_for says.
        S = min(sizes[index]) if h.S == "auto" else h.S
        return GridHead(backbone.out_channels[index], index, C=num_classes, S=S, B=h.B, width=h.width,
                        depth=h.depth, dropout=h.dropout, conf_prior=h.conf_prior)

    def build_model(self, recipe, backbone, num_classes: int) -> nn.Module:
        model = TaskModel(backbone, self.build_head(recipe, backbone, num_classes))
        # A head on a middle feature leaves the deeper backbone stages out of the
        # loss: they still run (the backbone computes all its maps) and get no
        # gradient, so the optimizer skips them; DDP must be told.
        model.has_unused_parameters = model.head.feature_index != len(backbone.out_channels) - 1
        return model

    def build_loss(self, recipe, num_classes: int):
        h, o = recipe.model.head, recipe.loss
        criterion = YoloV1Loss(1 if h.S == "auto" else h.S, h.B, num_classes, o.lambda_coord, o.lambda_noobj,
                               o.obj_target)

        def loss_fn(outputs: Tensor, targets: list[dict]):
            outputs = outputs.float()
            if h.S == "auto":
                criterion.S = outputs.shape[1]  # the grid the head was built with
            # Encoded to the grid the head actually produced.
            grid = encode_batch([(t["boxes"], t["labels"]) for t in targets], outputs.shape[1], num_classes)
            return criterion(outputs, grid.to(outputs.device))

        return loss_fn

    # -- evaluation -----------------------------------------------------------
    def metric(self, classes, options: DetectEvalOptions, dataset=None) -> DetectionMetric:
        return DetectionMetric(classes, options.conf, options.iou, options.max_det)

    def eval_outputs(self, outputs, targets, classes, options: DetectEvalOptions):
        """Decoded, NMS'd detections and the ground truth, per image in pixels of the original image."""
        pred = outputs.float()
        found = decode_predictions(pred, options.conf, options.iou, int(options.max_det),
                                   boxes_per_cell(pred, len(classes)))
        dets, gts = [], []
        for target, det in zip(targets, found):
            h, w = target["orig_size"].tolist()
            gt_boxes = box_convert(target["boxes"].float().cpu(), "cxcywh", "xyxy")
            gt = {"boxes": scale_to_pixels(gt_boxes, w, h), "labels": target["labels"].cpu(), "width": w, "height": h}
            if "image_id" in target:
                gt["image_id"] = int(target["image_id"])
            gts.append(gt)
            dets.append({"boxes": scale_to_pixels(det["boxes"].cpu(), w, h), "scores": det["scores"].cpu(),
                         "labels": det["labels"].cpu()})
        return dets, gts

    def metric_scalars(self, metrics: dict) -> dict:
        return {k: metrics[k] for k in ("map", "map50", "map75") if metrics.get(k) is not None}

    def per_class_scores(self, metrics: dict, classes: list[str]) -> dict[str, list]:
        return {"ap50": [metrics["per_class_ap50"].get(name) for name in classes], "boxes": list(metrics["support"])}

    def write_eval_plots(self, metrics, classes, plots_dir: Path, suffix: str = "") -> list[Path]:
        from visiontk.tasks.detect.coco_eval import plot_pr_curve

        curve = {**metrics, "map50": float("nan") if metrics["map50"] is None else metrics["map50"]}
        return [plot_pr_curve(curve, Path(plots_dir) / f"pr_curve{suffix}.png")]

    def report(self, metrics: dict, classes: list[str]):
        return detection_report(metrics, classes)

    def report_sections(self, metrics, classes) -> list[PageSection]:
        from visiontk.viz.svg_charts import bar_chart, line_chart

        if "pr_curve50" not in metrics:
            return []
        recall = metrics["recall_thresholds"]
        curves = {f"{name} {metrics['per_class_ap50'].get(name) or 0:.3f}":
                  [(r, max(0.0, p)) for r, p in zip(recall, curve)]
                  for name, curve in metrics["pr_curve50"].items() if curve is not None}
        return [PageSection("Precision-recall curves and AP per class", [Charts([
            line_chart(curves, "precision-recall @ IoU 0.5", xlabel="recall", ylim=(0.0, 1.0), width=420, height=300),
            bar_chart(metrics["per_class_ap50"], "AP@.5 per class")],
            "one curve per class with ground truth at IoU 0.5 (COCO's 101 recall points), AP@.5 beside its name")])]

    def report_samples(self, model, dataset, classes, device) -> dict[str, bytes]:
        """The first REPORT_GRID validation images: predicted boxes (score > the predict
        default) over the ground truth's, at the model's input size."""
        from visiontk.viz.sample_grid import PRED_COLOUR, TRUTH_COLOUR, sample_grid_png

        o = self.predict_defaults
        tiles = []
        for i, image, target, pred in outputs_for(model, dataset, spread_indices(len(dataset), REPORT_GRID), device):
            h, w = image.shape[-2:]
            pred = pred[None].float()
            det = decode_predictions(pred, o["conf"], o["iou"], o["max_det"], boxes_per_cell(pred, len(classes)))[0]
            truth = scale_to_pixels(box_convert(target["boxes"].float(), "cxcywh", "xyxy"), w, h)
            boxes = [(b, "", TRUTH_COLOUR, "--") for b in truth.tolist()]
            boxes += [(b, f"{classes[k]} {s:.2f}", PRED_COLOUR, "-") for b, k, s in
                      zip(scale_to_pixels(det["boxes"].cpu(), w, h).tolist(), det["labels"].tolist(),
                          det["scores"].tolist())]
            name = Path(dataset.records[i].image).name if hasattr(dataset, "records") else f"#{i}"
            tiles.append({"image": shown_image(image, dataset.preprocess), "boxes": boxes,
                          "title": f"{name}: {len(truth)} true, {len(det['scores'])} found"})
        return {"val_samples.png": sample_grid_png(tiles)} if tiles else {}

    # -- prediction -----------------------------------------------------------
    def prediction_outputs(self, options: DetectPredictOptions, out):
        return prediction_outputs(options, out)

    def postprocess(self, outputs, metas, context) -> Iterable[dict]:
        classes, o = context.classes, context.options
        pred = outputs.float()
        boxes, scores, ids, counts = decode_batch(pred, float(o.conf), float(o.iou), int(o.max_det),
                                                  boxes_per_cell(pred, len(classes)))
        # The whole batch in pixels of each original image (the same float32 products
        # as scaling image by image), rounded as round(v, 2) and round(s, 5) would,
        # then one tolist per tensor (outputs/rounding.py).
        image = torch.repeat_interleave(torch.arange(len(metas)), counts.cpu())
        sizes = torch.tensor([[w, h, w, h] for h, w in (m["orig_size"] for m in metas)], dtype=torch.float32)
        boxes = rounded(boxes.cpu() * sizes[image], 2).tolist()
        scores, ids = rounded(scores.cpu(), 5).tolist(), ids.tolist()
        start = 0
        for meta, count in zip(metas, counts.tolist()):
            end = start + count
            h, w = meta["orig_size"]
            image_ids = ids[start:end]
            record = {
                "path": meta["path"],
                "width": w,
                "height": h,
                "boxes": boxes[start:end],
                "scores": scores[start:end],
                "labels": [classes[i] for i in image_ids],
                "label_ids": image_ids,
            }
            if context.category_ids:  # a model trained on COCO files: their own category ids
                record["category_ids"] = [context.category_ids[i] for i in image_ids]
            image_id = recipe_image_id(context.recipe, meta["path"])
            if image_id is not None:  # an image of the COCO set the model was trained on
                record["image_id"] = image_id
            start = end
            yield record


register_task(DetectTask())
