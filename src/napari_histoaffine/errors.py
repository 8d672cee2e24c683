"""Errors that reach users as one clear line (CLI) or one notification (napari)."""


class HistoAffineError(Exception):
    """Base class: the message is written for the user and names the offending file or layer."""


class InputError(HistoAffineError):
    """Unreadable, missing, empty or inconsistent input."""
