"""tenants.max_pending_messages: a tenant's own backpressure limit

NULL: the tenant follows AGENTQ_TENANT_MAX_PENDING_MESSAGES; 0: no limit; n: at most n
messages pending (posted, not yet answered). See agentq.runtime.backpressure.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 15:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("max_pending_messages", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("max_pending_messages")
