import pytest
import torch
from helpers import SEED

from visiontk.tasks.detect.decode import decode_predictions
from visiontk.tasks.detect.encode import encode_batch, encode_targets
from visiontk.tasks.detect.head import YoloV1Head
from visiontk.tasks.detect.loss import YoloV1Loss, paired_box_iou

S, B, C = 2, 2, 2


def _hand_case(swap: bool = False):
    """S=2, B=2, C=2; one object (class 1) centred in cell row 0, col 1.

    Box 0 sits exactly on the target centre but is tiny (IoU 0.0256); box 1 is
    shifted and flatter but overlaps much more (IoU 0.4539): box 1 must be the
    responsible one. With swap=True the two predictors trade places.
    """
    # target: cx 0.75, cy 0.25, w = h = 0.25 -> cell (0, 1), offsets (0.5, 0.5)
    target = encode_targets(torch.tensor([[0.75, 0.25, 0.25, 0.25]]), torch.tensor([1]), S, C)[None]
    assert target[0, 0, 1].tolist() == [0.5, 0.5, 0.25, 0.25, 1.0, 0.0, 1.0]
    pred = torch.zeros(1, S, S, B * 5 + C)
    box0 = [0.5, 0.5, 0.2, 0.2, 0.6]  # x, y, sqrt_w, sqrt_h, conf
    box1 = [0.6, 0.5, 0.5, 0.4, 0.7]
    if swap:
        box0, box1 = box1, box0
    pred[0, 0, 1] = torch.tensor(box0 + box1 + [0.3, 0.7])
    pred[0, 0, 0] = torch.tensor([0.3, 0.3, 0.3, 0.3, 0.1] + [0.7, 0.7, 0.6, 0.6, 0.2] + [0.9, 0.1])
    pred[0, 1, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.0] + [0.5, 0.5, 0.5, 0.5, 0.3] + [0.5, 0.5])
    pred[0, 1, 1] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.4] + [0.5, 0.5, 0.5, 0.5, 0.0] + [0.2, 0.8])
    return pred, target


# IoU of box 1 with the target, by hand: target [0.625, 0.125, 0.875, 0.375];
# box 1 centre ((1 + 0.6) / 2, 0.25) = (0.8, 0.25), size 0.5^2 x 0.4^2 = 0.25 x 0.16
# -> [0.675, 0.17, 0.925, 0.33]; intersection 0.2 * 0.16 = 0.032;
# union 0.0625 + 0.04 - 0.032 = 0.0705.
IOU_BOX1 = 0.032 / 0.0705
# box 0: 0.04 x 0.04 inside the target: 0.0016 / 0.0625.
IOU_BOX0 = 0.0016 / 0.0625


def _expected(obj_target: str) -> dict:
    coord = 5.0 * ((0.6 - 0.5) ** 2 + (0.5 - 0.5) ** 2 + (0.5 - 0.25**0.5) ** 2 + (0.4 - 0.25**0.5) ** 2)
    obj = (0.7 - (1.0 if obj_target == "one" else IOU_BOX1)) ** 2
    # every other predictor: box 0 of the object cell, then both boxes of the three empty cells
    noobj = 0.5 * (0.6**2 + 0.1**2 + 0.2**2 + 0.0**2 + 0.3**2 + 0.4**2 + 0.0**2)
    cls = (0.3 - 0.0) ** 2 + (0.7 - 1.0) ** 2  # only the object cell
    return {"coord": coord, "obj": obj, "noobj": noobj, "cls": cls}


def test_paired_iou_hand_values():
    t = torch.tensor([0.625, 0.125, 0.875, 0.375])
    b1 = torch.tensor([0.675, 0.17, 0.925, 0.33])
    b0 = torch.tensor([0.73, 0.23, 0.77, 0.27])
    assert paired_box_iou(b1, t).item() == pytest.approx(IOU_BOX1, rel=1e-5)
    assert paired_box_iou(b0, t).item() == pytest.approx(IOU_BOX0, rel=1e-4)


@pytest.mark.parametrize("obj_target", ["one", "iou"])
@pytest.mark.parametrize("swap", [False, True])
def test_hand_computed_loss_picks_max_iou_box(obj_target, swap):
    pred, target = _hand_case(swap)
    loss, parts = YoloV1Loss(S, B, C, obj_target=obj_target)(pred, target)
    expected = _expected(obj_target)
    for k, v in expected.items():
        assert parts[k] == pytest.approx(v, abs=1e-6), k
    assert loss.item() == pytest.approx(sum(expected.values()), abs=1e-6)
    if obj_target == "one":
        assert loss.item() == pytest.approx(0.70, abs=1e-6)
        # "box 0 is always responsible" would give 0.9 + 0.16 + 0.395 + 0.18
        assert abs(loss.item() - 1.635) > 0.5


def test_lambdas_and_batch_mean():
    pred, target = _hand_case()
    _, base = YoloV1Loss(S, B, C)(pred, target)
    _, scaled = YoloV1Loss(S, B, C, lambda_coord=1.0, lambda_noobj=1.0)(pred, target)
    assert scaled["coord"] == pytest.approx(base["coord"] / 5)
    assert scaled["noobj"] == pytest.approx(base["noobj"] / 0.5)
    # mean over the batch: an empty image adds only its no-object term
    empty = torch.zeros_like(target)
    loss2, parts2 = YoloV1Loss(S, B, C)(torch.cat([pred, pred]), torch.cat([target, empty]))
    no_obj_only = 0.5 * (pred[0, ..., 4:10:5] ** 2).sum().item()
    assert loss2.item() == pytest.approx((0.70 + no_obj_only) / 2, abs=1e-6)
    assert sum(parts2.values()) == pytest.approx(loss2.item(), abs=1e-6)


def test_gradients_finite_with_zero_size_predictions():
    _, target = _hand_case()
    pred = torch.zeros(1, S, S, B * 5 + C, requires_grad=True)  # sqrt_w = sqrt_h = 0
    loss, _ = YoloV1Loss(S, B, C, obj_target="iou")(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_bad_shapes_and_options():
    with pytest.raises(ValueError):
        YoloV1Loss(S, B, C, obj_target="paper")
    with pytest.raises(ValueError):
        YoloV1Loss(S, B, C)(torch.zeros(1, S, S, 11), torch.zeros(1, S, S, 7))


@pytest.mark.outcome
def test_loss_falls_when_fitting_one_target(one_thread, outcome):
    torch.manual_seed(SEED)
    s, c = 4, 3
    head = YoloV1Head(4, C=c, S=s, B=2, width=16)
    features = torch.randn(1, 4, 8, 8)
    gt_boxes = torch.tensor([[0.3, 0.6, 0.4, 0.3], [0.8, 0.2, 0.2, 0.35]])
    gt_labels = torch.tensor([2, 0])
    target = encode_batch([(gt_boxes, gt_labels)], s, c)
    loss_fn = YoloV1Loss(s, 2, c)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(250):
        loss, _ = loss_fn(head(features), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        det = decode_predictions(head(features), conf_threshold=0.5)[0]
    from torchvision.ops import box_convert, box_iou

    iou = box_iou(box_convert(gt_boxes, "cxcywh", "xyxy"), det["boxes"])
    outcome(loss_ratio=loss.item() / first, boxes=len(det["boxes"]), min_iou=float(iou.max(1).values.min()))
    # Calibrated over default / aten-default / mkldnn-off / onednn-sse41 x seeds 0-2 (AMD EPYC, tests/calibration/results.md):
    # loss ratio <= 0.002, 2 boxes, min IoU 0.986-0.988 (the same under every setting);
    # break detect-no-cell-offset: min IoU 0.000.
    assert loss.item() < 0.05 * first
    assert len(det["boxes"]) == 2
    match = iou.argmax(1)
    assert (iou.max(1).values > 0.7).all()
    assert det["labels"][match].tolist() == gt_labels.tolist()
