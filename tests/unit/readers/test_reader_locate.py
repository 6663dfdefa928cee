from __future__ import annotations

from shelfwise.data.readers import FORMATS
from shelfwise.data.readers.locate import SHARED_ENV, default_shared_root, find_dataset_file, find_repo_root


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_vendored_first_then_shared_then_none(tmp_path) -> None:
    fmt = FORMATS["otto"]
    repo, shared = tmp_path / "repo", tmp_path / "shared"
    assert find_dataset_file(fmt, repo_root=repo, shared_root=shared) is None
    shared_file = _touch(shared / "otto_fixture" / "train.jsonl")
    assert find_dataset_file(fmt, repo_root=repo, shared_root=shared) == shared_file
    vendored = _touch(repo / "data" / "otto" / "train.jsonl")
    assert find_dataset_file(fmt, repo_root=repo, shared_root=shared) == vendored


def test_research_only_sets_are_looked_up_in_shared_only(tmp_path) -> None:
    fmt = FORMATS["taobao"]
    assert fmt.vendored is None
    shared_file = _touch(tmp_path / "s" / "taobao_sample" / "UserBehavior.csv")
    assert find_dataset_file(fmt, repo_root=tmp_path / "r", shared_root=tmp_path / "s") == shared_file
    assert find_dataset_file(FORMATS["sequences"], repo_root=tmp_path, shared_root=tmp_path) is None


def test_default_roots(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "work" / "main"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.chdir(repo / "src" / "pkg")
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert find_repo_root() == repo.resolve()
    assert default_shared_root() == repo.resolve().parent / "shared" / "data"
    shared_file = _touch(tmp_path / "work" / "shared" / "data" / "wands_queries" / "query.csv")
    assert find_dataset_file(FORMATS["wands"]) == shared_file.resolve()
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "elsewhere"))
    assert default_shared_root() == tmp_path / "elsewhere"
    assert find_dataset_file(FORMATS["wands"]) is None


def test_no_pyproject_means_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = find_repo_root()
    assert root == tmp_path.resolve() or (root / "pyproject.toml").is_file()
