"""Transform files: our JSON, elastix ``TransformParameters`` and ITK ``.tfm`` affines, both ways."""
from __future__ import annotations

import json
import re
from pathlib import Path, PureWindowsPath
from typing import NamedTuple

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


_INITIAL_KEYS = ("InitialTransformParameterFileName", "InitialTransformParametersFileName")  # elastix 5, elastix 4
_PARAMETER_COUNTS = {"TranslationTransform": 2, "EulerTransform": 3, "SimilarityTransform": 4, "AffineTransform": 6}
_NON_RIGID = ("BSplineTransform", "RecursiveBSplineTransform", "BSplineStackTransform", "SplineKernelTransform",
              "MultiBSplineTransformWithNormal", "DeformationFieldTransform", "WeightedCombinationTransform")
_ENTRY = re.compile(r'^\(\s*(\w+)((?:\s+(?:"[^"]*"|[^\s"()]+))*)\s*\)')


class ImageGeometry(NamedTuple):
    """Where an image's pixels lie in ITK's physical space: ``physical = origin + direction @ (spacing * (x, y))``."""

    spacing: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float] = (0.0, 0.0)
    direction: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0)  # row by row

    def pixel_to_physical(self) -> np.ndarray:
        """3×3 matrix: pixel ``(x, y, 1)`` (pixel centres at integers, as ITK's indices) → physical point."""
        out = np.eye(3)
        out[:2, :2] = np.reshape(self.direction, (2, 2)) @ np.diag(self.spacing)
        out[:2, 2] = self.origin
        return out


def read_affine_parameters(text: str, folder=None, moving_geometry: ImageGeometry | None = None,
                           name: str = "the transform text") -> np.ndarray:
    """Our moving → fixed pixel matrix from an elastix ``TransformParameters`` or ITK ``.tfm`` text.

    ITK ``.tfm``: an affine (6 numbers) about the centre in ``FixedParameters``, physical = pixel.
    elastix: see :func:`read_elastix_parameters` (``folder``: where a relative initial transform file lies,
    the current directory when ``None``).
    """
    if any(line.lstrip().startswith("(") for line in text.splitlines()):
        return read_elastix_parameters(text, folder, moving_geometry, name)
    values, kinds = {}, []
    for line in text.splitlines():
        key, *rest = line.replace(":", " ").split() or [""]
        if key in ("Parameters", "FixedParameters"):
            values[key] = _numbers(rest, key, name)
        elif key == "Transform" and rest and not rest[0].startswith("CompositeTransform"):
            kinds.append(rest[0])
    if len(kinds) > 1:
        raise InputError(f"{name} holds {len(kinds)} ITK transforms: only a single affine is supported")
    if kinds and not kinds[0].startswith(("AffineTransform", "MatrixOffsetTransformBase")):
        raise InputError(f"{name}: ITK {kinds[0]} is not supported (AffineTransform is)")
    parameters = values.get("Parameters")
    if parameters is None or len(parameters) != 6:
        raise InputError(f"no 2-D affine parameters (6 numbers) found in {name}")
    return _inverse(_centred(parameters[:4], parameters[4:], (values.get("FixedParameters") or [0, 0])[:2]), name)


def read_elastix_parameters(text: str, folder=None, moving_geometry: ImageGeometry | None = None,
                            name: str = "the transform text") -> np.ndarray:
    """Our moving → fixed pixel matrix from an elastix ``TransformParameters`` text, its initial transforms included.

    elastix maps FIXED physical points to MOVING ones. ``TranslationTransform`` (tx ty), ``EulerTransform``
    (angle tx ty), ``SimilarityTransform`` (scale angle tx ty) and ``AffineTransform`` (a11 a12 a21 a22 tx ty),
    2-D, turn about ``CenterOfRotationPoint``. ``InitialTransformParameterFileName`` chains (a path relative to
    ``folder``; an absolute path that no longer exists is looked for by its name in ``folder``, where elastix
    writes the whole chain) are followed and combined as ``HowToCombineTransforms`` says: ``Compose`` is
    ``T(p) = T_current(T_initial(p))``, ``Add`` is ``T_current(p) + T_initial(p) − p``.
    Fixed pixels become physical points through this file's ``Spacing``, ``Origin`` and ``Direction``; a
    parameters file does not hold the moving image's, so moving points become pixels through
    ``moving_geometry``, by default the same as the fixed image's (as for two arrays registered as they are:
    spacing 1, origin 0). B-spline and other non-rigid, 3-D or unknown transforms are refused by name.
    """
    folder = Path.cwd() if folder is None else Path(folder)
    entries = _elastix_entries(text)
    fixed = _geometry(entries, name)
    fixed_to_moving = _elastix_physical(entries, name, folder, fixed, ())
    moving = fixed if moving_geometry is None else ImageGeometry(*moving_geometry)
    to_pixels = _inverse(moving.pixel_to_physical(), "the moving image's geometry")
    return _inverse(transforms.compose(fixed.pixel_to_physical(), fixed_to_moving, to_pixels), name)


def _elastix_physical(entries, name, folder, fixed: ImageGeometry, seen) -> np.ndarray:
    """The fixed → moving physical matrix of one parameters file and its chain of initial transforms."""
    for key in ("FixedImageDimension", "MovingImageDimension"):
        if entries.get(key, ["2"])[0] != "2":
            raise InputError(f"{name} holds a {entries[key][0]}-D transform: only 2-D elastix transforms are supported")
    kind = entries.get("Transform", ["AffineTransform"])[0]  # texts without the line were read as affines before
    if "BSpline" in kind:
        raise InputError(f"{name}: B-spline transforms are non-rigid: not supported ({kind})")
    if kind in _NON_RIGID:
        raise InputError(f"{name}: {kind} is non-rigid: not supported")
    if kind not in _PARAMETER_COUNTS:
        raise InputError(f"{name}: elastix {kind} is not supported (Translation, Euler, Similarity and Affine are)")
    parameters = _numbers(entries.get("TransformParameters", []), "TransformParameters", name)
    if len(parameters) != _PARAMETER_COUNTS[kind]:
        noun = "2-D affine parameters" if kind == "AffineTransform" else f"2-D {kind} parameters"
        raise InputError(f"no {noun} ({_PARAMETER_COUNTS[kind]} numbers) found in {name}: "
                         f"its TransformParameters has {len(parameters)}")
    if "CenterOfRotationPoint" in entries:
        centre = _numbers(entries["CenterOfRotationPoint"], "CenterOfRotationPoint", name)[:2]
    elif "CenterOfRotation" in entries:  # elastix 3: an index of the fixed image
        centre = transforms.apply_to_points(fixed.pixel_to_physical(),
                                            [_numbers(entries["CenterOfRotation"], "CenterOfRotation", name)[:2]])[0]
    else:
        centre = [0.0, 0.0]
    if kind == "TranslationTransform":
        current = _centred([1, 0, 0, 1], parameters, centre)
    elif kind == "AffineTransform":
        current = _centred(parameters[:4], parameters[4:], centre)
    else:
        scale, angle = (parameters[0], parameters[1]) if kind == "SimilarityTransform" else (1.0, parameters[0])
        c, s = np.cos(angle), np.sin(angle)
        current = _centred(scale * np.array([c, -s, s, c]), parameters[-2:], centre)
    initial = next((entries[k][0] for k in _INITIAL_KEYS if k in entries), "NoInitialTransform")
    how = entries.get("HowToCombineTransforms", ["Compose"])[0]
    if initial == "NoInitialTransform":
        return current
    if how not in ("Compose", "Add"):
        raise InputError(f"{name}: HowToCombineTransforms {how!r} is neither Compose nor Add")
    path = _initial_file(initial, folder, name)
    if path.resolve() in seen:
        raise InputError(f"the initial transforms named by {name} loop back to {path.name}")
    previous = _elastix_physical(_elastix_entries(_read_text(path)), path.name, path.parent, fixed,
                                 (*seen, path.resolve()))
    return current @ previous if how == "Compose" else current + previous - np.eye(3)


def _initial_file(initial: str, folder: Path, name: str) -> Path:
    """The initial transform file ``initial`` named by ``name``: relative to ``folder``, or absolute; an absolute
    path (of this or another system) that does not exist is looked for by its file name in ``folder``."""
    named = PureWindowsPath(initial) if "\\" in initial or PureWindowsPath(initial).drive else Path(initial)
    candidates = [folder.joinpath(*named.parts)] if not named.is_absolute() else [Path(initial), folder / named.name]
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(f"initial transform file {initial} named by {name} does not exist")


def _elastix_entries(text: str) -> dict[str, list[str]]:
    """``(Key value ...)`` lines of an elastix parameters text: quotes removed, ``//`` comments skipped."""
    entries = {}
    for line in text.splitlines():
        match = _ENTRY.match(line.strip())
        if match:
            entries[match[1]] = [a or b for a, b in re.findall(r'"([^"]*)"|([^\s"]+)', match[2])]
    return entries


def _geometry(entries, name) -> ImageGeometry:
    """The fixed image's geometry from ``Spacing``, ``Origin`` and ``Direction`` (elastix writes it column by
    column; identity where ``UseDirectionCosines`` is false)."""
    spacing = _numbers(entries.get("Spacing", ["1", "1"]), "Spacing", name)
    origin = _numbers(entries.get("Origin", ["0", "0"]), "Origin", name)
    direction = _numbers(entries.get("Direction", ["1", "0", "0", "1"]), "Direction", name)
    if entries.get("UseDirectionCosines", ["true"])[0].lower() == "false":
        direction = [1.0, 0.0, 0.0, 1.0]
    if len(spacing) != 2 or len(origin) != 2 or len(direction) != 4 or min(spacing) <= 0:
        raise InputError(f"{name}: Spacing, Origin and Direction are not those of a 2-D image")
    return ImageGeometry(tuple(spacing), tuple(origin), tuple(np.reshape(direction, (2, 2)).T.ravel()))


def _centred(linear, shift, centre) -> np.ndarray:
    """ITK's ``p ↦ A (p − c) + c + t`` as a 3×3 matrix."""
    out = np.eye(3)
    out[:2, :2] = np.reshape(np.asarray(linear, float), (2, 2))
    out[:2, 2] = np.asarray(shift, float) + np.asarray(centre, float) - out[:2, :2] @ np.asarray(centre, float)
    return out


def _inverse(matrix, name) -> np.ndarray:
    """``inv(matrix)``, refused when it is singular."""
    if abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise InputError(f"the transform of {name} is singular: it cannot be inverted")
    return transforms.invert(matrix)


def _numbers(values, key, name) -> list[float]:
    try:
        out = [float(v) for v in values]
    except ValueError:
        raise InputError(f"unreadable numbers in the {key} line of {name}") from None
    if not np.isfinite(out).all():
        raise InputError(f"unreadable numbers in the {key} line of {name}")
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read transform file {path}: {exc}") from exc


def read_transform_file(path, moving_geometry: ImageGeometry | None = None) -> np.ndarray:
    """Our moving → fixed matrix from a file: our JSON (its ``matrix``), ITK ``.tfm`` or elastix parameters
    (with the initial transforms it names, relative to its folder; ``moving_geometry`` as in
    :func:`read_elastix_parameters`)."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() != ".json":
        return read_affine_parameters(text, path.parent, moving_geometry, path.name)
    try:
        matrix = np.array(json.loads(text)["matrix"], float)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path.name} is not a transform JSON with a 3x3 'matrix'") from exc
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise InputError(f"{path.name} is not a transform JSON with a 3x3 'matrix'")
    return matrix


def read_transform_chain(steps) -> np.ndarray:
    """One moving → fixed matrix from transform files applied one after the other: ``steps`` are ``(path,
    inverse)`` pairs, each read by :func:`read_transform_file` and inverted where ``inverse`` is true (a
    series: section A onto the reference, then the reference onto section B is ``[(A, False), (B, True)]``)."""
    matrices = []
    for path, inverse in steps:
        matrix = read_transform_file(path)
        matrices.append(_inverse(matrix, Path(path).name) if inverse else matrix)
    return transforms.compose(*matrices)
