"""COCO-style mAP with pycocotools, built in memory, plus a PR-curve plot."""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert

from visiontk.console import plural, printable
from visiontk.errors import writing


def _as_array(x: Any, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x if x is not None else [], dtype=dtype).reshape(-1, *shape_tail)


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    return box_convert(torch.from_numpy(boxes.astype(np.float64)), "xyxy", "xywh").numpy()


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"evaluate_coco: {what} labels must be in [0, {num_classes}), got {sorted(set(labels.tolist()))}")


def _quiet(fn, *args):
    # pycocotools prints progress to stdout, which this tool reserves for results.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn(*args)
    return out, buf.getvalue()


def build_coco(gts: Sequence[Mapping], dets: Sequence[Mapping], num_classes: int) -> tuple[COCO, COCO]:
    """In-memory COCO ground truth and results objects.

    Ids start at 1 (pycocotools treats id 0 as "unmatched" in its matching);
    image i -> id i + 1, class k -> category id k + 1, annotations 1..n.
    """
    images, annotations = [], []
    for i, gt in enumerate(gts):
        image = {"id": i + 1}
        for key in ("width", "height"):
            if gt.get(key) is not None:
                image[key] = int(gt[key])
        images.append(image)
        boxes = _as_array(gt.get("boxes"), np.float64, (4,))
        labels = _as_array(gt.get("labels"), np.int64)
        _check_labels(labels, num_classes, "ground-truth")
        for box, label in zip(_xyxy_to_xywh(boxes), labels):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": int(label) + 1,
                "bbox": [float(v) for v in box],
                # Box area: it decides the small/medium/large bucket (no masks here).
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            })
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    from pycocotools.coco import COCO  # evaluation only: predict never loads it

    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    _quiet(coco_gt.createIndex)

    results = []
    for i, det in enumerate(dets):
        boxes = _as_array(det.get("boxes"), np.float64, (4,))
        scores = _as_array(det.get("scores"), np.float64)
        labels = _as_array(det.get("labels"), np.int64)
        _check_labels(labels, num_classes, "detection")
        for box, score, label in zip(_xyxy_to_xywh(boxes), scores, labels):
            results.append({"image_id": i + 1, "category_id": int(label) + 1,
                            "bbox": [float(v) for v in box], "score": float(score)})
    if results:
        coco_dt, _ = _quiet(coco_gt.loadRes, results)
    else:
        # loadRes indexes anns[0] and fails on an empty list: build the empty
        # results object by hand (no detections is a valid, if sad, outcome).
        coco_dt = COCO()
        coco_dt.dataset = {"images": list(images), "annotations": [], "categories": categories}
        _quiet(coco_dt.createIndex)
    return coco_gt, coco_dt


def _nan_if_undefined(x: float) -> float:
    # pycocotools reports -1 when nothing could be evaluated (no ground truth at all).
    return float("nan") if x < 0 else float(x)


def evaluate_coco(gts: Sequence[Mapping], dets: Sequence[Mapping], class_names: Sequence[str]) -> dict:
    """COCOeval bbox metrics.

    gts: one dict per image ``{boxes: [K, 4] pixel xyxy, labels: [K], width, height}``
    (width/height optional); dets: one dict per image, same order,
    ``{boxes, scores, labels}``. Labels are 0-based indices into class_names.

    Returns ``map`` (AP@[.5:.95]), ``map50``, ``map75`` -- pycocotools' own
    means, which skip classes without ground truth; nan when no image has any
    ground truth -- plus ``per_class_ap50`` ``{name: AP@.5 or None}`` (None for a
    class with no ground truth), ``precision`` (the full COCOeval array
    ``[T, R, K, A, M]``), ``recall_thresholds``, ``pr_curve50`` ``{name: [R] precision
    at IoU .5 or None}``, ``class_names`` and ``summary`` (pycocotools' text table).
    """
    if len(gts) != len(dets):
        raise ValueError(f"evaluate_coco: {len(gts)} ground-truth images but {len(dets)} detection images")
    names = [str(n) for n in class_names]
    coco_gt, coco_dt = build_coco(gts, dets, len(names))
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _, summary = _quiet(ev.summarize)

    precision = ev.eval["precision"]  # [T iou thresholds, R recall thresholds, K classes, A areas, M maxDets]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    area_all = ev.params.areaRngLbl.index("all")
    m100 = ev.params.maxDets.index(100)
    per_class: dict[str, float | None] = {}
    pr_curve: dict[str, list[float] | None] = {}
    for k, name in enumerate(names):
        p = precision[t50, :, k, area_all, m100]
        valid = p[p > -1]  # -1 marks "no ground truth for this class"
        per_class[name] = float(valid.mean()) if valid.size else None
        pr_curve[name] = p.tolist() if valid.size else None
    return {
        "map": _nan_if_undefined(ev.stats[0]),
        "map50": _nan_if_undefined(ev.stats[1]),
        "map75": _nan_if_undefined(ev.stats[2]),
        "per_class_ap50": per_class,
        "precision": precision,
        "recall_thresholds": np.asarray(ev.params.recThrs),
        "pr_curve50": pr_curve,
        "class_names": names,
        "summary": summary,
    }


# Up to this many classes every curve has its legend entry; beyond, the legend would
# cover the plot (80 COCO classes): grey curves, the mean curve, and the worst and best few named.
LEGEND_CLASSES = 10
HIGHLIGHT = 3


def plot_pr_curve(result: Mapping, path: str | Path) -> Path:
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        pr_curve_figure(result).savefig(path, format="png")
    return path


def pr_curve_figure(result: Mapping):
    """Precision vs recall at IoU .5: one line per class with ground truth,
    named in the legend up to LEGEND_CLASSES classes. With more, every class is a thin grey
    line, the mean over the classes is drawn bold, and the HIGHLIGHT worst and best classes
    are coloured and named, the legend outside the axes."""
    # Figure + Agg canvas directly: no pyplot global state, no backend switch
    # for the rest of the process, works without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recall = np.asarray(result["recall_thresholds"])
    # Names as the terminal shows them: a control character has no glyph, and matplotlib's
    # warning about it would print the raw character to stderr.
    curves = {printable(str(name), newlines=False): np.clip(curve, 0, 1)
              for name, curve in result["pr_curve50"].items() if curve is not None}
    ap = {printable(str(name), newlines=False): v for name, v in result["per_class_ap50"].items()}
    many = len(curves) > LEGEND_CLASSES
    fig = Figure(figsize=(9, 5) if many else (6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if many:
        ranked = sorted(curves, key=lambda name: ap[name])
        named = ranked[:HIGHLIGHT] + ranked[::-1][:HIGHLIGHT]
        for name, curve in curves.items():
            if name not in named:
                ax.plot(recall, curve, color="grey", alpha=0.3, linewidth=0.6)
        ax.plot([], [], color="grey", alpha=0.5, linewidth=0.6, label=f"{len(curves) - len(named)} other classes")
        for name in dict.fromkeys(named):
            tag = "worst" if name in ranked[:HIGHLIGHT] else "best"
            ax.plot(recall, curves[name], linewidth=1.2, label=f"{name} {ap[name]:.3f} ({tag})")
        ax.plot(recall, np.mean(list(curves.values()), axis=0), color="black", linewidth=2.5,
                label=f"all {plural(len(curves), 'class')} (mean)")
    else:
        for name, curve in curves.items():
            ax.plot(recall, curve, label=f"{name} {ap[name]:.3f}", linewidth=1.2)
    m50 = result.get("map50", float("nan"))
    title = "Precision-recall @ IoU 0.5" + ("" if math.isnan(m50) else f" (mAP@.5 {m50:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(True, alpha=0.3)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    elif curves:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
