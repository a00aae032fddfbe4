"""conversations (created_at, id) indexes: the operator console's keyset paging

The console lists conversations newest first, of all tenants and of one.

Without them every page of the list sorts the whole table (a page took 34 ms p50 over
100,000 conversations, the HTTP round trip included); with them a page reads its 50 rows
(14 ms p50). See agentq.store.console and ops/scripts/console_scale.py.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_conversations_created_at_id", "conversations", ["created_at", "id"])
    op.create_index(
        "ix_conversations_tenant_created_at_id", "conversations", ["tenant_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_tenant_created_at_id", "conversations")
    op.drop_index("ix_conversations_created_at_id", "conversations")
