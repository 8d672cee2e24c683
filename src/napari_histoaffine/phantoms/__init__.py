"""Phantom specimens: synthetic histology with exact ground truth, for developing, testing and
training the registration engine on unlimited data.

A seeded :func:`make_specimen` builds one piece of organ-like tissue from 1–3 structure families
(:data:`FAMILIES`) with landmark points; :func:`make_sections` cuts it into consecutive sections,
each slightly distorted and in its own random stain (bright-field or fluorescence), with the
landmarks mapped exactly; :func:`write_dataset` (and ``python -m napari_histoaffine.phantoms``)
writes them in the layout of the shared ANHIR case. Whole families are kept for a final part
(:data:`FAMILY_PARTS`).
"""
from __future__ import annotations

from .dataset import write_dataset
from .families import FAMILIES, FAMILY_PARTS
from .sections import Section, make_sections, render_section
from .specimen import Specimen, make_specimen
from .stains import STYLES

__all__ = ["FAMILIES", "FAMILY_PARTS", "STYLES", "Section", "Specimen", "make_sections", "make_specimen",
           "render_section", "write_dataset"]
