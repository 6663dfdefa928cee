"""Merchandising documents: placements and search management, versioned (every save a new row).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merch_documents",
        sa.Column("shop", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(128), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_index("ix_merch_documents_created", "merch_documents", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_merch_documents_created", table_name="merch_documents")
    op.drop_table("merch_documents")
