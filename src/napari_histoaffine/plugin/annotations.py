"""Annotations on napari layers (no Qt): GeoJSON ↔ Shapes/Points layers, and their transfer between sections.

An annotation layer belongs to one section (an image layer): its ``metadata[SECTION]`` names it, and its
data are that section's full-resolution pixels ``(row, col)`` once its data → world matrix is undone
against the section's. A GeoJSON document (see :mod:`napari_histoaffine.files.geojson`) becomes a Shapes
layer (polygons — a hole is one more polygon of the same feature —, multipolygons, lines) and a Points
layer (points); the features table keeps each shape's feature, part and ring, the original geometry type
and the feature's properties as JSON text, so a layer written back gives the same document. Shapes drawn
by hand become features of their own (``objectType`` annotation); rectangles and ellipses become polygons.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import transforms
from ..errors import InputError
from ..files.geojson import PIXEL_ORIGIN, geometries, map_document, read_geojson, write_geojson
from .layer_transforms import data_to_world_matrix, map_rowcol, rowcol_to_xy

SECTION = "histoaffine_section"  # metadata key: the name of the image layer an annotation layer belongs to
ELLIPSE_VERTICES = 64
DEFAULT_COLOUR = (1.0, 0.85, 0.0, 1.0)
_COLUMNS = ("feature", "part", "ring", "geometry", "name", "classification", "properties")
# what a shape drawn by hand gets: a feature of its own (napari would copy the first feature's values)
DRAWN = {"feature": -1, "part": 0, "ring": 0, "geometry": "", "name": "", "classification": "", "properties": ""}


def section_pixels_matrix(layer, section) -> np.ndarray:
    """``(row, col)`` matrix: ``layer``'s data → the ``section`` image's data pixels, as both are shown now."""
    return np.linalg.inv(data_to_world_matrix(section)) @ data_to_world_matrix(layer)


# ---------------------------------------------------------------- layers → GeoJSON
def layer_document(layer, to_section_rc=None) -> dict:
    """A FeatureCollection of a Shapes or Points ``layer``'s annotations in its section's pixels (GeoJSON
    coordinates); ``to_section_rc`` maps the layer's data to them (identity: the data are those pixels)."""
    matrix = np.eye(3) if to_section_rc is None else np.asarray(to_section_rc, float)
    table = layer.features
    rows = [{c: table[c].iloc[i] for c in _COLUMNS if c in table} for i in range(len(table))]
    from napari.layers import Points

    if isinstance(layer, Points):
        items = [("point", point[None]) for point in np.asarray(layer.data, float)]
    else:
        items = [("polygon" if kind in ("polygon", "rectangle", "ellipse") else "path", _outline(kind, np.asarray(d, float)))
                 for kind, d in zip(layer.shape_type, layer.data)]
    features, parts = [], {}
    for i, (kind, data_rc) in enumerate(items):
        xy = (rowcol_to_xy(map_rowcol(matrix, data_rc)) + PIXEL_ORIGIN).tolist()
        row = rows[i] if i < len(rows) else {}
        key = (row.get("feature"), row.get("part"))
        ring = _integer(row.get("ring"))
        polygon = kind == "polygon"
        if ring and polygon and key in parts and parts[key][1]:  # a hole of the part before it
            parts[key][0].append(xy + xy[:1])
            continue
        feature = _same_feature(features, row)
        coordinates = [xy + xy[:1]] if polygon else (xy[0] if kind == "point" else xy)
        if feature is None or feature["_kind"] != kind:
            feature = {"type": "Feature", "geometry": None, "properties": _properties(row),
                       "_id": row.get("feature"), "_kind": kind, "_parts": [], "_type": row.get("geometry")}
            features.append(feature)
        feature["_parts"].append(coordinates)
        if key[0] is not None and key not in parts:
            parts[key] = (coordinates, polygon)
    return {"type": "FeatureCollection", "features": [_finished(f) for f in features]}


def _outline(kind: str, data: np.ndarray) -> np.ndarray:
    """The vertices GeoJSON takes for a napari shape: an ellipse (its bounding box's corners) sampled."""
    if kind != "ellipse":
        return data
    centre = data.mean(axis=0)
    a, b = (data[1] + data[2]) / 2 - centre, (data[2] + data[3]) / 2 - centre
    t = np.linspace(0.0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b


def _same_feature(features, row):
    """The feature before, when ``row`` is a further part of it (same feature number, another part)."""
    if not features or row.get("feature") is None or features[-1]["_id"] != row.get("feature"):
        return None
    return features[-1] if str(features[-1]["_type"]).startswith("Multi") else None


def _finished(feature) -> dict:
    kind, parts, original = feature.pop("_kind"), feature.pop("_parts"), feature.pop("_type")
    feature.pop("_id")
    base = {"polygon": "Polygon", "point": "Point"}.get(kind, "LineString")
    multi = len(parts) > 1 or original == f"Multi{base}"
    feature["geometry"] = {"type": f"Multi{base}" if multi else base, "coordinates": parts if multi else parts[0]}
    return feature


def _properties(row) -> dict:
    text = row.get("properties")
    if isinstance(text, str) and text:
        try:
            return json.loads(text)
        except ValueError:
            pass
    out = {"objectType": "annotation"}
    if row.get("name"):
        out["name"] = str(row["name"])
    if row.get("classification"):
        out["classification"] = {"name": str(row["classification"])}
    return out


def _integer(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- GeoJSON → layers
def document_layers(document, name: str, data_to_world_rc, section_name: str) -> list[tuple]:
    """napari LayerData tuples for a GeoJSON document in a section's pixels: a Shapes layer for its polygons
    and lines, a Points layer for its points (each only when there are any), placed by ``data_to_world_rc``."""
    shapes, kinds, points, table = [], [], [], {"shapes": [], "points": []}
    for index, (feature, geometry) in enumerate(_feature_geometries(document)):
        kind = geometry["type"]
        parts = geometry["coordinates"] if kind.startswith("Multi") else [geometry["coordinates"]]
        for part_index, part in enumerate(parts):
            rings = part if kind.endswith("Polygon") else [part]
            for ring_index, ring in enumerate(rings):
                xy = np.array([p[:2] for p in (ring if not kind.endswith("Point") else [ring])], float) - PIXEL_ORIGIN
                row = _row(feature, index, part_index, ring_index, kind)
                if kind.endswith("Point"):
                    points.append(rowcol_to_xy(xy)[0])
                    table["points"].append(row)
                    continue
                if kind.endswith("Polygon") and len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
                    xy = xy[:-1]
                shapes.append(rowcol_to_xy(xy))
                kinds.append("polygon" if kind.endswith("Polygon") else "path")
                table["shapes"].append(row)
    affine, metadata = np.asarray(data_to_world_rc, float), {SECTION: section_name}
    out = []
    if shapes:
        colours = [_colour(row) for row in table["shapes"]]
        out.append((shapes, {"name": name, "shape_type": kinds, "features": _columns(table["shapes"]), "feature_defaults": DRAWN,
                             "edge_color": colours, "face_color": "transparent", "edge_width": 3,
                             "affine": affine, "metadata": dict(metadata)}, "shapes"))
    if points:
        out.append((np.array(points), {"name": f"{name} points", "features": _columns(table["points"]), "feature_defaults": DRAWN,
                                       "face_color": [_colour(row) for row in table["points"]], "size": 10,
                                       "affine": affine, "metadata": dict(metadata)}, "points"))
    return out


def _feature_geometries(document):
    """``(feature, geometry)`` for every mappable geometry (a bare geometry has no feature; a nucleus is skipped:
    it stays in its cell's properties)."""
    items = document if isinstance(document, list) else (
        document.get("features", []) if document.get("type") == "FeatureCollection" else [document])
    for item in items:
        feature = item if item.get("type") == "Feature" else {"properties": {}}
        geometry = item.get("geometry") if item.get("type") == "Feature" else item
        if geometry is not None:
            for g in geometries(geometry):
                yield feature, g


def _row(feature, index, part, ring, kind) -> dict:
    properties = feature.get("properties") or {}
    classification = properties.get("classification")
    return {"feature": index, "part": part, "ring": ring, "geometry": kind, "name": str(properties.get("name") or ""),
            "classification": str((classification or {}).get("name") or "") if isinstance(classification, dict)
            else str(classification or ""), "properties": json.dumps(properties), "_colour": _rgb(classification)}


def _rgb(classification):
    colour = classification.get("color") if isinstance(classification, dict) else None
    if isinstance(colour, list) and len(colour) == 3:
        return (*(float(v) / 255 for v in colour), 1.0)
    return DEFAULT_COLOUR


def _colour(row) -> tuple:
    return row.pop("_colour", DEFAULT_COLOUR)


def _columns(rows) -> dict:
    return {c: [row[c] for row in rows] for c in _COLUMNS}



# ---------------------------------------------------------------- onto sections
def add_annotations(session, document, name: str, section) -> list:
    """Add ``document`` (in the pixels of the image layer ``section``) as annotation layers on that section, as
    it is shown now; on the registered moving section they follow it (:meth:`RegistrationSession.bind`)."""
    from napari.layers import Layer

    added = [Layer.create(*data) for data in document_layers(document, name, data_to_world_matrix(section),
                                                             section.name)]
    if not added:
        raise InputError(f"'{name}' holds no annotations")
    for layer in added:
        session.layers.append(layer)
        if session.result is not None and section.unique_id == session.picked.moving.unique_id:
            session.bind(layer)
    return added


def transfer(session, source, from_moving: bool) -> list:
    """Annotations on one section of the shown registration (the moving one or the fixed one) → new layers on the
    other section. ``source`` is an annotation layer (drawn on the section as both are shown now) or the path of a
    GeoJSON file in the section's pixels. Raises InputError without a shown registration."""
    if session.result is None:
        raise InputError("Register (or apply a saved transform) first: transfer maps through the shown registration")
    fixed, moving = session.picked[:2]
    section, target = (moving, fixed) if from_moving else (fixed, moving)
    if isinstance(source, (str, Path)):
        document, name = read_geojson(source), Path(source).stem
    else:
        document, name = layer_document(source, section_pixels_matrix(source, section)), source.name
    matrix = session.result.matrix if from_moving else transforms.invert(session.result.matrix)
    return add_annotations(session, map_document(document, matrix), f"{name} on {target.name}", target)


def export_layer(layer, section, path) -> None:
    """Write ``layer``'s annotations in the pixels of the image layer ``section`` (as both are shown now) as GeoJSON."""
    write_geojson(path, layer_document(layer, section_pixels_matrix(layer, section)))

