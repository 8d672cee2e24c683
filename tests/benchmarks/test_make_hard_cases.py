"""Tests of ``benchmarks/make_hard_cases.py`` on a small synthetic specimen: every kind keeps its landmarks.

The synthetic sections are a textured ellipse of tissue on glass with a dark dot at each landmark, so
an image warped otherwise than its landmarks shows glass or tissue, not a dot, where they point.
"""
import csv
import json

import cv2
import numpy as np
import pytest

# kinds whose images keep the dots dark where the landmarks point (the others repaint or invert them)
DOTS_KEPT = ("scale-gap", "low-res", "extra-tissue", "uneven-background", "heavy-jpeg")


def section(seed: int, tint, points: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((240, 320, 3), 245, np.uint8)
    tissue = np.zeros((240, 320), np.uint8)
    cv2.ellipse(tissue, (160, 120), (130, 95), 20, 0, 360, 1, -1)
    texture = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 3)
    shade = 0.55 + 0.3 * (texture - texture.min()) / np.ptp(texture)
    image[tissue > 0] = (245 * shade[tissue > 0, None] * np.asarray(tint)).astype(np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 5, (20, 20, 20), -1)
    return image


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    angle, radius = rng.uniform(0, 2 * np.pi, 40), 0.75 * np.sqrt(rng.uniform(0, 1, 40))
    ellipse = np.stack([130 * radius * np.cos(angle), 95 * radius * np.sin(angle)], 1)
    tilt = np.radians(20)
    return ellipse @ np.array([[np.cos(tilt), np.sin(tilt)], [-np.sin(tilt), np.cos(tilt)]]) + [160, 120]


def test_new_kinds_keep_the_landmarks(hard_cases, points):
    target, source = section(1, (1.0, 0.8, 0.9), points), section(2, (0.8, 0.7, 1.0), points)
    donors = [section(3, (0.9, 0.6, 0.9), points)]
    for kind in hard_cases.NEW_KINDS:
        for seed in range(4):
            case, _, scale = hard_cases.make_new_case(kind, np.random.default_rng(seed), target, source, points, points,
                                               donors, flip=bool(seed))
            assert len(case.target_points) == len(points), kind
            assert case.oracle_rtre() < 1e-4, kind
            if kind in DOTS_KEPT:
                for image, landmarks in ((case.target, case.target_points), (case.source, case.source_points)):
                    x, y = np.round(landmarks).astype(int).T
                    assert np.median(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[y, x]) < 110, kind


def test_any_dataset_gets_every_kind(hard_cases, points, tmp_path):
    """A dataset in the shared layout, with two tissues, through the command line."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "landmarks").mkdir()
    pairs = []
    for t, tissue in enumerate(("a", "b")):
        names = [f"{tissue}-stain{i}" for i in range(2)]
        for i, name in enumerate(names):
            cv2.imwrite(str(data / f"images/{name}.png"), section(10 * t + i, (1.0, 0.7 + 0.1 * i, 0.9), points))
            with open(data / f"landmarks/{name}.csv", "w", newline="") as f:
                csv.writer(f).writerows([["", "X", "Y"], *([k, x, y] for k, (x, y) in enumerate(points))])
        pairs.append({"name": f"{tissue}_pair", "tissue": tissue, "target": f"images/{names[0]}.png",
                      "source": f"images/{names[1]}.png", "target_landmarks": f"landmarks/{names[0]}.csv",
                      "source_landmarks": f"landmarks/{names[1]}.csv", "landmark_scale": 1.0})
    (data / "spec.json").write_text(json.dumps({"pairs": pairs}))
    kinds = ["partial", *hard_cases.NEW_KINDS]
    assert hard_cases.main([str(tmp_path / "out"), "--part", "dev", "--spec", str(data / "spec.json"),
                     "--kinds", ",".join(kinds), "--per-kind", "1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out/pairs.csv")))
    assert {row["Kind"] for row in rows} == set(kinds)
    assert {row["Tissue"] for row in rows} == {"a", "b"}
    assert all((tmp_path / "out" / row["Source image"]).is_file() for row in rows)


def test_an_inverted_dark_field_image_turns_bright_field(hard_cases, points):
    """The inverted kind shows an image in the other polarity: a fluorescence one (tissue bright on black) comes out
    as tissue dark on bright glass, never as the noise of its dark field rendered as a stain."""
    fluorescence = 255 - section(1, (1.0, 0.8, 0.9), points)
    tissue = np.zeros(fluorescence.shape[:2], np.uint8)
    cv2.ellipse(tissue, (160, 120), (100, 70), 20, 0, 360, 1, -1)
    for seed in range(6):
        shown = cv2.cvtColor(hard_cases.hard_kinds.inverted(np.random.default_rng(seed), fluorescence, (10, 10, 10)),
                             cv2.COLOR_BGR2GRAY)
        assert np.median(shown[tissue == 0]) > 200 > np.median(shown[tissue > 0])
