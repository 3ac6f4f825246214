"""YOLO-v1 detection plugged into the shared recipe loader, trainer, evaluator and predictor.

The detector itself lives in the sibling modules (head, encode, loss, decode,
coco_eval, readers, dataset); this module only wires them to a recipe:

* data: `data.format` coco | yolo | voc, with the per-format paths in
  `data.options` (see the *Options dataclasses below; every path may hold
  `{split}`, or be a mapping split -> path), `data.bad_annotations` passed to
  the readers, albumentations with bbox_params from `data.augment`;
* targets: the collated batch keeps boxes as a list of per-image tensors; the
  loss encodes them into the grid of the head's actual output, so S can never
  disagree between the head and the targets;
* evaluation: decode + class-aware NMS, then pycocotools; fitness (what picks
  best.pt) is 0.1 mAP@.5 + 0.9 mAP@[.5:.95], which rewards tight boxes and
  still moves early in training when only mAP@.5 does;
* prediction: boxes in pixel xyxy of the original image.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional, Union

import albumentations as A
import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from visiontk.console import err_console, info, warn
from visiontk.data.transforms import build_augmentations
from visiontk.engine.normalization import recipe_preprocess
from visiontk.errors import DataError, UserError
from visiontk.recipe import build_dataclass
from visiontk.tasks.base import Task, TaskModel
from visiontk.tasks.detect.dataset import DetectionDataset, collate_detection, detection_bbox_params
from visiontk.tasks.detect.decode import decode_predictions, scale_to_pixels
from visiontk.tasks.detect.encode import encode_batch
from visiontk.tasks.detect.head import YoloV1Head
from visiontk.tasks.detect.loss import YoloV1Loss
from visiontk.tasks.registry import register_task

# mAP integrates precision over every recall level: a 0.25 score cut (right
# for showing boxes) would truncate the PR curve and under-report it, so
# evaluation scores everything above this unless --conf says otherwise.
EVAL_CONF = 0.001


@dataclass
class DetectHeadOptions:
    S: int = 7  # grid side
    B: int = 2  # boxes per cell
    width: int = 256  # channels of the head's 3x3 convolutions
    depth: int = 2  # number of 3x3 conv-BN-LeakyReLU blocks
    dropout: float = 0.0
    conf_prior: float = 0.1  # initial box confidence (keeps the no-object loss small at the start)
    # Which backbone feature map feeds the head (index into the backbone's list,
    # negative from the end). auto: the deepest one that is at least S x S at
    # the recipe's input size, so the head's adaptive pool only ever reduces.
    feature: Union[int, Literal["auto"]] = "auto"


@dataclass
class DetectLossOptions:
    lambda_coord: float = 5.0
    lambda_noobj: float = 0.5
    # Target of the responsible box's confidence: 1 (stable on small data) or
    # its IoU with the object (the paper's).
    obj_target: Literal["one", "iou"] = "one"


# A path option: one path with an optional "{split}" placeholder, or a mapping split -> path.
PathOption = Union[str, dict]


@dataclass
class _CommonOptions:
    # Augmentation drops a box when less than this fraction of its area stays in
    # the image (crops, shifts); boxes partly outside are clipped to it.
    min_visibility: float = 0.2


@dataclass
class CocoOptions(_CommonOptions):
    annotations: PathOption = "annotations/instances_{split}.json"
    images: PathOption = "images/{split}"


@dataclass
class YoloOptions(_CommonOptions):
    # The ultralytics data file naming the split image folders and the classes;
    # the split names are its keys (train, val, test).
    data_yaml: str = "data.yaml"


@dataclass
class VocOptions(_CommonOptions):
    annotations: PathOption = "Annotations"
    images: PathOption = "JPEGImages"
    # A text file of image ids (VOC's ImageSets), or a CSV file with a
    # 'filename' column; null: every .xml in the annotation folder.
    ids: Optional[PathOption] = "ImageSets/Main/{split}.txt"


FORMAT_OPTIONS = {"coco": CocoOptions, "yolo": YoloOptions, "voc": VocOptions}


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


def _split_path(value, split: str, key: str, source: str) -> str:
    if isinstance(value, dict):
        if split not in value:
            raise UserError(f"{source}: 'data.options.{key}' has no entry for split '{split}' "
                            f"(has: {', '.join(map(str, value)) or 'none'})")
        return str(value[split])
    return str(value).replace("{split}", split)


def _under(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def _read_ids(path: Path, key: str) -> list[str]:
    """Image ids of a VOC split: ImageSets-style text (first field of each line) or a CSV 'filename' column."""
    if not path.is_file():
        raise DataError(f"{path}: image id list not found (data.options.{key})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e.__class__.__name__})") from None
    if path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        if not rows.fieldnames or "filename" not in rows.fieldnames:
            raise DataError(f"{path}: a CSV id list needs a 'filename' column (data.options.{key})")
        # One row per box: keep the first occurrence of each image, in file order.
        ids = [Path(r["filename"]).stem for r in rows if r.get("filename")]
    else:
        # ImageSets/Main/<class>_<split>.txt lines are "id flag"; plain lists are "id".
        ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    return list(dict.fromkeys(ids))


def _check_range(value, ok: bool, key: str, requirement: str, source: str) -> None:
    if not ok:
        raise UserError(f"{source}: '{key}' {requirement}, got {value!r}")


class DetectTask(Task):
    name = "detect"
    head_schema = DetectHeadOptions
    loss_schema = DetectLossOptions
    # `eval_conf` is the score threshold of evaluation (see EVAL_CONF); the
    # other three are shared by predict and eval.
    predict_defaults = {"conf": 0.25, "iou": 0.5, "max_det": 100, "eval_conf": EVAL_CONF}

    # -- recipe ---------------------------------------------------------------
    def validate_recipe(self, recipe, source: str) -> None:
        d, h, loss = recipe.data, recipe.model.head, recipe.loss
        if d.format not in FORMAT_OPTIONS:
            raise UserError(f"{source}: 'data.format' must be one of {', '.join(FORMAT_OPTIONS)} for detect, got {d.format!r}")
        if not d.root:
            raise UserError(f"{source}: 'data.root' is required")
        height, width = recipe.image_size
        if height != width:
            raise UserError(f"{source}: 'data.image_size' must be square for the S x S grid, got {d.image_size!r}")
        if d.synthetic is not None and d.format == "voc":
            raise UserError(f"{source}: 'data.synthetic' writes COCO and YOLO files: use data.format coco or yolo")
        options = build_dataclass(FORMAT_OPTIONS[d.format], d.options, "data.options", source)
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if isinstance(value, dict):
                for split, path in value.items():
                    if not isinstance(path, str):
                        raise UserError(f"{source}: 'data.options.{f.name}.{split}' must be a path string, got {path!r}")
        _check_range(options.min_visibility, 0.0 <= options.min_visibility <= 1.0, "data.options.min_visibility",
                     "must be in [0, 1]", source)
        # Stored back with defaults filled in: the saved recipe says exactly what was read.
        d.options = dataclasses.asdict(options)
        for key, ok, requirement in (
            ("S", h["S"] >= 1, "must be >= 1"),
            ("B", h["B"] >= 1, "must be >= 1"),
            ("width", h["width"] >= 1, "must be >= 1"),
            ("depth", h["depth"] >= 0, "must be >= 0"),
            ("dropout", 0.0 <= h["dropout"] < 1.0, "must be in [0, 1)"),
            ("conf_prior", 0.0 < h["conf_prior"] < 1.0, "must be in (0, 1)"),
        ):
            _check_range(h[key], ok, f"model.head.{key}", requirement, source)
        for key in ("lambda_coord", "lambda_noobj"):
            _check_range(loss[key], loss[key] >= 0, f"loss.{key}", "must be >= 0", source)

    # -- data -----------------------------------------------------------------
    @staticmethod
    def _split_name(recipe, split: str) -> str:
        return getattr(recipe.data, split) if split in ("train", "val") else split

    def _annotation_source(self, recipe, split: str, root: Path) -> Path:
        """The file or folder whose existence says a split is there (also used by prepare_data)."""
        opts, name = recipe.data.options, self._split_name(recipe, split)
        if recipe.data.format == "yolo":
            return _under(root, opts["data_yaml"])
        return _under(root, _split_path(opts["annotations"], name, "annotations", "recipe"))

    def prepare_data(self, recipe) -> None:
        root = Path(recipe.data.root)
        if recipe.data.synthetic is not None and not self._annotation_source(recipe, "train", root).exists():
            from visiontk.data.synth import synth_detect

            s = recipe.data.synthetic
            err_console.print(f"generating the synthetic shapes set into {root}", highlight=False)
            synth_detect(root, n=s.n, size=s.size, seed=s.seed)

    def read_split(self, recipe, split: str, classes: list[str] | None = None, root: str | None = None):
        """(records, class names, report) of one split, through the reader of data.format."""
        from visiontk.tasks.detect.readers import read_coco, read_voc, read_yolo

        d = recipe.data
        root_dir = Path(root or d.root)
        if not root_dir.is_dir():
            raise UserError(f"{root_dir}: data root does not exist (data.root)")
        opts, name, policy = d.options, self._split_name(recipe, split), d.bad_annotations
        wanted = list(classes) if classes is not None else (list(d.classes) if d.classes else None)
        if d.format == "coco":
            ann = _under(root_dir, _split_path(opts["annotations"], name, "annotations", "recipe"))
            images = _under(root_dir, _split_path(opts["images"], name, "images", "recipe"))
            records, names, report = read_coco(ann, images, policy)
            where = ann
        elif d.format == "yolo":
            where = _under(root_dir, opts["data_yaml"])
            records, names, report = read_yolo(where, name, policy)
        else:
            where = _under(root_dir, _split_path(opts["annotations"], name, "annotations", "recipe"))
            images = _under(root_dir, _split_path(opts["images"], name, "images", "recipe"))
            ids = None
            if opts["ids"] is not None:
                ids = _read_ids(_under(root_dir, _split_path(opts["ids"], name, "ids", "recipe")), "ids")
            records, names, report = read_voc(where, images, wanted, policy, ids)
        if wanted is not None and names != wanted:
            # COCO categories and YOLO names fix the label order: a different list
            # would silently train (or score) class k as another class.
            raise DataError(f"{where}: classes {names} differ from the expected {wanted} "
                            f"(data.classes, the training split, or the checkpoint)")
        if not records:
            raise DataError(f"{where}: split '{name}' has no usable images")
        n_boxes = sum(len(r.labels) for r in records)
        crowd = f", {report.crowd_skipped} crowd annotations left out" if report.crowd_skipped else ""
        info(f"{name}: {len(records)} images, {n_boxes} boxes, {len(names)} classes{crowd}; {report.summary()}")
        return records, names, report

    def build_dataset(self, recipe, split: str, train: bool, classes=None, root=None, preprocess=None):
        records, names, _ = self.read_split(recipe, split, classes, root)
        transform = None
        if train and recipe.data.augment:
            transform = A.Compose(build_augmentations(recipe.data.augment),
                                  bbox_params=detection_bbox_params(recipe.data.options["min_visibility"], clip=True))
        dataset = SkippingDetectionDataset(records, preprocess or recipe_preprocess(recipe), transform,
                                           policy=recipe.data.bad_annotations)
        return dataset, names

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
        S, choice = recipe.model.head["S"], recipe.model.head["feature"]
        size = recipe.image_size[0]
        listing = ", ".join(f"{i}: {h}x{w}" for i, (h, w) in enumerate(sizes))
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
        index = self._feature_index(recipe, self._feature_sizes(backbone, recipe))
        return GridHead(backbone.out_channels[index], index, C=num_classes, S=h["S"], B=h["B"], width=h["width"],
                        depth=h["depth"], dropout=h["dropout"], conf_prior=h["conf_prior"])

    def build_model(self, recipe, backbone, num_classes: int) -> nn.Module:
        model = TaskModel(backbone, self.build_head(recipe, backbone, num_classes))
        # A head on a middle feature leaves the deeper backbone stages out of the
        # loss: they still run (the backbone computes all its maps) and get no
        # gradient, so the optimizer skips them; DDP must be told.
        model.has_unused_parameters = model.head.feature_index != len(backbone.out_channels) - 1
        return model

    def build_loss(self, recipe, num_classes: int):
        h, o = recipe.model.head, recipe.loss
        criterion = YoloV1Loss(h["S"], h["B"], num_classes, o["lambda_coord"], o["lambda_noobj"], o["obj_target"])

        def loss_fn(outputs: Tensor, targets: list[dict]):
            outputs = outputs.float()
            # Encoded to the grid the head actually produced.
            grid = encode_batch([(t["boxes"], t["labels"]) for t in targets], outputs.shape[1], num_classes)
            return criterion(outputs, grid.to(outputs.device))

        return loss_fn

    # -- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, loader, device, classes, options=None) -> dict:
        from visiontk.tasks.detect.coco_eval import evaluate_coco

        opts = {**self.predict_defaults, **(options or {})}
        model.eval()
        gts, dets = [], []
        for batch in loader:
            if batch is None:  # every image of the batch was unreadable (skipped with a warning)
                continue
            images, targets = batch
            pred = model(images.to(device, non_blocking=True)).float()
            found = decode_predictions(pred, opts["eval_conf"], opts["iou"], int(opts["max_det"]),
                                       boxes_per_cell(pred, len(classes)))
            for target, det in zip(targets, found):
                h, w = target["orig_size"].tolist()
                gt_boxes = box_convert(target["boxes"].float().cpu(), "cxcywh", "xyxy")
                gts.append({"boxes": scale_to_pixels(gt_boxes, w, h), "labels": target["labels"].cpu(),
                            "width": w, "height": h})
                dets.append({"boxes": scale_to_pixels(det["boxes"].cpu(), w, h), "scores": det["scores"].cpu(),
                             "labels": det["labels"].cpu()})
        result = evaluate_coco(gts, dets, classes)
        support = [0] * len(classes)
        for gt in gts:
            for label in gt["labels"].tolist():
                support[label] += 1

        def finite(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        m, m50, m75 = finite(result["map"]), finite(result["map50"]), finite(result["map75"])
        return {
            "map": m,
            "map50": m50,
            "map75": m75,
            "fitness": 0.1 * (m50 or 0.0) + 0.9 * (m or 0.0),
            "per_class_ap50": result["per_class_ap50"],
            "support": support,
            "images": len(gts),
            "boxes": sum(support),
            "detections": sum(len(d["scores"]) for d in dets),
            "conf": float(opts["eval_conf"]),
            "iou": float(opts["iou"]),
            "max_det": int(opts["max_det"]),
            "recall_thresholds": [float(r) for r in result["recall_thresholds"]],
            "pr_curve50": {k: (None if v is None else [round(float(p), 6) for p in v])
                           for k, v in result["pr_curve50"].items()},
        }

    def metric_scalars(self, metrics: dict) -> dict:
        return {k: metrics[k] for k in ("map", "map50", "map75") if metrics.get(k) is not None}

    def write_eval_plots(self, metrics, classes, plots_dir: Path, suffix: str = "") -> list[Path]:
        from visiontk.tasks.detect.coco_eval import plot_pr_curve

        curve = {**metrics, "map50": float("nan") if metrics["map50"] is None else metrics["map50"]}
        return [plot_pr_curve(curve, Path(plots_dir) / f"pr_curve{suffix}.png")]

    def print_metrics(self, metrics: dict, classes: list[str]) -> None:
        from rich.table import Table

        def fmt(x) -> str:
            return "-" if x is None else f"{x:.4f}"

        summary = Table(title=f"detection (score > {metrics['conf']:g}, NMS IoU {metrics['iou']:g}, "
                              f"at most {metrics['max_det']} per image)", show_header=True)
        for col in ("images", "boxes", "detections", "mAP@[.5:.95]", "mAP@.5", "mAP@.75"):
            summary.add_column(col, justify="right")
        summary.add_row(str(metrics["images"]), str(metrics["boxes"]), str(metrics["detections"]),
                        fmt(metrics["map"]), fmt(metrics["map50"]), fmt(metrics["map75"]))
        err_console.print(summary)
        per_class = Table(title="per class", show_header=True)
        for col in ("class", "boxes", "AP@.5"):
            per_class.add_column(col, justify="left" if col == "class" else "right")
        for i, name in enumerate(classes):
            per_class.add_row(name, str(metrics["support"][i]), fmt(metrics["per_class_ap50"].get(name)))
        err_console.print(per_class)

    # -- prediction -----------------------------------------------------------
    def postprocess(self, outputs, metas, options) -> Iterable[dict]:
        classes = options["classes"]
        pred = outputs.float()
        found = decode_predictions(pred, float(options["conf"]), float(options["iou"]), int(options["max_det"]),
                                   boxes_per_cell(pred, len(classes)))
        for meta, det in zip(metas, found):
            h, w = meta["orig_size"]
            boxes = scale_to_pixels(det["boxes"].cpu(), w, h)
            ids = det["labels"].tolist()
            yield {
                "path": meta["path"],
                "width": w,
                "height": h,
                "boxes": [[round(v, 2) for v in box] for box in boxes.tolist()],
                "scores": [round(s, 5) for s in det["scores"].tolist()],
                "labels": [classes[i] for i in ids],
                "label_ids": ids,
            }


register_task(DetectTask())
