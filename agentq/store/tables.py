"""The mapped classes' Core tables, for the per-turn hot path.

A Core statement on the session's connection costs a fraction of the CPU of the same
work through the ORM (no unit of work, no identity map, no attribute events): on the
2-core benchmark box the ORM was most of a worker's time per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, union_all

from agentq.store.models import (
    Agent,
    AgentConversationContext,
    Conversation,
    Event,
    Job,
    LLMMessage,
    Message,
    MessageJob,
    Participant,
    Tenant,
)

agents = cast(Table, Agent.__table__)
contexts = cast(Table, AgentConversationContext.__table__)
conversations = cast(Table, Conversation.__table__)
events = cast(Table, Event.__table__)
jobs = cast(Table, Job.__table__)
llm_messages = cast(Table, LLMMessage.__table__)
messages = cast(Table, Message.__table__)
message_jobs = cast(Table, MessageJob.__table__)
participants = cast(Table, Participant.__table__)
tenants = cast(Table, Tenant.__table__)


def rows_of(table: Table, columns: Sequence[str], prefixes: Sequence[str]) -> Any:
    """A SELECT of one row a prefix: the `columns` of `table` bound to `<prefix><column>`,
    typed as the columns are, for `insert(table).from_select(columns, ...)`. Unlike a
    multi-row `insert().values([...])`, which SQLAlchemy compiles again at every run, it
    is compiled once (its cache key holds)."""
    rows = [
        select(*(bindparam(f"{p}{c}", type_=table.c[c].type) for c in columns)) for p in prefixes
    ]
    return rows[0] if len(rows) == 1 else union_all(*rows)
