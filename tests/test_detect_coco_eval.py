import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visiontk.tasks.detect.coco_eval import evaluate_coco, plot_pr_curve
from visiontk.tasks.detect.decode import decode_predictions, scale_to_pixels
from visiontk.tasks.detect.encode import encode_targets

NAMES = ["circle", "square", "triangle", "never"]  # "never" has no ground truth


def _random_case(seed=0):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for i in range(6):
        w, h = 160, 120
        k = 0 if i == 2 else int(rng.integers(1, 5))  # image 2: no ground truth
        xy = rng.uniform(0, [w - 30, h - 30], size=(k, 2))
        wh = rng.uniform(8, 30, size=(k, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 3, size=k)
        gts.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels), "width": w, "height": h})
        # detections: jittered true boxes (some with the wrong class) + random false positives
        jitter = boxes + rng.normal(0, 3, size=boxes.shape)
        fp_xy = rng.uniform(0, [w - 20, h - 20], size=(2, 2))
        fp = np.concatenate([fp_xy, fp_xy + 15], 1)
        det_boxes = np.concatenate([jitter, fp])
        det_labels = np.concatenate([np.where(rng.random(k) < 0.2, (labels + 1) % 3, labels), rng.integers(0, 4, 2)])
        det_scores = rng.uniform(0.05, 1.0, size=len(det_boxes))
        if i == 4:  # an image with no detections at all
            det_boxes, det_labels, det_scores = np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)
        dets.append({"boxes": det_boxes, "labels": det_labels, "scores": det_scores})
    return gts, dets


def _pycocotools_via_files(gts, dets, tmp_path):
    images, anns, results = [], [], []
    for i, (gt, det) in enumerate(zip(gts, dets)):
        images.append({"id": i + 1, "width": gt["width"], "height": gt["height"], "file_name": f"{i}.jpg"})
        for (x1, y1, x2, y2), c in zip(np.asarray(gt["boxes"]).tolist(), np.asarray(gt["labels"]).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), c, s in zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist()):
            results.append({"image_id": i + 1, "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    coco_dt = coco_gt.loadRes(str(tmp_path / "res.json"))
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pycocotools_run_on_files(tmp_path, capsys, seed):
    gts, dets = _random_case(seed)
    ev = _pycocotools_via_files(gts, dets, tmp_path)
    capsys.readouterr()
    result = evaluate_coco(gts, dets, NAMES)
    assert capsys.readouterr().out == ""  # stdout stays clean for results
    assert result["map"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert result["map50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert result["map75"] == pytest.approx(ev.stats[2], abs=1e-12)
    assert 0.05 < result["map50"] < 0.95  # a non-trivial case
    np.testing.assert_array_equal(result["precision"], ev.eval["precision"])
    for k, name in enumerate(NAMES[:3]):
        p = ev.eval["precision"][0, :, k, 0, 2]
        assert result["per_class_ap50"][name] == pytest.approx(p[p > -1].mean(), abs=1e-12)
    assert result["per_class_ap50"]["never"] is None and result["pr_curve50"]["never"] is None
    # pycocotools' mean skips the class without ground truth
    known = [result["per_class_ap50"][n] for n in NAMES[:3]]
    assert result["map50"] == pytest.approx(float(np.mean(known)), abs=1e-12)


def test_perfect_detections_from_encoded_ground_truth():
    # ground truth -> encode -> an ideal prediction grid -> decode -> COCO eval
    S, B, C = 4, 2, 3
    w, h = 200, 100
    cxcywh = torch.tensor([[0.1, 0.2, 0.15, 0.3], [0.6, 0.7, 0.3, 0.4], [0.9, 0.1, 0.2, 0.2], [0.4, 0.4, 0.1, 0.1]])
    labels = torch.tensor([0, 2, 1, 1])
    target = encode_targets(cxcywh, labels, S, C)
    pred = torch.zeros(1, S, S, B * 5 + C)
    pred[0, ..., 0:2] = target[..., 0:2]
    pred[0, ..., 2:4] = target[..., 2:4].sqrt()  # the head predicts sqrt(w), sqrt(h)
    pred[0, ..., 4] = target[..., 4]
    pred[0, ..., B * 5 :] = target[..., 5:]
    det = decode_predictions(pred, B=B)[0]
    det["boxes"] = scale_to_pixels(det["boxes"], w, h)
    from torchvision.ops import box_convert

    gt = {"boxes": scale_to_pixels(box_convert(cxcywh, "cxcywh", "xyxy"), w, h), "labels": labels, "width": w, "height": h}
    result = evaluate_coco([gt], [det], ["a", "b", "c"])
    assert result["map"] == pytest.approx(1.0)
    assert result["map50"] == pytest.approx(1.0) and result["map75"] == pytest.approx(1.0)
    assert result["per_class_ap50"] == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})


def test_no_detections_and_no_ground_truth():
    gts, _ = _random_case()
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in gts]
    result = evaluate_coco(gts, empty, NAMES)
    assert result["map"] == 0.0 and result["map50"] == 0.0
    assert result["per_class_ap50"]["circle"] == 0.0 and result["per_class_ap50"]["never"] is None

    no_gt = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)} for _ in range(2)]
    dets = [{"boxes": np.array([[1.0, 1.0, 5.0, 5.0]]), "scores": np.array([0.9]), "labels": np.array([0])}, empty[0]]
    result = evaluate_coco(no_gt, dets, NAMES)
    assert math.isnan(result["map"]) and math.isnan(result["map50"])
    assert all(v is None for v in result["per_class_ap50"].values())


def test_bad_inputs():
    with pytest.raises(ValueError):
        evaluate_coco([{"boxes": np.zeros((0, 4)), "labels": []}], [], NAMES)
    with pytest.raises(ValueError):
        evaluate_coco([{"boxes": [[0, 0, 1, 1]], "labels": [7]}], [{"boxes": [], "scores": [], "labels": []}], NAMES)


def test_plot_pr_curve_writes_png(tmp_path):
    gts, dets = _random_case()
    path = plot_pr_curve(evaluate_coco(gts, dets, NAMES), tmp_path / "plots" / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
