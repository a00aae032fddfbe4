"""events.txid: the feed pages in commit order

Event ids come from a sequence at INSERT but become visible at COMMIT, so paging by
`id > after` skipped events of transactions that committed after a higher id was read.
On PostgreSQL every event now records the id of the transaction that wrote it, and the
feed reads `(txid, id)` in order, only below its snapshot's xmin (every transaction
there has finished). SQLite has one writer at a time, so id order is commit order there
and txid stays 0. Events stored before this migration get txid 0: all committed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the writing transaction's id (xid8, never wraps), PostgreSQL 13+
TXID_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    # A constant default first: existing rows get 0 without a table rewrite.
    op.add_column("events", sa.Column("txid", sa.BigInteger(), server_default="0", nullable=False))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        version = int(bind.exec_driver_sql("SHOW server_version_num").scalar_one())
        if version < 130000:
            raise RuntimeError("agentq needs PostgreSQL 13 or later (pg_current_xact_id)")
        op.alter_column("events", "txid", server_default=sa.text(TXID_DEFAULT))
    op.create_index("ix_events_commit_order", "events", ["txid", "id"])
    op.create_index(
        "ix_events_conversation_commit_order", "events", ["conversation_id", "txid", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_events_conversation_commit_order", table_name="events")
    op.drop_index("ix_events_commit_order", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")
