"""The store's tables, as SQLAlchemy Core objects. Changes go through a new migration in ``migrations/``."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(256)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", ID, primary_key=True),
    sa.Column("user_id", ID, nullable=True),
    sa.Column("session_id", ID, nullable=True),
    sa.Column("item_id", ID, nullable=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)
sa.Index("ix_events_user_ts", events.c.user_id, events.c.ts)
sa.Index("ix_events_item", events.c.item_id)
sa.Index("ix_events_ts", events.c.ts)

items = sa.Table(
    "items",
    metadata,
    sa.Column("item_id", ID, primary_key=True),
    sa.Column("title", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("brand", sa.Text),
    sa.Column("price", sa.Float),
    sa.Column("currency", sa.String(3)),
    sa.Column("attributes", sa.Text),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("updated_ts", sa.BigInteger),
    sa.Column("source", sa.String(64), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", ID, primary_key=True),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False),
    sa.Column("n_events", sa.Integer, nullable=False),
    sa.Column("suspected_bot", sa.Boolean, nullable=False),
    sa.Column("bot_reason", sa.Text),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_key", sa.String(32), nullable=False, unique=True),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=True),
    sa.Column("field", sa.String(128), nullable=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_quarantine_reason", quarantine.c.reason)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("report", sa.Text),
)

# Shoppers who were erased (their pseudonyms, never the shop's ids): every write path refuses their
# events and quarantined records, so a replay, a retry or a re-ingest cannot bring them back.
erased_users = sa.Table(
    "erased_users",
    metadata,
    sa.Column("user_id", ID, primary_key=True),
    sa.Column("erased_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_erased_users_erased_at", erased_users.c.erased_at)

# Facts about the store itself: ``store_id``, a random id made once, which each model version
# records so that a registry never serves a model trained on another store's data.
store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# --- trust (migration 0002): consent, identity stitching, the differential-privacy ledger, retention ---
consent = sa.Table(
    "consent",
    metadata,
    sa.Column("user_id", ID, primary_key=True),
    sa.Column("no_personalisation", sa.Boolean, nullable=False),
    sa.Column("no_analytics", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# A stitched identity: ``alias_id`` (a user id, or a session id for ``kind="session"``) is the
# shopper ``user_id``. Engines, export and deletion read events through it.
identity_map = sa.Table(
    "identity_map",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("alias_id", ID, primary_key=True),
    sa.Column("user_id", ID, nullable=False),
    sa.Column("via", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_identity_map_user", identity_map.c.user_id)

dp_budget = sa.Table(
    "dp_budget",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

dp_ledger = sa.Table(
    "dp_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("released_at", sa.BigInteger, nullable=False),
    sa.Column("query", sa.String(128), nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("mechanism", sa.String(64), nullable=False),
    sa.Column("sensitivity", sa.Float, nullable=False),
    sa.Column("scale", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

# What retention keeps of expired raw events: per UTC day, item and event type.
event_rollups = sa.Table(
    "event_rollups",
    metadata,
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("item_id", ID, primary_key=True),
    sa.Column("type", sa.String(32), primary_key=True),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("revenue", sa.Float, nullable=False),
    sa.Column("users", sa.BigInteger, nullable=False),
)

# --- merchandising (migration 0004): placements and search management, every save a new version ---
merch_documents = sa.Table(
    "merch_documents",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(128), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
)
sa.Index("ix_merch_documents_created", merch_documents.c.created_at)
# --- the loop (migration 0004): served answers, what events were attributed to, experiments ---
# One served list: its answer id (``shelfwise.core.ids.answer_id``), where and by what it was served,
# to whom (pseudonym), the items in order (JSON list) and, when a slot explored, the propensity
# of each position (JSON list; absent: every position deterministic).
impressions = sa.Table(
    "impressions",
    metadata,
    sa.Column("answer_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # rec | search
    sa.Column("placement", sa.String(64), nullable=False),
    sa.Column("version", sa.String(128), nullable=True),
    sa.Column("experiment", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(64), nullable=True),
    sa.Column("user_id", ID, nullable=True),
    sa.Column("session_id", ID, nullable=True),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("propensities", sa.Text, nullable=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    # search answers only: the query as normalised (``normal_query``) and how many items matched
    sa.Column("query", sa.String(500), nullable=True),
    sa.Column("total", sa.Integer, nullable=True),
    # interleaving experiments only: each slot's credits, JSON {"team": [...], "ips": [...]}
    sa.Column("interleaving", sa.Text, nullable=True),
)
sa.Index("ix_impressions_ts", impressions.c.ts)
sa.Index("ix_impressions_query", impressions.c.kind, impressions.c.query)
sa.Index("ix_impressions_user", impressions.c.user_id)
sa.Index("ix_impressions_experiment", impressions.c.experiment, impressions.c.arm)

# One row per event that cited an answer: ``attributed`` rows carry the answer's placement,
# version and arm (copied: they outlive the impression's retention); other statuses say why not.
attributions = sa.Table(
    "attributions",
    metadata,
    sa.Column("event_id", ID, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("answer_id", sa.String(32), nullable=True),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Column("item_id", ID, nullable=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("user_id", ID, nullable=True),
    sa.Column("session_id", ID, nullable=True),
    sa.Column("placement", sa.String(64), nullable=True),
    sa.Column("version", sa.String(128), nullable=True),
    sa.Column("experiment", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(64), nullable=True),
    sa.Column("revenue", sa.Float, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
)
sa.Index("ix_attributions_answer", attributions.c.answer_id)
sa.Index("ix_attributions_user", attributions.c.user_id)
sa.Index("ix_attributions_ts", attributions.c.ts)

# An online experiment: its spec (arms, shares, versions, salt, traffic range, metrics) as JSON;
# ``state`` holds what must persist between status reads (the always-valid p-value's minimum).
experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("placement", sa.String(64), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_ts", sa.BigInteger, nullable=False),
    sa.Column("end_ts", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("stopped_at", sa.BigInteger, nullable=True),
    sa.Column("state", sa.Text, nullable=False),
)
sa.Index("ix_experiments_placement", experiments.c.placement, experiments.c.status)

# Tables a backup carries, in the order a restore loads them (tombstones and the store's id travel
# with the data: a restored copy is the same shop, and its erasures stay erased).
DATA_TABLES = (
    items,
    users,
    events,
    ingest_runs,
    quarantine,
    erased_users,
    store_meta,
    consent,
    identity_map,
    dp_budget,
    dp_ledger,
    event_rollups,
    merch_documents,
    impressions,
    attributions,
    experiments,
)
