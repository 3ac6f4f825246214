import pytest
import torch
from torchvision.ops import box_convert

from visiontk.tasks.detect.encode import decode_grid_boxes, encode_batch, encode_targets

S, C = 4, 3


def _roundtrip(boxes, labels):
    target = encode_targets(boxes, labels, S, C)
    obj = target[..., 4] > 0
    decoded = decode_grid_boxes(target[..., :4])[obj]
    return target, decoded


def _sort(b):
    return b[torch.argsort(b[:, 0] * 10 + b[:, 1])]


def test_roundtrip_one_box_per_cell():
    g = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    centres = (torch.stack([cols.flatten(), rows.flatten()], 1) + torch.rand(S * S, 2, generator=g)) / S
    boxes = torch.cat([centres, 0.05 + 0.9 * torch.rand(S * S, 2, generator=g)], 1)
    labels = torch.randint(0, C, (S * S,), generator=g)
    target, decoded = _roundtrip(boxes, labels)
    assert target[..., 4].sum() == S * S
    # Grid order is [row = y, col = x], decoded in the same row-major order as built.
    torch.testing.assert_close(decoded, boxes, atol=1e-6, rtol=0)
    torch.testing.assert_close(target[..., 5:].argmax(-1).flatten(), labels)
    assert ((target[..., :2] >= 0) & (target[..., :2] < 1)).all()


@pytest.mark.parametrize(
    "centre, cell",
    [
        ((0.0, 0.0), (0, 0)),  # image corner
        ((1.0, 1.0), (S - 1, S - 1)),  # exactly on the right/bottom border -> last cell
        ((0.25, 0.5), (2, 1)),  # exactly on cell borders -> the cell starting there
        ((0.75, 0.0), (0, 3)),
        ((1.0, 0.2), (0, S - 1)),
        ((0.9, 0.1), (0, S - 1)),  # row from y, column from x
    ],
)
def test_roundtrip_at_cell_and_image_borders(centre, cell):
    boxes = torch.tensor([[*centre, 0.3, 0.2]])
    target, decoded = _roundtrip(boxes, torch.tensor([2]))
    assert target[cell][4] == 1 and target[..., 4].sum() == 1
    assert target[cell][7] == 1  # one-hot class 2
    torch.testing.assert_close(decoded, boxes, atol=1e-6, rtol=0)


def test_collision_keeps_larger_box_whatever_the_order():
    small = [0.1, 0.1, 0.1, 0.1]
    large = [0.2, 0.2, 0.3, 0.3]  # same cell (0, 0)
    for order in ([small, large], [large, small]):
        labels = torch.tensor([0, 1]) if order[0] is small else torch.tensor([1, 0])
        target, decoded = _roundtrip(torch.tensor(order), labels)
        assert target[..., 4].sum() == 1
        torch.testing.assert_close(decoded, torch.tensor([large]), atol=1e-6, rtol=0)
        assert target[0, 0, 5:].tolist() == [0, 1, 0]


def test_collision_tie_keeps_first():
    boxes = torch.tensor([[0.05, 0.05, 0.2, 0.1], [0.15, 0.15, 0.1, 0.2]])
    target, decoded = _roundtrip(boxes, torch.tensor([2, 0]))
    torch.testing.assert_close(decoded, boxes[:1], atol=1e-6, rtol=0)
    assert target[0, 0, 7] == 1


def test_empty_and_batch():
    assert encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), S, C).abs().sum() == 0
    batch = encode_batch([(torch.tensor([[0.5, 0.5, 0.1, 0.1]]), torch.tensor([1])),
                          (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))], S, C)
    assert batch.shape == (2, S, S, 5 + C)
    assert batch[0, ..., 4].sum() == 1 and batch[1].abs().sum() == 0


def test_bad_labels_raise():
    with pytest.raises(ValueError):
        encode_targets(torch.tensor([[0.5, 0.5, 0.1, 0.1]]), torch.tensor([C]), S, C)
    with pytest.raises(ValueError):
        encode_targets(torch.tensor([[0.5, 0.5, 0.1, 0.1]]), torch.tensor([0, 1]), S, C)


def test_decode_per_box_and_xyxy():
    g = torch.Generator().manual_seed(1)
    cell = torch.rand(2, S, S, 3, 4, generator=g)
    per_box = decode_grid_boxes(cell, per_box=True)
    for b in range(3):
        torch.testing.assert_close(per_box[..., b, :], decode_grid_boxes(cell[..., b, :]))
    # a hand-checked value: cell row 1, col 2, offsets (0.5, 0.25)
    one = torch.zeros(S, S, 4)
    one[1, 2] = torch.tensor([0.5, 0.25, 0.2, 0.4])
    assert decode_grid_boxes(one)[1, 2].tolist() == pytest.approx([2.5 / S, 1.25 / S, 0.2, 0.4])
    torch.testing.assert_close(decode_grid_boxes(cell, "xyxy", per_box=True),
                               box_convert(per_box, "cxcywh", "xyxy"))
