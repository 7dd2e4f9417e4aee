"""What the duplicate finder's region check found for pairs of files, by their content hashes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_overlaps",
        sa.Column("first_hash", sa.String(64), primary_key=True),
        sa.Column("second_hash", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(96), nullable=False),
        sa.Column("inliers", sa.Integer(), nullable=False),
        sa.Column("contained", sa.Float(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("region_overlaps")
