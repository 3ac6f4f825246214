"""Tiled prediction equals whole-image prediction for a small receptive field."""
import pytest
import torch
from torch import nn

from visiontk.errors import UserError
from visiontk.tasks.segment.tiling import owned_ranges, predict_tiled, tile_starts


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared CPU


K = 4


def small_net():
    """Three 3×3 'same' convs: receptive-field radius 3, translation-equivariant."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, K, 3, padding=1),
    ).eval()


@pytest.mark.parametrize("size", [(50, 70), (24, 24), (10, 12), (10, 61), (47, 25)])
def test_tiled_equals_whole_image(size):
    net = small_net()
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        whole = net(image)
    tiled = predict_tiled(net, image, tile=24, overlap=3, num_classes=K, batch_size=3)
    assert tiled.shape == (1, K, *size)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_too_small_overlap_is_visible():
    """Guards the test above: with overlap < radius the seams differ."""
    net = small_net()
    image = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        whole = net(image)
    tiled = predict_tiled(net, image, tile=24, overlap=1, num_classes=K)
    assert (tiled - whole).abs().max() > 1e-3


@pytest.mark.parametrize("tile,overlap", [(16, 3), (16, 0), (9, 4), (32, 8)])
def test_every_pixel_owned_once_and_far_from_interior_tile_edges(tile, overlap):
    for length in range(1, 80):
        starts = tile_starts(length, tile, overlap)
        ranges = owned_ranges(starts, tile, length)
        t = min(tile, length)
        assert starts[0] == 0 and starts[-1] + t == length  # inside the image
        assert ranges[0][0] == 0 and ranges[-1][1] == length
        for (lo, hi), (lo2, _) in zip(ranges, ranges[1:]):
            assert hi == lo2  # contiguous, no gaps or double ownership
        for s, (lo, hi) in zip(starts, ranges):
            assert s <= lo and hi <= s + t
            if s > 0:
                assert lo - s >= overlap
            if s + t < length:
                assert s + t - hi >= overlap


def test_rejects_bad_arguments():
    net = small_net()
    with pytest.raises(UserError, match="overlap"):
        predict_tiled(net, torch.randn(1, 3, 20, 20), tile=8, overlap=4, num_classes=K)
    with pytest.raises(UserError, match="one image"):
        predict_tiled(net, torch.randn(2, 3, 20, 20), tile=8, overlap=2, num_classes=K)
    with pytest.raises(UserError, match="returned"):
        predict_tiled(net, torch.randn(1, 3, 20, 20), tile=8, overlap=2, num_classes=K + 1)
