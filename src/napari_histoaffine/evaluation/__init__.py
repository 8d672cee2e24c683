"""Many registrations at once: landmark metrics, table evaluation, dask batches, series."""
