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


def _reference_grid(samples, S, C):
    """The documented rule, box by box in Python: each centre's cell (floor(c * S), the
    border in the last cell), the largest area wins a shared cell, ties the first box."""
    out = torch.zeros(len(samples), S, S, 5 + C)
    for i, (boxes, labels) in enumerate(samples):
        areas = (boxes[:, 2] * boxes[:, 3]).tolist()  # float32 products, as the encoder compares them
        winners = {}
        for k, (cx, cy, _, _) in enumerate(boxes.tolist()):
            cell = (min(int(cy * S), S - 1), min(int(cx * S), S - 1))
            if cell not in winners or areas[k] > areas[winners[cell]]:
                winners[cell] = k
        for (row, col), k in winners.items():
            cx, cy, w, h = boxes[k].tolist()
            out[i, row, col, :5] = torch.tensor([cx * S - col, cy * S - row, w, h, 1.0])
            out[i, row, col, 5 + int(labels[k])] = 1.0
    return out


def test_batch_encoding_equals_the_rule_image_by_image():
    """One pass over the whole batch (cells image * S * S + row * S + col) gives each image
    the grid the per-image rule gives: shared cells, equal areas, centres on cell and image
    borders, images without boxes. (S = 4: the offsets are exact in float32.)"""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        samples = []
        for _ in range(int(torch.randint(1, 6, (1,), generator=g))):
            k = int(torch.randint(0, 10, (1,), generator=g))
            boxes = torch.rand(k, 4, generator=g)
            on_borders = torch.rand(k, generator=g) < 0.5
            boxes[on_borders, :2] = torch.randint(0, 2 * S + 1, (int(on_borders.sum()), 2), generator=g) / (2 * S)
            boxes[on_borders, 2:] = torch.randint(1, 4, (int(on_borders.sum()), 2), generator=g) / 4  # equal areas
            samples.append((boxes, torch.randint(0, C, (k,), generator=g)))
        grid = encode_batch(samples, S, C)
        assert torch.equal(grid, _reference_grid(samples, S, C))
        for i, (boxes, labels) in enumerate(samples):
            assert torch.equal(grid[i], encode_targets(boxes, labels, S, C))
