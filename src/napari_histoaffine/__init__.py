"""napari-histoaffine: learned affine registration of differently stained histology sections."""
__version__ = "0.1.0"
