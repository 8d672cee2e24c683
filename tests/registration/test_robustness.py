"""Odd inputs to the main API: each gets a registration with a finite matrix or one specific error (an image
with nothing to register, e.g. constant, one bright pixel or under 32 px a side, is refused in one line)."""
import numpy as np
import pytest

from napari_histoaffine.errors import InputError, UnusableImageError
from napari_histoaffine.files.images import read_image, write_image
from napari_histoaffine.registration.checks import MIN_SIDE
from napari_histoaffine.registration.pipeline import register

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def fixed(ihc_at):
    return ihc_at(0.4)


def _as(dtype, unit: np.ndarray) -> np.ndarray:
    """A [0, 1] image in ``dtype``'s usual range."""
    if dtype == bool:
        return unit > 0.5
    if np.issubdtype(dtype, np.integer):
        return (unit * min(np.iinfo(dtype).max, 4095)).astype(dtype)
    return unit.astype(dtype)


def _tissue(shape) -> np.ndarray:
    """Structure that touches every border: smoothed noise."""
    from scipy import ndimage
    return np.clip(ndimage.gaussian_filter(RNG.random(shape), 2) * 4 - 1.5, 0, 1)


SHAPES = {"1x1": (1, 1), "2x2": (2, 2), "8x8": (8, 8), "64x64": (64, 64), "3x500": (3, 500), "500x3": (500, 3),
          "20x900 strip": (20, 900)}
DTYPES = [bool, np.uint8, np.uint16, np.int32, np.float32, np.float64]
VALUES = {
    "constant": lambda shape: np.full(shape, 0.7),
    "one pixel": lambda shape: np.pad(np.ones((1, 1)), ((shape[0] // 2, shape[0] - shape[0] // 2 - 1),
                                                        (shape[1] // 2, shape[1] - shape[1] // 2 - 1))),
    "noise": lambda shape: RNG.random(shape),
    "tissue to every border": _tissue,
}
CHANNELS = {"gray": lambda a: a, "gray+alpha": lambda a: np.stack([a, np.ones_like(a)], -1),
            "RGB": lambda a: np.stack([a] * 3, -1), "RGBA": lambda a: np.stack([a] * 3 + [np.ones_like(a)], -1)}

CASES = ([(f"{name} uint8 tissue gray", shape, np.uint8, "tissue to every border", "gray") for name, shape in SHAPES.items()]
         + [(f"128x128 {np.dtype(d).name} {v} gray", (128, 128), d, v, "gray") for d in DTYPES for v in VALUES]
         + [(f"96x160 float32 tissue {c}", (96, 160), np.float32, "tissue to every border", c) for c in CHANNELS])


@pytest.mark.parametrize("name,shape,dtype,values,channels", CASES, ids=[c[0] for c in CASES])
def test_every_odd_image_gets_a_result_or_a_specific_error(fixed, name, shape, dtype, values, channels):
    moving = CHANNELS[channels](_as(dtype, VALUES[values](shape)))
    try:
        result = register(moving, fixed)
    except InputError as error:
        assert str(error) and "\n" not in str(error)
        nothing = min(shape) < MIN_SIDE or values in ("constant", "one pixel")
        assert nothing and isinstance(error, UnusableImageError), f"refused a usable image: {error}"
        return
    assert min(shape) >= MIN_SIDE and values not in ("constant", "one pixel"), "nothing to register, yet registered"
    assert np.isfinite(result.matrix).all() and 0.0 <= result.verdict.confidence <= 1.0
    if values in ("constant", "one pixel") or min(shape) < 8:
        assert result.verdict.flagged, "nothing to register, yet not flagged"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_count_as_background(fixed, bad):
    moving = fixed.astype(np.float32) / 255
    moving[10:40, 10:60] = bad
    result = register(moving, fixed)
    assert np.isfinite(result.matrix).all() and not result.verdict.flagged


def test_an_image_without_finite_pixels_is_refused_in_words(fixed):
    with pytest.raises(InputError, match="no finite pixels"):
        register(np.full((64, 64), np.nan, np.float32), fixed)


def test_read_levels_go_straight_in(fixed, tmp_path):
    """What ``read_image`` returns is what ``register`` takes, full shape included."""
    write_image(tmp_path / "fixed.png", fixed)
    level = read_image(tmp_path / "fixed.png")
    result = register(level, level)
    assert result.fixed_shape == fixed.shape[:2] and np.allclose(result.matrix, np.eye(3), atol=0.05)


@pytest.mark.parametrize("bad", ["moving.png", None, [[1, 2], [3, "x"]]])
def test_a_non_image_is_refused_with_a_type_error(fixed, bad):
    with pytest.raises(TypeError, match="numpy array .* or an ImageLevel"):
        register(bad, fixed)
