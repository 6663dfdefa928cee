"""Serving behaviour on real Online Retail lines: popularity variants, exclusion per event type,
cold items, bought-together from a whole cart, configs that refuse unknown settings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from shelfwise.evaluation.protocol import basket_hit_rate
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import temporal_split
from shelfwise.recommend import Filters, ModelError, make_model, model_from_config
from shelfwise.recommend.bundles import basket_matrix
from tests.unit.recommend.slices import retail, retail_purchases


def test_configs_refuse_unknown_settings_and_round_trip() -> None:
    with pytest.raises(ModelError, match="neighbors"):
        model_from_config({"model": "itemknn", "neighbors": 5})
    with pytest.raises(ModelError, match="unknown model"):
        model_from_config({"model": "sasrec-typo"})
    cfg = make_model("trending", window_days=3.0).config
    again = model_from_config(cfg.model_dump(mode="json"))
    assert again.config == cfg and again.config.mode == "trending"


def test_decay_and_trending_favour_recent_sales() -> None:
    data = retail_purchases()
    day = 86_400_000
    end = int(data.ts.max())
    recent = np.bincount(data.items[data.ts > end - 3 * day], minlength=data.n_items)
    before = np.bincount(
        data.items[(data.ts <= end - 3 * day) & (data.ts > end - 6 * day)], minlength=data.n_items
    )
    overall = make_model("popular").fit(data).recommend(["x"], k=10)[0].items
    decayed = make_model("popular-decay", half_life_days=1.0).fit(data).recommend(["x"], k=10)[0].items
    trending = make_model("trending", window_days=3.0).fit(data).recommend(["x"], k=10)[0].items
    assert decayed != overall and trending != overall
    recent_of = dict(zip(data.item_map.external.tolist(), recent.tolist(), strict=True))
    growth_of = dict(zip(data.item_map.external.tolist(), (recent - before).tolist(), strict=True))
    # decay puts first what sold more in the last days; trending what grew most against the days before
    assert np.mean([recent_of[i] for i in decayed]) > np.mean([recent_of[i] for i in overall])
    assert np.mean([growth_of[i] for i in trending]) > np.mean([growth_of[i] for i in overall])
    assert min(growth_of[i] for i in trending) > 0


def test_popular_in_category_follows_the_shoppers_categories() -> None:
    data = retail_purchases()
    model = make_model("popular-category").fit(data)
    plain = make_model("popular").fit(data)
    attrs = data.item_attributes
    counts = np.bincount(data.users, minlength=data.n_users)
    users = np.argsort(-counts, kind="stable")[:30]
    ours = theirs = 0.0
    for u in users:
        top3 = np.argsort(-np.bincount(attrs.category[data.items[data.users == u]]))[:3]
        user = data.user_map.external[u]
        for rec, bucket in (
            (model.recommend([user], k=10)[0], "ours"),
            (plain.recommend([user], k=10)[0], "theirs"),
        ):
            share = np.isin(attrs.category[data.item_map.to_internal(rec.items)], top3).mean()
            if bucket == "ours":
                ours += share
            else:
                theirs += share
    assert ours > 2 * theirs, (ours, theirs)
    rec = model.recommend([data.user_map.external[users[0]]], k=10)[0]
    assert all(r.startswith("popular in ") for r in rec.reasons)


@dataclass(frozen=True)
class _Catalogue:
    category: str | None
    price: float | None = None
    brand: str | None = None
    available: bool = True


def _with_new_item() -> tuple[Dataset, str]:
    """The purchases slice whose catalogue gains "NEW-ITEM", which nobody has bought yet, in the
    busiest category (returned with it)."""
    from shelfwise.features.dataset import IdMap

    data = retail_purchases()
    attrs = data.item_attributes
    top_cat = str(attrs.category_names[np.bincount(attrs.category[data.items]).argmax()])
    catalogue = {
        i: _Catalogue(category=str(attrs.category_names[c]))
        for i, c in zip(data.item_map.external.tolist(), attrs.category.tolist(), strict=True)
        if c >= 0
    }
    catalogue["NEW-ITEM"] = _Catalogue(category=top_cat)
    grown = Dataset(
        users=data.users,
        items=data.items,
        ts=data.ts,
        types=data.types,
        weight=data.weight,
        type_names=data.type_names,
        user_map=data.user_map,
        item_map=IdMap(np.append(data.item_map.external, "NEW-ITEM")),
        item_attributes=data.item_attributes,
    ).with_items(catalogue)
    return grown, top_cat


def test_cold_items_get_their_categorys_popularity() -> None:
    grown, top_cat = _with_new_item()
    model = make_model("popular-category").fit(grown)
    new = grown.item_map.to_internal(["NEW-ITEM"])[0]
    assert model.scores[new] > 0
    in_cat = np.flatnonzero(grown.item_attributes.category == grown.item_attributes.category[new])
    warm = in_cat[in_cat != new]
    # it ranks among its category's sellers, above the weakest of them, not last of the catalogue
    assert model.scores[new] > np.min(model.scores[warm])
    shown = model.recommend(["nobody"], k=len(in_cat), filters=Filters(categories=[str(top_cat)]))[0]
    assert "NEW-ITEM" in shown.items[:-1]


def test_exclusion_follows_the_configured_event_types() -> None:
    data = retail()  # purchases and returns (cancellations)
    ret = data.type_mask(["return"])
    only_returned = set(zip(data.users[ret].tolist(), data.items[ret].tolist(), strict=True)) - set(
        zip(data.users[~ret].tolist(), data.items[~ret].tolist(), strict=True)
    )
    assert only_returned, "the slice has items a customer returned and never bought again"
    u, i = next(iter(sorted(only_returned)))
    user = data.user_map.external[u]
    item = data.item_map.external[i]
    everything = make_model("itemknn").fit(data)
    purchases_only = make_model("itemknn", exclude_types=["purchase"]).fit(data)
    assert item not in everything.recommend([user], k=data.n_items)[0].items
    assert item in purchases_only.recommend([user], k=data.n_items)[0].items


def test_bought_together_recommends_from_the_whole_cart() -> None:
    data = retail_purchases()
    split = temporal_split(data, test_fraction=0.25)
    held_out = data.select(data.ts >= split.info["cutoff_ms"])  # type: ignore[index]
    model = make_model("bought-together", min_support=0.01).fit(split.train)
    assert model.n_rules > 0  # type: ignore[attr-defined]
    ours = basket_hit_rate(model, held_out, k=10)
    popular = basket_hit_rate(make_model("popular").fit(split.train), held_out, k=10)
    assert ours["baskets"] > 100
    assert ours["basket_hr@10"] > 2 * popular["basket_hr@10"], (ours, popular)
    # a two-item rule fires only when both items are in the cart
    a, b, to = model.rule_a, model.rule_b, model.rule_to  # type: ignore[attr-defined]
    pair = np.flatnonzero(b >= 0)
    if len(pair):
        r = pair[0]
        ids = model.item_map.to_external([a[r], b[r], to[r]])
        both = model.recommend_for_events(ids[:2], k=model.n_items, exclude_seen=True)
        assert ids[2] in both.items[:50]
        assert any(x.startswith("bought together with") for x in both.reasons)
    baskets = basket_matrix(split.train, gap_minutes=60)
    assert baskets.shape[0] > len(np.unique(split.train.users))  # several baskets per customer


@pytest.mark.parametrize("config", [{"model": "als", "factors": 16, "iterations": 3}, {"model": "itemknn"}])
def test_a_cold_item_has_no_similar_items_so_the_service_falls_back(config: dict[str, object]) -> None:
    """An item in the catalogue that no event names scores the same against every item (zero
    factors, an empty similarity row): the model says nothing (the lowest item ids are not
    'similar'), so the serving chain goes on to popular items of its category; a warm item's
    similar items still come from the model."""
    data = retail_purchases()
    grown, _ = _with_new_item()
    model = model_from_config(config).fit(grown)
    assert model.similar_items(["NEW-ITEM"], 10)[0].items == []
    # a session of it alone: no answer, or the model's own stand-in (item-kNN scores a history it
    # has no neighbours for by popularity), never the lowest item ids
    session = model.recommend_for_events(["NEW-ITEM"], 10)
    popular = data.item_map.external[np.argsort(-np.bincount(data.items), kind="stable")[:50]]
    assert set(session.items) <= set(popular.tolist())
    warm = str(data.item_map.external[np.bincount(data.items).argmax()])
    similar = model.similar_items([warm], 10)[0]
    assert len(similar.items) == 10 and similar.scores[0] > similar.scores[-1]


def test_no_preference_reads_rows_of_equal_scores() -> None:
    from shelfwise.recommend.base import no_preference

    row = np.zeros(10_000, np.float32)
    assert no_preference(row)
    row[[3, 9_000]] = -np.inf  # masked items do not count
    assert no_preference(row)
    row[9_500] = 0.5  # one item above the rest, past the first 4,096
    assert not no_preference(row)
    assert no_preference(np.full(5, -np.inf, np.float32)) and no_preference(np.zeros(0, np.float32))
    assert not no_preference(np.array([1.0, 2.0, 3.0]))


def test_evidence_floor_is_the_score_most_items_share() -> None:
    from shelfwise.recommend.base import evidence_floor

    row = np.zeros(10_000, np.float32)
    row[[5, 70]] = [0.4, 0.2]
    assert evidence_floor(row) == 0.0
    row[:6_000] = -np.inf  # masked items do not count: the rest still share 0
    assert evidence_floor(row) == 0.0
    rng = np.random.default_rng(0)
    assert evidence_floor(rng.random(10_000).astype(np.float32)) is None  # a dense model's row
    half = np.zeros(100, np.float32)
    half[:50] = np.arange(1, 51)
    assert evidence_floor(half) is None  # a value half the items share is not "most"
    assert evidence_floor(np.full(3, -np.inf, np.float32)) is None


@pytest.mark.parametrize("name", ["itemknn", "bought-together"])
def test_a_warm_items_similar_items_end_where_its_evidence_does(name: str) -> None:
    """An item bought with few others: its list holds those (score above the row's common 0), not
    the next items in id order at score 0."""
    data = retail_purchases()
    model = make_model(name).fit(data)
    lengths = []
    for item in data.item_map.external.tolist():
        [sim] = model.similar_items([item], 10)
        i = model.item_map.to_internal([item])[0]
        row = np.array(model._similar_scores(np.array([i]))[0], dtype=np.float32)
        row[i] = -np.inf  # never the item itself
        evidence = int(np.count_nonzero(row > 0))
        assert all(s > 0 for s in sim.scores), (item, sim.scores)
        assert len(sim.items) >= min(10, max(evidence, 0)), (item, evidence, sim.items)
        lengths.append(len(sim.items))
    assert sum(0 < n < 10 for n in lengths) > 0  # the slice has short lists: the test can fail
