"""Shilling detection on interaction arrays: coordinated fake accounts pushing (or nuking) items.

It extends ``anomalies`` (bots by pace, rating bursts by throwaway raters) to every event type and
to groups: an item is *under attack* in a time window when far more distinct accounts touch it
there than its rate in the other windows predicts (a Poisson z-score ``(n − λ) / √(λ + 1)``) and
that window brings at least half of all the accounts the item ever had; an account that touched
it there is *flagged* when its whole life fits the attack — its first event falls in or next to
the window, its events span at most ``max_span_hours`` — and its profile is bandwagon-shaped
(most of its other items are the shop's most popular ones, as fakes take them to look ordinary and
to reach many shoppers; Lam & Riedl 2004, Burke et al. 2006) — and most of that burst's accounts
(``min_group_share``) look like that: an attack group is homogeneous, a real rush is not.
Bot sessions (``bot_pace``) are flagged by pace alone, with the robust log-space z of
``anomalies`` and its absolute floor.

Works on a ``Dataset`` (dense ids, time-ordered arrays), so training can drop flagged accounts
(``shelfwise.evaluation.robustness``) without a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shelfwise.features.dataset import Dataset

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ShillingRule:
    """Thresholds, chosen on the REES46 sample (in-sample) and reported unchanged on Online Retail
    (see ``benchmarks/bench_trust.py``)."""

    window_hours: float = 1.0
    min_accounts: int = 8  # distinct accounts on one item in one window, at least
    z: float = 6.0
    min_share: float = 0.5  # of all the item's accounts, arriving in that one window
    max_span_hours: float = 24.0
    popular_items: int = 100  # the shop's most popular items, for the bandwagon profile test
    min_profile: int = 4  # distinct items an account needs before its profile shape counts
    popular_share: float = 0.6  # of its other items among the most popular
    min_group_share: float = 0.8  # of a burst's accounts that must look like throwaways
    core_top_share: float = 0.02  # items this popular (outside the burst) are fillers, not targets
    # lockstep groups (CopyCatch, Beutel et al. 2013): throwaway accounts, born in one window, that
    # touch the same items there — what a nuke looks like on implicit data, where the fakes push the
    # target's rivals (popular items, so the burst share test above never fires)
    lockstep_accounts: int = 12  # throwaway accounts on one item in one window, at least
    lockstep_z: float = 10.0  # against the item's throwaway accounts in the other windows
    lockstep_items: int = 4  # bursting items an account must share with its group in that window
    bot_z: float = 6.0
    bot_per_minute: int = 12  # distinct seconds with events in one minute, at least


@dataclass
class ShillingFlags:
    users: np.ndarray  # bool per dense user
    items: list[int] = field(default_factory=list)  # items found under attack
    windows: list[tuple[int, int, int, float]] = field(default_factory=list)  # item, window, accounts, z
    bots: int = 0
    bot_users: np.ndarray | None = None  # bool per dense user: flagged by pace
    edges: set[tuple[int, int]] = field(default_factory=set)  # (account, item under attack)

    def event_mask(self, ds: Dataset, *, mode: str = "edges") -> np.ndarray:
        """Events to drop from training: ``accounts`` drops every event of a flagged account;
        ``edges`` only a flagged account's events on the items it attacked (and every event of a
        bot), so a real shopper flagged by mistake keeps teaching the model the rest of what they
        did, while the attacked items lose the co-occurrences the fakes made."""
        if mode == "accounts":
            return self.users[ds.users]
        drop = np.zeros(len(ds), bool)
        if self.bot_users is not None:
            drop |= self.bot_users[ds.users]
        if self.edges:
            key = ds.users.astype(np.int64) * ds.n_items + ds.items
            bad = np.array([u * ds.n_items + i for u, i in self.edges], np.int64)
            drop |= np.isin(key, bad)
        return drop


def _robust_z(x: np.ndarray, floor: float = 0.25) -> np.ndarray:
    logged = np.log1p(x.astype(np.float64))
    med = np.median(logged) if len(logged) else 0.0
    mad = np.median(np.abs(logged - med)) * 1.4826 if len(logged) else 0.0
    return (logged - med) / max(mad, floor)


def bot_pace(ds: Dataset, rule: ShillingRule) -> np.ndarray:
    """Accounts whose busiest minute holds an outlying number of distinct seconds with events."""
    sec = ds.ts // 1000
    pairs = np.unique(np.stack([ds.users.astype(np.int64), sec]), axis=1)
    minute = pairs[1] // 60
    keys, counts = np.unique(np.stack([pairs[0], minute]), axis=1, return_counts=True)
    busiest = np.zeros(ds.n_users, np.int64)
    np.maximum.at(busiest, keys[0], counts)
    active = np.bincount(ds.users, minlength=ds.n_users) > 0
    z = np.zeros(ds.n_users)
    z[active] = _robust_z(busiest[active])
    return active & (z >= rule.bot_z) & (busiest >= rule.bot_per_minute)


def detect_shilling(ds: Dataset, rule: ShillingRule | None = None) -> ShillingFlags:
    """Flag accounts of coordinated bursts and bot-paced accounts (see the module docstring)."""
    rule = rule or ShillingRule()
    flags = np.zeros(ds.n_users, bool)
    if not len(ds):
        return ShillingFlags(flags)
    width = int(rule.window_hours * HOUR_MS)
    first = np.full(ds.n_users, np.iinfo(np.int64).max, np.int64)
    last = np.full(ds.n_users, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, ds.users, ds.ts)
    np.maximum.at(last, ds.users, ds.ts)
    out = ShillingFlags(flags)
    suspects = _bandwagon_profiles(ds, rule) & ((last - first) <= int(rule.max_span_hours * HOUR_MS))
    # windows at two offsets, so a burst that straddles a window boundary is still seen whole
    for offset in (0, width // 2):
        _flag_bursts(ds, offset, first, suspects, rule, out)
        _flag_lockstep(ds, offset, first, suspects, rule, out)
    bots = bot_pace(ds, rule)
    out.bots = int(bots.sum())
    out.bot_users = bots
    flags |= bots
    return out


def _popular(ds: Dataset, rule: ShillingRule, ignore: np.ndarray | None = None) -> np.ndarray:
    """The shop's ``popular_items`` most popular items (bool per item), without the events of the
    accounts ``ignore`` marks (bool per user) when given."""
    keep = slice(None) if ignore is None else ~ignore[ds.users]
    pop = np.bincount(ds.items[keep], minlength=ds.n_items)
    popular = np.zeros(ds.n_items, bool)
    popular[np.argsort(-pop, kind="stable")[: rule.popular_items]] = True
    return popular


def _bandwagon_profiles(ds: Dataset, rule: ShillingRule, ignore: np.ndarray | None = None) -> np.ndarray:
    """Accounts whose other items are mostly the shop's most popular ones: what a bandwagon fake
    takes to look ordinary and to tie its target to as many shoppers as it can. ``ignore``: accounts
    whose events do not count towards what is popular (the flagged ones, once found)."""
    popular = _popular(ds, rule, ignore)
    pairs = np.unique(np.stack([ds.users.astype(np.int64), ds.items.astype(np.int64)]), axis=1)
    distinct = np.bincount(pairs[0], minlength=ds.n_users)
    hot = np.bincount(pairs[0], weights=popular[pairs[1]], minlength=ds.n_users)
    # the target itself is one non-popular item: leave one out of the denominator
    share = np.divide(hot, np.maximum(distinct - 1, 1))
    return (distinct >= rule.min_profile) & (share >= rule.popular_share)


def _flag_bursts(
    ds: Dataset,
    offset: int,
    first: np.ndarray,
    suspects: np.ndarray,
    rule: ShillingRule,
    out: ShillingFlags,
) -> None:
    width = int(rule.window_hours * HOUR_MS)
    window = (ds.ts + offset) // width
    n_windows = max(int(window.max() - window.min()) + 1, 1)
    # distinct (item, window, account)
    triples = np.unique(np.stack([ds.items.astype(np.int64), window, ds.users.astype(np.int64)]), axis=1)
    iw, counts = np.unique(triples[:2], axis=1, return_counts=True)
    accounts = np.unique(np.stack([ds.items.astype(np.int64), ds.users.astype(np.int64)]), axis=1)
    per_item = np.bincount(accounts[0], minlength=ds.n_items).astype(np.float64)
    # the item's rate in the *other* windows: an attack must not raise its own baseline
    lam = np.maximum(per_item[iw[0]] - counts, 0.0) / max(n_windows - 1, 1)
    z = (counts - lam) / np.sqrt(lam + 1.0)
    share = counts / np.maximum(per_item[iw[0]], 1.0)
    burst = (counts >= rule.min_accounts) & (z >= rule.z) & (share >= rule.min_share)
    if not burst.any():
        return
    code = iw[0] * (int(window.max()) + 2) + iw[1]
    in_burst = np.isin(triples[0] * (int(window.max()) + 2) + triples[1], code[burst])
    members = triples[:, in_burst]
    u = members[2]
    born_window = (first[u] + offset) // width
    # a throwaway account: born in (or right before) the burst window, short-lived, bandwagon-shaped
    born = (born_window >= members[1] - 1) & (born_window <= members[1])
    hit = born & suspects[u]
    # an attack group is homogeneous: most of the burst's accounts are throwaway bandwagon profiles
    group = members[0] * (int(window.max()) + 2) + members[1]
    _, inverse = np.unique(group, return_inverse=True)
    share_hit = np.bincount(inverse, weights=hit) / np.bincount(inverse)
    hit &= share_hit[inverse] >= rule.min_group_share
    # the fakes' fillers (popular items) burst too when the attack is large, and real newcomers
    # touch them there: an account is flagged only if it also took part in a *core* burst, on an
    # item outside the shop's top ``core_top_share`` by its audience outside the burst — the
    # target's, whose real audience is tiny (popular targets are ``_flag_lockstep``'s business)
    known = per_item[per_item > 0]
    bar = float(np.quantile(known, 1 - rule.core_top_share)) if len(known) else 0.0
    # the item's audience apart from the burst: every account but the throwaways whose first touch
    # of it falls in the burst's window or its neighbours (a burst straddling a window edge is not
    # its own audience; real shoppers there are)
    span = int(window.max()) + 2
    key_all = ds.items.astype(np.int64) * ds.n_users + ds.users
    order = np.lexsort((window, key_all))
    head = np.ones(len(order), bool)
    head[1:] = key_all[order][1:] != key_all[order][:-1]
    firsts = order[head]
    firsts = firsts[suspects[ds.users[firsts]]]
    if not len(firsts):
        return
    touch_keys, touch_counts = np.unique(
        ds.items[firsts].astype(np.int64) * span + window[firsts], return_counts=True
    )

    def touched(keys: np.ndarray) -> np.ndarray:
        at = np.clip(np.searchsorted(touch_keys, keys), 0, len(touch_keys) - 1)
        return np.where(touch_keys[at] == keys, touch_counts[at], 0)

    near = sum(touched(iw[0] * span + iw[1] + d) for d in (-1, 0, 1))
    strong = burst & (per_item[iw[0]] - near < bar)
    core = np.isin(triples[0] * (int(window.max()) + 2) + triples[1], code[strong])
    rare = hit & core[in_burst]
    hit &= np.isin(u, u[rare])
    out.users[u[hit]] = True
    out.edges.update(zip(u[hit].tolist(), members[0][hit].tolist(), strict=True))
    out.items = sorted(set(out.items) | {int(i) for i in iw[0][burst]})
    out.windows += [
        (int(i), int(w), int(c), round(float(zz), 2))
        for i, w, c, zz in zip(iw[0][burst], iw[1][burst], counts[burst], z[burst], strict=True)
    ]


def _flag_lockstep(
    ds: Dataset,
    offset: int,
    first: np.ndarray,
    suspects: np.ndarray,
    rule: ShillingRule,
    out: ShillingFlags,
) -> None:
    """Flag groups of throwaway accounts (bandwagon-shaped, short-lived) born in one window that
    touch the same items there: per (item, window) the number of throwaways against the item's
    throwaways in the other windows (Poisson z), then an account is flagged when it touched at
    least ``lockstep_items`` of the items bursting in its birth window. Unlike ``_flag_bursts`` this
    needs no share of the item's whole audience, so it sees attacks on popular items (nukes)."""
    width = int(rule.window_hours * HOUR_MS)
    window = (ds.ts + offset) // width
    born = (first + offset) // width
    # events of throwaway accounts in their birth window (or the next: a burst may straddle it)
    keep = suspects[ds.users] & (window - born[ds.users] <= 1)
    if keep.sum() < rule.lockstep_accounts:
        return
    u = ds.users[keep].astype(np.int64)
    w = born[ds.users[keep]]  # the group is the birth window
    i = ds.items[keep].astype(np.int64)
    triples = np.unique(np.stack([i, w, u]), axis=1)
    iw, inverse, counts = np.unique(triples[:2], axis=1, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    n_windows = max(int(window.max() - window.min()) + 1, 1)
    per_item = np.bincount(iw[0], weights=counts, minlength=ds.n_items)
    lam = np.maximum(per_item[iw[0]] - counts, 0.0) / max(n_windows - 1, 1)
    z = (counts - lam) / np.sqrt(lam + 1.0)
    burst = (counts >= rule.lockstep_accounts) & (z >= rule.lockstep_z)
    if not burst.any():
        return
    in_burst = burst[inverse]
    members = triples[:, in_burst]
    # accounts that touched ``lockstep_items`` bursting items of their birth window
    acc, per_acc = np.unique(members[2], return_counts=True)
    group = acc[per_acc >= rule.lockstep_items]
    if not len(group):
        return
    hit = np.isin(members[2], group)
    out.users[members[2][hit]] = True
    out.edges.update(zip(members[2][hit].tolist(), members[0][hit].tolist(), strict=True))
    out.items = sorted(set(out.items) | {int(x) for x in np.unique(members[0][hit])})
    out.windows += [
        (int(a), int(b), int(c), round(float(zz), 2))
        for a, b, c, zz in zip(iw[0][burst], iw[1][burst], counts[burst], z[burst], strict=True)
    ]


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision and recall of flagged accounts (bool arrays over the same users)."""
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    return {
        "flagged": int(flagged.sum()),
        "true_positives": tp,
        "false_positives": fp,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def training_weights(
    ds: Dataset,
    flags: ShillingFlags,
    rule: ShillingRule | None = None,
    *,
    suspect_weight: float = 0.1,
    cohort_cap: int = 10,
) -> np.ndarray:
    """How much the model should learn from each event of ``ds`` (in [0, 1]) — the defence in
    training beyond dropping accounts:

    - a flagged account's events on the items it attacked, and every bot event: 0;
    - a flagged account's other events: ``suspect_weight`` (a real shopper flagged by mistake
      still counts a little; a fake's fillers barely move popularity);
    - trimmed co-occurrence: throwaway accounts (bandwagon-shaped, short-lived) born in one window
      and not flagged count at most ``cohort_cap`` accounts' worth on any one item there — an item's
      similarity to others can then rise only as fast as ``cohort_cap`` new accounts a window
      lift it, whatever the detector missed. The flagged accounts neither count in those cohorts
      nor towards the popularity that makes a profile bandwagon-shaped: a real newcomer born in an
      attack's hour is trimmed as it would be with no attack (counting the fakes there cost the
      real newcomers of REES46's last training hour most of their weight, and item-KNN 2% NDCG@10).
    """
    rule = rule or ShillingRule()
    w = np.ones(len(ds), np.float32)
    if not len(ds):
        return w
    flagged = flags.users[ds.users]
    w[flagged] = suspect_weight
    w[flags.event_mask(ds, mode="edges")] = 0.0
    width = int(rule.window_hours * HOUR_MS)
    first = np.full(ds.n_users, np.iinfo(np.int64).max, np.int64)
    last = np.full(ds.n_users, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, ds.users, ds.ts)
    np.maximum.at(last, ds.users, ds.ts)
    # popularity without the flagged accounts: the fakes' fillers must not redraw which real
    # newcomers look bandwagon-shaped
    throwaway = _bandwagon_profiles(ds, rule, flags.users) & (
        (last - first) <= int(rule.max_span_hours * HOUR_MS)
    )
    # the flagged accounts are weighted above: the cap is for what the detector left, so a real
    # newcomer born in an attack's window is not trimmed for the fakes' numbers
    rows = np.flatnonzero(throwaway[ds.users] & ~flagged)
    if len(rows):
        born = first[ds.users[rows]] // width
        pairs = np.unique(
            np.stack([ds.items[rows].astype(np.int64), born, ds.users[rows].astype(np.int64)]), axis=1
        )
        iw, counts = np.unique(pairs[:2], axis=1, return_counts=True)
        code = ds.items[rows].astype(np.int64) * (int(born.max()) + 2) + born
        keys = iw[0] * (int(born.max()) + 2) + iw[1]
        at = np.searchsorted(keys, code)
        scale = np.minimum(1.0, cohort_cap / counts[at]).astype(np.float32)
        w[rows] = np.minimum(w[rows], scale)
    return w
