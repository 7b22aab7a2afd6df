"""Audit records name the resource a request touched, and one record may stand for several refusals

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("resource", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("count", sa.Integer(), nullable=True))
        batch.create_index("ix_audit_records_resource", ["resource"])


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_index("ix_audit_records_resource")
        batch.drop_column("count")
        batch.drop_column("resource")
