"""The marketing list with the shop's own customer ids: only ``admin`` gets it, through the real
app (``mount_pages`` over a real SQLite store filled from a slice of Online Retail) and the CLI.

The store keeps pseudonyms only, so the list comes back with a shop's id only for ids the shop
sends; a shopper erased from the store never comes back, even from a list built before."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shelfwise.core.access import KeyRing, Role
from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import get_format
from shelfwise.store import open_store
from shelfwise.store.analytical import sqlite_path
from shelfwise.store.ingest import ingest_events
from shelfwise.web.access import PageAccess
from shelfwise.web.pages import mount_pages
from tests.conftest import TEST_KEY
from tests.integration.api_fixtures import API_KEY, Served
from tests.integration.test_cli import one_json, run

PSEUDO = Pseudonymizer(TEST_KEY.encode())
KEPT, ERASED, NOT_SENT = "17850", "13047", "12583"  # customers on the slice's first invoices


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, retail_slice: Path) -> Path:
    root = tmp_path_factory.mktemp("marketing_shop")
    settings = Settings(var_dir=root / "var", pseudonym_key=TEST_KEY)
    with open_store(f"sqlite:///{root / 'var' / 'shelfwise.db'}") as store:
        ingest_events(store, retail_slice, get_format("online-retail"), settings)
        assert PSEUDO(ERASED) in _store_users(root / "var" / "shelfwise.db")
        store.delete_user(PSEUDO(ERASED))  # erased after the lists below were "built"
    return root


def _store_users(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            row[0] for row in conn.execute("SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL")
        }


def _write_list(path: Path, db: Path) -> list[str]:
    """A marketing list as the report writes it (its columns), naming real shoppers of the store:
    the three customers above (ERASED since erased) and two more the shop will not send."""
    users = _store_users(db)
    named = [PSEUDO(KEPT), PSEUDO(ERASED), PSEUDO(NOT_SENT)]
    assert {PSEUDO(KEPT), PSEUDO(NOT_SENT)} <= users and PSEUDO(ERASED) not in users
    others = sorted(users - set(named))[:2]
    rows = []
    for category in ("home", "kitchen"):
        for rank, user in enumerate([*named, *others], start=1):
            rows.append([category, rank, user, 0.9 - rank / 20, 0.5, round((0.9 - rank / 20) * 0.5, 4)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["category", "rank", "user_id", "churn_probability", "affinity", "priority"])
        writer.writerows(rows)
    return named


@pytest.fixture(scope="module")
def site(shop: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    var = shop / "var"
    db = var / "shelfwise.db"
    ring = KeyRing(var / "keys.json")
    keys = {role: ring.create(role)[0] for role in (Role.ANALYST, Role.ADMIN)}
    app = FastAPI()
    dashboard = mount_pages(
        app,
        store_url=f"sqlite:///{db}",
        var_dir=var,
        access=PageAccess.from_ring(ring, var),
        build_report=False,
        pseudonymize=PSEUDO,
    )
    with TestClient(app) as client:
        # before a report exists the list cannot be joined: said, not a 500
        early = client.post(
            "/analytics/api/marketing-list",
            json={"customer_ids": [KEPT]},
            headers={"X-API-Key": keys[Role.ADMIN]},
        )
        assert early.status_code == 503 and "not built yet" in early.json()["detail"]
        _write_list(dashboard.root / "marketing_lists.csv", db)
        yield client, {"analyst": keys[Role.ANALYST], "admin": keys[Role.ADMIN]}
    dashboard.close()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_only_admin_gets_the_list_with_the_shops_ids(site: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = site
    url = "/analytics/api/marketing-list"
    body = {"customer_ids": [KEPT, f" {ERASED} ", "99999999"]}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    refused = client.post(url, json=body, headers={"X-API-Key": keys["analyst"]})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    # the analyst still downloads the pseudonymised list, and the page says who gets own ids and how
    plain = client.get("/analytics/marketing_lists.csv", headers={"X-API-Key": keys["analyst"]})
    assert plain.status_code == 200 and KEPT not in plain.text and PSEUDO(KEPT) in plain.text
    page = client.get("/analytics/", headers={"X-API-Key": keys["analyst"]}).text
    note = page[page.index('id="marketing-own-ids"') :]
    note = note[: note.index("</p>")]
    assert "Only the <code>admin</code> role" in note and "/analytics/api/marketing-list" in note
    assert "shelfwise analytics marketing-list --ids FILE" in note

    answer = client.post(url, json=body, headers={"X-API-Key": keys["admin"]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment")
    rows = _rows(answer.text)
    assert list(rows[0]) == ["category", "rank", "customer_id", "churn_probability", "affinity", "priority"]
    assert {r["customer_id"] for r in rows} == {KEPT}, "the shop's own id, for the shopper it sent"
    assert {r["category"] for r in rows} == {"home", "kitchen"}
    assert PSEUDO(KEPT) not in answer.text and PSEUDO(NOT_SENT) not in answer.text
    # the erased shopper never comes back, though the shop sent their id and the old list names them
    assert all(ERASED not in r["customer_id"] for r in rows)
    assert answer.headers["x-shelfwise-matched-rows"] == "2"
    assert answer.headers["x-shelfwise-erased-rows"] == "2"
    assert answer.headers["x-shelfwise-unmatched-rows"] == "6"
    assert answer.headers["x-shelfwise-ids-given"] == "3"
    assert answer.headers["x-shelfwise-ids-matched"] == "1"

    # the same as a CSV upload with a header line; another spelling of an id is the same shopper
    upload = client.post(
        url,
        content=f"customer_id\n{NOT_SENT}\n\n{KEPT}\n".encode(),
        headers={"X-API-Key": keys["admin"], "Content-Type": "text/csv"},
    )
    assert upload.status_code == 200, upload.text
    assert {r["customer_id"] for r in _rows(upload.text)} == {KEPT, NOT_SENT}


@pytest.mark.parametrize(
    ("content", "kind", "field"),
    [
        (b"{not json", "application/json", "body"),
        (json.dumps({"ids": ["1"]}).encode(), "application/json", "customer_ids"),
        (json.dumps({"customer_ids": "17850"}).encode(), "application/json", "customer_ids"),
        (json.dumps({"customer_ids": []}).encode(), "application/json", "customer_ids"),
        (json.dumps({"customer_ids": ["1", {"a": 1}]}).encode(), "application/json", "customer_ids[1]"),
        (json.dumps({"customer_ids": ["1", "  "]}).encode(), "application/json", "customer_ids[1]"),
        (b"name,email\nA,a@example.com\n", "text/csv", "file"),
        (b"", "text/csv", "file"),
        (b"\xff\xfe", "text/csv", "file"),
        (b"17850", "application/octet-stream", "content-type"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    site: tuple[TestClient, dict[str, str]], content: bytes, kind: str, field: str
) -> None:
    client, keys = site
    answer = client.post(
        "/analytics/api/marketing-list",
        content=content,
        headers={"X-API-Key": keys["admin"], "Content-Type": kind},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"{field}:")


def test_a_signed_in_admin_needs_the_csrf_token(site: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = site
    access: PageAccess = client.app.state.page_access  # type: ignore[attr-defined]
    issued = access.sign_in(keys["admin"])
    assert issued is not None
    cookie, session = issued
    client.cookies.set("shelfwise_session", cookie)
    try:
        body: dict[str, Any] = {"customer_ids": [KEPT]}
        assert client.post("/analytics/api/marketing-list", json=body).status_code == 403
        ok = client.post("/analytics/api/marketing-list", json=body, headers={"X-CSRF-Token": session.csrf})
        assert ok.status_code == 200 and KEPT in ok.text
    finally:
        client.cookies.clear()


def test_the_cli_writes_the_list_with_the_shops_ids(shop: Path, tmp_path: Path) -> None:
    listing = tmp_path / "marketing_lists.csv"
    _write_list(listing, shop / "var" / "shelfwise.db")
    ids = tmp_path / "ids.csv"
    ids.write_text(f"{KEPT}\n{ERASED}\n{NOT_SENT}\n")
    out = tmp_path / "out" / "with_ids.csv"
    summary = one_json(
        run(
            "analytics",
            "marketing-list",
            "--ids",
            str(ids),
            "--list",
            str(listing),
            "--out",
            str(out),
            "--json",
            cwd=shop,
        )
    )
    assert summary["matched_rows"] == 4 and summary["erased_rows"] == 2 and summary["ids_matched"] == 2
    rows = _rows(out.read_text())
    assert {r["customer_id"] for r in rows} == {
        KEPT,
        NOT_SENT,
    }  # the erased shopper is absent
    # to standard output, the counts on stderr
    printed = run("analytics", "marketing-list", "--ids", str(ids), "--list", str(listing), cwd=shop)
    assert {r["customer_id"] for r in _rows(printed.stdout)} == {KEPT, NOT_SENT}
    assert "4 rows with the shop's ids" in printed.stderr

    # user errors: one line, non-zero exit
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("name,email\nA,a@example.com\n")
    for args, needle in (
        (["--ids", str(tmp_path / "missing.csv"), "--list", str(listing)], "missing.csv"),
        (["--ids", str(contacts), "--list", str(listing)], "--ids"),
        (["--ids", str(ids)], "too little history"),  # one day of invoices: no list to compute
        (["--ids", str(ids), "--list", str(ids)], "--list"),
        (
            ["--ids", str(ids), "--list", str(listing), "--db", f"sqlite:///{tmp_path / 'none.db'}"],
            "no store",
        ),
    ):
        proc = run("analytics", "marketing-list", *args, cwd=shop, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and needle in proc.stderr, proc.stderr


def test_through_the_whole_api_app(served: Served) -> None:
    """The endpoint as the API serves it (``create_app``: its guard, key ring and services)."""
    from shelfwise.api.app import create_app
    from shelfwise.web.dashboard import AnalyticsDashboard

    settings = served.settings(rate_limit_per_second=0)
    app = create_app(settings, served.url, watch_interval=None)
    with TestClient(app) as client:
        ring = app.state.services.keys
        analyst, _ = ring.create(Role.ANALYST, "tests")
        reader, _ = ring.create(Role.READ, "tests")
        db = sqlite_path(served.url)
        assert db is not None
        listing = AnalyticsDashboard(served.url, settings.var_dir).root / "marketing_lists.csv"
        users = _store_users(db)
        assert PSEUDO(KEPT) in users
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text(
            f"category,rank,user_id,churn_probability,affinity,priority\nhome,1,{PSEUDO(KEPT)},0.9,0.5,0.45\n"
        )
        url, body = "/analytics/api/marketing-list", {"customer_ids": [KEPT]}
        assert client.post(url, json=body).status_code == 401
        for key in (analyst, reader):
            assert client.post(url, json=body, headers={"X-API-Key": key}).status_code == 403
        answer = client.post(url, json=body, headers={"X-API-Key": API_KEY})
        assert answer.status_code == 200, answer.text
        assert _rows(answer.text) == [
            {
                "category": "home",
                "rank": "1",
                "customer_id": KEPT,
                "churn_probability": "0.9",
                "affinity": "0.5",
                "priority": "0.45",
            }
        ]
        bad = client.post(url, json={"customer_ids": [None]}, headers={"X-API-Key": API_KEY})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("customer_ids[0]:")
