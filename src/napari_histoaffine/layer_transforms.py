"""napari layer geometry for registration results (numpy only; no Qt).

A registration matrix ``R`` (``(x, y)`` order, moving → fixed full-resolution pixels, see
:mod:`napari_histoaffine.transforms`) is shown in napari by giving the moving layer the
``affine`` (napari's ``physical2world`` transform, ``(row, col)`` order)::

    affine = W_fixed @ R_rc @ inv(P_moving)

where ``W_fixed`` is the fixed layer's whole data → world transform, ``R_rc`` is ``R`` in
napari's order and ``P_moving`` the moving layer's own scale/translate/rotate/shear part. A
moving data point ``d`` then lands in world at ``affine @ P_moving @ d = W_fixed @ R_rc @ d``,
i.e. exactly where the fixed layer shows the pixel ``R`` maps ``d`` to. Data are never touched.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import transforms
from .errors import InputError


def layer_matrices(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(data2physical, physical2world)`` of a 2-D napari layer as 3×3 ``(row, col)`` matrices."""
    from napari.utils.transforms import CompositeAffine

    own = CompositeAffine(scale=layer.scale, translate=layer.translate, rotate=layer.rotate,
                          shear=layer.shear, ndim=layer.ndim)
    return own.affine_matrix, np.asarray(layer.affine.affine_matrix, float)


def data_to_world_matrix(layer) -> np.ndarray:
    """The layer's whole data → world transform (3×3, ``(row, col)``)."""
    own, extra = layer_matrices(layer)
    return extra @ own


def moving_layer_affine(registration_xy, fixed_data_to_world_rc, moving_data_to_physical_rc) -> np.ndarray:
    """The ``affine`` for the moving layer that shows it registered onto the fixed layer (see module doc)."""
    r_rc = transforms.xy_to_rowcol(registration_xy)
    return np.asarray(fixed_data_to_world_rc, float) @ r_rc @ np.linalg.inv(moving_data_to_physical_rc)


def map_rowcol(matrix_rc, points_rc) -> np.ndarray:
    """Apply a 3×3 ``(row, col)`` matrix to ``(n, 2)`` napari points."""
    return transforms.apply_to_points(matrix_rc, points_rc)


def points_between(points_rc, from_data_to_world_rc, to_data_to_world_rc) -> np.ndarray:
    """Data coordinates of one layer → data coordinates of another, through world."""
    return map_rowcol(np.linalg.inv(to_data_to_world_rc) @ np.asarray(from_data_to_world_rc, float), points_rc)


def rowcol_to_xy(points_rc) -> np.ndarray:
    """napari ``(row, col)`` points → ``(x, y)`` points (and back: the swap is its own inverse)."""
    return np.asarray(points_rc, float).reshape(-1, 2)[:, ::-1].copy()



def common_levels(level_shapes, level0_pixel_sizes, working_size: int) -> list[tuple[int, float]]:
    """For each image, the pyramid level to read and the factor that brings it to one common pixel size.

    ``level_shapes[k]`` are image k's level shapes (level 0 first), ``level0_pixel_sizes[k]`` the world
    size of its level-0 pixel (a napari layer's scale). The common pixel size makes the image that is
    larger in the world ``working_size`` pixels long (or, for small images, is the coarser of the
    two level-0 pixels); each image reads its coarsest level that is still at least that fine and is
    then resampled by the returned factor (≤ 1) to exactly that size, so a pyramid and a single large
    array, or layers of different scales, meet at one pixel size.
    """
    extents = [max(shapes[0][0], shapes[0][1]) * size for shapes, size in zip(level_shapes, level0_pixel_sizes)]
    # world size of a working pixel; never finer than the coarser level 0 (nothing is upsampled)
    target = max(max(extents) / working_size, max(level0_pixel_sizes))
    chosen = []
    for shapes, size in zip(level_shapes, level0_pixel_sizes):
        pixel = [size * max(shapes[0][:2]) / max(s[:2]) for s in shapes]  # world size of each level's pixel
        fine_enough = [i for i, p in enumerate(pixel) if p <= target * 1.0001]
        index = max(fine_enough, key=lambda i: pixel[i], default=0)
        chosen.append((index, pixel[index] / target))
    return chosen


def fit_affine(moving_xy, fixed_xy) -> np.ndarray:
    """Least-squares affine (moving → fixed, ``(x, y)``) from ≥ 3 non-collinear point pairs."""
    src = np.asarray(moving_xy, float).reshape(-1, 2)
    dst = np.asarray(fixed_xy, float).reshape(-1, 2)
    if len(src) != len(dst):
        raise InputError(f"landmark sets differ in length: {len(src)} moving vs {len(dst)} fixed landmarks")
    design = np.hstack([src, np.ones((len(src), 1))])
    if len(src) < 3 or np.linalg.matrix_rank(design) < 3:
        raise InputError("refitting an affine needs at least 3 landmark pairs that are not on one line")
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def elastix_affine_text(registration_xy, fixed_shape) -> str:
    """An elastix ``TransformParameters`` file holding the registration as an ``AffineTransform``.

    ITK and elastix transforms map FIXED physical points to MOVING points, the inverse of our
    matrix. With spacing 1, origin 0 and identity direction, physical points are our pixel
    ``(x, y)`` (pixel centres at integers), so the parameters are ``inv(R)``'s 2×2 part row by
    row then its translation, with ``CenterOfRotationPoint 0 0``. ``Size`` is the fixed image's
    ``(columns, rows)``, the grid transformix resamples the moving image onto.
    """
    inv = transforms.invert(registration_xy)
    params = [*inv[:2, :2].ravel(), *inv[:2, 2]]
    rows, cols = (int(v) for v in fixed_shape[:2])
    lines = [
        '(Transform "AffineTransform")', "(NumberOfParameters 6)",
        "(TransformParameters " + " ".join(f"{p:.12g}" for p in params) + ")",
        '(InitialTransformParametersFileName "NoInitialTransform")', '(HowToCombineTransforms "Compose")',
        "(FixedImageDimension 2)", "(MovingImageDimension 2)",
        '(FixedInternalImagePixelType "float")', '(MovingInternalImagePixelType "float")',
        f"(Size {cols} {rows})", "(Index 0 0)", "(Spacing 1.0 1.0)", "(Origin 0.0 0.0)",
        "(Direction 1.0 0.0 0.0 1.0)", '(UseDirectionCosines "true")', "(CenterOfRotationPoint 0.0 0.0)",
        '(ResampleInterpolator "FinalBSplineInterpolator")', "(FinalBSplineInterpolationOrder 1)",
        '(Resampler "DefaultResampler")', "(DefaultPixelValue 0)",
        '(ResultImageFormat "tif")', '(ResultImagePixelType "float")', '(CompressResultImage "false")',
    ]
    return "\n".join(lines) + "\n"


def itk_tfm_text(registration_xy) -> str:
    """The same transform as an ITK ``.tfm`` file (``AffineTransform_double_2_2``, fixed → moving, centre 0 0)."""
    inv = transforms.invert(registration_xy)
    params = " ".join(f"{p:.12g}" for p in [*inv[:2, :2].ravel(), *inv[:2, 2]])
    return ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_2_2\n"
            f"Parameters: {params}\nFixedParameters: 0 0\n")


def read_affine_parameters(text: str) -> np.ndarray:
    """Our moving → fixed matrix back from an elastix ``TransformParameters`` or ITK ``.tfm`` affine text.

    Both map fixed to moving points as ``A (p − c) + c + t`` with the centre ``c`` from
    ``CenterOfRotationPoint`` (elastix) or ``FixedParameters`` (ITK); ours has ``c = 0``.
    """
    values: dict[str, list[float]] = {}
    for line in text.splitlines():
        line = line.strip().strip("()").replace(":", " ")
        key, *rest = line.split() or [""]
        if key in ("TransformParameters", "Parameters", "CenterOfRotationPoint", "FixedParameters"):
            try:
                values[key] = [float(v) for v in rest]
            except ValueError:
                raise InputError(f"unreadable numbers in the transform's {key} line") from None
    parameters = values.get("TransformParameters") or values.get("Parameters")
    if parameters is None or len(parameters) != 6:
        raise InputError("no 2-D affine parameters (6 numbers) found in the transform text")
    centre = np.array((values.get("CenterOfRotationPoint") or values.get("FixedParameters") or [0.0, 0.0])[:2])
    linear = np.array(parameters[:4]).reshape(2, 2)
    fixed_to_moving = np.eye(3)
    fixed_to_moving[:2, :2] = linear
    fixed_to_moving[:2, 2] = np.array(parameters[4:]) + centre - linear @ centre
    return transforms.invert(fixed_to_moving)


def read_transform_file(path) -> np.ndarray:
    """Our moving → fixed matrix from a file: our JSON (its ``matrix``), ITK ``.tfm`` or elastix parameters."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read transform file {path}: {exc}") from exc
    if path.suffix.lower() != ".json":
        return read_affine_parameters(text)
    try:
        matrix = np.array(json.loads(text)["matrix"], float)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path.name} is not a transform JSON with a 3x3 'matrix'") from exc
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise InputError(f"{path.name} is not a transform JSON with a 3x3 'matrix'")
    return matrix
