"""`shelfwise evaluate` as a user runs it: a real subprocess of the installed command, on real data
(Online Retail purchases written in the common sequence format, and a store filled by ingest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.unit.recommend.slices import retail_sequences_file

BIN = Path(sys.executable).parent / "shelfwise"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHELFWISE_PSEUDONYM_KEY": TEST_KEY, "SHELFWISE_PROGRESS": "0"}
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def sequences() -> Path:
    return retail_sequences_file()


def test_evaluate_prints_metrics_as_one_json_object(sequences: Path, tmp_path: Path) -> None:
    out = _run(
        "evaluate",
        "--data",
        str(sequences),
        "--format",
        "sequences",
        "--protocol",
        "loo",
        "--model",
        "itemknn",
        "--compare",
        "popular",
        "--json",
        "--report",
        str(tmp_path / "rep"),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    for key in ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "train_seconds", "mrr", "auc", "coverage@10"):
        assert isinstance(payload[key], float), key
    assert 0 < payload["ndcg@10"] <= payload["recall@10"] <= payload["recall@20"] <= 1
    assert payload["users"] > 500 and payload["protocol"] == "loo"
    assert payload["recall@10"] > payload["compare"]["recall@10"]  # item-KNN beats popularity here
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "metrics_at_k.png").is_file()
    assert "Traceback" not in out.stderr


def test_evaluate_on_the_store_uses_a_temporal_split(retail_slice: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    ingest = _run("ingest", "events", str(retail_slice), "--format", "online-retail", "--db", db, "--json")
    assert ingest.returncode == 0, ingest.stderr
    out = _run("evaluate", "--db", db, "--model", "popular", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["protocol"] == "temporal" and payload["users"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/file.txt"], "no such file"),
        (["--data", "{seq}", "--model", "sasrec-typo"], "unknown model 'sasrec-typo'"),
        (["--data", "{retail}", "--format", "sequences"], "not a sequences"),
        (["--data", "{seq}", "--format", "no-such-format"], "unknown format"),
        (["--data", "{seq}", "--protocol", "kfold"], "unknown protocol"),
        (["--data", "{seq}", "--config", "{not json"], "--config is not JSON"),
        (["--data", "{seq}", "--model", "ease", "--config", '{"lambda": 3}'], "lambda"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(sequences: Path, args: list[str], message: str) -> None:
    retail = Path(__file__).resolve().parents[2] / "data" / "online_retail" / "online_retail.csv.gz"
    args = [a.replace("{seq}", str(sequences)).replace("{retail}", str(retail)) for a in args]
    out = _run("evaluate", *args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""
