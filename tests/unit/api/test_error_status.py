"""Each outcome's HTTP status comes from one table, by class — never from an error's wording."""

from __future__ import annotations

import pytest

from shelfwise.api.app import STATUS_OF, status_of
from shelfwise.core.errors import (
    BadInputError,
    ConfigError,
    ConflictError,
    NotFoundError,
    ShelfwiseError,
    StoreError,
    UnavailableError,
)
from shelfwise.registry import (
    CorruptArtifactError,
    GateRefusedError,
    RegistryError,
    StoreMismatchError,
    UnknownVersionError,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadInputError("x"), 400),
        (ConfigError("x"), 400),
        (NotFoundError("x"), 404),
        (UnknownVersionError("no such version"), 404),
        (ConflictError("x"), 409),
        (RegistryError("no earlier version to roll back to"), 409),
        (GateRefusedError("worse than the active model"), 409),
        (CorruptArtifactError("checksum"), 409),
        (StoreMismatchError("another store"), 409),
        (UnavailableError("x"), 503),
        (StoreError("down"), 503),
    ],
)
def test_an_error_takes_the_status_of_its_outcome(error: ShelfwiseError, status: int) -> None:
    assert status_of(error) == status


def test_the_wording_does_not_decide_the_status() -> None:
    # the message an unknown version used to be recognised by, on a plain conflict: still a 409
    assert status_of(RegistryError("unknown model version 'v1'")) == 409
    assert status_of(UnknownVersionError("whatever it says")) == 404


def test_every_shelfwise_error_has_a_status() -> None:
    assert ShelfwiseError in STATUS_OF
    assert issubclass(UnknownVersionError, RegistryError)  # callers catching RegistryError still do
