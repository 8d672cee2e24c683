"""Which network a registration uses: the shipped default, a weights file, a loaded model, or none."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .network import AffineNet, load_model

DEFAULT_WEIGHTS = "default.safetensors"


def default_weights_path() -> Path | None:
    """Path of the shipped weights, or None while the package ships none."""
    path = Path(str(resources.files(__package__) / "models" / DEFAULT_WEIGHTS))
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def load_default_model() -> AffineNet | None:
    """The shipped network, its sha256 checked against ``models/default.json``; None when none ships."""
    path = default_weights_path()
    if path is None:
        return None
    card = json.loads(path.with_suffix(".json").read_text())
    return load_model(path, expected_sha256=card["sha256"])


def resolve_model(model: str | Path | AffineNet | None) -> AffineNet | None:
    """Turn the ``model`` option of :func:`napari_histoaffine.pipeline.register` into a network (or None)."""
    if model is None or isinstance(model, AffineNet):
        return model
    if str(model) == "default":
        return load_default_model()
    path = Path(model).resolve()
    return _load_file(str(path), path.stat().st_mtime_ns if path.is_file() else 0)


@lru_cache(maxsize=4)
def _load_file(path: str, modified_ns: int) -> AffineNet:
    """Loaded once per file version: a file saved again under the same name is read again."""
    return load_model(path)
