"""The physical pixel size a slide file states, in µm: OME ``PhysicalSizeX/Y``, the SVS ``MPP``, OpenSlide's
``openslide.mpp-x/y`` and the TIFF resolution tags (per centimetre or inch; none without a unit)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from .openslide_levels import OPENSLIDE_SUFFIXES

_UNITS_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "micron": 1.0, "mm": 1e3, "cm": 1e4,
             "m": 1e6, "Å": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3}
_TIFF_UNIT_UM = {2: 25400.0, 3: 10000.0}  # ResolutionUnit inch, centimetre
_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")


def pixel_size_um(path) -> tuple[float, float] | None:
    """``(x, y)`` size of a full-resolution pixel of ``path`` in µm, or None when the file does not say."""
    p = Path(path)
    try:
        if p.suffix.lower() in OPENSLIDE_SUFFIXES:
            return _openslide(p)
        if p.suffix.lower() in (".tif", ".tiff", ".svs", ".ndpi", ".btf"):
            return _tiff(p)
    except Exception:  # noqa: BLE001 - a pixel size is a bonus: an unreadable one is no pixel size
        return None
    return None


def _tiff(path: Path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            size = _ome(tif.ome_metadata)
            if size:
                return size
        page = tif.pages[0]
        match = _SVS_MPP.search(page.description or "") if tif.is_svs else None
        if match:
            return _valid(float(match[1]), float(match[1]))
        tags = page.tags
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        if unit in _TIFF_UNIT_UM and "XResolution" in tags and "YResolution" in tags:
            rx, ry = (_ratio(tags[k].value) for k in ("XResolution", "YResolution"))
            if rx > 0 and ry > 0 and not (rx == ry == 1.0 or rx == ry == 72.0):  # defaults, not a scan's pixel
                return _valid(_TIFF_UNIT_UM[unit] / rx, _TIFF_UNIT_UM[unit] / ry)
    return None


def _ome(xml: str):
    root = ElementTree.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    x = float(pixels.attrib["PhysicalSizeX"]) * _UNITS_UM.get(pixels.attrib.get("PhysicalSizeXUnit", "µm"), 0.0)
    y = float(pixels.attrib.get("PhysicalSizeY", pixels.attrib["PhysicalSizeX"])) * _UNITS_UM.get(
        pixels.attrib.get("PhysicalSizeYUnit", pixels.attrib.get("PhysicalSizeXUnit", "µm")), 0.0)
    return _valid(x, y)


def _openslide(path: Path):
    from .openslide_levels import open_slide

    properties = open_slide(str(path)).properties
    if "openslide.mpp-x" not in properties:
        return None
    x = float(properties["openslide.mpp-x"])
    return _valid(x, float(properties.get("openslide.mpp-y", x)))


def _ratio(value) -> float:
    return value[0] / value[1] if isinstance(value, tuple) else float(value)


def _valid(x: float, y: float):
    return (float(x), float(y)) if 0 < x < 1e6 and 0 < y < 1e6 else None


def ome_physical_size(pixel_size_um) -> dict:
    """tifffile's OME ``metadata`` entries stating a pixel size in µm (none for None)."""
    if pixel_size_um is None:
        return {}
    return {"PhysicalSizeX": float(pixel_size_um[0]), "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": float(pixel_size_um[1]), "PhysicalSizeYUnit": "µm"}
