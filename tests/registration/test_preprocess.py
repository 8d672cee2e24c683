"""Tissue segmentation: the holes of a section are tissue, the background around it is not."""
import numpy as np
from scipy import ndimage

from napari_histoaffine.registration.preprocess import fill_holes, tissue_mask


def test_fill_holes_is_scipys_binary_fill_holes():
    rng = np.random.default_rng(0)
    for _ in range(50):  # blobs with holes, some of them cut by the border (those are no holes)
        mask = ndimage.gaussian_filter(rng.random((60, 80)), 2) > rng.uniform(0.45, 0.55)
        np.testing.assert_array_equal(fill_holes(mask.astype(np.uint8)), ndimage.binary_fill_holes(mask))


def test_a_textured_section_with_a_blank_hole_is_one_piece_of_tissue(ihc_at):
    texture = 1.0 - ihc_at(0.5).mean(-1) / 255.0                  # tissue bright, as the pipeline sees it
    rows, cols = np.indices(texture.shape)
    radius = np.hypot(rows - texture.shape[0] / 2, cols - texture.shape[1] / 2)
    section = np.where(radius < 0.4 * min(texture.shape), texture, 0.0)
    section[radius < 0.1 * min(texture.shape)] = 0.0               # a blank hole in the middle
    mask = tissue_mask(section.astype(np.float32))
    assert mask[radius < 0.08 * min(texture.shape)].all()          # the hole counts as tissue
    assert not mask[radius > 0.47 * min(texture.shape)].any()      # the background around it does not
