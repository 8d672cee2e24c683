"""Images with nothing to register are refused before any work, and real sections of every kind are not."""
from pathlib import Path

import numpy as np
import pytest

from napari_histoaffine.errors import UnusableImageError
from napari_histoaffine.files.images import read_image
from napari_histoaffine.registration.checks import MIN_CONTRAST, check_image, contrast
from napari_histoaffine.registration.pipeline import register_steps

LESION = Path(__file__).resolve().parents[3] / "shared" / "data" / "anhir-lung-lesion-3" / "images"
NOISE = np.random.default_rng(0)


def _blank_with_noise(sigma: float) -> np.ndarray:
    return np.clip(240 + NOISE.normal(0, sigma, (300, 400, 3)), 0, 255).astype(np.uint8)


def _speck() -> np.ndarray:
    slide = np.full((1000, 1000, 3), 255, np.uint8)
    slide[500:520, 500:520] = 60  # dust: 0.04 % of the slide
    return slide


REFUSED = {
    "white": (lambda: np.full((300, 400, 3), 255, np.uint8), "shows no tissue"),
    "uniform grey": (lambda: np.full((300, 400), 128, np.uint8), "shows no tissue"),
    "uniform float": (lambda: np.full((300, 400), 0.3), "shows no tissue"),
    "noisy blank": (lambda: _blank_with_noise(3.0), "shows no tissue"),
    "gradient": (lambda: np.tile(np.linspace(150, 255, 400), (300, 1)).astype(np.uint8), "shows no tissue"),
    "dust speck": (_speck, "shows no tissue"),
    "20 x 20 px": (lambda: np.random.default_rng(1).integers(0, 255, (20, 20, 3), dtype=np.uint8),
                   "is 20 x 20 px: too small"),
    "all NaN": (lambda: np.full((100, 100), np.nan), "has no finite pixels"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_in_one_line(name):
    make, words = REFUSED[name]
    with pytest.raises(UnusableImageError, match=words) as info:
        check_image(make(), "moving", "slide.png")
    message = str(info.value)
    assert "\n" not in message and message.startswith("The moving image 'slide.png' ")
    assert info.value.role == "moving"


def test_the_engine_refuses_before_any_stage(ihc_at):
    steps = register_steps(ihc_at(0.5), np.full((256, 256, 3), 255, np.uint8))
    with pytest.raises(UnusableImageError, match="The fixed image shows no tissue"):
        next(steps)


def _accepted(image) -> float:
    check_image(image, "fixed")
    return contrast(image)


def test_real_sections_are_accepted(ihc_at, sample_pair):
    ihc = ihc_at(1.0)
    for image in (ihc, 255 - ihc, sample_pair.moving, sample_pair.fixed):  # 255 - ihc: a dark background
        assert _accepted(image) > 10 * MIN_CONTRAST
    with_holes = (ihc / 255.0).astype(np.float32)
    with_holes[100:150, 100:150] = np.nan  # NaN and inf pixels count as background
    with_holes[:10] = np.inf
    assert _accepted(with_holes) > 10 * MIN_CONTRAST
    faded = (255 - (255 - ihc.astype(np.float32)) * 0.3).astype(np.uint8)  # a stain faded to 30 %
    assert _accepted(faded) > 5 * MIN_CONTRAST
    strip = np.tile(ihc[:32], (1, 2, 1))  # a 32-px strip: averaged down to two rows, where y² repeats y
    assert _accepted(strip) > 10 * MIN_CONTRAST


def test_phantom_sections_of_every_stain_style_are_accepted():
    from napari_histoaffine.phantoms import STYLES, make_specimen, render_section

    specimen = make_specimen(1)
    for style in STYLES:
        assert _accepted(render_section(specimen, 0, style).image) > 5 * MIN_CONTRAST, style


def test_shared_stains_are_accepted_even_faded_and_cropped():
    paths = sorted(LESION.glob("*.jpg"))
    if len(paths) != 5:
        pytest.skip(f"the shared lung-lesion images are absent: {LESION}")
    for path in paths:
        image = read_image(path, max_long_side=600).data
        rows, cols = image.shape[:2]
        frame = image[rows // 3:rows // 3 + rows // 4, cols // 3:cols // 3 + cols // 4]  # tissue fills the frame
        faded = (255 - (255 - image.astype(np.float32)) * 0.3).astype(np.uint8)
        for variant in (image, frame, faded):
            assert _accepted(variant) > 1.5 * MIN_CONTRAST, path.name
