"""Detect predict's batched decoding (one NMS per batch, one tolist per tensor) writes
the same records, byte for byte, as decoding image by image did before it.

The reference below is the per-image code it replaced (threshold, batched_nms and
scaling per image, one record at a time), kept here as the independent check.
"""
import json

import pytest
import torch
from torchvision.ops import batched_nms

from visiontk.tasks.base import PredictContext
from visiontk.tasks.detect.decode import decode_batch, grid_to_boxes
from visiontk.tasks.detect.head import activate
from visiontk.tasks.detect.task import DetectTask
from visiontk.tasks.options.detect import DetectPredictOptions


def _old_records(pred, metas, classes, conf, iou, max_det, B, category_ids=None):
    boxes, scores, labels = grid_to_boxes(pred, B)
    for meta, b, s, l in zip(metas, boxes, scores, labels):
        keep = s > conf
        b, s, l = b[keep], s[keep], l[keep]
        idx = batched_nms(b, s, l, iou)[:max_det]
        b, s, l = b[idx], s[idx], l[idx]
        h, w = meta["orig_size"]
        ids = l.tolist()
        record = {"path": meta["path"], "width": w, "height": h,
                  "boxes": [[round(v, 2) for v in box] for box in (b * b.new_tensor([w, h, w, h])).tolist()],
                  "scores": [round(x, 5) for x in s.tolist()], "labels": [classes[i] for i in ids], "label_ids": ids}
        if category_ids:
            record["category_ids"] = [category_ids[i] for i in ids]
        yield record


def _raw(n, S, B, C, seed):
    """An activated head output with many overlapping, confident boxes (NMS has work to do)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, S, S, B * 5 + C, generator=g) * 2
    raw[..., 4:5 * B:5] += 1.5  # confident boxes
    raw[n // 2, ..., 4:5 * B:5] = -20  # an image with nothing above any threshold
    return activate(raw, B)


@pytest.mark.parametrize("S, B, C, conf, iou, max_det", [
    (8, 2, 3, 0.25, 0.5, 100),    # detect/shapes' grid, predict defaults
    (8, 2, 3, 0.001, 0.5, 100),   # eval's threshold: > 1000 candidates, batched_nms's per-category path
    (7, 2, 20, 0.1, 0.3, 4),      # VOC's grid; max_det binds
    (5, 3, 80, 0.05, 0.7, 100),   # COCO's classes: offsets of thousands in the NMS coordinate trick
])
def test_batched_postprocess_writes_the_same_records(S, B, C, conf, iou, max_det):
    classes = [f"c{i}" for i in range(C)]
    category_ids = [3 * i + 1 for i in range(C)]
    context = PredictContext(DetectPredictOptions(conf=conf, iou=iou, max_det=max_det), classes, 16, category_ids)
    task = DetectTask()
    checked = 0
    for seed in range(2):
        pred = _raw(16, S, B, C, seed)
        metas = [{"path": f"img{i}.jpg", "orig_size": (97 + 13 * i, 640 - 17 * i)} for i in range(16)]
        new = [json.dumps(r) for r in task.postprocess(pred, metas, context)]
        old = [json.dumps(r) for r in _old_records(pred, metas, classes, conf, iou, max_det, B, category_ids)]
        assert new == old
        checked += sum(len(json.loads(r)["boxes"]) for r in old)
    assert checked > 30  # the comparison had boxes to compare


def test_decode_batch_counts_and_order():
    pred = _raw(6, 8, 2, 3, seed=5)
    boxes, scores, labels, counts = decode_batch(pred, 0.05, 0.5, 7, 2)
    assert counts.tolist()[3] == 0 and counts.sum() == len(boxes) == len(scores) == len(labels)
    assert int(counts.max()) == 7  # max_det per image, not per batch
    for s in scores.split(counts.tolist()):
        assert (s[:-1] >= s[1:]).all()


def test_rounded_is_pythons_round():
    from visiontk.outputs.rounding import rounded

    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.rand(30_000, generator=g) * 4000, torch.rand(30_000, generator=g),
                        torch.arange(0, 20_000, dtype=torch.float32) / 64])  # exact ties: x.xx5 and x.xxxxx5
    for digits in (2, 5):
        assert rounded(values, digits).tolist() == [round(v, digits) for v in values.tolist()]
