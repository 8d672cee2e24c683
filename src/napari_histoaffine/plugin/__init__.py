"""napari glue without Qt: readers and writers, layer geometry, inspection views, the session."""
