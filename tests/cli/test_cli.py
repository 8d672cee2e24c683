"""Tests of the ``histoaffine`` command line and of napari_histoaffine.evaluation, on a generated pair.

The pair is scikit-image's IHC sample (~256 px); the moving image is the fixed one warped by a known
affine, and its landmarks are a grid mapped by the same matrix. Runs use ``--model none`` for speed.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import data
from skimage.transform import rescale

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.evaluation.metrics import image_diagonal
from napari_histoaffine.files.images import read_image, write_image
from napari_histoaffine.files.tables import read_landmarks, write_landmarks

SHARED = Path(__file__).resolve().parents[3] / "shared"
FAST = ["--model", "none", "--working-size", "256"]
SHAPE = (256, 256)
# fixed → moving: rotate 25° and scale 1.1 about the centre, shift; the registration must find its inverse
FIXED_TO_MOVING = transforms.compose(transforms.rotation(25, (127.5, 127.5)), transforms.scaling(1.1),
                                     transforms.translation(-8, 6))
TRUE = transforms.invert(FIXED_TO_MOVING)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """A case folder with a good pair, a pair with a corrupt image and pairs.csv listing both."""
    root = tmp_path_factory.mktemp("cases")
    fixed = (rescale(data.immunohistochemistry(), 0.5, channel_axis=-1, anti_aliasing=True) * 255).round().astype(np.uint8)
    moving = transforms.warp_image(fixed, FIXED_TO_MOVING, SHAPE, cval=255).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(np.linspace(80, 176, 5), np.linspace(80, 176, 5)), -1).reshape(-1, 2)
    write_image(root / "fixed.png", fixed)
    write_image(root / "moving.png", moving)
    write_landmarks(root / "fixed.csv", grid)
    write_landmarks(root / "moving.csv", transforms.apply_to_points(FIXED_TO_MOVING, grid))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    pd.DataFrame({"Target image": ["fixed.png", "fixed.png"], "Source image": ["moving.png", "corrupt.png"],
                  "Target landmarks": ["fixed.csv"] * 2, "Source landmarks": ["moving.csv"] * 2,
                  "Image size [pixels]": [str(SHAPE)] * 2, "Case": ["good", "corrupt"], "Flip": [0, 0]}
                 ).to_csv(root / "pairs.csv", index=False)
    return root


def register_args(cases, out, *extra):
    return ["register", str(cases / "moving.png"), str(cases / "fixed.png"), "--out", str(out), *FAST, *extra]


def test_register_recovers_known_affine(cases, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(register_args(cases, out, "--moving-landmarks", str(cases / "moving.csv"),
                              "--fixed-landmarks", str(cases / "fixed.csv"))) == 0
    saved = json.loads((out / "transform.json").read_text())
    matrix = np.array(saved["matrix"])
    source, target = read_landmarks(cases / "moving.csv"), read_landmarks(cases / "fixed.csv")
    error = np.linalg.norm(transforms.apply_to_points(matrix, source) - target, axis=1)
    assert error.max() < 0.01 * image_diagonal(SHAPE)
    assert saved["fixed_image"] == str((cases / "fixed.png").resolve()) and saved["stages"][0] == "preprocess"
    np.testing.assert_allclose(read_landmarks(out / "warped_landmarks.csv"), transforms.apply_to_points(matrix, source))
    warped = read_image(out / "warped.png").data
    assert warped.shape == (*SHAPE, 3) and warped.dtype == np.uint8
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "rotation" in line and "rTRE median" in line and "confident (" in line
    assert 0.0 <= saved["confidence"] <= 1.0 and saved["flagged"] is False and saved["verdict"].startswith("clear")


def test_landmarks_of_different_lengths_fail_before_registering(cases, tmp_path, capsys):
    short = tmp_path / "short.csv"
    write_landmarks(short, read_landmarks(cases / "fixed.csv")[:-1])
    out = tmp_path / "out"
    assert main(register_args(cases, out, "--moving-landmarks", str(cases / "moving.csv"),
                              "--fixed-landmarks", str(short))) == 2
    err = capsys.readouterr().err.strip()
    assert err == "histoaffine: error: landmark sets differ in length: 25 moving vs 24 fixed landmarks"
    assert not out.exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["register", "a.png"])
    assert exc.value.code == 2 and "usage: histoaffine register" in capsys.readouterr().err


def test_console_script_missing_file_is_one_line_exit_2(cases, tmp_path):
    script = Path(sys.executable).with_name("histoaffine")
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable}")
    run = subprocess.run([str(script), *register_args(cases, tmp_path, "--moving-landmarks", str(tmp_path / "no.csv"))],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == f"histoaffine: error: File not found: {tmp_path / 'no.csv'}"
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def evaluated(cases, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    assert main(["evaluate", str(cases / "pairs.csv"), "--out", str(out), *FAST]) == 0
    return out


def test_evaluate_records_a_corrupt_pair_and_scores_the_other(evaluated):
    results = pd.read_csv(evaluated / "results.csv", keep_default_na=False).set_index("Case")
    assert results.loc["corrupt", "error"].startswith("Cannot read image") and not results.loc["corrupt", "success"]
    assert results.loc["good", "error"] == "" and results.loc["good", "success"]
    assert float(results.loc["good", "rtre_max"]) < 0.01 < float(results.loc["good", "initial_rtre_median"])
    assert {"seconds_preprocess", "seconds_pose_search", "seconds_refinement"} <= set(results.columns)
    assert {"confidence", "flagged"} <= set(results.columns)
    assert 0.5 < float(results.loc["good", "confidence"]) <= 1.0 and results.loc["good", "flagged"] == "False"
    assert (evaluated / "times.csv").read_text().splitlines()[0] == "Case,seconds"
    assert (evaluated / "good.csv").is_file() and not (evaluated / "corrupt.csv").exists()
    assert "| success [%] (median rTRE ≤ 0.02) | 50.0 |" in (evaluated / "summary.md").read_text(encoding="utf-8")
    assert (evaluated / "rtre_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_independent_scorer_agrees(cases, evaluated, tmp_path):
    scorer = SHARED / "bench" / "score.py"
    if not scorer.is_file():
        pytest.skip(f"independent scorer not found: {scorer} (the shared folder is absent)")
    subprocess.run([sys.executable, str(scorer), str(cases), str(evaluated), "--json", str(tmp_path / "s.json"),
                    "--quiet"], check=True, timeout=120)
    scored = {c["Case"]: c for c in json.loads((tmp_path / "s.json").read_text())["cases"]}
    ours = pd.read_csv(evaluated / "results.csv").set_index("Case")
    assert scored["good"]["status"] == "ok" and scored["corrupt"]["status"] == "missing"
    for case in ("good", "corrupt"):
        assert scored[case]["success"] == bool(ours.loc[case, "success"])
    assert scored["good"]["rTRE_median"] == pytest.approx(ours.loc["good", "rtre_median"], rel=1e-9)
    assert scored["good"]["seconds"] == pytest.approx(ours.loc["good", "seconds"])


def test_demo_registers_the_sample_pair_within_the_success_threshold(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out
    median = float(line.split("rTRE median ")[1].split()[0])
    assert median < 0.005
    assert (tmp_path / "registered" / "transform.json").is_file()


def _run_cli(*args):
    script = Path(sys.executable).with_name("histoaffine")
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable}")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("bad", ["blank", "tiny"])
def test_an_image_without_tissue_is_refused_in_one_line(cases, tmp_path, bad):
    image = np.full((256, 256, 3), 255, np.uint8) if bad == "blank" else read_image(cases / "fixed.png").data[:20, :20]
    write_image(tmp_path / f"{bad}.png", np.ascontiguousarray(image))
    run = _run_cli("register", str(tmp_path / f"{bad}.png"), str(cases / "fixed.png"), "--out", str(tmp_path / "out"),
                   *FAST)
    words = "shows no tissue" if bad == "blank" else "is 20 x 20 px: too small to hold any structure"
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == run.stderr.strip().splitlines()[0]  # one line, no traceback, no progress
    assert run.stderr.startswith(f"histoaffine: error: The moving image '{tmp_path / f'{bad}.png'}' {words}")
    assert not (tmp_path / "out").exists()


def test_nan_and_inf_pixels_count_as_background_without_warnings(cases, tmp_path):
    import tifffile

    moving = read_image(cases / "moving.png").data.astype(np.float32) / 255
    moving[100:140, 100:140] = np.nan
    moving[:8] = np.inf
    tifffile.imwrite(tmp_path / "moving.tif", moving)
    run = _run_cli("register", str(tmp_path / "moving.tif"), str(cases / "fixed.png"), "--out", str(tmp_path / "out"),
                   *FAST)
    assert run.returncode == 0 and "registered in" in run.stdout
    assert all(line.startswith("[") for line in run.stderr.splitlines()), run.stderr  # progress only: no warnings
    warped = read_image(tmp_path / "out" / "warped.png").data
    assert warped.dtype == np.uint8
