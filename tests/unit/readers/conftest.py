"""Shared fixtures for reader tests: where the real dataset files are, and reading one whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shelfwise.data.readers import FORMATS, ReadOptions
from shelfwise.data.readers.base import Draft, Problem
from shelfwise.data.readers.locate import default_shared_root, find_dataset_file

REPO_ROOT = Path(__file__).resolve().parents[3]

ReadAll = Callable[..., tuple[list[Draft], list[Problem]]]


def _dataset_file(name: str) -> Path:
    fmt = FORMATS[name]
    if fmt.redistributable:
        assert fmt.vendored is not None
        path = REPO_ROOT / fmt.vendored
        assert path.is_file(), f"{path} should be vendored"
        return path
    path = find_dataset_file(fmt, repo_root=REPO_ROOT, shared_root=default_shared_root(REPO_ROOT))
    if path is None:
        pytest.skip(f"{fmt.shared} is not in the shared data folder")
    return path


def _read_all(name: str, path: Path, opts: ReadOptions | None = None) -> tuple[list[Draft], list[Problem]]:
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for rec in FORMATS[name].read(path, opts or ReadOptions()):
        if isinstance(rec, Draft):
            drafts.append(rec)
        else:
            problems.append(rec)
    return drafts, problems


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def dataset_file() -> Callable[[str], Path]:
    """The vendored file of a redistributable format (it must be there); else the shared one, or skip."""
    return _dataset_file


@pytest.fixture
def read_all() -> ReadAll:
    """Every record of a file read by the named format, as (drafts, problems)."""
    return _read_all
