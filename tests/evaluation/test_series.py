"""Serial-section series from the command line: every section onto one reference, directly or along the chain."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.files.images import write_image
from napari_histoaffine.sample import make_pair

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "anhir-lung-lesion-3"
STAINS = ["He", "CD31-3", "Cc10-5", "Ki67-7", "proSPC-4"]


@pytest.fixture(scope="module")
def sample_series(tmp_path_factory):
    """The sample pair's fixed image as reference, its moving image, the same turned by 90°, and a broken file."""
    folder = tmp_path_factory.mktemp("series")
    pair = make_pair()
    write_image(folder / "reference.png", pair.fixed)
    write_image(folder / "second.png", pair.moving)
    write_image(folder / "third.png", np.ascontiguousarray(np.rot90(pair.moving)))
    (folder / "broken.png").write_bytes(b"not an image")
    return folder, pair


def test_a_series_with_an_unreadable_section_registers_the_rest(sample_series, tmp_path, capsys):
    folder, pair = sample_series
    out = tmp_path / "out"
    sections = [str(folder / f"{name}.png") for name in ("second", "broken", "third")]
    assert main(["register-series", str(folder / "reference.png"), *sections, "--out", str(out), "--warp"]) == 0
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("section")
    assert list(summary.index) == ["second", "broken", "third"]
    assert summary.loc["broken", "error"].startswith("Cannot read image")
    assert summary.loc["second", "error"] == "" and summary.loc["third", "error"] == ""
    assert "registered 2 of 3 sections" in capsys.readouterr().out
    saved = json.loads((out / "second" / "transform.json").read_text())
    moved = transforms.apply_to_points(np.array(saved["matrix"]), pair.moving_landmarks)
    assert np.median(np.hypot(*(moved - pair.fixed_landmarks).T)) < 0.005 * np.hypot(*pair.fixed.shape[:2])
    assert saved["fixed_shape"] == list(pair.fixed.shape[:2]) and 0.5 < saved["confidence"] <= 1.0
    assert not (out / "broken").exists()
    warped = tifffile.imread(out / "second" / "warped.ome.tif")  # the section on the reference's grid
    assert warped.shape == pair.fixed.shape


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/anhir-lung-lesion-3 (the five real stains)")
@pytest.mark.parametrize("chain", [False, True], ids=["direct", "chain"])
def test_five_stains_onto_he_each_within_the_anhir_limit(tmp_path, chain):
    images = [str(SHARED / "images" / f"29-041-Izd2-w35-{stain}-les3.jpg") for stain in STAINS]
    out = tmp_path / "out"
    assert main(["register-series", *images, "--out", str(out), "--landmarks-dir", str(SHARED / "landmarks")]
                + (["--chain"] if chain else [])) == 0
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert len(summary) == 4 and (summary["error"] == "").all()
    assert (summary["rtre_median"] <= 0.02).all(), summary[["section", "rtre_median"]]
    if chain:  # the last section's transform is the composition of its links
        last = json.loads((out / "29-041-Izd2-w35-proSPC-4-les3" / "transform.json").read_text())
        assert last["chain"][0].endswith("proSPC-4-les3") and last["chain"][-1].endswith("He-les3")
