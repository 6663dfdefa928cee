"""A generator of shop-sized synthetic data: events and a catalogue that ``shelfwise ingest`` reads.

What makes it look like a shop rather than noise (each a knob of ``ShopConfig``):

- **power-law items and shoppers**: item popularity follows Zipf's law (exponent ``item_zipf``,
  ~1 in e-commerce logs) and shopper activity a Pareto tail (``user_pareto``): a few items and
  shoppers hold most of the events, most are seen once or twice;
- **taste**: each shopper has two favourite categories, where ``taste`` of their visits start (so
  a personalised model has something to learn that popularity alone does not know);
- **sessions**: a shopper's visit is a burst of views a minute or so apart, mostly within one
  category (``session_focus``), some items put in the cart, some carts bought at the end;
- **seasonality**: visits follow the hour of day (evening peak), the day of week (Sunday and Monday
  highest) and the year (a November–December peak);
- **carts, purchases and returns**: ``cart_rate`` of views, ``purchase_rate`` of carts,
  ``return_rate`` of purchases (returned 2–30 days later);
- **catalogue churn**: items arrive through the period (``initial_share`` exist at the start) and
  ``retire_share`` are discontinued before its end: no events after they leave, and the catalogue
  file marks them unavailable.

It streams: events are made ``chunk_sessions`` sessions at a time, in time order, and written as
they are made, so memory is the catalogue's and the shoppers' arrays (O(items + users)) whatever the
number of events. The output is the generic ``csv`` events format (``csv-items`` for the catalogue)::

    shelfwise generate --events 1000000 --items 50000 --users 100000 --seed 1 --out shop.csv.gz
    shelfwise ingest items shop.items.csv.gz --format csv-items
    shelfwise ingest events shop.csv.gz --format csv
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DAY_MS = 86_400_000
EVENT_HEADER = "event_id,type,ts,user_id,session_id,item_id,quantity,price,currency"
ITEM_HEADER = "item_id,title,category,brand,price,currency,available"

# relative visits per hour of day (UTC shop time), weekday (Mon..Sun) and month (Jan..Dec)
HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 8, 8, 7, 7, 8, 9, 10, 12, 13, 12, 9, 5], float)
WEEKDAYS = np.array([1.1, 1.0, 0.95, 0.95, 0.9, 0.9, 1.2])
MONTHS = np.array([0.9, 0.8, 0.85, 0.85, 0.9, 0.9, 0.9, 0.9, 0.95, 1.0, 1.4, 1.7])
WORDS = [
    "classic",
    "soft",
    "slim",
    "bold",
    "mini",
    "smart",
    "eco",
    "pro",
    "light",
    "dark",
    "warm",
    "cool",
    "vintage",
    "urban",
    "sport",
    "travel",
    "home",
    "cotton",
    "steel",
    "wooden",
    "glass",
    "leather",
    "wireless",
    "compact",
    "deluxe",
    "organic",
    "daily",
]
NOUNS = [
    "shirt",
    "lamp",
    "mug",
    "bag",
    "shoe",
    "jacket",
    "chair",
    "phone",
    "case",
    "bottle",
    "watch",
    "pan",
    "towel",
    "desk",
    "cable",
    "kettle",
]


class ShopConfig(BaseModel):
    """A synthetic shop: its size, its shape, and the seed that makes it reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: int = Field(100_000, ge=1)
    items: int = Field(10_000, ge=2)
    users: int = Field(10_000, ge=1)
    seed: int = 0
    start: date = date(2025, 1, 1)
    days: int = Field(365, ge=1)
    categories: int = Field(0, ge=0, description="0: about one per 200 items (at least 5)")
    item_zipf: float = Field(1.0, gt=0, description="popularity of the item of rank r ∝ r^-item_zipf")
    user_pareto: float = Field(1.2, gt=0, description="shopper activity: Pareto tail index")
    session_views: float = Field(5.0, ge=1, description="mean views per session")
    session_focus: float = Field(0.7, ge=0, le=1, description="share of a session's views in its category")
    taste: float = Field(
        0.6, ge=0, le=1, description="share of a shopper's sessions that start in a favourite category"
    )
    cart_rate: float = Field(0.1, ge=0, le=1)
    purchase_rate: float = Field(0.35, ge=0, le=1, description="share of carted items bought")
    return_rate: float = Field(0.06, ge=0, le=1, description="share of purchases returned")
    initial_share: float = Field(0.6, gt=0, le=1, description="items in the catalogue on the first day")
    retire_share: float = Field(0.15, ge=0, lt=1, description="items discontinued before the last day")
    chunk_sessions: int = Field(20_000, ge=1, description="sessions generated (and held) at a time")


@dataclass
class Catalogue:
    """Per-item arrays, in item-id order, and the category-sorted cumulative weights for sampling."""

    weight: np.ndarray  # float64 popularity
    category: np.ndarray  # int32
    brand: np.ndarray  # int32
    price: np.ndarray  # float64
    born: np.ndarray  # int64 ms: first moment the item can be seen
    gone: np.ndarray  # int64 ms: the item is discontinued from here (beyond the end: never)
    by_category: np.ndarray  # item ids sorted by category
    cum: np.ndarray  # cumulative weight along by_category
    cat_lo: np.ndarray  # by_category[cat_lo[c]:cat_hi[c]] are category c's items
    cat_hi: np.ndarray


def _ms(d: date) -> int:
    return int(np.datetime64(d, "ms").astype(np.int64))


def make_catalogue(cfg: ShopConfig, rng: np.random.Generator) -> Catalogue:
    n = cfg.items
    n_cat = cfg.categories or max(5, n // 200)
    start, end = _ms(cfg.start), _ms(cfg.start) + cfg.days * DAY_MS
    weight = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** cfg.item_zipf
    rng.shuffle(weight)  # popularity is not the id order
    # category sizes are themselves skewed: a few big departments, a long tail of small ones
    cat_p = 1.0 / np.arange(1, n_cat + 1) ** 0.8
    category = rng.choice(n_cat, n, p=cat_p / cat_p.sum()).astype(np.int32)
    brand = rng.integers(0, max(3, n // 50), n).astype(np.int32)
    cat_price = np.exp(rng.normal(3.0, 0.8, n_cat))
    price = np.round(cat_price[category] * np.exp(rng.normal(0, 0.4, n)), 2)
    born = np.where(
        rng.random(n) < cfg.initial_share, start - DAY_MS, start + (rng.random(n) * (end - start))
    ).astype(np.int64)
    retire = rng.random(n) < cfg.retire_share
    gone = np.where(retire, born + rng.random(n) * (end - born), end + DAY_MS).astype(np.int64)
    gone = np.maximum(gone, born + DAY_MS)  # an item lives at least a day
    order = np.argsort(category, kind="stable")
    cum = np.cumsum(weight[order])
    counts = np.bincount(category, minlength=n_cat)
    cat_hi = np.cumsum(counts)
    return Catalogue(weight, category, brand, price, born, gone, order, cum, cat_hi - counts, cat_hi)


def _hour_weights(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The hours (since the epoch) in [lo, hi) ms and their relative visit rates."""
    hours = np.arange(lo // 3_600_000, max(hi // 3_600_000, lo // 3_600_000 + 1))
    weekday = ((hours // 24 + 3) % 7).astype(int)  # 1970-01-01 was a Thursday
    month = hours.astype("datetime64[h]").astype("datetime64[M]").astype(int) % 12
    return hours, HOURS[(hours % 24).astype(int)] * WEEKDAYS[weekday] * MONTHS[month]


def _chunk_edges(lo: int, hi: int, chunks: int) -> np.ndarray:
    """Times cutting [lo, hi) into ``chunks`` windows of equal expected visits, so equal-sized chunks
    of sessions keep the seasons (December's window is shorter than February's)."""
    hours, w = _hour_weights(lo, hi)
    cum = np.cumsum(w) / w.sum()
    cut = np.searchsorted(cum, np.arange(1, chunks) / chunks)
    inner = hours[np.minimum(cut + 1, len(hours) - 1)] * 3_600_000
    return np.r_[lo, np.clip(inner, lo, hi), hi].astype(np.int64)


def _session_times(rng: np.random.Generator, lo: int, hi: int, k: int) -> np.ndarray:
    """``k`` session start times in [lo, hi) ms, following the daily, weekly and yearly cycles."""
    hours, w = _hour_weights(lo, hi)
    picked = rng.choice(len(hours), k, p=w / w.sum())
    t = hours[picked] * 3_600_000 + rng.integers(0, 3_600_000, k)
    return np.sort(np.clip(t, lo, hi - 1))


def _sample_items(
    cat: Catalogue, rng: np.random.Generator, when: np.ndarray, category: np.ndarray | None
) -> np.ndarray:
    """An item per event by popularity (within ``category`` where given, -1 for any), alive at
    ``when``; draws again for the ones that were not alive yet or any more (rejection)."""
    out = np.full(len(when), -1, np.int64)
    todo = np.arange(len(when))
    for _ in range(30):
        if not len(todo):
            break
        if category is None:
            lo = np.zeros(len(todo))
            hi = np.full(len(todo), cat.cum[-1])
        else:
            c = category[todo]
            lo = np.where(cat.cat_lo[c] > 0, cat.cum[np.maximum(cat.cat_lo[c] - 1, 0)], 0.0)
            hi = cat.cum[cat.cat_hi[c] - 1]
        r = lo + rng.random(len(todo)) * (hi - lo)
        pos = np.minimum(np.searchsorted(cat.cum, r, side="right"), len(cat.cum) - 1)
        item = cat.by_category[pos]
        alive = (cat.born[item] <= when[todo]) & (when[todo] < cat.gone[item])
        out[todo[alive]] = item[alive]
        todo = todo[~alive]
    if len(todo) and category is not None:  # a category with nothing alive then: any item alive then
        out[todo] = _sample_items(cat, rng, when[todo], None)
    elif len(todo):  # nothing alive at all (a tiny catalogue's first days): the most popular item
        out[todo] = int(np.argmax(cat.weight))
    return out


def _events_of(
    cfg: ShopConfig,
    cat: Catalogue,
    rng: np.random.Generator,
    user_p: np.ndarray,
    taste: np.ndarray,
    lo: int,
    hi: int,
    k: int,
) -> dict[str, np.ndarray]:
    """The events of ``k`` sessions starting in [lo, hi), as columns, in time order."""
    starts = _session_times(rng, lo, hi, k)
    user = rng.choice(cfg.users, k, p=user_p)
    views = rng.geometric(1.0 / cfg.session_views, k)  # ≥ 1, mean session_views
    session = np.repeat(np.arange(k), views)
    step = rng.exponential(60_000, len(session)).astype(np.int64)  # ~ a minute between views
    first = np.r_[0, np.cumsum(views)[:-1]]
    within = np.arange(len(session)) - first[session]
    offsets = np.cumsum(step) - np.repeat(np.cumsum(step)[first], views)
    ts = starts[session] + offsets + within  # strictly increasing within a session
    # each session's first view sets its category; later views stay in it with session_focus
    # a shopper's taste: most sessions start in one of their two favourite categories
    loyal = rng.random(k) < cfg.taste
    pick = rng.integers(0, 2, k)
    home = np.where(pick == 0, taste[user, 0], taste[user, 1])
    first_item = np.empty(k, np.int64)
    first_item[loyal] = _sample_items(cat, rng, starts[loyal], home[loyal])
    first_item[~loyal] = _sample_items(cat, rng, starts[~loyal], None)
    focus_cat = cat.category[first_item]
    stay = (within > 0) & (rng.random(len(session)) < cfg.session_focus)
    item = np.empty(len(session), np.int64)
    item[within == 0] = first_item
    loose = (within > 0) & ~stay
    item[stay] = _sample_items(cat, rng, ts[stay], focus_cat[session[stay]])
    item[loose] = _sample_items(cat, rng, ts[loose], None)
    kind = np.zeros(len(session), np.int8)  # 0 view, 1 cart, 2 purchase, 3 return
    carted = rng.random(len(session)) < cfg.cart_rate
    bought = carted & (rng.random(len(session)) < cfg.purchase_rate)
    returned = bought & (rng.random(len(session)) < cfg.return_rate)
    last = np.repeat(ts[first + views - 1], views)  # purchases happen at the session's end
    parts = [
        (session, ts, item, kind),
        (session[carted], ts[carted] + 5_000, item[carted], np.full(carted.sum(), 1, np.int8)),
        (session[bought], last[bought] + 120_000, item[bought], np.full(bought.sum(), 2, np.int8)),
        (
            session[returned],
            last[returned] + rng.integers(2, 31, returned.sum()) * DAY_MS,
            item[returned],
            np.full(returned.sum(), 3, np.int8),
        ),
    ]
    s, t, i, kd = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.argsort(t, kind="stable")
    return {"session": s[order], "user": user[s[order]], "ts": t[order], "item": i[order], "kind": kd[order]}


TYPES = np.array(["view", "cart", "purchase", "return"])
WRITE_ROWS = 8_192


def generate_events(cfg: ShopConfig, catalogue: Catalogue | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Column chunks of exactly ``cfg.events`` events in total, time-ordered chunk after chunk
    (a return can come after later chunks' events: it happens days later)."""
    rng = np.random.default_rng(cfg.seed)
    cat = catalogue or make_catalogue(cfg, np.random.default_rng([cfg.seed, 1]))
    activity = rng.pareto(cfg.user_pareto, cfg.users) + 1.0
    user_p = activity / activity.sum()
    # two favourite categories per shopper, big departments more often (as their share of items)
    sizes = (cat.cat_hi - cat.cat_lo).astype(np.float64)
    taste = rng.choice(len(sizes), (cfg.users, 2), p=sizes / sizes.sum()).astype(np.int32)
    start, end = _ms(cfg.start), _ms(cfg.start) + cfg.days * DAY_MS
    per_session = cfg.session_views * (1 + cfg.cart_rate * (1 + cfg.purchase_rate * (1 + cfg.return_rate)))
    # sessions planned 1% over the expected need, spread evenly over the period: the cut at exactly
    # cfg.events then trims only the last hours, not the end of the year
    sessions = int(np.ceil(cfg.events / per_session * 1.01)) + 1
    chunks = max(1, int(np.ceil(sessions / cfg.chunk_sessions)))
    per_chunk = int(np.ceil(sessions / chunks))
    edges = _chunk_edges(start, end, chunks)
    left, c, sid = cfg.events, 0, 0
    while left > 0:
        lo, hi = (int(edges[c]), int(edges[c + 1])) if c < chunks else (int(edges[-2]), int(edges[-1]))
        cols = _events_of(cfg, cat, rng, user_p, taste, lo, hi, per_chunk)
        cols["session"] = cols["session"] + sid
        sid += per_chunk
        take = min(left, len(cols["ts"]))
        yield {k: v[:take] for k, v in cols.items()}
        left -= take
        c += 1


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.open(path, "wt", compresslevel=1, newline="")
    return open(path, "w", newline="")


def items_path_for(events_path: Path) -> Path:
    """``shop.csv.gz`` → ``shop.items.csv.gz``."""
    name = events_path.name
    stem, dot, rest = name.partition(".")
    return events_path.with_name(f"{stem}.items.{rest}" if dot else f"{stem}.items.csv")


def _write_events(fh: IO[str], cols: dict[str, np.ndarray], cat: Catalogue, first_id: int) -> np.ndarray:
    stamps = np.datetime_as_string(cols["ts"].astype("datetime64[ms]"), unit="ms")
    types = TYPES[cols["kind"]]
    prices = cat.price[cols["item"]]
    fh.writelines(
        f"e{first_id + j},{t},{s}Z,u{u},s{sess},i{i},1,{p if t != 'view' else ''},"
        f"{'EUR' if t != 'view' else ''}\n"
        for j, (t, s, u, sess, i, p) in enumerate(
            zip(
                types.tolist(),
                stamps.tolist(),
                cols["user"].tolist(),
                cols["session"].tolist(),
                cols["item"].tolist(),
                prices.tolist(),
                strict=True,
            )
        )
    )
    return types


def write_shop(
    cfg: ShopConfig,
    events_path: Path,
    items_path: Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write the catalogue and the events (CSV, gzip when the name ends in .gz); return counts."""
    items_path = items_path or items_path_for(events_path)
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 1]))
    end = _ms(cfg.start) + cfg.days * DAY_MS
    rng = np.random.default_rng([cfg.seed, 2])
    with _open(items_path) as fh:
        fh.write(ITEM_HEADER + "\n")
        for lo in range(0, cfg.items, 50_000):
            hi = min(cfg.items, lo + 50_000)
            words = rng.integers(0, len(WORDS), (hi - lo, 2))
            nouns = rng.integers(0, len(NOUNS), hi - lo)
            fh.writelines(
                f"i{i},{WORDS[a]} {WORDS[b]} {NOUNS[n]},dept {c % 7} > cat {c},brand {br},{p:.2f},EUR,"
                f"{'false' if g <= end else 'true'}\n"
                for i, a, b, n, c, br, p, g in zip(
                    range(lo, hi),
                    words[:, 0].tolist(),
                    words[:, 1].tolist(),
                    nouns.tolist(),
                    cat.category[lo:hi].tolist(),
                    cat.brand[lo:hi].tolist(),
                    cat.price[lo:hi].tolist(),
                    cat.gone[lo:hi].tolist(),
                    strict=True,
                )
            )
    counts = dict.fromkeys(TYPES.tolist(), 0)
    written = 0
    with _open(events_path) as fh:
        fh.write(EVENT_HEADER + "\n")
        for cols in generate_events(cfg, cat):
            # formatted a slice at a time: Python strings cost ~10x the arrays they come from
            for lo in range(0, len(cols["ts"]), WRITE_ROWS):
                part = {k: v[lo : lo + WRITE_ROWS] for k, v in cols.items()}
                types = _write_events(fh, part, cat, written)
                for name, n in zip(*np.unique(types, return_counts=True), strict=True):
                    counts[str(name)] += int(n)
                written += len(types)
            if progress is not None:
                progress(written, cfg.events)
    return {
        "events": written,
        "items": cfg.items,
        "users": cfg.users,
        "types": counts,
        "retired_items": int((cat.gone <= end).sum()),
        "events_file": str(events_path),
        "items_file": str(items_path),
    }
