"""Learning to rank end to end from logged searches: search, click and purchase events (the search
event carries the query) go into a real SQLite store, come back out, become graded judgments, train
a LambdaRank model, and that model ranks queries it never saw better than BM25 does.

The shoppers are simulated over the real Flipkart 1k catalogue (no public log pairs queries with
clicks): each looks at the first ten BM25 results (equal scores in a random order of the session's
own, so the log does not depend on the engine's tie rule), top ones more often; clicks an item that is the
kind of product asked for (the query word is in its title), now and then a wrong one; and buys
mostly the cheaper of what they clicked. Cheapness is a preference BM25 cannot see; a ranker that
learned from the purchases puts the cheaper matching items first, one trained on clicks alone does not.
Five independent logs, a ranker from each: the margins hold for their mean (one ranker varies by a few
hundredths of nDCG with which items its shoppers happened to see).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from shelfwise.data.schemas import Event, EventType, Item
from shelfwise.search.documents import read_dataset
from shelfwise.search.engine import SearchConfig, SearchEngine
from shelfwise.search.evaluate import evaluate_rankings
from shelfwise.search.ltr import LambdaRanker, grades_from_events
from shelfwise.store import open_store

TRAIN = ["watch", "ring", "boots", "mug", "charger", "shoes", "cover", "clutch", "sweater", "bulb", "bottle"]
HELD_OUT = ["dress", "necklace", "jeans", "leggings", "shirt", "bag", "tablet", "speaker", "loafers"]
BASE_TS = 1_700_000_000_000
DAYS = 5  # independent simulated logs, one ranker (and one clicks-only control) trained from each


def _relevant(item: Item, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}s?\b", (item.title or "").lower()) is not None


def _cheap_cut(items: Sequence[Item], word: str) -> float:
    prices = [it.price for it in items if _relevant(it, word) and it.price]
    return float(np.median(prices)) if prices else 0.0


def _simulate(engine: SearchEngine, items: Sequence[Item], sessions_per_query: int, day: int) -> list[Event]:
    """One simulated log (``day``: its seed and the prefix of its ids and sessions)."""
    rng = random.Random(42 + day)
    events: list[Event] = []
    n = 0
    for word in TRAIN:
        cut = _cheap_cut(items, word)
        # every BM25 match, ties by item id: the shoppers below order equal scores themselves, so what
        # they see does not depend on the engine's tie rule (top_k's, or any later one)
        matches = sorted(
            engine.search(word, k=len(items), mode="bm25", facets=False).hits,
            key=lambda h: (-h.score, h.item_id),
        )
        for s in range(sessions_per_query):
            session = f"d{day}-{word}-{s}"
            ts = BASE_TS + day * 10**9 + n * 1000
            events.append(
                Event(
                    event_id=f"d{day}e{n}",
                    type=EventType.SEARCH,
                    ts=ts,
                    user_id=f"u{s % 25}",
                    session_id=session,
                    context={"query": word},
                )
            )
            n += 1
            # this session's first ten results: equal scores in a random order of its own
            keys = [rng.random() for _ in matches]
            seen = sorted(zip(keys, matches, strict=True), key=lambda kh: (-kh[1].score, kh[0]))[:10]
            for rank, (_, hit) in enumerate(seen):
                if rng.random() > 1 / (rank + 1) ** 0.6:
                    continue  # not looked at
                wanted = _relevant(hit.item, word)
                if rng.random() < (0.6 if wanted else 0.03):
                    events.append(
                        Event(
                            event_id=f"d{day}e{n}",
                            type=EventType.CLICK,
                            ts=ts + rank + 1,
                            user_id=f"u{s % 25}",
                            session_id=session,
                            item_id=hit.item_id,
                        )
                    )
                    n += 1
                    cheap = hit.item.price is not None and hit.item.price <= cut
                    if wanted and rng.random() < (0.7 if cheap else 0.05):
                        events.append(
                            Event(
                                event_id=f"d{day}e{n}",
                                type=EventType.PURCHASE,
                                ts=ts + rank + 100,
                                user_id=f"u{s % 25}",
                                session_id=session,
                                item_id=hit.item_id,
                                price=hit.item.price,
                            )
                        )
                        n += 1
    return events


def _truth(items: Sequence[Item], words: Sequence[str]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """What shoppers want: the kind of product asked for (1), and among those the cheaper half (2)."""
    queries, qrels = {}, {}
    for word in words:
        cut = _cheap_cut(items, word)
        grades = {
            it.item_id: 2 if it.price is not None and it.price <= cut else 1
            for it in items
            if _relevant(it, word)
        }
        if sum(g == 2 for g in grades.values()) >= 3:
            queries[word] = word
            qrels[word] = grades
    return queries, qrels


@pytest.fixture(scope="module")
def catalogue() -> list[Item]:
    return read_dataset("flipkart-1k")


def test_a_ranker_trained_from_logged_searches_beats_bm25_on_new_queries(
    catalogue: list[Item], tmp_path: Path
) -> None:
    engine = SearchEngine.build(catalogue, SearchConfig(dense=False))
    logged = [e for day in range(DAYS) for e in _simulate(engine, catalogue, sessions_per_query=30, day=day)]

    with open_store(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        assert store.append_events(logged) == len(logged)
        stored = list(store.iter_events())
    assert {str(e.context.get("query")) for e in stored if e.type == EventType.SEARCH} == set(TRAIN)
    days: dict[str, list[Event]] = {}
    for e in stored:
        days.setdefault(str(e.session_id).split("-")[0], []).append(e)
    assert sorted(days) == [f"d{day}" for day in range(DAYS)]

    test_queries, truth = _truth(catalogue, HELD_OUT)
    assert len(test_queries) >= 5
    assert not set(test_queries) & set(TRAIN)

    def ndcg(mode: str) -> tuple[float, dict[str, list[str]]]:
        runs = {q: engine.search(t, k=100, mode=mode, facets=False).item_ids for q, t in test_queries.items()}
        return evaluate_rankings(runs, truth)["ndcg@10"], runs

    bm25_ndcg, _ = ndcg("bm25")
    ltr_ndcg: list[float] = []
    control_ndcg: list[float] = []
    for name, events in sorted(days.items()):
        assert sum(e.type == EventType.PURCHASE for e in events) >= 50
        queries, grades = grades_from_events(events)
        assert set(queries.values()) == set(TRAIN)
        assert max(g for per_query in grades.values() for g in per_query.values()) == 3  # purchases
        LambdaRanker(n_estimators=80).fit(engine, queries, grades).save(tmp_path / name)
        engine.ranker = LambdaRanker.load(tmp_path / name)
        score, ltr = ndcg("ltr")
        ltr_ndcg.append(score)
        # the same candidates, re-ordered: learning to rank lets nothing new in
        for q in test_queries:
            assert set(ltr[q]) <= set(engine.search(q, k=200, mode="bm25", facets=False).item_ids)
        # the purchases carry the price preference: a ranker that saw only the clicks does worse
        clicks_only = [e for e in events if e.type != EventType.PURCHASE]
        engine.ranker = LambdaRanker(n_estimators=80).fit(engine, *grades_from_events(clicks_only))
        control_ndcg.append(ndcg("ltr")[0])

    # one log's ranker moves by a few hundredths with which items its shoppers happened to see, so
    # the margins are on the mean of DAYS independent logs. Measured (seeds 42-46): BM25 0.8224, from
    # the logs 0.8958 mean (+0.073, each +0.053 or more), from the clicks alone 0.8331 (purchases +0.063)
    assert min(ltr_ndcg) > bm25_ndcg, (ltr_ndcg, bm25_ndcg)
    mean_ltr = float(np.mean(ltr_ndcg))
    assert mean_ltr >= bm25_ndcg + 0.05, (ltr_ndcg, bm25_ndcg)
    assert mean_ltr >= float(np.mean(control_ndcg)) + 0.03, (ltr_ndcg, control_ndcg)
