"""COCO mAP over a split, from per-image detections and ground truth gathered from every process."""
from __future__ import annotations

import math
from typing import Any, Sequence

from visiontk.metrics.base import gather_across_ranks
from visiontk.metrics.report import Report
from visiontk.tasks.detect.coco_eval import evaluate_coco


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class DetectionMetric:
    """Updated with ``(detections, ground truths)``: one dict per image, in pixels of
    the original image (detections ``{boxes xyxy, scores, labels}``, ground truth
    ``{boxes xyxy, labels, width, height}`` and, from the dataset, ``image_id``).

    mAP is not a sum over images, so `sync` gathers every image to every process
    and each computes it once over the whole split. Images are scored in
    image_id order, whichever process evaluated them: pycocotools breaks ties
    between equal scores by image order, so a split cut into shards scores
    exactly as it does whole.
    """

    def __init__(self, classes: Sequence[str], conf: float, iou: float, max_det: int):
        self.classes = list(classes)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.images: list[tuple[dict, dict]] = []  # (ground truth, detections) per image

    def reset(self) -> None:
        self.images = []

    def update(self, detections: list[dict], truths: list[dict]) -> None:
        if len(detections) != len(truths):
            raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
        self.images.extend(zip(truths, detections))

    def sync(self, group: Any = None) -> None:
        self.images = gather_across_ranks(self.images, group)

    def _in_split_order(self) -> list[tuple[dict, dict]]:
        if all("image_id" in gt for gt, _ in self.images):
            return sorted(self.images, key=lambda pair: int(pair[0]["image_id"]))
        return self.images  # without ids: the order they came in

    def compute(self) -> dict:
        images = self._in_split_order()
        gts, dets = [gt for gt, _ in images], [det for _, det in images]
        result = evaluate_coco(gts, dets, self.classes)
        support = [0] * len(self.classes)
        for gt in gts:
            for label in gt["labels"].tolist():
                support[label] += 1
        m, m50, m75 = _finite(result["map"]), _finite(result["map50"]), _finite(result["map75"])
        return {
            "map": m,
            "map50": m50,
            "map75": m75,
            # 0.1 mAP@.5 + 0.9 mAP@[.5:.95]: rewards tight boxes, still moves early in training.
            "fitness": 0.1 * (m50 or 0.0) + 0.9 * (m or 0.0),
            "per_class_ap50": result["per_class_ap50"],
            "support": support,
            "images": len(gts),
            "boxes": sum(support),
            "detections": sum(len(d["scores"]) for d in dets),
            "conf": self.conf,
            "iou": self.iou,
            "max_det": self.max_det,
            "recall_thresholds": [float(r) for r in result["recall_thresholds"]],
            "pr_curve50": {k: (None if v is None else [round(float(p), 6) for p in v])
                           for k, v in result["pr_curve50"].items()},
        }


def detection_report(metrics: dict, classes: list[str]) -> Report:
    return Report(
        f"detection (score > {metrics['conf']:g}, NMS IoU {metrics['iou']:g}, at most {metrics['max_det']} per image)",
        {"images": metrics["images"], "boxes": metrics["boxes"], "detections": metrics["detections"],
         "mAP@[.5:.95]": metrics["map"], "mAP@.5": metrics["map50"], "mAP@.75": metrics["map75"]},
        [{"class": name, "boxes": metrics["support"][i], "AP@.5": metrics["per_class_ap50"].get(name)}
         for i, name in enumerate(classes)],
    )
