"""User and item profiles, from a (training) ``Dataset`` only: pass ``split.train``, never the
whole data, or the test period leaks into features.

Users: category and brand affinity (share of their events per category/brand), price band
(quantile of the median price they paid among all users' medians), recency (days between their
last event and the end of the data) and frequency (events, active days).
Items: popularity (distinct users), events, conversion rate (purchasing users / viewing users,
NaN where the data has no views), price, and a text embedding of title/description when asked for
(``item_profiles(ds, embed=embed_texts)`` with ``shelfwise.features.embeddings.embed_texts``, or any
function from texts to unit vectors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shelfwise.features.dataset import NO_CODE, Dataset

DAY_MS = 86_400_000
PRICE_BANDS = 4  # quartiles


@dataclass(frozen=True)
class UserProfiles:
    category_affinity: sp.csr_matrix  # users × categories, rows sum to 1 (or 0)
    brand_affinity: sp.csr_matrix  # users × brands
    price_band: np.ndarray  # int8, 0..PRICE_BANDS-1, -1 unknown
    median_price: np.ndarray  # float64, nan unknown
    recency_days: np.ndarray  # float64, inf for users with no events
    frequency: np.ndarray  # int32, events
    active_days: np.ndarray  # int32, distinct days with an event


@dataclass(frozen=True)
class ItemProfiles:
    popularity: np.ndarray  # int32, distinct users
    events: np.ndarray  # int32
    conversion_rate: np.ndarray  # float64, nan when no views
    price: np.ndarray  # float64
    last_seen_days: np.ndarray  # float64, days before the end of the data; inf if never
    text_embedding: np.ndarray | None = None  # float32 items × d, unit rows (zero: no text); if asked


def _affinity(users: np.ndarray, codes: np.ndarray, n_users: int, n_codes: int) -> sp.csr_matrix:
    keep = codes != NO_CODE
    m = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (users[keep], codes[keep])), shape=(n_users, max(n_codes, 0))
    )
    m.sum_duplicates()
    totals = np.asarray(m.sum(axis=1)).ravel()
    totals[totals == 0] = 1
    return sp.csr_matrix(sp.diags(1.0 / totals) @ m)


def user_profiles(ds: Dataset, *, now_ms: int | None = None) -> UserProfiles:
    attrs = ds.item_attributes
    end = int(ds.ts.max()) if now_ms is None and len(ds) else (now_ms or 0)
    cat = _affinity(ds.users, attrs.category[ds.items], ds.n_users, len(attrs.category_names))
    brand = _affinity(ds.users, attrs.brand[ds.items], ds.n_users, len(attrs.brand_names))
    # median price per user of the items they touched
    prices = attrs.price[ds.items]
    median = np.full(ds.n_users, np.nan)
    ok = ~np.isnan(prices)
    if ok.any():
        order = np.lexsort((prices[ok], ds.users[ok]))
        u, p = ds.users[ok][order], prices[ok][order]
        bounds = np.flatnonzero(np.diff(u)) + 1
        for chunk_u, chunk_p in zip(np.split(u, bounds), np.split(p, bounds), strict=True):
            median[chunk_u[0]] = float(np.median(chunk_p))
    band = np.full(ds.n_users, -1, np.int8)
    known = ~np.isnan(median)
    if known.any():
        edges = np.quantile(median[known], np.linspace(0, 1, PRICE_BANDS + 1)[1:-1])
        band[known] = np.searchsorted(edges, median[known], side="right").astype(np.int8)
    last = np.full(ds.n_users, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, ds.users, ds.ts)
    recency = np.where(last == np.iinfo(np.int64).min, np.inf, (end - last) / DAY_MS)
    freq = np.bincount(ds.users, minlength=ds.n_users).astype(np.int32)
    days = np.unique(np.stack([ds.users.astype(np.int64), ds.ts // DAY_MS]), axis=1)
    active = np.bincount(days[0], minlength=ds.n_users).astype(np.int32)
    return UserProfiles(cat, brand, band, median, recency, freq, active)


def item_profiles(
    ds: Dataset, *, now_ms: int | None = None, embed: Callable[[Sequence[str]], np.ndarray] | None = None
) -> ItemProfiles:
    end = int(ds.ts.max()) if now_ms is None and len(ds) else (now_ms or 0)
    binary = ds.matrix()
    popularity = np.asarray(binary.sum(axis=0)).ravel().astype(np.int32)
    events = np.bincount(ds.items, minlength=ds.n_items).astype(np.int32)
    conversion = np.full(ds.n_items, np.nan)
    if "view" in ds.type_names and "purchase" in ds.type_names:
        viewers = np.asarray(ds.matrix(types=["view"]).sum(axis=0)).ravel()
        buyers = np.asarray(ds.matrix(types=["purchase"]).sum(axis=0)).ravel()
        has = viewers > 0
        conversion[has] = np.minimum(buyers[has] / viewers[has], 1.0)
    last = np.full(ds.n_items, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last, ds.items, ds.ts)
    last_days = np.where(last == np.iinfo(np.int64).min, np.inf, (end - last) / DAY_MS)
    text = None
    if embed is not None:
        texts = ds.item_attributes.text
        text = np.asarray(embed(texts.tolist() if texts is not None else [""] * ds.n_items), np.float32)
    return ItemProfiles(popularity, events, conversion, ds.item_attributes.price.copy(), last_days, text)
