"""Closing the loop: served answers (impressions), what later events were attributed to, and
online experiments.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "impressions",
        sa.Column("answer_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("placement", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("experiment", sa.String(64), nullable=True),
        sa.Column("arm", sa.String(64), nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("session_id", ID, nullable=True),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("propensities", sa.Text, nullable=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_impressions_ts", "impressions", ["ts"])
    op.create_index("ix_impressions_user", "impressions", ["user_id"])
    op.create_index("ix_impressions_experiment", "impressions", ["experiment", "arm"])
    op.create_table(
        "attributions",
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
    op.create_index("ix_attributions_answer", "attributions", ["answer_id"])
    op.create_index("ix_attributions_user", "attributions", ["user_id"])
    op.create_index("ix_attributions_ts", "attributions", ["ts"])
    op.create_table(
        "experiments",
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
    op.create_index("ix_experiments_placement", "experiments", ["placement", "status"])


def downgrade() -> None:
    for table in ("experiments", "attributions", "impressions"):
        op.drop_table(table)
