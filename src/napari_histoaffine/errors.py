"""Errors that reach users as one clear line (CLI) or one notification (napari)."""


class HistoAffineError(Exception):
    """Base class: the message is written for the user and names the offending file or layer."""


class InputError(HistoAffineError):
    """Unreadable, missing, empty or inconsistent input."""


class UnusableImageError(InputError):
    """An image with nothing to register: too small, no finite pixels, blank or uniform, or no visible tissue.

    ``role`` is ``"moving"`` or ``"fixed"``; ``problem`` says what is wrong; :meth:`named` puts the file
    or layer name into the message (the engine does not know it).
    """

    def __init__(self, role: str, problem: str, name: str | None = None):
        self.role, self.problem = role, problem
        super().__init__(f"The {role} image{f' {name!r}' if name else ''} {problem}")

    def named(self, name) -> "UnusableImageError":
        """The same error naming the image's file or layer."""
        return UnusableImageError(self.role, self.problem, str(name))
