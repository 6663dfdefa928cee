"""`shelfwise placements …` through the real command on the embedded store (the same service runs on
PostgreSQL in ``test_merchandising_store.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli import one_json, run


@pytest.fixture
def db(tmp_path: Path, retail_slice: Path, sqlite_url: str) -> str:
    run("ingest", "events", str(retail_slice), "--format", "online-retail", "--db", sqlite_url, cwd=tmp_path)
    return sqlite_url


def test_list_set_show_and_roll_back(tmp_path: Path, db: str) -> None:
    listed = one_json(run("placements", "list", "--db", db, "--json", cwd=tmp_path))
    assert [p["name"] for p in listed["placements"]][:3] == ["home", "product", "cart"]
    assert all(p["version"] == 0 for p in listed["placements"])

    pin = json.dumps({"kind": "pin", "item_id": "85123A", "position": 1})
    added = one_json(run("placements", "rules", "home", "--add", pin, "--db", db, "--json", cwd=tmp_path))
    assert added["version"] == 1 and added["rules"][0]["item_id"] == "85123A"
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": [{"kind": "block", "brands": ["acme"]}]}))
    replaced = one_json(
        run("placements", "rules", "home", "--set", f"@{rules_file}", "--db", db, "--json", cwd=tmp_path)
    )
    assert replaced["version"] == 2 and replaced["rules"][0]["kind"] == "block"
    shown = one_json(run("placements", "show", "home", "--version", "1", "--db", db, "--json", cwd=tmp_path))
    assert shown["rules"]["rules"][0]["kind"] == "pin"
    back = one_json(run("placements", "rollback", "home", "1", "--db", db, "--json", cwd=tmp_path))
    assert back["version"] == 3 and back["rules"]["rules"][0]["kind"] == "pin"
    text = run("placements", "show", "home", "--db", db, cwd=tmp_path).stdout
    assert "home (version 3)" in text and "pin" in text
    hist = one_json(run("placements", "show", "home", "--history", "--db", db, "--json", cwd=tmp_path))
    assert [v["version"] for v in hist["versions"]] == [3, 2, 1]

    settings = json.dumps({"synonyms": [{"terms": ["lantern", "lamp"]}], "stop_words": ["the"]})
    saved = one_json(run("placements", "search", "--set", settings, "--db", db, "--json", cwd=tmp_path))
    assert saved["version"] == 1 and saved["synonyms"][0]["terms"] == ["lantern", "lamp"]


def test_user_errors_are_one_line_and_non_zero(tmp_path: Path, db: str) -> None:
    unknown = run("placements", "show", "checkout", "--db", db, cwd=tmp_path, check=False)
    assert unknown.returncode != 0 and "no placement 'checkout'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    bad_item = run(
        "placements",
        "rules",
        "home",
        "--add",
        '{"kind": "pin", "item_id": "NOPE", "position": 1}',
        "--db",
        db,
        cwd=tmp_path,
        check=False,
    )
    assert bad_item.returncode == 2 and "rules[0].item_id: no item 'NOPE'" in bad_item.stderr
    bad_json = run("placements", "set", "home", "--config", "{k: 5}", "--db", db, cwd=tmp_path, check=False)
    assert bad_json.returncode == 2 and "--config is not JSON" in bad_json.stderr
    bad_field = run(
        "placements", "set", "home", "--config", '{"k": 0}', "--db", db, cwd=tmp_path, check=False
    )
    assert bad_field.returncode == 2 and "k: Input should be greater than or equal to 1" in bad_field.stderr
