"""jobs.lease_holder: which worker process took up a job's current claim

The operator console shows each running job's lease holder ("hostname/pid" of the
worker process whose LLM call holds the lease). It is written by the statement that
takes the claim up (`agentq.store.jobs.start`: no extra statement), kept when the job
ends (who ran the last attempt), and cleared by the next claim until its worker takes it
up.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_holder", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_holder")
