"""Batches on dask.distributed: same table as the serial run, failures recorded, resume, register-batch."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.evaluation import batch
from napari_histoaffine.evaluation.evaluate import evaluate_pair
from napari_histoaffine.files.images import read_image, write_image
from napari_histoaffine.files.tables import read_landmarks, write_landmarks
from napari_histoaffine.registration.options import RegistrationOptions

OPTIONS = RegistrationOptions(model=None, working_size=128, search_mirror=False)
TIMING = "seconds"


@pytest.fixture(scope="module")
def table(tmp_path_factory, ihc_at):
    """Three generated pairs (rotations of the IHC sample) and one whose moving image is corrupt."""
    root = tmp_path_factory.mktemp("batch")
    fixed = ihc_at(0.25)
    centre = (fixed.shape[1] - 1) / 2, (fixed.shape[0] - 1) / 2
    grid = np.stack(np.meshgrid(np.linspace(40, 88, 4), np.linspace(40, 88, 4)), -1).reshape(-1, 2)
    write_image(root / "fixed.png", fixed)
    write_landmarks(root / "fixed.csv", grid)
    rows = []
    for i, angle in enumerate((10, -20, 35)):
        to_moving = transforms.compose(transforms.rotation(angle, centre), transforms.translation(3 * i, -2))
        write_image(root / f"m{i}.png", transforms.warp_image(fixed, to_moving, fixed.shape, cval=255)
                       .round().astype(np.uint8))
        write_landmarks(root / f"m{i}.csv", transforms.apply_to_points(to_moving, grid))
        rows.append((f"m{i}.png", f"m{i}.csv", f"pair{i}"))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    rows.insert(1, ("corrupt.png", "m0.csv", "broken"))
    pd.DataFrame({"Target image": "fixed.png", "Source image": [r[0] for r in rows], "Target landmarks": "fixed.csv",
                  "Source landmarks": [r[1] for r in rows], "Case": [r[2] for r in rows]}).to_csv(root / "pairs.csv",
                                                                                                  index=False)
    return root


@pytest.fixture(scope="module")
def serial(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, batch.run_batch(table / "pairs.csv", out, OPTIONS)


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    """Everything but timings; imagecodecs' PNG error text is not deterministic, the rest of the message is."""
    results = results[[c for c in results.columns if not c.startswith(TIMING)]].reset_index(drop=True)
    return results.assign(error=results["error"].str.replace(r"PNG_DECODE: .*", "PNG_DECODE", regex=True))


def test_serial_run_records_the_corrupt_pair(serial):
    out, results = serial
    assert list(results["Case"]) == ["pair0", "broken", "pair1", "pair2"]
    errors = dict(zip(results["Case"], results["error"]))
    assert "corrupt.png" in errors["broken"] and all(errors[c] == "" for c in ("pair0", "pair1", "pair2"))
    assert results.set_index("Case").loc[["pair0", "pair1", "pair2"], "success"].all()
    assert not (out / "broken.csv").exists()


def test_local_cluster_of_two_gives_the_serial_table(table, serial, tmp_path):
    out, expected = serial
    results = batch.run_batch(table / "pairs.csv", tmp_path, OPTIONS, workers=2)
    pd.testing.assert_frame_equal(_comparable(results), _comparable(expected))
    on_disk = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    assert list(on_disk["Case"]) == list(expected["Case"])
    for case in ("pair0", "pair1", "pair2"):
        assert (tmp_path / f"{case}.csv").read_text() == (out / f"{case}.csv").read_text()
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "rtre_histogram.png").is_file()


def test_resume_skips_finished_pairs_and_retries_failed(table, serial, tmp_path, monkeypatch):
    done, first = serial
    shutil.copytree(done, tmp_path, dirs_exist_ok=True)
    (tmp_path / "pair2.csv").unlink()  # as if interrupted before pair2 was written
    ran = []
    original = evaluate_pair
    monkeypatch.setattr(batch, "evaluate_pair", lambda pair, *a, **k: ran.append(pair.case) or original(pair, *a, **k))
    again = batch.run_batch(table / "pairs.csv", tmp_path, OPTIONS, resume=True)
    assert ran == ["broken", "pair2"]
    pd.testing.assert_frame_equal(_comparable(again), _comparable(first), check_dtype=False)


def test_register_batch_cli_without_landmark_columns(table, tmp_path, capsys):
    pairs = pd.read_csv(table / "pairs.csv")[["Source image", "Target image", "Case"]].iloc[1:3]  # broken, pair1
    pairs["Source image"] = [str(table / p) for p in pairs["Source image"]]  # absolute paths work too
    pairs.to_csv(table / "images_only.csv", index=False)
    out = tmp_path / "out"
    assert main(["register-batch", str(table / "images_only.csv"), "--out", str(out), "--model", "none",
                 "--working-size", "128", "--no-mirror"]) == 0
    assert "registered 1 of 2 pairs" in capsys.readouterr().out
    saved = json.loads((out / "pair1.json").read_text())
    source, target = read_landmarks(table / "m1.csv"), read_landmarks(table / "fixed.csv")
    error = np.linalg.norm(transforms.apply_to_points(np.array(saved["matrix"]), source) - target, axis=1)
    shape = read_image(table / "fixed.png").data.shape[:2]
    assert error.max() < 0.02 * np.hypot(*shape) and saved["fixed_shape"] == list(shape)
    assert {"confidence", "flagged", "verdict"} <= set(saved)
    assert {"confidence", "flagged"} <= set(pd.read_csv(out / "results.csv").columns)
    assert not (out / "broken.json").exists() and not (out / "pair1.csv").exists()


def test_a_calibrated_pair_gains_tre_in_um_and_its_transform_states_the_pixel_sizes(table, serial, tmp_path, capsys):
    """Both OME slides state 0.5 µm: the row holds the TRE in µm (px × 0.5); the PNG pairs have no such column."""
    import tifffile

    from napari_histoaffine.files.pixel_size import ome_physical_size

    for name in ("fixed", "m1"):
        tifffile.imwrite(tmp_path / f"{name}.ome.tif", read_image(table / f"{name}.png").data, ome=True,
                         photometric="rgb", metadata={"axes": "YXS", **ome_physical_size((0.5, 0.5))})
    pd.DataFrame({"Source image": [str(tmp_path / "m1.ome.tif")], "Target image": [str(tmp_path / "fixed.ome.tif")],
                  "Source landmarks": [str(table / "m1.csv")], "Target landmarks": [str(table / "fixed.csv")],
                  "Case": ["calibrated"]}).to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "out"
    assert main(["register-batch", str(tmp_path / "pairs.csv"), "--out", str(out), "--model", "none",
                 "--working-size", "128", "--no-mirror"]) == 0
    results = pd.read_csv(out / "results.csv")
    tre_px = np.linalg.norm(read_landmarks(out / "calibrated.csv") - read_landmarks(table / "fixed.csv"), axis=1)
    assert results["tre_median_um"][0] == pytest.approx(0.5 * np.median(tre_px))
    assert results["tre_max_um"][0] == pytest.approx(0.5 * tre_px.max())
    assert json.loads((out / "calibrated.json").read_text())["fixed_pixel_size_um"] == pytest.approx([0.5, 0.5])
    assert "median TRE [µm]" in capsys.readouterr().out
    assert "tre_median_um" not in serial[1].columns  # PNGs state no pixel size: no µm made up
