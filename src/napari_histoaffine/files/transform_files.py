"""Transform files: our JSON, elastix ``TransformParameters`` and ITK ``.tfm`` affines, both ways."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import transforms
from ..errors import InputError


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
