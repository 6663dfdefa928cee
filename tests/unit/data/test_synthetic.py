"""The synthetic shop generator (issue 19, item 3): flat memory in the number of events, and the
shapes a real shop's data has (power laws, sessions, seasonality, funnel rates, catalogue churn)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shelfwise.data.synthetic import DAY_MS, ShopConfig, generate_events, make_catalogue

_PEAK = """
import sys
from pathlib import Path
from shelfwise.core.memory import peak_rss_bytes
from shelfwise.data.synthetic import ShopConfig, write_shop
n = int(sys.argv[1])
write_shop(ShopConfig(events=n, items=50_000, users=50_000, seed=5), Path(sys.argv[2]))
print(peak_rss_bytes())
"""


def _peak_rss(n_events: int, out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(n_events), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    return int(done.stdout.strip().splitlines()[-1])


def test_memory_is_flat_in_the_number_of_events(tmp_path: Path) -> None:
    small = _peak_rss(100_000, tmp_path / "small.csv")
    big = _peak_rss(1_000_000, tmp_path / "big.csv")
    with open(tmp_path / "big.csv") as fh:
        lines = sum(1 for _ in fh)
    assert lines == 1_000_001  # header + exactly the events asked for
    # ten times the events, the same peak (within 10% + 16 MB of allocator noise)
    assert big <= small * 1.10 + 16 * 2**20, (small, big)


@pytest.fixture(scope="module")
def shop() -> tuple[ShopConfig, dict[str, np.ndarray]]:
    cfg = ShopConfig(events=200_000, items=20_000, users=20_000, seed=11)
    chunks = list(generate_events(cfg))
    cols = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return cfg, cols


def test_exactly_the_events_asked_for_in_time_order_per_chunk(shop) -> None:
    cfg, cols = shop
    assert len(cols["ts"]) == cfg.events
    views = cols["kind"] == 0
    start = np.datetime64(cfg.start, "ms").astype(np.int64)
    assert cols["ts"][views].min() >= start
    assert cols["ts"][views].max() < start + cfg.days * DAY_MS + DAY_MS


def test_items_and_shoppers_follow_power_laws(shop) -> None:
    cfg, cols = shop
    views = cols["item"][cols["kind"] == 0]
    counts = np.sort(np.bincount(views, minlength=cfg.items))[::-1]
    top1 = counts[: cfg.items // 100].sum() / counts.sum()
    assert top1 > 0.2  # the top 1% of items take over a fifth of the views
    ranks = np.arange(10, 1000)
    slope = np.polyfit(np.log(ranks), np.log(counts[ranks - 1]), 1)[0]
    assert -1.4 < slope < -0.6  # Zipf (exponent ~1), bent by catalogue churn
    per_user = np.sort(np.bincount(cols["user"], minlength=cfg.users))[::-1]
    assert per_user[: cfg.users // 10].sum() / per_user.sum() > 0.4  # a heavy tail of shoppers
    assert (per_user == 0).mean() > 0.05  # and many who were never seen


def test_the_funnel_rates(shop) -> None:
    cfg, cols = shop
    n = np.bincount(cols["kind"], minlength=4)
    assert abs(n[1] / n[0] - cfg.cart_rate) < 0.01
    assert abs(n[2] / n[1] - cfg.purchase_rate) < 0.03
    assert abs(n[3] / n[2] - cfg.return_rate) < 0.02


def test_sessions_stay_in_a_category(shop) -> None:
    cfg, cols = shop
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 1]))
    views = cols["kind"] == 0
    sess, items = cols["session"][views], cols["item"][views]
    order = np.lexsort((cols["ts"][views], sess))
    sess, items = sess[order], items[order]
    first = np.r_[True, sess[1:] != sess[:-1]]
    first_cat = cat.category[items[first]][np.cumsum(first) - 1]
    later = ~first
    same = (cat.category[items[later]] == first_cat[later]).mean()
    assert same > 0.6  # session_focus 0.7, plus chance
    lengths = np.bincount(np.cumsum(first) - 1)
    assert 3.5 < lengths.mean() < 6.5


def test_seasonality_by_hour_and_month(shop) -> None:
    _, cols = shop
    t = cols["ts"][cols["kind"] == 0]
    hours = np.bincount((t // 3_600_000) % 24, minlength=24)
    assert hours[20] > 4 * hours[3]  # evenings, not nights
    months = np.bincount(t.astype("datetime64[ms]").astype("datetime64[M]").astype(int) % 12, minlength=12)
    assert months[11] > 1.5 * months[1]  # December over February


def test_catalogue_churn(shop) -> None:
    cfg, cols = shop
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 1]))
    views = cols["kind"] == 0
    item, t = cols["item"][views], cols["ts"][views]
    assert ((cat.born[item] <= t) & (t < cat.gone[item])).all()  # never seen outside its life
    end = np.datetime64(cfg.start, "ms").astype(np.int64) + cfg.days * DAY_MS
    retired = (cat.gone <= end).mean()
    assert abs(retired - cfg.retire_share) < 0.03
    late = cat.born > np.datetime64(cfg.start, "ms").astype(np.int64)
    assert abs(late.mean() - (1 - cfg.initial_share)) < 0.03


def test_shoppers_have_a_taste(shop) -> None:
    """A shopper's views concentrate on a few categories, beyond what the categories' sizes explain."""
    cfg, cols = shop
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 1]))
    views = cols["kind"] == 0
    users, cats = cols["user"][views], cat.category[cols["item"][views]]
    active = np.flatnonzero(np.bincount(users) >= 20)[:300]
    top_share = []
    for u in active:
        counts = np.bincount(cats[users == u])
        top_share.append(np.sort(counts)[-2:].sum() / counts.sum())
    overall = np.sort(np.bincount(cats))[-2:].sum() / len(cats)
    assert np.mean(top_share) > overall + 0.2
