"""Events, items, users, quarantine and ingest runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", ID, primary_key=True),
        sa.Column("user_id", ID),
        sa.Column("session_id", ID),
        sa.Column("item_id", ID),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", sa.Float),
        sa.Column("currency", sa.String(3)),
        sa.Column("value", sa.Float),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts"])
    op.create_index("ix_events_item", "events", ["item_id"])
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_table(
        "items",
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
    op.create_table(
        "users",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.Column("n_events", sa.Integer, nullable=False),
        sa.Column("suspected_bot", sa.Boolean, nullable=False),
        sa.Column("bot_reason", sa.Text),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_key", sa.String(32), nullable=False, unique=True),
        sa.Column("run_id", sa.Integer),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("line_no", sa.Integer),
        sa.Column("field", sa.String(128)),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_quarantine_reason", "quarantine", ["reason"])
    op.create_table(
        "ingest_runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("report", sa.Text),
    )


def downgrade() -> None:
    for table in ("ingest_runs", "quarantine", "users", "items", "events"):
        op.drop_table(table)
