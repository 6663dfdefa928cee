"""`shelfwise search-eval`, `search` and `search-labels` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA, SHARED
from tests.integration.test_cli import one_json, run

CROWDFLOWER = SHARED / "crowdflower_search"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("labels")
    proc = run("search-labels", "--out", str(out), "--json", cwd=out)
    report = one_json(proc)
    assert report["products"] == 20_000 and report["queries"] >= 30
    return out


def test_search_eval_bm25_on_the_flipkart_category_set(labelled: Path) -> None:
    report = one_json(
        run(
            "search-eval",
            "--products",
            str(labelled / "products.jsonl"),
            "--queries",
            str(labelled / "queries.tsv"),
            "--qrels",
            str(labelled / "qrels.txt"),
            "--mode",
            "bm25",
            "--min-grade",
            "2",
            "--json",
            cwd=labelled,
        )
    )
    assert report["mode"] == "bm25" and report["products"] == 20_000
    assert 0.3 < report["ndcg@10"] <= 1 and 0.3 < report["mrr@10"] <= 1 and 0 < report["recall@100"] <= 1
    assert report["qps"] > 10


@pytest.mark.shared_data
def test_search_eval_on_crowdflower_reads_it_in_place(tmp_path: Path) -> None:
    if not (CROWDFLOWER / "qrels.txt").exists():
        pytest.skip("Crowdflower search relevance set not in ../shared/data")
    proc = run(
        "search-eval",
        "--products",
        str(CROWDFLOWER / "products.jsonl.gz"),
        "--queries",
        str(CROWDFLOWER / "queries.tsv"),
        "--qrels",
        str(CROWDFLOWER / "qrels.txt"),
        "--mode",
        "bm25",
        "--json",
        cwd=tmp_path,
    )
    report = one_json(proc)
    assert report["queries"] == 261 and report["products"] == 9_913
    assert report["ndcg@10"] > 0.6 and report["recall@100"] > 0.8


def test_search_command_corrects_filters_and_facets(tmp_path: Path) -> None:
    products = DATA / "flipkart_1k" / "products.csv"
    # the vendored file has Flipkart's own columns: write it in the search format first
    rows = []
    import csv

    with products.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                {
                    "id": row["uniq_id"],
                    "title": row["product_name"],
                    "description": row["description"],
                    "category": row["product_category_tree"],
                    "brand": row["brand"],
                    "price": row["discounted_price"] or row["retail_price"],
                }
            )
    path = tmp_path / "products.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = one_json(run("search", "jaket under 1000", "--products", str(path), "--json", cwd=tmp_path))
    assert result["showing_results_for"] == "jacket"
    assert result["filters"] == {"price_max": 1000.0}
    assert result["hits"] and all(h["price"] <= 1000 for h in result["hits"])
    assert "jacket" in result["hits"][0]["title"]
    assert {f["value"] for f in result["facets"]["availability"]} == {"in stock"}
    human = run("search", "bellies", "--products", str(path), "--sort", "price_asc", cwd=tmp_path).stdout
    assert "bellies" in human and "matches" in human


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc: subprocess.CompletedProcess[str] = run(
        "search-eval",
        "--products",
        str(tmp_path / "nope.csv"),
        "--queries",
        str(tmp_path / "q.tsv"),
        "--qrels",
        str(tmp_path / "r.txt"),
        "--json",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
    bad_mode = run(
        "search-eval",
        "--products",
        "x",
        "--queries",
        "y",
        "--qrels",
        "z",
        "--mode",
        "magic",
        cwd=tmp_path,
        check=False,
    )
    assert bad_mode.returncode == 2 and "--mode must be one of" in bad_mode.stderr
