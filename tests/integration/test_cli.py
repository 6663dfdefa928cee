"""The ``shelfwise`` command as a user runs it: a real process, real files, real stores."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

BIN = Path(sys.executable).parent / "shelfwise"


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHELFWISE_PSEUDONYM_KEY": TEST_KEY, "SHELFWISE_VAR_DIR": str(cwd / "var")}
    env.pop("SHELFWISE_CONFIG", None)
    proc = subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_ingest_json_counts_and_second_run_adds_nothing(tmp_path: Path, retail_slice: Path) -> None:
    first = one_json(
        run("ingest", "events", str(retail_slice), "--format", "online-retail", "--json", cwd=tmp_path)
    )
    for key in ("accepted", "quarantined", "duplicates"):
        assert isinstance(first[key], int)
    assert first["accepted"] + first["quarantined"] + first["duplicates"] == 3000
    assert first["reasons"] and all(isinstance(v, int) for v in first["reasons"].values())
    assert sum(first["reasons"].values()) == first["quarantined"]
    assert (tmp_path / "var" / "shelfwise.db").exists()  # the embedded default store
    second = one_json(
        run("ingest", "events", str(retail_slice), "-f", "online-retail", "--json", cwd=tmp_path)
    )
    assert second["accepted"] == 0
    assert second["duplicates"] == first["accepted"] + first["duplicates"]


def test_bad_records_are_quarantined_and_the_rest_goes_in(tmp_path: Path, retail_slice: Path) -> None:
    lines = retail_slice.read_bytes().splitlines(keepends=True)[:101]
    bad = [
        b"536999,85123A,MUG,six,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n",  # quantity not a number
        b"536999,85123A,MUG,6,2010-13-45 08:26:00,2.55,17850.0,United Kingdom\n",  # impossible date
        b"536999,85123A,MUG,6,2010-12-01 08:26:00,nan,17850.0,United Kingdom\n",  # NaN price
        b"536999,85123A,MUG\n",  # too few fields
        b"536999,85123A,MUG \xff\xfe,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n",  # not UTF-8
    ]
    path = tmp_path / "mixed.csv.gz"
    path.write_bytes(gzip.compress(b"".join(lines[:50] + bad + lines[50:])))
    out = one_json(run("ingest", "events", str(path), "-f", "online-retail", "--json", cwd=tmp_path))
    clean = one_json(
        run(
            "ingest",
            "events",
            str(retail_slice),
            "-f",
            "online-retail",
            "--limit",
            "100",
            "--json",
            "--db",
            f"sqlite:///{tmp_path / 'clean.db'}",
            cwd=tmp_path,
        )
    )
    assert out["records"] == 105
    assert out["quarantined"] == clean["quarantined"] + 5
    assert out["accepted"] == clean["accepted"]  # every good neighbour kept
    for reason in ("bad_type", "bad_timestamp", "not_finite", "malformed_record", "invalid_utf8"):
        assert out["reasons"].get(reason, 0) >= 1, reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b'{"session": 1, "events": []}\n', "not a valid Online Retail file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a valid Online Retail file"),
        (gzip.compress(b"InvoiceNo,StockCode\n" * 5000)[:300], "unreadable"),
    ],
)
def test_unreadable_files_fail_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    proc = run("ingest", "events", str(path), "-f", "online-retail", "--json", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr and str(path) in proc.stderr


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    for args in (
        ["ingest", "events", str(tmp_path / "missing.csv"), "-f", "online-retail"],
        ["ingest", "events", str(tmp_path), "-f", "no-such-format"],
        ["ingest", "events", str(tmp_path), "-f", "online-retail", "--db", "mysql://x/y"],
        ["restore", str(tmp_path)],
        ["serve", "--db", f"sqlite:///{tmp_path / 'typo.db'}", "--no-train", "--port", "1"],
    ):
        proc = run(*args, cwd=tmp_path, check=False)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "typo.db").exists()  # serve made no empty store out of a typo


def test_quality_report_writes_json_markdown_and_plot(tmp_path: Path, retail_slice: Path) -> None:
    run("ingest", "events", str(retail_slice), "-f", "online-retail", cwd=tmp_path)
    report = one_json(run("quality-report", "--out", str(tmp_path / "q"), "--json", cwd=tmp_path))
    assert report["quarantine"]["total"] > 0
    assert set(report["quarantine"]["by_reason"]) >= {"non_product_item"}
    assert report["conversions"]["cancellation_to_return"] > 0
    assert (tmp_path / "q" / "quality_report.png").stat().st_size > 5000
    markdown = (tmp_path / "q" / "quality_report.md").read_text()
    assert "## Quarantine" in markdown and "non_product_item" in markdown
    human = run("quality-report", "--out", str(tmp_path / "q2"), cwd=tmp_path).stdout
    assert human.startswith("# Data quality report")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_backup_and_restore_commands(
    tmp_path: Path, retail_slice: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    from tests.contract.test_store_contract import _second_pg_database

    source = (
        f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    )
    target = f"sqlite:///{tmp_path / 'b.db'}" if backend == "sqlite" else _second_pg_database(request)
    run("ingest", "events", str(retail_slice), "-f", "online-retail", "--db", source, cwd=tmp_path)
    made = one_json(run("backup", "--db", source, "--out", str(tmp_path / "bk"), "--json", cwd=tmp_path))
    back = one_json(run("restore", str(tmp_path / "bk"), "--db", target, "--json", cwd=tmp_path))
    assert back["verified"] is True
    for name, entry in made["tables"].items():
        assert back["tables"][name] == {"rows": entry["rows"], "checksum": entry["checksum"]}


def test_datasets_lists_every_format(tmp_path: Path) -> None:
    out = one_json(run("datasets", "--json", cwd=Path(__file__).resolve().parents[2]))
    formats = {f["format"]: f for f in out["formats"]}
    assert formats["online-retail"]["path"].endswith("online_retail.csv.gz")
    assert formats["online-retail"]["redistributable"] is True


def test_generic_csv_with_a_column_mapping(tmp_path: Path) -> None:
    """A shop's own export: its own column names, unix seconds, a bad row in the middle."""
    path = tmp_path / "clicks.csv"
    path.write_text(
        "customer;product;action;when;amount\n"
        "c1;sku-1;add_to_cart;1700000000;19.99\n"
        "c1;sku-2;pv;1700000060;\n"
        "c2;sku-1;teleport;1700000120;5\n"
        "c2;sku-1;buy;1700000180;19.99\n"
    )
    maps = [
        "--map",
        "user_id=customer",
        "--map",
        "item_id=product",
        "--map",
        "type=action",
        "--map",
        "ts=when",
        "--map",
        "price=amount",
    ]
    out = one_json(
        run(
            "ingest",
            "events",
            str(path),
            "-f",
            "csv",
            *maps,
            "--ts-unit",
            "s",
            "--delimiter",
            ";",
            "--json",
            cwd=tmp_path,
        )
    )
    assert (out["accepted"], out["quarantined"]) == (3, 1)
    assert out["reasons"] == {"unknown_event_type": 1}
    bad = run(
        "ingest", "events", str(path), "-f", "csv", "--map", "user_id", "--json", cwd=tmp_path, check=False
    )
    assert bad.returncode != 0 and "FIELD=COLUMN" in bad.stderr and "Traceback" not in bad.stderr


def test_sequence_files_flag_no_bots_and_queries_are_not_ingested(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("u1 " + " ".join(f"i{n}" for n in range(100)) + "\nu2 i1 i2 i3\n")
    out = one_json(run("ingest", "events", str(path), "-f", "sequences", "--json", cwd=tmp_path))
    assert (out["accepted"], out["users"], out["flagged_users"]) == (103, 2, 0)
    wands = Path(__file__).resolve().parents[2] / "data" / "wands" / "query.csv"
    proc = run("ingest", "events", str(wands), "-f", "wands", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "search queries, which are not stored" in proc.stderr


def test_models_train_deploys_the_settings_and_precision_evaluate_measures(
    tmp_path: Path, retail_slice: Path
) -> None:
    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    settings = '{"model": "als", "factors": 16, "iterations": 3}'
    trained = one_json(
        run(
            "models",
            "train",
            "--no-bundles",
            "--force",
            "--config",
            settings,
            "--precision",
            "int8",
            "--json",
            cwd=tmp_path,
        )
    )
    assert trained["config"]["recommender"]["serving_precision"] == "int8"
    assert trained["config"]["recommender"]["factors"] == 16
    # a model without factor matrices cannot be served at another precision: one line, non-zero
    refused = run("models", "train", "--model", "ease", "--precision", "int8", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "keeps no factor matrices" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = run("models", "train", "--config", "[1, 2]", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "must be a JSON object" in bad.stderr


def test_an_order_export_with_no_type_column_loads_with_a_constant_type(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "when,sku,customer,amount\n2024-01-01T10:00:00,A1,c1,3.50\n2024-01-02T10:00:00,A2,c1,4\n"
    )
    mapped = [
        "--map",
        "ts=when",
        "--map",
        "item_id=sku",
        "--map",
        "user_id=customer",
        "--map",
        "price=amount",
    ]
    refused = run("ingest", "events", str(orders), "--format", "csv", *mapped, cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "type" in refused.stderr  # no type column, no --type: one line
    report = one_json(
        run(
            "ingest",
            "events",
            str(orders),
            "--format",
            "csv",
            *mapped,
            "--type",
            "purchase",
            "--json",
            cwd=tmp_path,
        )
    )
    assert report["accepted"] == 2 and report["quarantined"] == 0
    bad = run(
        "ingest", "events", str(orders), "-f", "csv", *mapped, "--type", "bought", cwd=tmp_path, check=False
    )
    assert bad.returncode != 0 and "unknown event type" in bad.stderr and "Traceback" not in bad.stderr


def test_index_versions_build_list_rollback_activate_and_refuse_bad_input(
    tmp_path: Path, retail_slice: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`shelfwise index …` as an operator runs it, sharded and not, on the embedded store."""
    monkeypatch.delenv("SHELFWISE_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("SHELFWISE_SHARD_ENGINE", raising=False)
    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    first = one_json(run("index", "build", "--mode", "bm25", "--json", cwd=tmp_path))
    second = one_json(
        run("index", "build", "--mode", "bm25", "--shards", "2", "--force", "--json", cwd=tmp_path)
    )
    assert (
        first["items"] == second["items"] > 0 and second["active"] and first["version"] != second["version"]
    )
    listed = one_json(run("index", "list", "--json", cwd=tmp_path))
    assert listed["active"] == second["version"]
    assert {v["version"] for v in listed["versions"]} == {first["version"], second["version"]}
    assert one_json(run("index", "rollback", "--json", cwd=tmp_path))["active"] == first["version"]
    assert (
        one_json(run("index", "activate", second["version"], "--json", cwd=tmp_path))["active"]
        == (second["version"])
    )
    refused = run("index", "activate", "no-such-version", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "no search index version 'no-such-version'" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    # the release gate can require a search experiment: an interleaving one with no clicks yet
    # refuses, --force activates anyway and says what the gate said
    created = run(
        "experiment",
        "create",
        "--name",
        "next-index",
        "--placement",
        "search",
        "--kind",
        "interleaving",
        "--arm",
        "current:0.5",
        "--arm",
        f"next:0.5::{first['version']}",
        cwd=tmp_path,
    )
    assert created.returncode == 0
    gated = run(
        "index", "activate", first["version"], "--require-experiment", "next-index", cwd=tmp_path, check=False
    )
    assert gated.returncode != 0 and "release gate refused" in gated.stderr
    assert "does not yet credibly prefer next" in gated.stderr and len(gated.stderr.strip().splitlines()) == 1
    assert one_json(run("index", "list", "--json", cwd=tmp_path))["active"] == second["version"]
    forced = one_json(
        run(
            "index",
            "activate",
            first["version"],
            "--require-experiment",
            "next-index",
            "--force",
            "--json",
            cwd=tmp_path,
        )
    )
    assert forced["active"] == first["version"] and forced["experiment_gate"]["passed"] is False
    # shard actors live on a Ray cluster only: without its address the command says so
    env_free = run("index", "actors", cwd=tmp_path, check=False)
    assert env_free.returncode == 2 and "SHELFWISE_RAY_ADDRESS is not set" in env_free.stderr


def test_models_activate_gives_a_version_without_top_lists_its_lists_first(
    tmp_path: Path, retail_slice: Path
) -> None:
    """A version trained without top lists (older code, `evaluate`, `dp train`; here `--top-lists
    0`) is batch-scored when activated, so servers slice lists instead of scoring shoppers a few at a
    time; the lists are those the model recommends, and `--no-lists` skips them."""
    from shelfwise.registry import ModelRegistry
    from shelfwise.registry.toplists import load_top_lists

    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    train = ("models", "train", "--no-bundles", "--no-card-robustness", "--top-lists", "0", "--force")
    train = (*train, "--json")
    first = one_json(run(*train, "--model", "itemknn", cwd=tmp_path))["version"]
    second = one_json(run(*train, "--model", "popular", cwd=tmp_path))["version"]
    registry = ModelRegistry(tmp_path / "var" / "models")
    assert load_top_lists(registry.info(first).path) is None and registry.active == second

    out = one_json(run("models", "activate", first, "--json", cwd=tmp_path))
    assert out["active"] == first and registry.active == first
    assert out["top_lists"]["k"] == 50 and out["top_lists"]["users"] > 50
    lists = load_top_lists(registry.info(first).path)
    model = registry.load(first).recommender
    assert lists is not None and lists.items.shape[0] == len(model.user_map)
    for row in (0, len(model.user_map) // 2, len(model.user_map) - 1):
        user = str(model.user_map.external[row])
        shown = lists.items[row][lists.items[row] >= 0]
        assert model.item_map.to_external(shown) == model.recommend([user], 50)[0].items
    assert registry.verify(first) == []  # the lists are listed with their checksums
    again = one_json(run("models", "activate", first, "--json", cwd=tmp_path))
    assert "top_lists" not in again  # already there: not scored twice

    skipped = one_json(run("models", "activate", second, "--no-lists", "--force", "--json", cwd=tmp_path))
    assert "top_lists" not in skipped and load_top_lists(registry.info(second).path) is None
    assert registry.active == second
    unknown = run("models", "activate", "no-such-version", cwd=tmp_path, check=False)
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
