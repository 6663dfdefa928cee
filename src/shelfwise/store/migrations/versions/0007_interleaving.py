"""Interleaving experiments: an impression keeps each slot's credits (which arm's pick it was, and
its inverse-propensity credit), so clicks cited by position are credited to the arm.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("impressions") as batch:
        batch.add_column(sa.Column("interleaving", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("impressions") as batch:
        batch.drop_column("interleaving")
