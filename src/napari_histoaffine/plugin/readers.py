"""npe2 hooks: sample data, ANHIR landmark reader/writer, pyramidal TIFF reader (napari LayerData tuples).

ANHIR files store ``(x, y)`` = (column, row); napari points are ``(row, col)``: every crossing swaps.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files.images import open_pyramid
from ..files.openslide_levels import OPENSLIDE_SUFFIXES
from ..files.pixel_size import pixel_size_um
from ..files.tables import read_landmarks, write_landmarks
from .landmark_layers import IMAGE, landmark_name, matching_image
from .layer_transforms import rowcol_to_xy

LANDMARK_STYLE = {"size": 12, "border_width": 0.15, "symbol": "disc"}
# landmark files opened one after the other get distinct colours (magenta is for mapped landmarks)
_LANDMARK_COLOURS = itertools.cycle(("cyan", "orange", "lime", "yellow", "violet"))
_SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".btf", *OPENSLIDE_SUFFIXES)
# image layer metadata: the (x, y) size in µm of a full-resolution pixel as the file states it (None: it does not)
PIXEL_SIZE = "pixel_size_um"
LANDMARK_FILE = "histoaffine_landmark_file"  # Points layer metadata: the landmark file it was read from


def landmark_layer(points_xy, name: str, color: str, **kwargs) -> tuple:
    """A Points LayerData tuple from ``(x, y)`` landmarks, numbered by their index."""
    pts = rowcol_to_xy(points_xy)
    text = {"string": "{index}", "color": color, "anchor": "upper_left", "size": 9}
    features = {"index": np.arange(len(pts))}
    return pts, {"name": name, "face_color": color, "border_color": "white", "features": features,
                 "text": text, **LANDMARK_STYLE, **kwargs}, "points"


def make_sample() -> list[tuple]:
    """Sample data "histology pair": fixed and moving sections with matching landmark layers."""
    from ..sample import make_pair

    pair = make_pair()
    return [
        (pair.fixed, {"name": "fixed (IHC)", "rgb": True}, "image"),
        (pair.moving, {"name": "moving (restained)", "rgb": True}, "image"),
        landmark_layer(pair.fixed_landmarks, "fixed landmarks", "cyan"),
        landmark_layer(pair.moving_landmarks, "moving landmarks", "orange"),
    ]


def _looks_like_landmarks(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = [h.strip().lower() for h in f.readline().split(",")]
    except OSError:
        return False
    return "x" in header and "y" in header


def get_landmark_reader(path):
    """Reader for ANHIR landmark CSVs (header ``,X,Y``), or None for other files."""
    if isinstance(path, list) or not str(path).lower().endswith(".csv") or not _looks_like_landmarks(Path(path)):
        return None
    return read_landmark_layers


def read_landmark_layers(path) -> list[tuple]:
    """One Points layer per landmark CSV, named after the file (``S1.csv`` → ``S1 landmarks``: not the name of an
    image ``S1`` plus napari's `` [1]``); its metadata keep the file (:func:`open_files` pairs it with its image)."""
    paths = path if isinstance(path, list) else [path]
    return [landmark_layer(read_landmarks(p), landmark_name(p), next(_LANDMARK_COLOURS),
                           metadata={LANDMARK_FILE: str(p)}) for p in paths]


def get_pyramid_reader(path):
    """Reader for (pyramidal) TIFF / OME-TIFF / SVS / NDPI files and the OpenSlide formats, or None for others."""
    if isinstance(path, list) or not str(path).lower().endswith(_SLIDE_SUFFIXES):
        return None
    return read_pyramid_layer


def read_pyramid_layer(path) -> list[tuple]:
    """A lazy image layer: multiscale when the file holds a pyramid, RGB when its last axis has 3 or 4 samples."""
    levels = open_pyramid(path)
    name = Path(path).name.split(".")[0]
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    data = levels if len(levels) > 1 else levels[0]
    metadata = {PIXEL_SIZE: pixel_size_um(path)}  # the layer stays in pixels: its scale is not set from this
    return [(data, {"name": name, "multiscale": len(levels) > 1, "rgb": rgb, "metadata": metadata}, "image")]


def layer_pixel_size_um(layer) -> tuple[float, float] | None:
    """The ``(x, y)`` µm of a full-resolution pixel of an image layer: what this plugin's reader stored in its
    metadata, else what the file it was read from states; None when neither says (its scale is never taken)."""
    if PIXEL_SIZE in layer.metadata:
        size = layer.metadata[PIXEL_SIZE]
    else:
        path = getattr(layer.source, "path", None)
        size = _file_pixel_size(str(path), Path(path).stat().st_mtime_ns) if path and Path(path).is_file() else None
    return (float(size[0]), float(size[1])) if size is not None else None


@lru_cache(maxsize=64)
def _file_pixel_size(path: str, modified_ns: int):
    """A file's pixel size, read once per version of the file: the landmark table asks on every drag."""
    return pixel_size_um(path)


def open_files(viewer, paths) -> list:
    """Open files in ``viewer``: slides and ANHIR landmark files with this plugin's readers (``viewer.open``
    on its own sends them to napari's built-in reader, which opens one pyramid level and fails on the
    landmarks), anything else as napari would; a landmark layer is paired with the image it belongs to by name
    (:func:`~.landmark_layers.matching_image`: its ``metadata[IMAGE]``), when a rule can tell which. Returns the
    added layers; raises InputError naming the file."""
    layers = []
    for path in map(str, paths):
        ours = get_pyramid_reader(path) or get_landmark_reader(path)
        try:
            layers += viewer.open(path, plugin="napari-histoaffine" if ours else "napari")
        except Exception as exc:  # noqa: BLE001 - napari wraps every reader failure; the cause is what users need
            cause = exc.__cause__ or exc
            raise InputError(f"Cannot open {Path(path).name}: {' '.join(str(cause).split())}") from exc
    from napari.layers import Image

    images = [layer.name for layer in viewer.layers if isinstance(layer, Image)]
    for layer in layers:
        if LANDMARK_FILE in layer.metadata and IMAGE not in layer.metadata:
            image = matching_image(layer.metadata[LANDMARK_FILE], images)
            if image is not None:
                layer.metadata[IMAGE] = image
    return layers


def unpaired_note(layers) -> str | None:
    """What to tell the user about landmark layers :func:`open_files` could not pair with an image, or None."""
    names = [layer.name for layer in layers if LANDMARK_FILE in layer.metadata and IMAGE not in layer.metadata]
    return (f"Not paired with an image (no image layer named like the file, or several): {', '.join(names)}. "
            "Pick them as fixed or moving landmarks by hand.") if names else None


def write_landmarks_csv(path: str, data, meta: dict) -> list[str]:
    """Writer: a 2-D Points layer → ANHIR landmark CSV (``,X,Y`` in data pixels)."""
    pts = np.asarray(data, float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"only 2-D points can be written as ANHIR landmarks, got shape {pts.shape}")
    write_landmarks(path, rowcol_to_xy(pts))
    return [path]
