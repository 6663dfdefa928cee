"""One error tree. Every error says what went wrong and what to do next.

The CLI turns any ``ShelfwiseError`` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback. The API answers each by its outcome: a class
below names one (bad input, not found, conflict, unavailable), and every error a component raises
derives from the outcome it means, the outcome listed first among its bases (``shelfwise.api.app``
holds the one table from outcome to HTTP status).
"""

from __future__ import annotations


class ShelfwiseError(Exception):
    """Base of every error shelfwise raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BadInputError(ShelfwiseError):
    """What the caller sent cannot be used as it is (HTTP 400)."""


class NotFoundError(ShelfwiseError):
    """What the caller named does not exist (HTTP 404)."""

    exit_code = 2


class ConflictError(ShelfwiseError):
    """The request contradicts the state it would change, or was refused by a check (HTTP 409)."""


class UnavailableError(ShelfwiseError):
    """Something the request needs does not answer now; retrying later may work (HTTP 503)."""


class ConfigError(ShelfwiseError):
    """Settings are missing or contradict each other."""

    exit_code = 2


class InputFileError(ShelfwiseError):
    """A file cannot be read at all, or is not the format it was said to be."""

    exit_code = 2


class UnknownFormatError(ShelfwiseError):
    """A dataset or file format name that shelfwise does not know."""

    exit_code = 2


class StoreError(UnavailableError):
    """The store cannot be opened, migrated or written."""

    exit_code = 3


class BackupError(ShelfwiseError):
    """A backup is missing, corrupt, or does not match what was restored."""

    exit_code = 4
