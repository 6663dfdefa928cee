"""Exploration logged through the store and evaluated off-policy from the logs, on SQLite and
PostgreSQL: the estimates land on the candidate policy's true click rate."""

from __future__ import annotations

import numpy as np

from shelfwise.core.ids import answer_id
from shelfwise.data.schemas import Event, EventType
from shelfwise.evaluation.attribution import attribute_events
from shelfwise.evaluation.off_policy import ope_from_logs, slot_click_stats
from shelfwise.recommend.exploration import epsilon_greedy_slot
from shelfwise.store import Store
from shelfwise.store.impressions import Impression, log_impressions

T0 = 1_700_000_000_000
RANKED = ["85123A", "71053", "84406B", "84029G", "84029E", "22752"]
# true click rates of each item at the slot: the ranker's top pick is not the best one
TRUE_CTR = {"85123A": 0.10, "71053": 0.25, "84406B": 0.05, "84029G": 0.15}


def test_ope_from_logged_propensities_recovers_a_candidate_policy(store: Store) -> None:
    rng = np.random.default_rng(0)
    imps, events = [], []
    for n in range(4_000):
        out = epsilon_greedy_slot(RANKED, slot=0, epsilon=0.6, pool=4, rng=rng)
        i = Impression(
            answer_id(T0 + n),
            "rec",
            "home",
            out.items,
            T0 + n,
            user_id=f"u{n % 700}",
            session_id=f"s{n}",
            version="v1",
            propensities=out.propensities,
        )
        imps.append(i)
        if rng.random() < TRUE_CTR[out.items[0]]:
            events.append(
                Event(
                    event_id=f"c{n}",
                    type=EventType.CLICK,
                    ts=i.ts + 5,
                    user_id=i.user_id,
                    session_id=i.session_id,
                    item_id=out.items[0],
                    context={"rec_id": i.answer_id, "position": 1},
                )
            )
    log_impressions(store, imps)
    store.append_events(events)
    assert attribute_events(store, events).counts == {"attributed": len(events)}
    # candidate: always show the item the logs suggest is best
    result = ope_from_logs(store, placement="home", slot=0, target=lambda imp: {"71053": 1.0})
    assert result["logs"] == 4_000 and result["min_propensity"] == 0.15
    est = result["estimates"]
    for name in ("ips", "snips", "dr"):
        assert abs(est[name] - TRUE_CTR["71053"]) < 3 * est[f"{name}_se"] + 1e-9, (name, est)
    assert est["dr_se"] <= est["ips_se"]
    assert result["logging_click_rate"] < TRUE_CTR["71053"]
    # what a Thompson slot would be fed: clicks and impressions per item at the slot
    stats = slot_click_stats(store, placement="home", slot=0)
    assert sum(n for _, n in stats.values()) == 4_000 and sum(c for c, _ in stats.values()) == len(events)
    best = max(stats, key=lambda i: stats[i][0] / stats[i][1])
    assert best == "71053"
