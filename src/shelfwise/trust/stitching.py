"""Identity stitching into the store: the links ``analytics.identity`` finds become the identity
map that the engines' input, export and deletion read."""

from __future__ import annotations

from typing import Any

from shelfwise.analytics.identity import identity_links
from shelfwise.store.analytical import AnalyticalStore
from shelfwise.store.base import Store
from shelfwise.store.identities import Link, link


def stitch_into_store(store: Store, db: AnalyticalStore) -> dict[str, Any]:
    """Find stitched identities in the snapshot ``db`` of ``store`` and record them there."""
    links = identity_links(db)
    made = link(store, [Link(r["kind"], r["alias_id"], r["user_id"], r["via"]) for r in links.to_dicts()])
    by_kind = links.group_by("kind").len().to_dicts() if links.height else []
    return {
        "links": made,
        "by_kind": {r["kind"]: int(r["len"]) for r in by_kind},
        "shoppers": links["user_id"].n_unique() if links.height else 0,
    }
