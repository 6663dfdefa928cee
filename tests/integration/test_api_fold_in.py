"""Incremental fold-in through the real app: a shopper's events that the served version never saw
change their recommendations with no retrain, on a worker that never saw the events arrive (a
restart, another worker, an expired session): they are read from the store and folded in by the
model. With fold-in off (``fold_in_ttl_seconds=0``) the same worker answers as before the events."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from shelfwise.api.app import create_app
from tests.integration.api_fixtures import API_KEY, KNOWN_USER, Served

AUTH = {"X-API-Key": API_KEY}


def _svc(c: TestClient) -> Any:
    return c.app.state.services  # type: ignore[attr-defined]


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def _recs(c: TestClient, user: str) -> dict[str, Any]:
    r = c.get(f"/v1/users/{user}/recommendations", params={"k": 10}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_events_since_training_change_the_answer_on_a_worker_that_never_saw_them(served: Served) -> None:
    first = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(first) as a:
        before = _recs(a, KNOWN_USER)
        assert before["source"] == "personalised"
        version = before["model_version"]
        viewed = [before["items"][7]["item_id"], "22752", "71053"]
        events = [{"type": "view", "user_id": KNOWN_USER, "item_id": i} for i in viewed]
        events += [{"type": "view", "user_id": "new-shopper-1", "item_id": "71053"}]
        assert a.post("/v1/events", json={"events": events}, headers=AUTH).status_code == 202
        assert _ids(_recs(a, KNOWN_USER)) != _ids(before)  # this worker: its session and the store
        stranger_before = _recs(a, "new-shopper-2")
    # a restart: the in-memory sessions are gone, the events are in the store, no retrain ran
    second = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(second) as b:
        svc = _svc(b)
        assert not svc.sessions.holds(svc.pseudonymize(KNOWN_USER))
        after = _recs(b, KNOWN_USER)
        assert after["model_version"] == version and after["source"] == "personalised"
        assert _ids(after) != _ids(before) and not set(viewed) & set(_ids(after))
        pseudo = svc.pseudonymize(KNOWN_USER)
        loaded = svc.live.current.active
        history = svc.recommending._history(loaded.recommender, pseudo)
        folded = loaded.recommender.recommend_for_events([*history, *viewed], 10, who="user")
        assert _ids(after) == folded.items  # exactly the model's fold-in of the newer events
        # a shopper the model never saw: their stored view shapes their answer
        newcomer = _recs(b, "new-shopper-1")
        assert newcomer["source"] == "session" and any("71053" in i["reason"] for i in newcomer["items"])
        assert _recs(b, "new-shopper-2")["source"] == stranger_before["source"] == "popular"
        reads = svc.recommending.fresh.reads
        _recs(b, "new-shopper-1")
        assert svc.recommending.fresh.reads == reads  # cached: no second store read
        # an event here drops the cached list: the next answer reads it again
        more = {"type": "view", "user_id": "new-shopper-1", "item_id": "22752"}
        assert b.post("/v1/events", json=more, headers=AUTH).status_code == 202
        _recs(b, "new-shopper-1")
        assert svc.recommending.fresh.reads == reads + 1
        # erasure drops the cached list and says so
        gone = b.delete("/v1/users/new-shopper-1", headers=AUTH).json()
        assert gone["verified"] is True and gone["removed"]["fold_in_events"] == 1
        assert "fold_in_events" in {p["place"] for p in gone["places"]}

    # fold-in off: the restarted worker answers as if the events never happened
    off = create_app(served.settings(fold_in_ttl_seconds=0), served.url, watch_interval=None)
    with TestClient(off) as c:
        assert _svc(c).recommending.fresh is None
        assert _ids(_recs(c, KNOWN_USER)) == _ids(before)


def test_who_has_newer_events_is_read_once_not_shopper_by_shopper(served: Served) -> None:
    app = create_app(served.settings(), served.url, watch_interval=None)
    with TestClient(app) as c:
        svc = _svc(c)
        fresh, loaded = svc.recommending.fresh, svc.live.current.active
        quiet, later = svc.pseudonymize("quiet-shopper-1"), svc.pseudonymize("quiet-shopper-2")
        assert fresh.peek(loaded, quiet) is None  # nothing known yet: the model pool reads
        reads = fresh.reads
        assert fresh.items(loaded, quiet) == []  # their own read, and who is newer in the background
        deadline = time.monotonic() + 30
        while fresh.peek(loaded, later) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fresh.reads == reads + 2  # one per shopper read so far, one for who is newer
        assert fresh.peek(loaded, later) == []  # known on the event loop, with no read of their own
        assert fresh.items(loaded, later) == [] and fresh.reads == reads + 2
        event = {"type": "view", "user_id": "quiet-shopper-2", "item_id": "22752"}
        assert c.post("/v1/events", json=event, headers=AUTH).status_code == 202
        assert fresh.peek(loaded, later) is None  # an event accepted here: their list is read again
        assert fresh.items(loaded, later) == ["22752"] and fresh.reads == reads + 3
        assert later in fresh
        gone = c.delete("/v1/users/quiet-shopper-2", headers=AUTH).json()
        assert gone["verified"] is True and gone["removed"]["fold_in_events"] == 1
        assert later not in fresh and later not in set(fresh)
