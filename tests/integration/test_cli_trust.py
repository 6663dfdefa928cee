"""Trust below HTTP, as a user runs it: the ε ledger refusing a release past the budget, a
shopper's export against the deletion report, consent flags, identity stitching and retention —
real processes, real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.privacy import Pseudonymizer
from shelfwise.data.readers import get_format
from shelfwise.data.schemas import Event, EventType
from shelfwise.features.dataset import Dataset
from shelfwise.recommend.registry import model_from_config
from shelfwise.store import Store, open_store
from shelfwise.store.analytical import AnalyticalStore
from shelfwise.store.erasure import erase_user, user_footprint
from shelfwise.store.ingest import ingest_events
from shelfwise.store.retention import expire_events, rollup_totals
from shelfwise.trust.personal import ANONYMOUS_REASON, recommend_for
from tests.conftest import TEST_KEY
from tests.integration.test_cli import one_json, run

DAY = 86_400_000


def _pseudo(raw: str) -> str:
    return Pseudonymizer(TEST_KEY.encode())(raw)


@pytest.fixture
def loaded(tmp_path: Path, retail_slice: Path) -> str:
    """A SQLite store under tmp_path/var with the Online Retail slice, through the CLI."""
    run("ingest", "events", str(retail_slice), "--format", "online-retail", cwd=tmp_path)
    return f"sqlite:///{tmp_path / 'var' / 'shelfwise.db'}"


def _served(store: Store, shopper: str, item: str) -> None:
    """An answer served to the shopper signed in and one to their later guest session; a click on
    the first cites it (an impression and an attribution row to export and erase)."""
    from shelfwise.core.ids import answer_id
    from shelfwise.evaluation.attribution import attribute_events
    from shelfwise.store.impressions import Impression, log_impressions

    t = 1_300_000_010_000
    signed_in = Impression(answer_id(t), "rec", "home", [item], t, user_id=shopper, session_id="s-web")
    guest = Impression(answer_id(t), "search", "search", [item], t + 1, session_id="s-phone-2")
    log_impressions(store, [signed_in, guest])
    click = Event(
        event_id="served-click",
        type=EventType.CLICK,
        ts=t + 500,
        user_id=shopper,
        session_id="s-web",
        item_id=item,
        context={"rec_id": signed_in.answer_id, "position": 1},
        source="test",
    )
    store.append_events([click])
    assert attribute_events(store, [click]).counts == {"attributed": 1}


def _guest_and_alias(store: Store, shopper: str, other_item: str) -> None:
    """A guest session on the shopper's phone that signs in, then a later guest session on the same
    phone, and a device-scoped id that signs in as the shopper."""
    t = 1_300_000_000_000
    events = [
        Event(
            event_id="g1",
            type=EventType.VIEW,
            ts=t,
            session_id="s-phone-1",
            item_id=other_item,
            context={"device_id": "phone-1"},
            source="test",
        ),
        Event(
            event_id="g2",
            type=EventType.LOGIN,
            ts=t + 1000,
            session_id="s-phone-1",
            user_id=shopper,
            context={"device_id": "phone-1"},
            source="test",
        ),
        Event(
            event_id="g3",
            type=EventType.CART,
            ts=t + 2000,
            session_id="s-phone-1",
            item_id=other_item,
            context={"device_id": "phone-1"},
            source="test",
        ),
        Event(
            event_id="g4",
            type=EventType.VIEW,
            ts=t + DAY,
            session_id="s-phone-2",
            item_id=other_item,
            context={"device_id": "phone-1"},
            source="test",
        ),
        Event(
            event_id="a1",
            type=EventType.VIEW,
            ts=t + 2 * DAY,
            session_id="s-tab",
            user_id="device-xyz",
            item_id=other_item,
            source="test",
        ),
        Event(
            event_id="a2",
            type=EventType.LOGIN,
            ts=t + 2 * DAY + 1000,
            session_id="s-tab",
            user_id=shopper,
            source="test",
        ),
    ]
    store.append_events(events)


def test_the_ledger_refuses_a_release_past_the_budget(tmp_path: Path, loaded: str) -> None:
    budget = one_json(run("trust", "dp", "budget", "--set", "1.0", "--json", cwd=tmp_path))
    assert budget["budget_epsilon"] == 1.0 and budget["spent_epsilon"] == 0.0
    first = one_json(
        run("trust", "dp", "release", "rfm-segments", "--epsilon", "0.7", "--json", cwd=tmp_path)
    )
    assert first["epsilon"] == 0.7 and first["release_id"] is not None
    assert sum(r["customers"] for r in first["rows"]) > 0
    refused = run("trust", "dp", "release", "funnel", "--epsilon", "0.5", "--json", cwd=tmp_path, check=False)
    assert refused.returncode == 6
    assert refused.stdout == ""  # nothing published
    assert "privacy budget exhausted" in refused.stderr and "0.3 of 1 is left" in refused.stderr
    assert "Traceback" not in refused.stderr
    ledger = one_json(run("trust", "dp", "ledger", "--json", cwd=tmp_path))
    assert [r["query"] for r in ledger["ledger"]] == ["rfm_segments"]  # the refused one left no trace
    assert ledger["spent_epsilon"] == pytest.approx(0.7)
    # a smaller release still fits
    one_json(run("trust", "dp", "release", "trending", "--epsilon", "0.3", "--json", cwd=tmp_path))


def test_export_holds_every_row_the_deletion_report_lists_and_nothing_else(
    tmp_path: Path, loaded: str
) -> None:
    shopper, other = _pseudo("17850"), _pseudo("13047")
    with open_store(loaded) as store:
        item = next(iter(store.item_ids()))
        _guest_and_alias(store, shopper, item)
        _served(store, shopper, item)
    links = one_json(run("privacy", "stitch", "--json", cwd=tmp_path))
    assert links["by_kind"] == {"session": 2, "user": 1}
    export = one_json(run("privacy", "export", "17850", "--json", cwd=tmp_path))
    with open_store(loaded) as store:
        report = user_footprint(store, shopper)
        other_report = user_footprint(store, other)
    assert export["user_id"] == shopper
    assert export["aliases"] == ["device-xyz"]
    assert export["stitched_sessions"] == ["s-phone-1", "s-phone-2"]
    for place, count in report.items():
        assert export["counts"][place] == count > 0 or place in ("consent", "quarantine")
        assert len(export["store"][place]) == count
    # every event is the shopper's own, an alias's or a stitched guest session's
    ids = {shopper, "device-xyz"}
    for e in export["store"]["events"]:
        assert e["user_id"] in ids or (
            e["user_id"] is None and e["session_id"] in export["stitched_sessions"]
        )
    assert {e["event_id"] for e in export["store"]["events"]} >= {"g1", "g3", "g4", "a1"}
    assert other not in json.dumps(export)  # nothing of another shopper
    assert export["segment"]["available"] and export["segment"]["rfm"]["user_id"] == shopper
    assert set(export["not_recorded"]) == {"experiment_arms", "impressions"}
    # the same shopper through an alias; then deletion removes exactly what the export showed
    again = one_json(run("privacy", "export", "device-xyz", "--pseudonym", "--json", cwd=tmp_path))
    assert again["counts"] == export["counts"]
    with open_store(loaded) as store:
        removed = erase_user(store, shopper)
        assert removed["events"] == export["counts"]["events"]
        assert all(v == 0 for v in user_footprint(store, shopper).values())
        assert user_footprint(store, other) == other_report


def test_consent_stops_personalisation_and_analytics(tmp_path: Path, loaded: str) -> None:
    shopper = _pseudo("17850")
    with open_store(loaded) as store:
        model = model_from_config({"model": "itemknn"}).fit(Dataset.from_store(store))
        before = recommend_for(model, store, shopper, k=5)
        assert before.reasons and ANONYMOUS_REASON not in before.reasons
    state = one_json(
        run("privacy", "consent", "17850", "--no-personalisation", "--no-analytics", "--json", cwd=tmp_path)
    )
    assert state["no_personalisation"] and state["no_analytics"]
    with open_store(loaded) as store:
        after = recommend_for(model, store, shopper, k=5)
        assert after.reasons == [ANONYMOUS_REASON] * len(after.items)
        assert shopper not in set(Dataset.from_store(store).user_map.external.tolist())
    with AnalyticalStore.open(loaded) as db:
        assert shopper not in set(db.events_table.column("user_id").to_pylist())
    shown = one_json(run("privacy", "consent", "17850", "--json", cwd=tmp_path))
    assert shown["no_personalisation"] and shown["no_analytics"]


def test_retention_expires_raw_events_and_keeps_aggregates(
    store: Store, retail_slice: Path, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path / "var", pseudonym_key=TEST_KEY)
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    events = list(store.iter_events())
    now = events[-1].ts
    cutoff = (events[0].ts + now) // 2
    old = [e for e in events if e.ts < cutoff]
    assert 0 < len(old) < len(events)
    report = expire_events(store, older_than_days=(now - cutoff) / DAY, now=now)
    assert report["events"] == len(old)
    left = list(store.iter_events())
    assert len(left) == len(events) - len(old) and min(e.ts for e in left) >= cutoff
    kept = rollup_totals(store)
    assert sum(t["events"] for t in kept.values()) == len(old)
    bought = [e for e in old if e.type == EventType.PURCHASE]
    assert kept["purchase"]["units"] == sum(e.quantity for e in bought)
    assert kept["purchase"]["revenue"] == pytest.approx(
        sum(e.quantity * (e.price or 0) for e in bought), rel=1e-6
    )
    remaining = {e.user_id for e in left if e.user_id}
    assert store.counts()["users"] == len(remaining)  # profiles of shoppers with nothing left are gone
    again = expire_events(store, older_than_days=(now - cutoff) / DAY, now=now)
    assert again["events"] == 0 and rollup_totals(store) == kept
