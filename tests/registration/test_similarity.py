"""The Gaussian smoothing every similarity measure uses equals a zero-padded separable convolution."""
import pytest
import torch
import torch.nn.functional as F

from napari_histoaffine.registration.similarity import smooth


def _reference_blur(images, sigma):
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).float()
    n, c, h, w = images.shape
    planes = images.reshape(n * c, 1, h, w)
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(planes, kernel.view(1, 1, -1, 1), padding=(radius, 0)).view(n, c, h, w)


@pytest.mark.parametrize("shape", [(2, 3, 17, 25), (1, 1, 200, 150), (1, 2, 90, 300)])  # either side of the band limit
@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_smooth_is_a_zero_padded_gaussian(shape, sigma):
    images = torch.rand(*shape)
    assert torch.allclose(smooth(images, sigma), _reference_blur(images, sigma), atol=1e-5)


def test_smooth_passes_gradients_after_inference_mode_use():
    with torch.inference_mode():
        smooth(torch.rand(1, 1, 20, 30), 1.0)   # caches the band matrices inside inference mode
    images = torch.rand(1, 1, 20, 30, requires_grad=True)
    smooth(images, 1.0).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
