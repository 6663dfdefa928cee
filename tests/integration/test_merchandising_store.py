"""Placements, rules and search settings stored, versioned and applied, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shelfwise.core.settings import Settings
from shelfwise.data.readers import get_format
from shelfwise.merchandising.engine import Candidate
from shelfwise.merchandising.placements import STANDARD, PlacementNotFound
from shelfwise.merchandising.rules import RuleError
from shelfwise.merchandising.service import Merchandising
from shelfwise.store import Store, open_store
from shelfwise.store.ingest import ingest_events
from shelfwise.store.merch_documents import document_history, get_document, list_documents, save_document


def test_documents_round_trip_and_keep_every_version(store: Store) -> None:
    first = save_document(store, kind="placement", name="home", body={"k": 5, "note": "ünï"}, author="ann")
    second = save_document(store, kind="placement", name="home", body={"k": 7})
    other = save_document(store, kind="placement", name="home", body={"k": 1}, shop="shop-b")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert get_document(store, kind="placement", name="home").body == {"k": 7}
    assert get_document(store, kind="placement", name="home", version=1).body == {"k": 5, "note": "ünï"}
    assert get_document(store, kind="placement", name="home", version=1).author == "ann"
    assert [d.version for d in document_history(store, kind="placement", name="home")] == [2, 1]
    assert [d.body for d in list_documents(store, kind="placement")] == [{"k": 7}]
    assert get_document(store, kind="placement", name="cart") is None


@pytest.fixture
def merch(store: Store, retail_slice: Path, settings: Settings) -> Merchandising:
    ingest_events(store, retail_slice, get_format("online-retail"), settings)
    return Merchandising(store, refresh_seconds=0.0)


def test_service_lists_gets_and_saves_placements(merch: Merchandising) -> None:
    names = [p.placement.name for p in merch.placements()]
    assert names == list(STANDARD)
    assert merch.placement("product").version == 0
    saved = merch.save_rules(
        "home", {"rules": [{"kind": "pin", "item_id": "85123A", "position": 1}]}, author="ann"
    )
    assert saved.version == 1 and saved.author == "ann"
    merch.save_placement("home", {"k": 4, "rules": {"rules": [{"kind": "block", "brands": ["acme"]}]}})
    assert merch.placement("home").version == 2
    assert merch.placement("home", version=1).placement.rules.rules[0].item_id == "85123A"
    back = merch.rollback("home", 1)
    assert back.version == 3 and back.placement.rules.rules[0].kind == "pin"
    assert [h.version for h in merch.history("home")] == [3, 2, 1]
    merch.save_placement("summer-store", {"source": "popular", "description": "summer shop"})
    assert [p.placement.name for p in merch.placements()][-1] == "summer-store"


def test_unknown_placement_and_unknown_item_are_clear_errors(merch: Merchandising) -> None:
    with pytest.raises(PlacementNotFound, match="no placement 'checkout'"):
        merch.placement("checkout")
    with pytest.raises(PlacementNotFound):
        merch.placement("home", version=9)
    with pytest.raises(PlacementNotFound):
        merch.history("checkout")
    with pytest.raises(RuleError) as err:
        merch.save_rules("home", {"rules": [{"kind": "pin", "item_id": "NO-SUCH-ITEM", "position": 1}]})
    assert err.value.field == "rules[0].item_id"
    with pytest.raises(RuleError, match="overlaps"):
        merch.save_rules(
            "promotion",
            {
                "rules": [
                    {
                        "kind": "promotion",
                        "name": "a",
                        "attribute": "colour",
                        "value": "red",
                        "start": "2026-12-01T00:00:00Z",
                        "end": "2026-12-10T00:00:00Z",
                    },
                    {
                        "kind": "promotion",
                        "name": "b",
                        "attribute": "colour",
                        "value": "red",
                        "start": "2026-12-05T00:00:00Z",
                        "end": "2026-12-20T00:00:00Z",
                    },
                ]
            },
        )
    assert merch.placement("home").version == 0  # nothing was stored


def test_a_saved_rule_holds_on_the_next_request_in_another_process_view(
    merch: Merchandising, store: Store
) -> None:
    other = Merchandising(store, refresh_seconds=0.2)  # another worker's service with its own cache
    ids = sorted(store.item_ids())[:30]
    candidates = [Candidate(i, float(30 - n)) for n, i in enumerate(ids)]
    assert other.apply("home", candidates, k=5).items[0].item_id == ids[0]
    merch.save_rules("home", {"rules": [{"kind": "pin", "item_id": "85123A", "position": 1}]})
    time.sleep(0.25)
    answer = other.apply("home", candidates, k=5)
    assert answer.items[0].item_id == "85123A"
    assert 'pinned at 1 by rule "pin 85123A at 1"' in answer.items[0].reasons


def test_rules_read_just_before_a_change_are_not_kept_after_it(
    merch: Merchandising, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request read the placement, then rules were saved and read again, then that request
    finished: what it read must not stand in for the saved rules (it used to, until the next change)."""
    from shelfwise.merchandising import service

    real = service.get_document
    read, finish = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:  # the real read, then a pause before it is kept
        doc = real(*args, **kwargs)
        if threading.current_thread().name == "slow-request":
            read.set()
            assert finish.wait(10)
        return doc

    monkeypatch.setattr(service, "get_document", slow)
    first, second = sorted(store.item_ids())[:2]
    merch.save_rules("home", {"rules": [{"kind": "pin", "item_id": first, "position": 1}]})
    answered: dict[str, Any] = {}
    request = threading.Thread(
        target=lambda: answered.update(home=merch.placement("home")), name="slow-request"
    )
    request.start()
    assert read.wait(10)  # it holds version 1, not kept yet
    merch.save_rules("home", {"rules": [{"kind": "pin", "item_id": second, "position": 1}]})
    assert merch.placement("home").version == 2  # read (and kept) under the new stamp
    finish.set()
    request.join(10)
    assert answered["home"].version == 1  # the request that read it answers with it...
    assert merch.placement("home").version == 2  # ...and nobody after it
    assert merch.rules("home").item_ids() == {second}


def test_search_settings_are_versioned_and_applied(merch: Merchandising) -> None:
    assert merch.search_settings()[1] == 0
    version = merch.save_synonyms([{"terms": ["lantern", "lamp"]}])
    assert version == 1
    merch.save_search_settings(
        {
            **merch.search_settings()[0].model_dump(),
            "stop_words": ["the"],
            "redirects": [{"query": "delivery", "url": "/help/delivery"}],
        }
    )
    settings, version = merch.search_settings()
    assert version == 2 and settings.rewrite("the lantern").expansions == ["lamp"]
    assert merch.for_query("Delivery").redirect == "/help/delivery"
    with pytest.raises(RuleError) as err:
        merch.save_search_settings(
            {
                "query_rules": [
                    {"query": "x", "rules": {"rules": [{"kind": "pin", "item_id": "NOPE", "position": 1}]}}
                ]
            }
        )
    assert err.value.field == "query_rules[0].rules.rules[0].item_id"


def test_migration_creates_the_table_on_a_fresh_store(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'fresh.db'}") as s:
        assert s.counts().get("merch_documents", 0) == 0
        save_document(s, kind="search", name="settings", body={})


def test_query_rules_pin_for_a_query_through_the_service(merch: Merchandising, store: Store) -> None:
    merch.save_search_settings(
        {
            "query_rules": [
                {
                    "query": "lantern",
                    "match": "contains",
                    "rules": {
                        "rules": [
                            {"kind": "pin", "item_id": "71053", "position": 1, "name": "metal lantern first"}
                        ]
                    },
                }
            ]
        }
    )
    merch.save_rules("search", {"rules": [{"kind": "block", "item_ids": ["85123A"]}]})
    ids = [*sorted(store.item_ids())[:20], "85123A"]
    candidates = [Candidate(i, 1.0) for i in ids]
    decision = merch.for_query("White Lantern")
    answer = merch.apply("search", candidates, k=5, extra_rules=decision.rules)
    assert answer.items[0].item_id == "71053"
    assert 'pinned at 1 by rule "metal lantern first"' in answer.items[0].reasons
    assert answer.removed == {"85123A": "block item 85123A"}  # the placement's own rules still hold
    other = merch.apply("search", candidates, k=5, extra_rules=merch.for_query("mug").rules)
    assert other.items[0].item_id == ids[0]
