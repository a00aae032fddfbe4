"""agents per tenant: names unique per tenant case-insensitively, soft delete

Every agent (and conversation) belongs to a tenant: rows without one are given to the
tenant named "default" (created here if there are such rows). Names that only a case
apart collide in one tenant are renamed (the oldest agent keeps its name), so that the
new unique index can be built. agents.deleted_at marks a deleted agent; a deleted
agent's name may be taken again.

The index is on an expression, which SQLite's reflection skips: a later migration that
rebuilds `agents` with batch_alter_table must create uq_agents_tenant_name again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import agentq.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

#: the tenant of agents and conversations made without one
DEFAULT_TENANT = "default"
#: the unique index of agent names in a tenant
INDEX = "uq_agents_tenant_name"
#: only live agents hold their name
LIVE = sa.text("deleted_at IS NULL")

_tenants = sa.table(
    "tenants",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("created_at", agentq.store.models.UTCDateTime(timezone=True)),
)
_agents = sa.table(
    "agents",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("created_at", agentq.store.models.UTCDateTime(timezone=True)),
)
_conversations = sa.table("conversations", sa.column("tenant_id", sa.Uuid()))


def _default_tenant(conn: sa.Connection) -> uuid.UUID:
    found = conn.scalar(sa.select(_tenants.c.id).where(_tenants.c.name == DEFAULT_TENANT))
    if found is not None:
        return uuid.UUID(str(found))
    new = uuid.uuid4()
    conn.execute(
        sa.insert(_tenants).values(id=new, name=DEFAULT_TENANT, created_at=datetime.now(UTC))
    )
    return new


def _adopt_orphans(conn: sa.Connection) -> None:
    orphans = any(
        conn.scalar(sa.select(sa.func.count()).where(table.c.tenant_id.is_(None)))
        for table in (_agents, _conversations)
    )
    if not orphans:
        return
    tenant = _default_tenant(conn)
    for table in (_agents, _conversations):
        conn.execute(sa.update(table).where(table.c.tenant_id.is_(None)).values(tenant_id=tenant))


def _rename_case_duplicates(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_agents.c.id, _agents.c.tenant_id, _agents.c.name).order_by(
            _agents.c.created_at, _agents.c.id
        )
    ).all()
    taken: set[tuple[uuid.UUID, str]] = {(r.tenant_id, r.name.lower()) for r in rows}
    kept: set[tuple[uuid.UUID, str]] = set()
    for row in rows:
        key = (row.tenant_id, row.name.lower())
        if key not in kept:
            kept.add(key)
            continue
        n, base = 2, row.name[:90]
        while (row.tenant_id, f"{base}-{n}".lower()) in taken:
            n += 1
        new_name = f"{base}-{n}"
        taken.add((row.tenant_id, new_name.lower()))
        kept.add((row.tenant_id, new_name.lower()))
        conn.execute(sa.update(_agents).where(_agents.c.id == row.id).values(name=new_name))
        log.warning(
            "agent %s renamed %r: its name differed from another only by case", row.id, new_name
        )


def upgrade() -> None:
    conn = op.get_bind()
    _adopt_orphans(conn)
    _rename_case_duplicates(conn)
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint("uq_agents_name", type_="unique")
        batch.alter_column("tenant_id", existing_type=sa.Uuid(), nullable=False)
        batch.add_column(
            sa.Column("deleted_at", agentq.store.models.UTCDateTime(timezone=True), nullable=True)
        )
    # Outside the batch: SQLite's reflection would not carry an expression index along.
    op.create_index(
        INDEX,
        "agents",
        ["tenant_id", sa.text("lower(name)")],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def downgrade() -> None:
    """Back to globally unique names: fails if two tenants (or a deleted and a live agent)
    share a name."""
    op.drop_index(INDEX, table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("deleted_at")
        batch.alter_column("tenant_id", existing_type=sa.Uuid(), nullable=True)
        batch.create_unique_constraint("uq_agents_name", ["name"])
