"""Bilinear transposed convolution: exact output size and bilinear behaviour."""
import pytest
import torch
import torch.nn.functional as F

from visiontk.tasks.segment.upsample import BilinearConvTranspose2d, bilinear_kernel


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared CPU


SCALES = [2, 4, 8, 16, 32]
SIZES = [(1, 1), (5, 7), (8, 8), (9, 4)]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", SIZES)
def test_output_is_exactly_scale_times_input(scale, size):
    up = BilinearConvTranspose2d(3, scale)
    assert (up.kernel_size, up.stride, up.padding) == ((2 * scale,) * 2, (scale,) * 2, (scale // 2,) * 2)
    assert up.bias is None
    y = up(torch.randn(2, 3, *size))
    assert y.shape == (2, 3, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("scale", SCALES)
def test_matches_bilinear_interpolate_inside_the_image(scale):
    torch.manual_seed(0)
    x = torch.randn(1, 4, 7, 10)
    y = BilinearConvTranspose2d(4, scale)(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    # Only the outer scale/2 pixels need the clamped edge value that the
    # convolution (zero padding) does not reproduce.
    m = scale // 2
    assert torch.allclose(y[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-6)
    # ...and the border really differs, so the margin above is not hiding a bug elsewhere.
    assert (y - ref).abs().max() > 1e-3


def test_kernel_is_per_channel_and_sums_to_one_per_phase():
    k = bilinear_kernel(3, 4)
    assert k.shape == (3, 3, 4, 4)
    off_diagonal = k.clone()
    off_diagonal[range(3), range(3)] = 0
    assert off_diagonal.abs().sum() == 0
    # 1-D taps for scale 2: 1 - |i - 1.5| / 2 = [0.25, 0.75, 0.75, 0.25]
    assert torch.allclose(k[0, 0, 0], torch.tensor([0.25, 0.75, 0.75, 0.25]) * 0.25)
    # every output phase receives weights summing to 1 (a constant stays constant)
    assert torch.allclose(k[0, 0, 0::2, 0::2].sum(), torch.tensor(1.0))
    assert torch.allclose(k[0, 0, 1::2, 0::2].sum(), torch.tensor(1.0))


def test_is_learnable_and_rejects_odd_scale():
    up = BilinearConvTranspose2d(2, 4)
    assert up.weight.requires_grad
    up(torch.randn(1, 2, 3, 3)).sum().backward()
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        BilinearConvTranspose2d(2, 3)
