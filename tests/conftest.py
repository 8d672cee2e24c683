"""Shared fixtures, and the ``gui`` marker: tests that need Qt and a display.

Every test that uses ``qtbot`` or ``make_napari_viewer`` is marked ``gui``, and a test may carry the mark
itself. ``pytest -m "not gui"`` runs the rest (engine, files, CLI, Qt-free napari glue) on a machine
without a display; without one, gui tests are skipped with the reason instead of aborting the run.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pytest

GUI_FIXTURES = {"qtbot", "make_napari_viewer"}


def pytest_configure(config):
    config.addinivalue_line("markers", "gui: needs Qt and a display (xvfb-run works); deselect with -m 'not gui'")


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal"))


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a display for Qt: run under xvfb-run -a, or deselect with -m 'not gui'")
    for item in items:
        if GUI_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("gui"):
            item.add_marker("gui")
            if not _has_display():
                item.add_marker(skip)


@lru_cache(maxsize=8)
def _ihc(scale: float) -> np.ndarray:
    from skimage import data, transform

    image = transform.rescale(data.immunohistochemistry(), scale, channel_axis=-1, anti_aliasing=True)
    return np.round(image * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def ihc_at():
    """scikit-image's IHC sample (512 px) resampled by a factor, as uint8 RGB (a fresh copy of one built once)."""
    return lambda scale: _ihc(scale).copy()


@pytest.fixture(scope="session")
def hard_cases():
    """``benchmarks/make_hard_cases.py`` as a module (the benchmarks folder holds scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks/make_hard_cases.py"
    spec = importlib.util.spec_from_file_location("make_hard_cases", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sample_pair():
    """The built-in sample pair (re-stained, warped IHC with exact landmarks), built once."""
    from napari_histoaffine.sample import make_pair

    return make_pair()


def _scipy_bilinear(image, out_to_image, shape, fill=0.0):
    """The reference warp: scipy's order-1 ``affine_transform`` per channel (pixel centres at integers), with where
    its samples lie inside the image by a pixel and where they lie outside it by more than a pixel (at the rim
    our warps blend with the fill, scipy does not)."""
    from scipy import ndimage

    from napari_histoaffine import transforms

    rc = transforms.xy_to_rowcol(out_to_image)
    warped = np.stack([ndimage.affine_transform(image[..., c].astype(float), rc[:2, :2], offset=rc[:2, 2],
                                                output_shape=shape, order=1, cval=fill)
                       for c in range(image.shape[2])], -1)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    x, y = transforms.apply_to_points(out_to_image, np.c_[cols.ravel(), rows.ravel()]).T.reshape(2, *shape)
    h, w = image.shape[:2]
    inside = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)
    outside = (x < -1) | (x > w) | (y < -1) | (y > h)
    return warped, inside, outside


@pytest.fixture(scope="session")
def scipy_bilinear():
    """:func:`_scipy_bilinear`: what a bilinear warp is checked against."""
    return _scipy_bilinear
