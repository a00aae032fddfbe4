"""agents.name_key: names unique per tenant in any case and any script

0005 made names unique per tenant on lower(name), but SQLite's lower() folds ASCII only
("ZOË" and "zoë" were two names there) and PostgreSQL's follows the database's locale
(ASCII-only under LC_CTYPE=C, and never Python's full case folding). Names may now hold
letters of any script, so what makes two names the same is computed in Python
(`agentq.names.key`: NFC, case-folded) and stored; the unique index is on it. Agents whose
keys collide in a tenant (only possible for names 0005 allowed that were not ASCII) are
renamed, the oldest keeping its name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00.000000
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agentq.store.models
from agentq import names

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

OLD_INDEX = "uq_agents_tenant_name"
INDEX = "uq_agents_tenant_name_key"
#: only live agents hold their name
LIVE = sa.text("deleted_at IS NULL")

_agents = sa.table(
    "agents",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("created_at", agentq.store.models.UTCDateTime(timezone=True)),
    sa.column("deleted_at", agentq.store.models.UTCDateTime(timezone=True)),
)


def _fill_keys(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_agents.c.id, _agents.c.tenant_id, _agents.c.name, _agents.c.deleted_at).order_by(
            _agents.c.created_at, _agents.c.id
        )
    ).all()
    taken: set[tuple[uuid.UUID, str]] = set()
    for row in rows:
        name, key = row.name, names.key(row.name)
        if row.deleted_at is None:
            n = 2
            while (row.tenant_id, key) in taken:
                name = f"{row.name[:90]}-{n}"
                key, n = names.key(name), n + 1
            taken.add((row.tenant_id, key))
            if name != row.name:
                log.warning(
                    "agent %s renamed %r: its name was another's in another case", row.id, name
                )
        conn.execute(
            sa.update(_agents).where(_agents.c.id == row.id).values(name=name, name_key=key)
        )


def upgrade() -> None:
    op.add_column("agents", sa.Column("name_key", sa.String(300), nullable=True))
    _fill_keys(op.get_bind())
    op.drop_index(OLD_INDEX, table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.alter_column("name_key", existing_type=sa.String(300), nullable=False)
    op.create_index(
        INDEX,
        "agents",
        ["tenant_id", "name_key"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def downgrade() -> None:
    """Back to lower(name): fails if two live names of a tenant differ in lower() only."""
    op.drop_index(INDEX, table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("name_key")
    op.create_index(
        OLD_INDEX,
        "agents",
        ["tenant_id", sa.text("lower(name)")],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
