"""Where a dataset's file lies: vendored under the repository's ``data/``, or in the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

from shelfwise.data.readers.base import DatasetFormat

SHARED_ENV = "SHELFWISE_SHARED_DATA"


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) with a ``pyproject.toml``, else ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return here


def default_shared_root(repo_root: Path | None = None) -> Path:
    """``$SHELFWISE_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env)
    return (repo_root or find_repo_root()).parent / "shared" / "data"


def find_dataset_file(
    fmt: DatasetFormat, *, repo_root: Path | None = None, shared_root: Path | None = None
) -> Path | None:
    """The vendored copy of ``fmt``'s file when there is one, else the shared copy, else None."""
    root = repo_root if repo_root is not None else find_repo_root()
    if fmt.vendored:
        path = root / fmt.vendored
        if path.is_file():
            return path
    if fmt.shared:
        base = shared_root if shared_root is not None else default_shared_root(root)
        path = base / fmt.shared
        if path.is_file():
            return path
    return None
