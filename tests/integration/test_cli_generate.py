"""`shelfwise generate` feeds `shelfwise ingest` and `models train` as a user would run them: real
subprocesses of the installed command over a real SQLite store (issue 19, items 0 and 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_KEY

BIN = Path(sys.executable).parent / "shelfwise"


def _run(*args: str, var: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "SHELFWISE_PSEUDONYM_KEY": TEST_KEY,
        "SHELFWISE_PROGRESS": "0",
        "SHELFWISE_VAR_DIR": str(var),
        **env,
    }
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=300, env=full, check=False
    )


def test_generated_shop_is_ingested_whole_and_trained_by_auto(tmp_path: Path) -> None:
    var = tmp_path / "var"
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    out = tmp_path / "shop.csv.gz"
    gen = _run(
        "generate", "--events", "6000", "--items", "800", "--users", "600", "--seed", "3",
        "--out", str(out), "--json", var=var,
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    report = json.loads(gen.stdout)
    assert report["events"] == 6000 and report["types"]["purchase"] > 0 and report["retired_items"] > 0
    items = _run(
        "ingest", "items", report["items_file"], "--format", "csv-items", "--db", db, "--json", var=var
    )
    assert items.returncode == 0, items.stderr
    assert json.loads(items.stdout)["accepted"] == 800
    events = _run("ingest", "events", str(out), "--format", "csv", "--db", db, "--json", var=var)
    assert events.returncode == 0, events.stderr
    ingested = json.loads(events.stdout)
    assert ingested["accepted"] == 6000 and ingested["quarantined"] == 0

    # EASE refused in one line when the memory setting cannot hold it: no crash, no traceback
    refused = _run("models", "train", "--model", "ease", "--db", db, var=var, SHELFWISE_MEMORY_LIMIT="1MB")
    assert refused.returncode == 2
    error = [line for line in refused.stderr.splitlines() if line.startswith("shelfwise: error:")]
    assert len(error) == 1 and "ease" in error[0] and "SHELFWISE_MEMORY_LIMIT" in error[0]
    assert "Traceback" not in refused.stderr

    trained = _run("models", "train", "--no-bundles", "--db", db, "--json", var=var)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["model"] == "ease"  # auto: a small catalogue gets EASE
    assert "model auto: ease" in trained.stderr


def test_a_catalogue_without_events_gets_a_version_serve_can_start_with(tmp_path: Path) -> None:
    """Before this, `serve` (and `models train`) on a shop with items and no events stopped with
    "no user-item events to train on"."""
    var = tmp_path / "var"
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    out = tmp_path / "shop.csv"
    gen = _run("generate", "--events", "10", "--items", "300", "--users", "5", "--out", str(out), var=var)
    assert gen.returncode == 0, gen.stderr
    items = _run(
        "ingest", "items", str(tmp_path / "shop.items.csv"), "--format", "csv-items", "--db", db, var=var
    )
    assert items.returncode == 0, items.stderr
    trained = _run("models", "train", "--db", db, "--json", var=var)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)
    assert version["model"] == "content-tfidf" and version["activated"] and version["metrics"] == {}
    listed = _run("models", "list", "--json", var=var)
    assert json.loads(listed.stdout)["active"] == version["version"]
