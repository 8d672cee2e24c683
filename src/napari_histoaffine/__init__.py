"""napari-histoaffine: learned affine registration of differently stained histology sections.

``from napari_histoaffine import register, RegistrationOptions`` is the library's front door; the
names are imported on first use, so importing the package (as napari does to read the plugin
manifest) loads no torch.
"""
__version__ = "0.1.0"

_PUBLIC = {"register": "registration.pipeline", "register_steps": "registration.pipeline",
           "RegistrationOptions": "registration.options", "RegistrationResult": "registration.results",
           "Progress": "progress"}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
