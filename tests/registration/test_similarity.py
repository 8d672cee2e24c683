"""The similarity measures: NCC over the pixels both images have, and the Gaussian smoothing they use."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_histoaffine import transforms
from napari_histoaffine.registration.features import (ORIENTATION, FeatureLevel, StructurePyramid, structure_features,
                                                     turn_orientations)
from napari_histoaffine.registration.preprocess import prepare_pair
from napari_histoaffine.registration.similarity import ncc, smooth


def test_weighted_ncc_is_the_correlation_of_the_pixels_weighed_in():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 2, 20, 30, generator=generator), torch.rand(1, 2, 20, 30, generator=generator)
    weight = (torch.rand(3, 1, 20, 30, generator=generator) > 0.3).float()
    for item in range(3):
        kept = weight[item].expand(2, -1, -1).bool()
        expected = np.corrcoef(a[item][kept].numpy(), b[0][kept].numpy())[0, 1]
        assert ncc(a, b, weight)[item].item() == pytest.approx(expected, abs=1e-5)
    assert ncc(a, b).shape == (3,)
    # the pipeline scores NumPy arrays, a training loss torch tensors: the same correlation
    np.testing.assert_allclose(ncc(a.numpy(), b.numpy(), weight.numpy()), ncc(a, b, weight).numpy(), atol=1e-6)


def test_a_flat_image_correlates_with_nothing():
    flat, textured = torch.full((1, 2, 20, 30), 0.7), torch.rand(1, 2, 20, 30)
    assert ncc(flat, textured).item() == 0.0 and ncc(textured, flat).item() == 0.0
    assert ncc(flat.numpy(), textured.numpy()).item() == 0.0


def test_a_pose_that_overlaps_a_few_pixels_is_no_fit(ihc_at):
    """Over a handful of pixels anything correlates: poses that overlap too little score -1, not a chance 0.99."""
    image = ihc_at(0.3)
    level = StructurePyramid(*prepare_pair(image, image)).level(96)
    shrunk = transforms.compose(transforms.scaling(0.05), transforms.translation(10.0, 10.0))
    scores = level.similarity(level.thetas([transforms.identity(), shrunk]))
    assert scores[0].item() == pytest.approx(1.0, abs=1e-4)
    assert scores[1].item() == -1.0


def test_every_third_pixel_tells_a_slightly_stretched_pose_from_the_right_one(ihc_at):
    """The stretches race on every third pixel: a pose 5 % off in scale must still score below the right one."""
    image = ihc_at(0.3)
    pyramid = StructurePyramid(*prepare_pair(image, image))
    rows, cols = pyramid.fixed.image.shape
    centre = transforms.translation(-(cols - 1) / 2, -(rows - 1) / 2)
    stretched = transforms.compose(centre, transforms.scaling(1.05, 1.0), transforms.invert(centre))
    right, off = pyramid.similarity([transforms.identity(), stretched], 192, stride=3)
    assert right == pytest.approx(1.0, abs=1e-4) and off < right - 0.05
    assert pyramid.similarity([stretched], 192, stride=1)[0] == pytest.approx(off, abs=0.05)


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
@pytest.mark.parametrize("differentiated", [False, True])  # OpenCV's filter, and the torch blur autograd can follow
def test_smooth_is_a_zero_padded_gaussian(shape, sigma, differentiated):
    images = torch.rand(*shape).requires_grad_(differentiated)
    assert torch.allclose(smooth(images, sigma), _reference_blur(images, sigma), atol=1e-5)


def test_smooth_passes_gradients_after_inference_mode_use():
    with torch.inference_mode():
        smooth(torch.rand(1, 1, 20, 30), 1.0)   # caches the band matrices inside inference mode
    images = torch.rand(1, 1, 20, 30, requires_grad=True)
    smooth(images, 1.0).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


def test_structure_features_are_the_smoothed_image_and_its_smoothed_edges():
    image = torch.rand(1, 1, 40, 56, requires_grad=True)   # the differentiable torch blur as the reference
    smoothed = smooth(image, 1.0)
    gx = F.pad(smoothed[..., :, 2:] - smoothed[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(smoothed[..., 2:, :] - smoothed[..., :-2, :], (0, 0, 1, 1))
    expected = torch.cat([smooth(image, 0.5), smooth(torch.sqrt(gx * gx + gy * gy + 1e-12), 1.0)], 1).detach()
    expected = expected / expected.flatten(2).std(2).view(1, 2, 1, 1)
    features = structure_features(image.detach()[0, 0].numpy())
    assert torch.allclose(features, expected, atol=1e-5)


@pytest.mark.parametrize("mirrored", [False, True])
def test_turned_orientations_of_a_warped_image_match_the_fixed_image(ihc_at, mirrored):
    """Warping moves the pixels, not the directions they hold: turned, a posed section's edge directions are the
    fixed section's."""
    fixed = 1 - ihc_at(1.0)[100:400, 100:400].mean(2).astype(np.float32) / 255
    centre = transforms.translation(-150, -150)
    pose = transforms.compose(centre, transforms.mirror_x(0) if mirrored else np.eye(3), transforms.rotation(37),
                              transforms.invert(centre))
    moving = transforms.warp_image(fixed, transforms.invert(pose), fixed.shape).astype(np.float32)
    level = FeatureLevel(moving, fixed, 300, orientation=True)
    warped = transforms.warp_tensor(level.moving, level.thetas([pose]), level.f_shape)
    inner = (0, slice(None), slice(60, 240), slice(60, 240))

    def correlations(images):
        return [float(np.corrcoef(level.fixed[inner][c].flatten(), images[inner][c].flatten())[0, 1])
                for c in range(ORIENTATION.start, ORIENTATION.stop)]

    assert min(correlations(warped)) < 0.5                                   # the directions as the image held them
    assert min(correlations(turn_orientations(warped.clone(), np.stack([pose])))) > 0.95
    assert level.similarity(level.thetas([pose]))[0] > 0.95   # the level's own similarity turns them too
