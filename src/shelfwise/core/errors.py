"""One error tree. Every error says what went wrong and what to do next.

The CLI turns any ``ShelfwiseError`` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
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


class ConfigError(ShelfwiseError):
    """Settings are missing or contradict each other."""

    exit_code = 2


class InputFileError(ShelfwiseError):
    """A file cannot be read at all, or is not the format it was said to be."""

    exit_code = 2


class UnknownFormatError(ShelfwiseError):
    """A dataset or file format name that shelfwise does not know."""

    exit_code = 2


class StoreError(ShelfwiseError):
    """The store cannot be opened, migrated or written."""

    exit_code = 3


class BackupError(ShelfwiseError):
    """A backup is missing, corrupt, or does not match what was restored."""

    exit_code = 4


class NotFoundError(ShelfwiseError):
    """The thing asked for (a placement, a version…) does not exist; the API answers 404."""

    exit_code = 2
