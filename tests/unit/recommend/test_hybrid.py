"""The hybrid two-stage recommender: candidates from several retrievers, LambdaRank on top.

The shop here is synthetic on purpose, with two signals planted that no single retriever holds both
of: shoppers keep to one theme (which item-KNN and content see) and, late in the period, buy the
theme's new items (which time-decayed popularity sees, across themes). The ranker must combine them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from shelfwise.evaluation.protocol import fit_and_evaluate
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import temporal_split
from shelfwise.recommend import model_from_config
from shelfwise.recommend.base import Filters, csr_rows, top_k
from shelfwise.recommend.ease import _cells
from shelfwise.recommend.hybrid import HybridRecommender, _attention, _ranks, _stack_columns

DAY_MS = 86_400_000
THEMES = ("garden spade rake", "kitchen mug teapot", "candle lantern light", "christmas bauble tree")
RETRIEVERS: list[dict[str, Any]] = [
    {"model": "itemknn", "neighbours": 20},
    {"model": "popular-decay", "half_life_days": 5.0},
    {"model": "content-tfidf"},
]
SMALL: dict[str, Any] = {"model": "hybrid", "retrievers": RETRIEVERS, "candidates": 15, "rounds": 60}


@dataclass(frozen=True)
class _Item:
    title: str
    price: float


def _shop(seed: int = 0, users: int = 240, days: int = 100) -> Dataset:
    """Each theme has 8 old items and 4 launched on day 60; shoppers buy in their theme, new items
    mostly once they exist. Item 'cold' (a Christmas item) is in the catalogue with no events."""
    rng = np.random.default_rng(seed)
    catalogue: dict[str, _Item] = {}
    old, new = {}, {}
    for t, words in enumerate(THEMES):
        old[t] = [f"t{t}-old{i}" for i in range(8)]
        new[t] = [f"t{t}-new{i}" for i in range(4)]
        for i, item in enumerate(old[t] + new[t]):
            catalogue[item] = _Item(f"{words} item {item}", price=2.0 + t + 0.1 * i)
    catalogue["cold"] = _Item(f"{THEMES[3]} new item cold", price=5.0)
    u_col, i_col, t_col = [], [], []
    for u in range(users):
        theme = u % len(THEMES)
        for day in np.sort(rng.choice(days, size=12, replace=False)):
            pool = old[theme] if day < 60 or rng.random() < 0.25 else new[theme]
            if rng.random() < 0.1:  # a little noise across themes
                pool = old[int(rng.integers(len(THEMES)))]
            u_col.append(f"u{u}")
            i_col.append(str(rng.choice(pool)))
            t_col.append(int(day) * DAY_MS + u)
    u_col.append("nobody")
    i_col.append("cold")
    t_col.append(0)
    ds = Dataset.from_events(users=u_col, items=i_col, ts=t_col).with_items(catalogue)
    return ds.select(ds.items != ds.item_map.to_internal(["cold"])[0])  # keep it in the map, cold


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return _shop()


@pytest.fixture(scope="module")
def fitted(shop: Dataset) -> HybridRecommender:
    model = model_from_config(SMALL).fit(shop)
    assert isinstance(model, HybridRecommender)
    return model


def test_the_ranker_combines_what_no_single_retriever_knows(shop: Dataset) -> None:
    split = temporal_split(shop, test_fraction=0.2)
    singles = {r["model"]: fit_and_evaluate(split, r)[1].metrics["ndcg@10"] for r in RETRIEVERS}
    hybrid, result = fit_and_evaluate(split, SMALL)
    assert hybrid.booster is not None, hybrid.fit_info  # a LambdaRank model was learnt
    assert result.metrics["ndcg@10"] > max(singles.values()) + 0.05, (result.metrics["ndcg@10"], singles)


def test_the_ranker_learns_from_the_past_of_the_training_part_only(
    shop: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    labelled: list[int] = []
    build, train = HybridRecommender._build_stage, HybridRecommender._train_ranker

    def spy_build(self: HybridRecommender, ds: Dataset, *args: Any) -> Any:
        built.append(int(ds.ts.max()))
        return build(self, ds, *args)

    def spy_train(self: HybridRecommender, stage: Any, history: Any, labels: Any, users: Any) -> None:
        rows, cols = labels.nonzero()
        pairs = set(zip(shop.users.tolist(), shop.items.tolist(), strict=True))
        assert all((r, c) in pairs for r, c in zip(rows, cols, strict=True))
        labelled.append(int(history.nnz))
        train(self, stage, history, labels, users)

    monkeypatch.setattr(HybridRecommender, "_build_stage", spy_build)
    monkeypatch.setattr(HybridRecommender, "_train_ranker", spy_train)
    model = model_from_config(SMALL).fit(shop)
    inner = temporal_split(shop, test_fraction=0.2)
    cutoff = inner.info["cutoff_ms"]  # type: ignore[index]
    # features and candidates for training come from before the inner cut-off; labels after it
    assert built[0] < cutoff <= int(shop.ts.max())
    assert labelled == [inner.train.matrix().nnz]
    # serving: the retrievers are refitted on every training event, the label period included
    assert built[1] == int(shop.ts.max())
    assert model.stage.retrievers[0].state.history.nnz == shop.matrix().nnz


def test_fitting_is_deterministic(shop: Dataset, fitted: HybridRecommender) -> None:
    again = model_from_config(SMALL).fit(shop)
    assert isinstance(again, HybridRecommender)
    assert again.booster_text == fitted.booster_text
    users = ["u1", "u2", "u3"]
    assert [r.items for r in again.recommend(users)] == [r.items for r in fitted.recommend(users)]


def test_stage_one_takes_each_retrievers_top_items_new_to_the_shopper(
    shop: Dataset, fitted: HybridRecommender
) -> None:
    [cands] = fitted.candidates(["u5"])
    u = int(shop.user_map.to_internal(["u5"])[0])
    history = shop.matrix()[u].indices
    assert not set(shop.item_map.to_internal(cands)) & set(history)
    for retriever in fitted.stage.retrievers:
        [top] = retriever.recommend(["u5"], k=SMALL["candidates"])
        assert set(top.items) <= set(cands), retriever.name


def test_a_cold_item_reaches_the_candidates_through_content(fitted: HybridRecommender) -> None:
    christmas = [f"t3-old{i}" for i in range(4)]
    rec = fitted.recommend_for_events(christmas, k=fitted.n_items)
    assert "cold" in rec.items
    assert rec.reasons[rec.items.index("cold")].startswith("similar to t3-")


def test_reasons_come_from_the_retriever_that_ranked_the_item_best(fitted: HybridRecommender) -> None:
    [rec] = fitted.recommend(["u7"], k=10)
    assert all(r.startswith(("similar to ", "popular lately")) for r in rec.reasons), rec.reasons
    # the same reasons when nothing was scored just before (no remembered candidates)
    fitted._memo.last = {}
    history = fitted.state.history[int(fitted.user_map.to_internal(["u7"])[0])].indices
    again = fitted._reasons(history, fitted.item_map.to_internal(rec.items))
    assert again == rec.reasons


def test_din_attention_weighs_the_recent_items_like_the_candidate() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    recent = np.array([[0, 1, -1], [-1, -1, -1]], np.int32)
    att, best = _attention(emb, np.array([0, 0, 1]), np.array([2, 0, 2]), recent, scale=5.0)
    sims = np.array([0.6, 0.8])  # candidate 2 against recent items 0 and 1
    w = np.exp(5 * sims) / np.exp(5 * sims).sum()
    np.testing.assert_allclose(att[0], (w * sims).sum(), rtol=1e-5)
    assert best[0] == pytest.approx(0.8)
    # candidate 0 is recent item 0 itself: attention goes mostly to it
    assert att[1] > 0.9 and best[1] == pytest.approx(1.0)
    assert np.isnan(att[2]) and np.isnan(best[2])  # no recent items: unknown, not zero


def _ranked_with_every_candidate(
    model: HybridRecommender, users: list[str], k: int, filters: Filters | None
) -> list[tuple[list[str], list[float]]]:
    """What ``recommend`` answered before it skipped candidates it cannot show: the ranker scores
    every candidate (``_score``), then the same masks and top-k."""
    st = model.state
    dense = st.user_map.to_internal(users, strict=False)
    histories = csr_rows(st.history, dense)
    scores = model._with_fallback(model._score(histories, dense), histories)
    scores[:, ~model.allowed_mask(filters)] = -np.inf
    seen = csr_rows(st.seen, dense)
    scores[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
    idx, vals = top_k(scores, k)
    return [
        (model.item_map.to_external(i[i >= 0]), [float(v) for v in s[i >= 0]])
        for i, s in zip(idx, vals, strict=True)
    ]


@pytest.mark.parametrize("k", [5, 20, 49])
def test_skipping_candidates_that_cannot_be_shown_changes_no_answer(
    fitted: HybridRecommender, k: int
) -> None:
    users = [f"u{i}" for i in range(40)] + ["nobody", "stranger"]
    off_sale = ["t0-new0", "t1-old3", "t3-new2"]
    fitted.set_availability(off_sale, False)
    try:
        for filters in (None, Filters(exclude_items=["t2-old1", "t0-old0"]), Filters(price_max=4.0)):
            want = _ranked_with_every_candidate(fitted, users, k, filters)
            # one shopper per call (the served path) and a block of them (the precomputed lists)
            one = [fitted.recommend([u], k, filters=filters)[0] for u in users]
            block = fitted.recommend(users, k, filters=filters)
            for got in (one, block):
                assert [(r.items, r.scores) for r in got] == want
                assert all(not set(r.items) & set(off_sale) for r in got)
    finally:
        fitted.set_availability(off_sale, True)


def test_category_affinity_counts_as_the_one_hot_product_did() -> None:
    rng = np.random.default_rng(3)
    n_items, n_codes = 300, 7
    codes = rng.integers(-1, n_codes, n_items).astype(np.int32)  # -1: NO_CODE, an item with none
    h = sp.random(12, n_items, density=0.05, format="csr", dtype=np.float32, random_state=4)
    h.data[:] = 1
    h = sp.vstack([h, sp.csr_matrix((1, n_items), dtype=np.float32)]).tocsr()  # a row with no history
    rows = np.repeat(np.arange(13), 40)
    items = rng.integers(0, n_items, len(rows))
    # the earlier formula: history × one-hot(item → code), then the share of each row's total
    has = np.flatnonzero(codes != -1)
    onehot = sp.csr_matrix((np.ones(len(has), np.float32), (has, codes[has])), shape=(n_items, n_codes))
    aff = sp.csr_matrix(h @ onehot)
    totals = np.asarray(aff.sum(axis=1)).ravel()
    ok = codes[items] != -1
    vals = np.asarray(aff[rows[ok], codes[items[ok]]]).ravel()
    want = np.full(len(items), np.nan, np.float32)
    want[ok] = np.divide(vals, totals[rows[ok]], out=np.zeros_like(vals), where=totals[rows[ok]] > 0)
    got = HybridRecommender._affinity(h, codes, n_codes, rows, items)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[~ok]).all() and (got[ok] > 0).any() and (got[ok] == 0).any()


def test_one_shoppers_ranks_are_those_of_a_block() -> None:
    rng = np.random.default_rng(5)
    block = rng.integers(0, 40, (6, 500)).astype(np.float32)  # many ties, as retriever scores have
    block[block < 3] = -np.inf  # the shopper's own items
    for depth in (50, 499, 500, 800):
        ranks = _ranks(block, depth)
        for r in range(len(block)):
            np.testing.assert_array_equal(_ranks(block[r : r + 1], depth), ranks[r : r + 1])


def test_item_knn_and_content_reasons_read_as_before(fitted: HybridRecommender) -> None:
    knn, content = fitted.stage.retrievers[0], fitted.stage.retrievers[2]
    assert knn.name == "itemknn" and content.name == "content-tfidf"
    for u in range(0, 240, 7):
        history = fitted.state.history[u].indices
        if not len(history):
            continue
        items = np.setdiff1d(np.arange(fitted.n_items), history)[::2]
        # item-KNN before: a loop over the history rows' entries, the first strictly larger wins
        rows = knn.sim[history]
        owner = np.repeat(history, np.diff(rows.indptr))
        place = {int(i): j for j, i in enumerate(items)}
        best, src = np.zeros(len(items), np.float32), np.full(len(items), -1)
        for col, val, o in zip(rows.indices, rows.data, owner, strict=True):
            j = place.get(int(col))
            if j is not None and val > best[j]:
                best[j], src[j] = val, o
        want = [f"similar to {knn._label(int(b))}" if b >= 0 else knn.reason_default for b in src]
        assert knn._reasons(history, items) == want
        # content before: the sims of fancy-indexed rows
        block = np.asarray((content.vectors[history] @ content.vectors[items].T).toarray(), np.float32)
        b = block.argmax(axis=0)
        want = [
            f"similar to {content._label(history[i])}" if block[i, j] > 0 else content.reason_default
            for j, i in enumerate(b)
        ]
        assert content._reasons(history, items) == want


def test_one_shoppers_attention_is_that_of_a_block() -> None:
    rng = np.random.default_rng(6)
    emb = rng.standard_normal((200, 16)).astype(np.float32)
    recent = rng.integers(-1, 200, (3, 10)).astype(np.int32)
    items = rng.integers(0, 200, 90)
    alone = _attention(emb, np.zeros(90, np.int64), items, recent, 5.0)
    block = _attention(emb, np.r_[np.zeros(90, np.int64), 1, 2], np.r_[items, 0, 1], recent, 5.0)
    for one, many in zip(alone, block, strict=True):
        np.testing.assert_array_equal(one, many[:90])


def _knn_reasons_before(knn: Any, history: np.ndarray, items: np.ndarray) -> list[str]:
    """Item-KNN's reasons as they were read before: the history's rows of ``sim``."""
    rows = csr_rows(knn.sim, np.asarray(history, np.int64))
    owner = np.repeat(np.asarray(history), np.diff(rows.indptr))
    best_from = np.full(len(items), -1, np.int64)
    hit = np.flatnonzero(np.isin(rows.indices, items) & (rows.data > 0))
    if len(hit):
        cols, vals = rows.indices[hit].astype(np.int64), rows.data[hit]
        order = np.lexsort((hit, -vals, cols))
        first = order[np.r_[True, cols[order][1:] != cols[order][:-1]]]
        last = {int(item): j for j, item in enumerate(items)}
        best_from[np.array([last[int(c)] for c in cols[first]], np.int64)] = owner[hit[first]]
    return [f"similar to {knn._label(int(b))}" if b >= 0 else knn.reason_default for b in best_from]


def test_reasons_read_off_the_shown_items_are_those_of_the_history_rows(fitted: HybridRecommender) -> None:
    knn = fitted.stage.retrievers[0]
    b = np.random.default_rng(7).standard_normal((fitted.n_items,) * 2).astype(np.float32)  # EASE's B
    rng = np.random.default_rng(8)
    ties = 0
    for u in range(0, 240, 5):
        history = fitted.state.history[u].indices.astype(np.int64)
        if not len(history):
            continue
        items = rng.integers(0, fitted.n_items, 30)
        items[:4] = items[4:8]  # an item listed twice: answered at its last place, as before
        # a history in any order (ties: the earliest in it) and one that names an item twice
        for hist in (history, history[::-1].copy(), np.r_[history, history[:3]]):
            assert knn._reasons(hist, items) == _knn_reasons_before(knn, hist, items)
            np.testing.assert_array_equal(_cells(b, hist, items), b[np.ix_(hist, items)])
            np.testing.assert_array_equal(_cells(np.asfortranarray(b), hist, items), b[np.ix_(hist, items)])
        ties += len(set(knn.sim[history].data.tolist())) < knn.sim[history].nnz
    assert ties  # the fixture's similarities do tie: the tie order was checked, not only the values


def test_feature_columns_are_written_as_column_stack_wrote_them() -> None:
    rng = np.random.default_rng(9)
    n = 57
    parts = [
        rng.standard_normal(n).astype(np.float32),
        rng.standard_normal(n),  # a float64 column (the price fit): rounded once, to float32
        np.where(rng.random(n) < 0.2, np.nan, rng.standard_normal(n)),
        rng.standard_normal((n, 11)).astype(np.float32),
        rng.standard_normal((n, 4)),
        np.full(n, np.inf, np.float32),
    ]
    got = _stack_columns(parts, n)
    want = np.column_stack(parts).astype(np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
