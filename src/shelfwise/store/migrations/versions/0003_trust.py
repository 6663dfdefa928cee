"""Consent flags, the identity map, the differential-privacy budget and ledger, retention rollups.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("no_personalisation", sa.Boolean, nullable=False),
        sa.Column("no_analytics", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "identity_map",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("alias_id", ID, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_identity_map_user", "identity_map", ["user_id"])
    op.create_table(
        "dp_budget",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "dp_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("released_at", sa.BigInteger, nullable=False),
        sa.Column("query", sa.String(128), nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("mechanism", sa.String(64), nullable=False),
        sa.Column("sensitivity", sa.Float, nullable=False),
        sa.Column("scale", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "event_rollups",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("item_id", ID, primary_key=True),
        sa.Column("type", sa.String(32), primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("revenue", sa.Float, nullable=False),
        sa.Column("users", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("event_rollups", "dp_ledger", "dp_budget", "identity_map", "consent"):
        op.drop_table(table)
