"""Domain errors; one API handler maps each family to an HTTP status."""

from __future__ import annotations


class ThawlineError(Exception):
    """Base of all errors Thawline raises on purpose."""

    title = "Thawline error"


class NotFoundError(ThawlineError):
    """The thing asked for does not exist."""

    title = "Not found"


class ConflictError(ThawlineError):
    """The request is valid but the current state forbids it."""

    title = "Conflict"


class InvalidInputError(ThawlineError):
    """A field is wrong; ``field`` names it."""

    title = "Invalid input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PermissionDeniedError(ThawlineError):
    """The caller is known but may not do this."""

    title = "Forbidden"


class UnrecordedChangeError(ThawlineError):
    """A unit of work changed state without recording an operation-log entry."""

    title = "Unrecorded change"
