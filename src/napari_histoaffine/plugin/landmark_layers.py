"""Landmark Points layers without Qt: numbers of their own that never repeat, and the image a landmark file
belongs to.

A landmark's number is its ``index`` feature (what the canvas labels and the Register dock's table show).
napari gives a point added by hand a copy of the selected point's features, so after deleting #3 and
adding a point two different points could read #3 in turn; :func:`number_landmarks` gives every added
point the next number never used in its layer instead.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

INDEX = "index"
NEXT, COUNT = "histoaffine_next_landmark", "histoaffine_landmark_count"  # layer metadata kept by the numbering
IMAGE = "histoaffine_landmarks_of"  # layer metadata: the name of the image layer a landmark layer belongs to


def number_landmarks(layer) -> None:
    """Number ``layer``'s points for good: an ``index`` feature (0, 1, … where it has none) and, from now on,
    each point added gets the next number never used in the layer. Safe to call again."""
    count = len(layer.data)
    if INDEX not in layer.features:
        layer.features = layer.features.assign(**{INDEX: np.arange(count)})
    ids = layer.features[INDEX].to_numpy()
    layer.metadata[NEXT] = max(layer.metadata.get(NEXT, 0), int(ids.max()) + 1 if count else 0)
    layer.metadata[COUNT] = count
    layer.events.data.disconnect(_renumber)
    layer.events.data.connect(_renumber, position="first")  # before anything that reads the numbers


def _renumber(event) -> None:
    layer = event.source
    if str(getattr(event, "action", "")).endswith("ing"):  # adding / removing / changing: not done yet
        return
    count, before = len(layer.data), layer.metadata.get(COUNT, 0)
    if count > before and INDEX in layer.features:
        ids = layer.features[INDEX].to_numpy().copy()
        start = layer.metadata.get(NEXT, 0)
        ids[before:] = np.arange(start, start + count - before)
        layer.features = layer.features.assign(**{INDEX: ids})
        layer.metadata[NEXT] = start + count - before
    layer.metadata[COUNT] = count


def landmark_name(path) -> str:
    """A landmark file's layer name: its own name, never an image's (``S1_HE.csv`` → ``S1_HE landmarks``)."""
    return f"{Path(path).name.split('.')[0]} landmarks"


def _words(name: str) -> str:
    return " ".join(re.split(r"[\W_]+", name.lower())).strip()


def matching_image(landmark_file, image_names) -> str | None:
    """The image layer a landmark file belongs to, by name: the one named as the file (``S1_HE.csv`` ↔ ``S1_HE``),
    else the one whose name starts or ends the file's name or is started or ended by it, compared word by word
    (``S1_HE_landmarks.csv`` ↔ ``S1_HE``). None when no image or more than one image fits: no guess."""
    stem = _words(Path(landmark_file).name.split(".")[0])
    names = list(dict.fromkeys(image_names))
    exact = [n for n in names if _words(n) == stem]
    if exact:
        return exact[0] if len(exact) == 1 else None
    near = [n for n in names if _words(n) and any(a.startswith(b + " ") or a.endswith(" " + b) for a, b in
                                                     ((stem, _words(n)), (_words(n), stem)))]
    return near[0] if len(near) == 1 else None
