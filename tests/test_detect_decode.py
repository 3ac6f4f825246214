import pytest
import torch
from torchvision.ops import batched_nms

from visiontk.tasks.detect.decode import decode_predictions, scale_to_pixels
from visiontk.tasks.detect.head import activate

S, B, C = 4, 2, 3


def _random_pred(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return activate(torch.randn(n, S, S, B * 5 + C, generator=g) * 2, B)


def _reference(pred_one, conf_threshold, iou_threshold, max_det):
    """Loop over cells written independently of the module, then torchvision NMS."""
    boxes, scores, labels = [], [], []
    for row in range(S):
        for col in range(S):
            cell = pred_one[row, col]
            probs = cell[B * 5 :]
            for b in range(B):
                x, y, sw, sh, conf = cell[b * 5 : b * 5 + 5].tolist()
                cx, cy, w, h = (col + x) / S, (row + y) / S, sw * sw, sh * sh
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                per_class = conf * probs
                boxes.append([min(max(v, 0.0), 1.0) for v in box])
                scores.append(per_class.max().item())
                labels.append(int(per_class.argmax()))
    boxes, scores, labels = torch.tensor(boxes), torch.tensor(scores), torch.tensor(labels)
    keep = scores > conf_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    idx = batched_nms(boxes, scores, labels, iou_threshold)[:max_det]
    return boxes[idx], scores[idx], labels[idx]


@pytest.mark.parametrize("conf, iou, max_det", [(0.25, 0.5, 100), (0.05, 0.3, 100), (0.1, 0.5, 5)])
def test_decode_matches_reference_and_batched_nms(conf, iou, max_det):
    pred = _random_pred()
    out = decode_predictions(pred, conf_threshold=conf, iou_threshold=iou, max_det=max_det, B=B)
    assert len(out) == 2
    for n in range(2):
        boxes, scores, labels = _reference(pred[n], conf, iou, max_det)
        assert len(scores) > 0
        torch.testing.assert_close(out[n]["boxes"], boxes, atol=1e-6, rtol=0)
        torch.testing.assert_close(out[n]["scores"], scores, atol=1e-6, rtol=0)
        assert out[n]["labels"].tolist() == labels.tolist()
        assert out[n]["labels"].dtype == torch.long
        assert len(out[n]["scores"]) <= max_det
        assert (out[n]["scores"][:-1] >= out[n]["scores"][1:]).all()
        assert ((out[n]["boxes"] >= 0) & (out[n]["boxes"] <= 1)).all()


def test_nms_is_class_aware():
    # Two identical boxes in cells sharing nothing but position: same class ->
    # one survives; different classes -> both survive.
    pred = torch.zeros(1, S, S, B * 5 + C)
    pred[0, 1, 1, :10] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5, 0.8])
    pred[0, 1, 1, 10:] = torch.tensor([1.0, 0.0, 0.0])
    assert len(decode_predictions(pred, B=B)[0]["scores"]) == 1
    pred[0, 1, 2, :10] = torch.tensor([-0.5, 0.5, 0.5, 0.5, 0.9, 0.0, 0.0, 0.1, 0.1, 0.0])  # same box, next cell
    pred[0, 1, 2, 10:] = torch.tensor([0.0, 1.0, 0.0])
    out = decode_predictions(pred, B=B)[0]
    assert sorted(out["labels"].tolist()) == [0, 1]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.9])


def test_empty_output_shapes():
    pred = torch.zeros(3, S, S, B * 5 + C)  # conf 0 everywhere
    out = decode_predictions(pred, B=B)
    assert [d["boxes"].shape for d in out] == [(0, 4)] * 3
    assert all(d["scores"].shape == (0,) and d["labels"].shape == (0,) for d in out)


def test_scale_to_pixels():
    boxes = torch.tensor([[0.0, 0.5, 1.0, 1.0]])
    assert scale_to_pixels(boxes, 200, 100).tolist() == [[0.0, 50.0, 200.0, 100.0]]
