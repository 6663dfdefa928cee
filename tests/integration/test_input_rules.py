"""Input rules at every depth and per format (issue 13, findings 6 and 7): contact details nested
inside an event's context are scrubbed and oversized nested values refused naming their path, by
ingest and by the events API alike; a format's required columns are enforced record by record."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import get_format
from shelfwise.store import open_store
from shelfwise.store.ingest import ingest_events
from tests.conftest import ONLINE_RETAIL, TEST_KEY, head_lines
from tests.integration.api_fixtures import API_KEY, Served

AUTH = {"X-API-Key": API_KEY}
NESTED = {"device": {"note": "call me: shopper@example.com or +44 20 7946 0958", "tags": ["x", "y@z.io"]}}
HUGE = {"device": {"note": "x" * 900_000}}


def _stored_context(store_url: str, user: str) -> list[dict[str, object]]:
    with open_store(store_url) as store:
        return [e.context for e in store.events_for_user(Pseudonymizer(TEST_KEY.encode())(user))]


def test_finding_06_nested_context_is_scrubbed_and_size_limited(served: Served, settings: Settings) -> None:
    # the events API
    with TestClient(create_app(served.settings(), served.url, watch_interval=None)) as client:
        ev = {"type": "view", "user_id": "nested-1", "item_id": "71053", "context": NESTED}
        assert client.post("/v1/events", json=ev, headers=AUTH).status_code == 202
        huge = {**ev, "event_id": "huge-1", "context": HUGE}
        refused = client.post("/v1/events", json=huge, headers=AUTH)
        assert refused.status_code == 202 and refused.json()["accepted"] == 0, refused.text
        problem = refused.json()["rejections"][0]
        assert problem["field"] == "body.context.device.note" and problem["reason"] == "field_too_large"
    (stored,) = _stored_context(served.url, "nested-1")
    text = json.dumps(stored)
    assert "@" not in text and "7946" not in text and "[email]" in text and "[phone]" in text
    with open_store(served.url) as store:
        kept = [q for q in store.quarantined(reason="field_too_large") if q["field"] == "context.device.note"]
        assert kept and len(kept[0]["record"]) <= 65_536  # quarantined, named by path, not stored whole

    # ingest (JSON Lines), the same rules
    file = settings.var_dir.parent / "events.jsonl"
    rows = [
        {
            "user_id": "nested-2",
            "item_id": "a",
            "type": "view",
            "ts": "2011-01-01T10:00:00",
            "context": NESTED,
        },
        {"user_id": "nested-2", "item_id": "b", "type": "view", "ts": "2011-01-01T10:01:00", "context": HUGE},
    ]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = f"sqlite:///{settings.var_dir.parent / 'ingest.db'}"
    with open_store(url) as store:
        report = ingest_events(store, file, get_format("jsonl"), settings)
        assert report.accepted == 1 and report.fields == {"context.device.note": 1}
    (ingested,) = _stored_context(url, "nested-2")
    assert "@" not in json.dumps(ingested) and ingested["device"]["tags"] == ["x", "[email]"]  # type: ignore[index]


def test_finding_07_a_purchase_line_without_a_unit_price_is_quarantined(
    tmp_path: Path, settings: Settings
) -> None:
    lines = head_lines(ONLINE_RETAIL, 21)
    header, first, rest = lines[0], lines[1].decode(), lines[2:]
    cells = first.rstrip("\r\n").split(",")
    cells[5] = ""  # UnitPrice of a real invoice line, left empty as a broken export would
    file = tmp_path / "retail.csv"
    file.write_bytes(header + (",".join(cells) + "\n").encode() + b"".join(rest))
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        report = ingest_events(store, file, get_format("online-retail"), settings)
        assert report.quarantined == 1 and report.reasons == {"missing_field": 1}
        assert report.fields == {"price": 1} and report.accepted == 19
        (row,) = store.quarantined()
        assert (row["field"], row["reason"], row["line_no"]) == ("price", "missing_field", 2)
        priced = [e.price for e in store.iter_events()]
        assert None not in priced  # no purchase stored at an unknown price
