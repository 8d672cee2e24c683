"""The catalogue of structure families, and which of them belong to the development and final parts.

Whole families are held out of development (``FAMILY_PARTS["final"]``), so that a method tuned on
phantoms can finally be checked on tissue layouts it has never been tuned on.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .network_families import adipose, alveoli, fibres, liver, vessels
from .primitives import Structure
from .round_families import colloid, follicles, glands, lobules, nodules, tubules

Family = Callable[[tuple[int, int], np.random.Generator, float], Structure]

FAMILIES: dict[str, Family] = {family.__name__: family for family in (
    tubules, glands, vessels, alveoli, fibres, nodules, colloid, lobules, follicles, liver, adipose)}

FAMILY_PARTS: dict[str, tuple[str, ...]] = {
    "dev": ("tubules", "glands", "vessels", "alveoli", "fibres", "nodules", "colloid"),
    "final": ("lobules", "follicles", "liver", "adipose"),
}


def check_families(names) -> tuple[str, ...]:
    """``names`` as a tuple, or ValueError naming the unknown ones and the known ones."""
    names = tuple(names)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"Unknown structure families {unknown or '(none given)'}; known: {', '.join(FAMILIES)}")
    return names
