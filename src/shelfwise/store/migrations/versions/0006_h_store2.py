"""Search impressions keep what was asked: the query (normalised) and how many items matched, so a
merchant can see the queries that found nothing or that shoppers did not click.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("impressions") as batch:
        batch.add_column(sa.Column("query", sa.String(500), nullable=True))
        batch.add_column(sa.Column("total", sa.Integer, nullable=True))
    op.create_index("ix_impressions_query", "impressions", ["kind", "query"])


def downgrade() -> None:
    op.drop_index("ix_impressions_query", table_name="impressions")
    with op.batch_alter_table("impressions") as batch:
        batch.drop_column("total")
        batch.drop_column("query")
