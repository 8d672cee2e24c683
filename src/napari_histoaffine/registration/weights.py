"""Network weights: safetensors files with a sha256 card, and which network a registration uses.

Models are stored as safetensors files; the JSON config (and optional extra information) lives in
the file's metadata, so loading needs no pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import InputError
from .network import AffineNet, NetworkConfig

_FORMAT = "napari-histoaffine/affinenet/1"


def file_sha256(path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(path, model: AffineNet, extra: dict | None = None) -> Path:
    """Write ``model`` as a safetensors file (config and ``extra`` as JSON metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": _FORMAT, "config": model.config.to_json(),
                "extra": json.dumps(extra if extra is not None else {}, sort_keys=True, default=str)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_model_metadata(path) -> dict:
    """The metadata of a saved model: ``{"config": dict, "extra": dict}``. Raises :class:`InputError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return {"config": json.loads(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}
    except FileNotFoundError:
        raise InputError(f"model file not found: {path}") from None
    except Exception as exc:
        raise InputError(f"{path} is not a valid napari-histoaffine model file ({exc})") from None


def load_model(path, expected_sha256: str | None = None) -> AffineNet:
    """Rebuild an :class:`AffineNet` from a file written by :func:`save_model` (strict, no pickle)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != expected_sha256.strip().lower():
            raise InputError(f"model file {path} has sha256 {actual}, expected {expected_sha256}: "
                             "the file is corrupt or not the expected model")
    meta = read_model_metadata(path)
    try:
        model = AffineNet(NetworkConfig.from_dict(meta["config"]))
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:
        raise InputError(f"{path} is not a valid napari-histoaffine model file ({exc})") from None
    model.eval()
    return model


DEFAULT_WEIGHTS = "default.safetensors"


def default_weights_path() -> Path | None:
    """Path of the shipped weights, or None while the package ships none."""
    path = Path(str(resources.files("napari_histoaffine") / "models" / DEFAULT_WEIGHTS))
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
    """Turn the ``model`` option of :func:`napari_histoaffine.registration.pipeline.register` into a network (or None)."""
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
