"""The shared ConfusionMatrix (segment and classify) against a confusion matrix computed by hand."""
import math

import pytest
import torch

from visiontk.metrics.confusion import ConfusionMatrix

# target / pred, one image 2x4; 255 = ignore. Class 3 never appears.
TARGET = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
PRED = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 2]]])
# rows = target, cols = pred; the ignored pixel (pred 0) is not counted
EXPECTED = torch.tensor(
    [
        [1, 1, 0, 0],
        [0, 2, 1, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ]
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared CPU


def test_matrix_and_metrics_match_hand_computation():
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(PRED, TARGET)
    assert cm.mat.dtype == torch.int64
    assert torch.equal(cm.mat, EXPECTED)
    m = cm.compute()
    # IoU = tp / (row + col - tp): 1/(2+2-1), 2/(3+3-2), 1/(2+2-1), class 3 absent -> nan
    assert m["per_class_iou"][:3] == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    assert math.isnan(m["per_class_iou"][3])
    assert m["miou"] == pytest.approx(7 / 18)  # (1/3 + 1/2 + 1/3) / 3, nan excluded
    assert m["accuracy"] == pytest.approx(4 / 7) and m["total"] == 7
    # Dice = 2 tp / (row + col): 2/4, 4/6, 2/4
    assert m["per_class_dice"][:3] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert math.isnan(m["per_class_dice"][3])
    assert m["mean_dice"] == pytest.approx(5 / 9)


def test_ignored_pixels_do_not_count_whatever_is_predicted():
    a, b = ConfusionMatrix(4, ignore_index=255), ConfusionMatrix(4, ignore_index=255)
    a.update(PRED, TARGET)
    other = PRED.clone()
    other[0, 1, 2] = 3  # the pixel whose target is 255
    b.update(other, TARGET)
    assert torch.equal(a.mat, b.mat)


def test_false_positive_class_counts_as_zero_iou():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(torch.tensor([[[0, 2]]]), torch.tensor([[[0, 0]]]))
    m = cm.compute()
    assert m["per_class_iou"][0] == pytest.approx(0.5)
    assert math.isnan(m["per_class_iou"][1])
    assert m["per_class_iou"][2] == 0.0
    assert m["miou"] == pytest.approx(0.25)


def test_accumulates_batches_and_resets():
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(torch.cat([PRED, PRED]), torch.cat([TARGET, TARGET]))
    cm.update(PRED, TARGET)
    assert torch.equal(cm.mat, 3 * EXPECTED)
    cm.reset()
    assert cm.mat.sum() == 0
    assert math.isnan(cm.compute()["miou"])


def test_precision_recall_and_support_as_classification_reports_them():
    """Without an ignore index every value counts; a class never predicted has precision 0, not NaN."""
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1, 0]), torch.tensor([0, 1, 1, 2]))  # rows truth: [[1,0,0],[1,1,0],[1,0,0]]
    m = cm.compute()
    assert m["support"] == [1, 2, 1] and m["total"] == 4
    assert m["precision"] == pytest.approx([1 / 3, 1.0, 0.0])
    assert m["recall"] == pytest.approx([1.0, 0.5, 0.0])


def test_rejects_out_of_range_classes():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError, match="target"):
        cm.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 3]]]))
    with pytest.raises(ValueError, match="pred"):
        cm.update(torch.tensor([[[0, 5]]]), torch.tensor([[[0, 1]]]))


def test_label_map_is_argmax_with_first_maximum_on_ties():
    from visiontk.tasks.segment.common import label_map

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, 9)
    assert torch.equal(label_map(logits, 1), logits.argmax(1))
    assert torch.equal(label_map(logits[0], 0), logits[0].argmax(0))
    # Ties: classes 1 and 3 share the maximum everywhere; the first one wins.
    tied = torch.zeros(4, 2, 2)
    tied[1] = tied[3] = 1.0
    assert torch.equal(label_map(tied, 0), torch.ones(2, 2, dtype=torch.long))


@pytest.mark.parametrize("channels,size", [(4, (480, 640)), (21, (37, 53)), (3, (16, 16)), (300, (40, 30)), (1, (9, 7))])
def test_full_size_labels_are_the_argmax_of_bilinearly_upsampled_logits(channels, size):
    """OpenCV does the upsampling on the CPU (torch beyond its channel limit): the
    labels must be torch's F.interpolate + argmax, except where the two best
    classes are within rounding of each other."""
    import torch.nn.functional as F

    from visiontk.tasks.segment.outputs import full_size_labels

    torch.manual_seed(channels)
    logits = torch.randn(channels, 16, 16)
    got = torch.from_numpy(full_size_labels(logits, size)).long()
    up = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    assert got.shape == size and got.dtype == torch.long
    differ = got != up.argmax(0)
    if channels > 1:
        top2 = up.topk(2, dim=0).values
        assert bool(((top2[0] - top2[1])[differ] < 1e-4).all()), int(differ.sum())
    assert differ.float().mean() < 1e-3
