import math

import pytest
import torch
from torch import nn

from visiontk.tasks.detect.head import YoloV1Head, activate, grid_size_for


@pytest.mark.parametrize("hw", [(4, 4), (9, 9), (13, 7), (2, 3)])
def test_head_output_layout_for_any_feature_size(hw):
    torch.manual_seed(0)
    head = YoloV1Head(6, C=3, S=4, B=2, width=8)
    out = head(torch.randn(2, 6, *hw))
    assert out.shape == (2, 4, 4, 2 * 5 + 3)
    boxes, classes = out[..., :10], out[..., 10:]
    assert ((boxes > 0) & (boxes < 1)).all()  # sigmoid on x, y, sqrt_w, sqrt_h, conf
    assert torch.allclose(classes.sum(-1), torch.ones(2, 4, 4), atol=1e-6)  # softmax


def test_head_accepts_backbone_feature_list_and_uses_last():
    torch.manual_seed(0)
    head = YoloV1Head(6, C=2, S=3, B=1, width=4).eval()
    last = torch.randn(1, 6, 3, 3)
    assert torch.equal(head([torch.randn(1, 2, 12, 12), last]), head(last))


def test_conf_starts_at_prior_and_boxes_at_cell_centre():
    torch.manual_seed(0)
    head = YoloV1Head(5, C=4, S=2, B=3, width=8, conf_prior=0.05).eval()
    out = head(torch.randn(3, 5, 2, 2)).reshape(3, 2, 2, -1)
    boxes = out[..., :15].reshape(3, 2, 2, 3, 5)
    assert torch.allclose(boxes[..., 4], torch.full_like(boxes[..., 4], 0.05), atol=0.01)
    assert torch.allclose(boxes[..., :4], torch.full_like(boxes[..., :4], 0.5), atol=0.02)


def test_activate_zero_logits():
    out = activate(torch.zeros(1, 2, 2, 2 * 5 + 4), B=2)
    assert torch.allclose(out[..., :10], torch.full((1, 2, 2, 10), 0.5))
    assert torch.allclose(out[..., 10:], torch.full((1, 2, 2, 4), 0.25))


def test_dropout_and_depth_options():
    head = YoloV1Head(3, C=2, S=2, B=2, width=4, depth=3, dropout=0.5)
    assert sum(isinstance(m, nn.Conv2d) for m in head.convs) == 3
    assert any(isinstance(m, nn.Dropout) for m in head.modules())


def test_grid_size_for_matches_strided_convolutions():
    for size in (64, 100, 128, 130):
        convs = nn.Sequential(*[nn.Conv2d(1, 1, 3, stride=2, padding=1) for _ in range(4)])  # stride 16
        assert convs(torch.zeros(1, 1, size, size)).shape[-1] == grid_size_for(size, 16)
    assert grid_size_for(128, 16) == 8
    assert grid_size_for(130, 16) == math.ceil(130 / 16)
    with pytest.raises(ValueError):
        grid_size_for(0, 16)
