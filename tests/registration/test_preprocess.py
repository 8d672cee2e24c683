"""Tissue segmentation: the holes of a section are tissue, the background around it and the marks on it are not."""
import cv2
import numpy as np
from scipy import ndimage

from napari_histoaffine.registration.grayscale import LUMINANCE, to_grayscale
from napari_histoaffine.registration.preprocess import absorbing_marks, fill_holes, prepare, tissue_mask, tissue_signal


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


def _pale_section(ihc_at):
    """A pale section (a faint rendering of ``ihc.png``'s tissue) in the middle of a bright glass, as 8-bit RGB."""
    tissue = ihc_at(0.5).astype(np.float32)
    glass = np.full((384, 384, 3), 240.0, np.float32)
    glass[64:320, 64:320] = 240.0 - 0.25 * (240.0 - tissue)
    return glass


def test_a_pen_stroke_across_the_glass_neither_joins_the_tissue_nor_outshines_it(ihc_at):
    """A marker line from the glass over a pale section (as pathologists mark slides) is filled in: the mask
    stays the section's, and the stroke is no brighter than the tissue around it."""
    clean = _pale_section(ihc_at)
    marked = clean.copy()
    cv2.line(marked, (10, 300), (330, 180), (30, 70, 130), 6, cv2.LINE_AA)  # blue ink, across glass and tissue
    prepared = {name: prepare(np.clip(image, 0, 255).astype(np.uint8), 0.75) for name, image in
                (("clean", clean), ("marked", marked))}
    glass_mask = np.ones((288, 288), bool)
    glass_mask[24:264, 24:264] = False                                  # beyond the section (48-240), with a margin
    assert not prepared["clean"].mask[glass_mask].any()
    assert not prepared["marked"].mask[glass_mask].any()
    stroke = cv2.line(np.zeros((288, 288), np.uint8), (8, 225), (248, 135), 1, 3) > 0
    on_tissue = stroke & prepared["clean"].mask
    assert prepared["marked"].image[on_tissue].mean() < 1.5 * prepared["clean"].image[on_tissue].mean()


def test_a_dense_stain_blob_is_no_mark(ihc_at):
    """A wide, strongly stained region (DAB-positive tissue) absorbs as much as ink, but it is no thin line: kept."""
    stained = _pale_section(ihc_at)
    cv2.ellipse(stained, (190, 190), (45, 35), 0, 0, 360, (90, 50, 20), -1, cv2.LINE_AA)
    gray = to_grayscale(np.clip(stained, 0, 255).astype(np.uint8))
    assert absorbing_marks(gray, tissue_mask(gray)) is None


def test_a_pen_stroke_that_fades_over_the_tissue_is_found_along_its_length(ihc_at):
    """Ink laid more thinly where the pen crossed the section is still the stroke: all of it is a mark."""
    section = _pale_section(ihc_at)
    stroke = cv2.line(np.zeros((384, 384), np.float32), (10, 300), (330, 180), 1.0, 6, cv2.LINE_AA)
    over_tissue = np.indices(stroke.shape)[1] > 64
    ink = stroke * np.where(over_tissue, 0.6, 1.0)
    marked = section * (1 - ink[..., None]) + section * (np.array([30, 70, 130]) / 240.0) * ink[..., None]
    gray = to_grayscale(np.clip(marked, 0, 255).astype(np.uint8))
    marks = absorbing_marks(gray, tissue_mask(gray))
    assert marks is not None and marks[(stroke > 0.5) & over_tissue].mean() > 0.95


def _dense_section(ihc_at):
    """``ihc.png``'s tissue at full strength in the middle of a bright glass, as 8-bit RGB."""
    section = np.full((384, 384, 3), 240, np.uint8)
    section[64:320, 64:320] = ihc_at(0.5)
    return section


def test_green_ink_over_a_dense_stain_is_found_by_its_colour(ihc_at):
    """Green ink across brown and blue stain is no darker in luminance than five times the stain, but it
    absorbs the red light the stain lets through: with the colour image it is a mark along its length."""
    section = _dense_section(ihc_at).astype(np.float32)
    stroke = cv2.line(np.zeros((384, 384), np.float32), (10, 300), (330, 180), 1.0, 6, cv2.LINE_AA)
    ink = np.array([0.12, 0.55, 0.25], np.float32)                  # light the ink lets through, per channel
    marked = np.clip(section * (1 - stroke[..., None] * (1 - ink)), 0, 255).astype(np.uint8)
    gray = to_grayscale(marked)
    marks = absorbing_marks(gray, tissue_mask(gray), marked)
    on_tissue = (stroke > 0.5) & (np.indices(stroke.shape)[1] > 64) & (np.indices(stroke.shape)[1] < 320)
    assert marks is not None and marks[on_tissue].mean() > 0.9


def test_clean_sections_have_no_marks(ihc_at):
    for image in (ihc_at(1.0), np.clip(_pale_section(ihc_at), 0, 255).astype(np.uint8), _dense_section(ihc_at)):
        gray = to_grayscale(image)
        assert absorbing_marks(gray, tissue_mask(gray)) is None
        assert absorbing_marks(gray, tissue_mask(gray), image) is None


def test_a_channel_reversed_view_prepares_like_its_copy(ihc_at):
    """A BGR -> RGB view as ``image[..., ::-1]`` (negative strides) is accepted as it is."""
    bgr = ihc_at(1.0)
    view, copy = prepare(bgr[..., ::-1], 0.5), prepare(bgr[..., ::-1].copy(), 0.5)
    np.testing.assert_array_equal(view.image, copy.image)


def test_tissue_under_grey_glass_that_fills_the_frame_is_read_as_bright_field(ihc_at):
    """A crop of a section scanned through grey, dim glass: its tissue still absorbs (inverted), it does not
    emit light, though its extremes sit close together in the middle of the range."""
    crop = to_grayscale(ihc_at(1.0)[100:400, 100:400]) * 0.7
    mask = tissue_mask(crop)
    assert mask.mean() > 0.9                                            # the section fills the frame
    signal = tissue_signal(crop, mask)
    assert np.corrcoef(signal.ravel(), crop.ravel())[0, 1] < -0.8       # dark tissue is strong signal


def test_a_glass_field_seen_in_one_corner_is_not_extrapolated_into_the_dark():
    """Glass shows only in a corner, where a vignette darkens it away from the corner: no field fitted there falls
    towards black across the evenly lit tissue."""
    rng = np.random.default_rng(0)
    gray = np.clip(0.4 + 0.05 * rng.standard_normal((240, 240)), 0, 1).astype(np.float32)
    mask = np.ones_like(gray, bool)
    mask[:60, :60] = False
    rows, cols = np.mgrid[:60, :60]
    gray[:60, :60] = 0.95 - 0.004 * (rows + cols)
    signal = tissue_signal(gray, mask)
    means = [signal[rows, cols].mean() for rows in (slice(60, 150), slice(150, None)) for cols in (slice(60, 150),
                                                                                            slice(150, None))]
    assert min(means) > 0.0 and max(means) - min(means) < 0.1          # evenly lit tissue stays even


def test_a_fluorescence_view_lit_in_one_channel_keeps_its_structure_in_grayscale(ihc_at):
    """A dim stain that shines in blue alone (as DAPI does) on black: its grayscale follows the stain, not the
    other channels' noise, which luminance (7 % blue) would mostly show."""
    density = 1.0 - ihc_at(0.5).mean(-1) / 255.0
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 30, density.shape + (3,))
    image[..., 2] = 20 + 120 * density
    image = image.astype(np.uint8)
    luminance = image.astype(np.float32) @ LUMINANCE
    assert np.corrcoef(luminance.ravel(), density.ravel())[0, 1] < 0.5
    assert np.corrcoef(to_grayscale(image).ravel(), density.ravel())[0, 1] > 0.95
