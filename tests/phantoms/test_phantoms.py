"""Phantom specimens: seeded, every family distinct, landmarks exact and inside tissue, sections
affinely related up to a small distortion, stains with the right background, and a dataset in the
shared ANHIR layout."""
from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_histoaffine.files.tables import read_landmarks
from napari_histoaffine.phantoms import (FAMILIES, FAMILY_PARTS, STYLES, make_sections, make_specimen,
                                         render_section, write_dataset)
from napari_histoaffine.phantoms.deform import random_deformation
from napari_histoaffine.phantoms.specimen import MIN_LANDMARKS, appearance

SMALL = 320  # px, long side of the specimens here: fast, and still every structure
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared/data/anhir-lung-lesion-3/spec.json"


@lru_cache(maxsize=None)
def specimen(seed: int, families: tuple[str, ...] | None = None):
    return make_specimen(seed, families, long_side=SMALL)


@lru_cache(maxsize=None)
def sections(seed: int):
    return make_sections(specimen(seed), 5)


def affine_residuals(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distances left after the least-squares affine map of ``source`` onto ``target``."""
    design = np.hstack([source, np.ones((len(source), 1))])
    matrix = np.linalg.lstsq(design, target, rcond=None)[0]
    return np.linalg.norm(design @ matrix - target, axis=1)


def test_same_seed_same_specimen_and_sections():
    first, again = make_specimen(5, long_side=SMALL), make_specimen(5, long_side=SMALL)
    assert first.families == again.families and first.outline_kind == again.outline_kind
    np.testing.assert_array_equal(first.landmarks, again.landmarks)
    for name in first.layers:
        np.testing.assert_array_equal(first.layers[name], again.layers[name])
    np.testing.assert_array_equal(render_section(first, 2).image, render_section(again, 2).image)
    other = make_specimen(6, long_side=SMALL)
    assert other.shape != first.shape or not np.array_equal(other.outline, first.outline)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_renders(name):
    made = specimen(1, (name,))
    assert made.families == (name,)
    assert len(made.landmarks) >= MIN_LANDMARKS
    assert all(np.isfinite(layer).all() and 0 <= layer.min() and layer.max() <= 1 for layer in made.layers.values())
    image = render_section(made, 0, "he").image
    assert image.dtype == np.uint8 and image.shape == (*made.shape, 3)
    assert image[made.outline].std() > 8  # structure, not a flat wash


def test_families_differ():
    shape, unit = (200, 300), 0.4
    looks = {}
    for name, family in FAMILIES.items():
        drawn = family(shape, np.random.default_rng(0), unit)
        looks[name] = np.array([drawn.layers[layer].mean() for layer in sorted(drawn.layers)])
    for a, b in itertools.combinations(looks, 2):
        assert np.abs(looks[a] - looks[b]).sum() > 0.1, (a, b)


def test_family_parts():
    dev, final = set(FAMILY_PARTS["dev"]), set(FAMILY_PARTS["final"])
    assert len(dev) >= 5 and len(final) >= 3 and not dev & final and dev | final <= set(FAMILIES)


@pytest.mark.parametrize("seed", [20, 24])
def test_specimen_is_not_symmetric(seed):
    """Not even on an elliptic outline does the turned or the mirrored specimen look like itself."""
    made = specimen(seed)
    assert made.outline_kind == "ellipse"
    picture = appearance(made.layers, made.outline)
    for moved in (np.rot90(picture, 2), picture[:, ::-1], picture[::-1]):
        both = made.outline & (moved > 0)
        a, b = picture[both] - picture[both].mean(), moved[both] - moved[both].mean()
        assert np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)) < 0.5


@pytest.mark.parametrize("seed, outline", [(0, "blob"), (1, "pieces"), (4, "full")])
def test_landmarks_inside_image_and_tissue(seed, outline):
    made = specimen(seed)
    assert made.outline_kind == outline
    h, w = made.shape
    for cut in sections(seed):
        points = cut.landmarks
        assert points.shape == made.landmarks.shape
        assert (points >= 0).all() and (points[:, 0] <= w - 1).all() and (points[:, 1] <= h - 1).all()
        rows, cols = np.round(points[:, 1]).astype(int), np.round(points[:, 0]).astype(int)
        assert cut.tissue[rows, cols].all()
        assert made.outline[np.round(made.landmarks[:, 1]).astype(int), np.round(made.landmarks[:, 0]).astype(int)].all()


def test_deformation_maps_points_exactly():
    """A small spot drawn at a specimen point shows up, once warped, where the point is mapped to."""
    shape = (180, 240)
    deformation = random_deformation(shape, np.random.default_rng(3), max_shift=4.0)
    points = np.array([[60.3, 50.7], [170.8, 120.2], [120.0, 90.5]])
    mapped = deformation.to_section(points)
    assert np.abs(deformation.to_specimen(mapped) - points).max() < 1e-3
    assert np.abs(mapped - points).max() > 0.5  # it does move them
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    for point, expected in zip(points, mapped):
        spot = np.exp(-((x - point[0]) ** 2 + (y - point[1]) ** 2) / (2 * 1.5 ** 2)).astype(np.float32)
        seen = deformation.warp(spot)
        centroid = np.array([(seen * x).sum(), (seen * y).sum()]) / seen.sum()
        assert np.abs(centroid - expected).max() < 0.1


def test_section_landmarks_are_the_specimens_mapped():
    made = specimen(0)
    cut = sections(0)[1]
    np.testing.assert_allclose(cut.landmarks, cut.deformation.to_section(made.landmarks))


def test_sections_are_affine_up_to_a_small_distortion():
    for seed in (0, 4):
        cuts = sections(seed)
        diagonal = np.hypot(*specimen(seed).shape)
        for a, b in [(1, 0), (2, 0), (3, 1)]:
            residual = np.median(affine_residuals(cuts[a].landmarks, cuts[b].landmarks)) / diagonal
            assert 0 < residual <= 0.005


def test_backgrounds_bright_field_and_fluorescence():
    made = specimen(1)
    glass = ~cv2.dilate(made.outline.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for style in STYLES:
        cut = render_section(made, 1, style)
        background = np.median(cut.image[glass & ~cut.tissue])
        tissue = cut.image[cut.tissue].mean()
        if style == "fluorescence":
            assert background < 40 and tissue > background + 5
        else:
            assert background > 200 and tissue < background - 3


def test_writer_matches_the_shared_layout(tmp_path):
    spec_path = write_dataset(tmp_path, 2, seed=7, families=FAMILY_PARTS["final"], sections=5, long_side=SMALL)
    pairs = json.loads(spec_path.read_text())["pairs"]
    keys = {"name", "tissue", "target", "source", "target_landmarks", "source_landmarks", "landmark_scale"}
    if SHARED_SPEC.exists():
        keys = set(json.loads(SHARED_SPEC.read_text())["pairs"][0])
    assert pairs and all(set(pair) == keys and pair["landmark_scale"] == 1.0 for pair in pairs)
    assert all(set(pair["tissue"].split("+")) <= set(FAMILY_PARTS["final"]) for pair in pairs)
    assert any("fluorescence" in pair["source"] + pair["target"] for pair in pairs)
    for pair in pairs:
        for side in ("source", "target"):
            image = cv2.imread(str(tmp_path / pair[side]))
            points = read_landmarks(tmp_path / pair[f"{side}_landmarks"])
            assert image is not None and max(image.shape[:2]) == SMALL
            assert len(points) >= MIN_LANDMARKS and (points >= 0).all()
            assert (points[:, 0] < image.shape[1]).all() and (points[:, 1] < image.shape[0]).all()
        counts = {len(read_landmarks(tmp_path / pair[k])) for k in ("source_landmarks", "target_landmarks")}
        assert len(counts) == 1
    with open(tmp_path / pairs[0]["source_landmarks"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["", "X", "Y"] and rows[1][0] == "1"


def test_cli_writes_a_part(tmp_path):
    done = subprocess.run([sys.executable, "-m", "napari_histoaffine.phantoms", str(tmp_path), "--specimens", "1",
                           "--part", "dev", "--stains-per-specimen", "2", "--long-side", "300"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pairs = json.loads((tmp_path / "spec.json").read_text())["pairs"]
    assert len(pairs) == 1 and set(pairs[0]["tissue"].split("+")) <= set(FAMILY_PARTS["dev"])
    assert len(list((tmp_path / "images").glob("*.jpg"))) == 2
