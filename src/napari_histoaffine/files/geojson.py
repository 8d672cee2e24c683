"""GeoJSON annotations as QuPath writes and reads them, and their transfer between sections.

A document is kept as the JSON it was read as: a ``FeatureCollection``, a single ``Feature``, a bare
geometry or a list of features (QuPath writes the last when not asked for a collection). Geometries:
``Point``, ``MultiPoint``, ``LineString``, ``MultiLineString``, ``Polygon`` (holes are its later rings),
``MultiPolygon`` and ``GeometryCollection``. :func:`map_document` changes only coordinates (and a
``bbox``, recomputed where there was one): ``properties`` (name, classification, objectType,
measurements, …) stay as they are, except a cell's ``nucleusGeometry``, which is mapped too.

Coordinates are full-resolution pixels of the slide they belong to, ``x`` the column and ``y`` the row,
with QuPath's origin: the top-left *corner* of pixel (0, 0), so that pixel's centre is ``(0.5, 0.5)``.
Our transforms put pixel centres at integers (:mod:`napari_histoaffine.transforms`), hence
:data:`PIXEL_ORIGIN`: a GeoJSON point ``g`` is our point ``g - 0.5``.
"""
from __future__ import annotations

import copy
import json

import numpy as np

from .. import transforms
from ..errors import InputError
from .atomic import write_json
from .decode import check_exists, one_line

PIXEL_ORIGIN = 0.5  # GeoJSON (QuPath) coordinate of the centre of pixel (0, 0); ours is 0
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
_RINGS = {"Polygon": 1, "MultiPolygon": 2}  # depth of the ring lists whose order is the winding


def read_geojson(path):
    """The GeoJSON document of ``path`` as parsed (see the module doc); raises InputError for anything else."""
    p = check_exists(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Cannot read GeoJSON {p}: {one_line(exc)}") from exc
    for geometry in geometries(document, p.name):
        _coordinates(geometry, p.name)  # every geometry checked before anything is mapped
    return document


def write_geojson(path, document) -> None:
    """Write a GeoJSON document atomically (indented, as QuPath's pretty export)."""
    write_json(path, document)


def geometries(document, name: str = "the GeoJSON"):
    """Every geometry object of ``document`` (a nucleus geometry after its cell's), in file order."""
    if isinstance(document, list):
        for item in document:
            yield from geometries(item, name)
        return
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection" and isinstance(document.get("features"), list):
        yield from geometries(document["features"], name)
    elif kind == "Feature":
        if document.get("geometry") is not None:  # a feature without a place (allowed) has nothing to map
            yield from geometries(document["geometry"], name)
        properties = document.get("properties")
        nucleus = properties.get("nucleusGeometry") if isinstance(properties, dict) else None
        if isinstance(nucleus, dict):
            yield from geometries(nucleus, name)
    elif kind == "GeometryCollection" and isinstance(document.get("geometries"), list):
        yield from geometries(document["geometries"], name)
    elif kind in _DEPTH:
        yield document
    else:
        raise InputError(f"{name} is not GeoJSON that holds annotations: found {_describe(document)}")


def map_document(document, matrix_xy):
    """A copy of ``document`` with every coordinate mapped by ``matrix_xy`` (our convention, pixel centres at
    integers; see the module doc). A mirroring matrix reverses the rings, so they keep their winding."""
    shift = transforms.translation(PIXEL_ORIGIN, PIXEL_ORIGIN)
    matrix = transforms.compose(transforms.invert(shift), matrix_xy, shift)
    mirrored = np.linalg.det(matrix[:2, :2]) < 0
    out = copy.deepcopy(document)
    for geometry in geometries(out):
        geometry["coordinates"] = _mapped(geometry["coordinates"], _DEPTH[geometry["type"]], matrix,
                                          _RINGS.get(geometry["type"]) if mirrored else None)
        if "bbox" in geometry:
            geometry["bbox"] = _bbox(geometry["coordinates"], _DEPTH[geometry["type"]])
    for feature in _features(out):
        if "bbox" in feature and feature.get("geometry"):
            feature["bbox"] = _bbox(feature["geometry"]["coordinates"], _DEPTH[feature["geometry"]["type"]])
    return out


def transfer_file(in_path, out_path, matrix_xy) -> int:
    """Map the annotations of ``in_path`` by ``matrix_xy`` into ``out_path`` (atomically); returns how many
    geometries were mapped."""
    document = read_geojson(in_path)
    mapped = map_document(document, matrix_xy)
    write_geojson(out_path, mapped)
    return sum(1 for _ in geometries(mapped))


def _mapped(coordinates, depth: int, matrix, reverse_at):
    """``coordinates`` (nested ``depth`` deep above the positions) mapped; lists at ``reverse_at`` reversed."""
    if depth == 0:
        x, y = transforms.apply_to_points(matrix, [coordinates[:2]])[0]
        return [float(x), float(y), *coordinates[2:]]  # a z (or m) value is kept as it is
    items = [_mapped(c, depth - 1, matrix, reverse_at) for c in coordinates]
    return items[::-1] if reverse_at is not None and depth == reverse_at else items


def _positions(coordinates, depth: int) -> list:
    return [coordinates] if depth == 0 else [p for c in coordinates for p in _positions(c, depth - 1)]


def _bbox(coordinates, depth: int) -> list[float]:
    xy = np.array([p[:2] for p in _positions(coordinates, depth)], float).reshape(-1, 2)
    return [*map(float, xy.min(axis=0)), *map(float, xy.max(axis=0))] if len(xy) else []


def _coordinates(geometry, name: str):
    """The checked coordinates of ``geometry``: nested lists, positions of ≥ 2 finite numbers."""
    kind, depth = geometry["type"], _DEPTH[geometry["type"]]
    coordinates = geometry.get("coordinates")
    try:
        positions = _positions(coordinates, depth)
        values = np.array([p[:2] for p in positions], float).reshape(-1, 2)
        ok = all(isinstance(p, list) and len(p) >= 2 for p in positions) and np.isfinite(values).all()
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise InputError(f"{name}: a {kind} whose coordinates are not lists of [x, y] numbers")
    return coordinates


def _features(document) -> list:
    if isinstance(document, list):
        return [f for item in document for f in _features(item)]
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        return _features(document.get("features") or [])
    return [document] if isinstance(document, dict) and document.get("type") == "Feature" else []


def _describe(value) -> str:
    if isinstance(value, dict):
        return f"an object of type {value.get('type')!r}" if "type" in value else "an object without a 'type'"
    return f"a JSON {type(value).__name__}"

