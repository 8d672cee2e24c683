"""elastix and ITK transform files read into our matrix: checked against transformix itself, and refusals by name.

elastix maps FIXED physical points to MOVING ones; our matrix maps moving pixels to fixed pixels, so the moving
points transformix gives for fixed pixels must come back to those pixels through the imported matrix.
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from napari_histoaffine import transforms
from napari_histoaffine.errors import InputError
from napari_histoaffine.files.transform_files import ImageGeometry, read_affine_parameters, read_transform_file

SIZE = 128
POINTS = np.stack(np.meshgrid(np.arange(0, SIZE, 21), np.arange(0, SIZE, 25)), -1).reshape(-1, 2)  # fixed pixels
KINDS = {"euler": "EulerTransform", "similarity": "SimilarityTransform", "affine": "AffineTransform",
         "rigid_affine": "AffineTransform"}
MAPS = {"euler": ["rigid"], "similarity": ["similarity"], "affine": ["affine"], "rigid_affine": ["rigid", "affine"]}
TURNED = ImageGeometry((0.5, 0.8), (10.0, -4.0), (np.cos(0.5), -np.sin(0.5), np.sin(0.5), np.cos(0.5)))


@pytest.fixture(scope="module")
def itk():
    itk = pytest.importorskip("itk", reason="elastix and transformix come with itk-elastix (the testing extra)")
    if not hasattr(itk, "ParameterObject"):
        pytest.skip("itk without elastix: pip install itk-elastix")
    return itk


@pytest.fixture(scope="module")
def elastix_runs(itk, ihc_at, tmp_path_factory):
    """The last ``TransformParameters`` file of short elastix runs on a 128 px IHC pair, by transform type."""
    fixed = ihc_at(0.25).astype(np.float32).mean(axis=2)
    known = transforms.compose(transforms.rotation(7.0, (64, 64)), transforms.scaling(1.05, 0.96),
                               transforms.translation(4.0, -3.0))
    moving = transforms.warp_image(fixed, transforms.invert(known), fixed.shape).astype(np.float32)
    runs = {}
    for name, maps in MAPS.items():
        parameters = itk.ParameterObject.New()
        for default in maps:
            parameter_map = parameters.GetDefaultParameterMap("rigid" if default == "similarity" else default, 2)  # 2 levels
            if default == "similarity":
                parameter_map["Transform"] = ["SimilarityTransform"]
            parameter_map["MaximumNumberOfIterations"] = ["100"]
            parameter_map["WriteResultImage"] = ["false"]
            parameters.AddParameterMap(parameter_map)
        folder = tmp_path_factory.mktemp(name)
        itk.elastix_registration_method(itk.image_view_from_array(fixed), itk.image_view_from_array(moving),
                                        parameter_object=parameters, output_directory=str(folder),
                                        log_to_console=False)
        runs[name] = folder / f"TransformParameters.{len(maps) - 1}.txt"
    return runs


def transformix(itk, path, folder) -> np.ndarray:
    """Moving physical points transformix gives for the fixed pixels ``POINTS`` through the parameters file ``path``."""
    folder.mkdir(exist_ok=True)
    (folder / "points.txt").write_text(f"index\n{len(POINTS)}\n" + "".join(f"{x} {y}\n" for x, y in POINTS))
    parameters = itk.ParameterObject.New()
    parameters.ReadParameterFile(str(path))
    transformix_filter = itk.TransformixFilter.New(itk.image_view_from_array(np.zeros((8, 8), np.float32)))
    transformix_filter.SetTransformParameterObject(parameters)
    transformix_filter.SetFixedPointSetFileName(str(folder / "points.txt"))
    transformix_filter.SetOutputDirectory(str(folder))
    transformix_filter.SetLogToConsole(False)
    transformix_filter.Update()
    lines = (folder / "outputpoints.txt").read_text().splitlines()
    return np.array([[float(v) for v in re.search(r"OutputPoint = \[([^\]]*)\]", line)[1].split()] for line in lines])


def deviation(matrix, moving_pixels) -> float:
    """Largest distance (px) between the fixed pixels and the moving pixels mapped back through ``matrix``."""
    return float(np.abs(transforms.apply_to_points(matrix, moving_pixels) - POINTS).max())


@pytest.mark.parametrize("name", list(MAPS))
def test_elastix_files_map_points_as_transformix_does(itk, elastix_runs, tmp_path, name):
    path = elastix_runs[name]
    assert f'(Transform "{KINDS[name]}")' in path.read_text()
    moving = transformix(itk, path, tmp_path)  # spacing 1, origin 0: physical points are pixels
    assert deviation(read_transform_file(path), moving) < 1e-3


def test_the_rigid_then_affine_chain_is_composed_not_ignored(itk, elastix_runs, tmp_path):
    path = elastix_runs["rigid_affine"]
    text = path.read_text()
    assert f'(InitialTransformParameterFileName "{path.parent / "TransformParameters.0.txt"}")' in text
    alone = re.sub(r'\(InitialTransformParameterFileName "[^"]*"\)', '(InitialTransformParameterFileName '
                   '"NoInitialTransform")', text)
    assert deviation(read_affine_parameters(alone), transformix(itk, path, tmp_path)) > 1.0


def test_a_chain_is_found_relative_to_its_folder_or_by_name_there(elastix_runs, tmp_path):
    source = elastix_runs["rigid_affine"]
    expected = read_transform_file(source)
    text = source.read_text()
    (tmp_path / "first").mkdir()
    shutil.copy(source.parent / "TransformParameters.0.txt", tmp_path / "first" / "rigid.txt")
    shutil.copy(source.parent / "TransformParameters.0.txt", tmp_path / "TransformParameters.0.txt")
    for initial in ("first/rigid.txt", "/gone/elsewhere/TransformParameters.0.txt",
                    "C:\\elastix\\out\\TransformParameters.0.txt"):
        path = tmp_path / "TransformParameters.1.txt"
        path.write_text(text.replace(str(source.parent / "TransformParameters.0.txt"), initial))
        np.testing.assert_allclose(read_transform_file(path), expected, atol=1e-12)


@pytest.mark.parametrize("how", ["Compose", "Add"])
def test_spacing_origin_direction_and_additive_chains_as_transformix(itk, elastix_runs, tmp_path, how):
    """A turned, scaled and shifted fixed grid (Direction written column by column, as elastix writes it)."""
    text = elastix_runs["rigid_affine"].read_text()
    direction = " ".join(f"{v:.17g}" for v in np.reshape(TURNED.direction, (2, 2)).T.ravel())
    text = (text.replace("(Spacing 1 1)", "(Spacing 0.5 0.8)").replace("(Origin 0 0)", "(Origin 10 -4)")
            .replace("(Direction 1 0 0 1)", f"(Direction {direction})")
            .replace('(HowToCombineTransforms "Compose")', f'(HowToCombineTransforms "{how}")'))
    path = tmp_path / "TransformParameters.1.txt"
    path.write_text(text)
    moving_physical = transformix(itk, path, tmp_path / "out")
    to_pixels = transforms.invert(TURNED.pixel_to_physical())  # by default the moving image lies as the fixed one
    assert deviation(read_transform_file(path), transforms.apply_to_points(to_pixels, moving_physical)) < 1e-3
    moving_geometry = ImageGeometry((0.7, 0.6), (-3.0, 5.0), (0.0, -1.0, 1.0, 0.0))
    to_pixels = transforms.invert(moving_geometry.pixel_to_physical())
    matrix = read_transform_file(path, moving_geometry=moving_geometry)
    assert deviation(matrix, transforms.apply_to_points(to_pixels, moving_physical)) < 1e-3


def test_euler_and_similarity_parameters_by_hand():
    """Fixed (10, 21) turns 90° about (10, 20) to (9, 20), then shifts by (1, 2): moving (10, 22)."""
    euler = '(Transform "EulerTransform")\n(TransformParameters 1.5707963267948966 1 2)\n(CenterOfRotationPoint 10 20)\n'
    np.testing.assert_allclose(transforms.apply_to_points(read_affine_parameters(euler), [[10, 22]]), [[10, 21]],
                               atol=1e-12)
    similarity = euler.replace("Euler", "Similarity").replace("(TransformParameters ", "(TransformParameters 2 ")
    np.testing.assert_allclose(transforms.apply_to_points(read_affine_parameters(similarity), [[9, 22]]),
                               [[10, 21]], atol=1e-12)
    translation = '(Transform "TranslationTransform")\n(TransformParameters 3 -4)\n// a comment\n'
    np.testing.assert_allclose(read_affine_parameters(translation), transforms.translation(-3, 4), atol=1e-12)


def test_unsupported_transforms_are_refused_by_name(tmp_path):
    affine = '(Transform "AffineTransform")\n(TransformParameters 1 0 0 1 0 0)\n'
    bspline = '(Transform "BSplineTransform")\n(NumberOfParameters 4)\n(TransformParameters 0 0 0 0)\n'
    with pytest.raises(InputError, match="B-spline transforms are non-rigid: not supported"):
        read_affine_parameters(bspline)
    (tmp_path / "bspline.txt").write_text(bspline)
    (tmp_path / "TransformParameters.1.txt").write_text(affine + '(InitialTransformParameterFileName "bspline.txt")\n')
    with pytest.raises(InputError, match=r"^bspline.txt: B-spline"):
        read_transform_file(tmp_path / "TransformParameters.1.txt")
    (tmp_path / "t.txt").write_text(affine + '(InitialTransformParameterFileName "TransformParameters.0.txt")\n')
    with pytest.raises(InputError, match=r"^initial transform file TransformParameters.0.txt named by t.txt does not "):
        read_transform_file(tmp_path / "t.txt")
    (tmp_path / "loop.txt").write_text(affine + '(InitialTransformParameterFileName "loop.txt")\n')
    with pytest.raises(InputError, match="loop back to loop.txt"):
        read_transform_file(tmp_path / "loop.txt")
    for text, message in [(affine + "(FixedImageDimension 3)\n", "3-D transform"),
                          (affine.replace("AffineTransform", "AffineDTITransform"), "AffineDTITransform is not supported"),
                          (affine + '(HowToCombineTransforms "Multiply")\n(InitialTransformParameterFileName "t.txt")\n',
                           "neither Compose nor Add"),
                          ('(Transform "EulerTransform")\n(TransformParameters 0.1 2)\n', r"\(3 numbers\)"),
                          ("Transform: Euler2DTransform_double_2_2\nParameters: 0.1 2 3\n", "Euler2DTransform_double_2_2"),
                          ("Transform: CompositeTransform_double_2_2\nTransform: AffineTransform_double_2_2\n"
                           "Parameters: 1 0 0 1 0 0\nTransform: AffineTransform_double_2_2\nParameters: 1 0 0 1 0 0\n",
                           "2 ITK transforms")]:
        with pytest.raises(InputError, match=message):
            read_affine_parameters(text, tmp_path)
    with pytest.raises(InputError, match="singular"):
        read_affine_parameters('(Transform "SimilarityTransform")\n(TransformParameters 0 0.1 2 3)\n')
