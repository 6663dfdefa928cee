"""Tombstones of erased shoppers, and the store's own id.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_users",
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("erased_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_erased_users_erased_at", "erased_users", ["erased_at"])
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_index("ix_erased_users_erased_at", table_name="erased_users")
    op.drop_table("erased_users")
